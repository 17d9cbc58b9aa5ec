"""Smoke tests of scripts/train_lipschitz_rnn.py (tiny settings; the real runs are in the docs)."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from r2dn_np.core import tree
from r2dn_np.data import digits

from helpers import host

_PATH = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "train_lipschitz_rnn.py"
_spec = importlib.util.spec_from_file_location("train_lipschitz_rnn", _PATH)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_main_runs_every_task_and_the_robustness_table(tmp_path, capsys):
    out = tmp_path / "r.json"
    results = script.main([
        "--train-limit", "60", "--epochs", "2", "--noise-epochs", "1", "--noise-rows", "5",
        "--n-units", "6", "--noise-draws", "1", "--robustness", "--quiet", "--out", str(out),
    ])
    runs = {(r["task"], r["model"]): r for r in results["runs"]}
    assert set(runs) == {(t, m) for t in script.DIGIT_TASKS for m in ("lipschitz_rnn", "tanh_rnn", "r2dn")}
    assert runs["pixel", "tanh_rnn"]["T"] == 64 and runs["noise_padded_fixed", "lipschitz_rnn"]["T"] == 13
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in runs.values())
    stab = runs["pixel", "lipschitz_rnn"]["stability"]
    lo, hi = stab["prop2_interval"]
    assert lo <= stab["max_re_eig_A"] <= hi + 1e-12 and runs["pixel", "tanh_rnn"]["stability"] is None
    rob = results["robustness"]["lipschitz_rnn"]
    assert set(rob["gaussian"]) == {"0.1", "0.2", "0.4", "0.8"} and 0 <= rob["clean"] <= 1
    saved = json.loads(out.read_text())
    assert saved["runs"][0]["config"]["n_units"] == 6 and saved["settings"]["epochs"] == 2
    assert "| pixel | 64 | lipschitz_rnn |" in capsys.readouterr().out


def test_r2dn_adapter_trains_and_its_gradient_matches_finite_differences(capsys):
    results = script.main(["--task", "pixel", "--model", "r2dn", "--train-limit", "40", "--epochs", "2",
                           "--n-units", "6", "--quiet"])
    (run,) = results["runs"]
    assert run["model"] == "r2dn" and 0.0 <= run["test_accuracy"] <= 1.0 and np.isfinite(run["final_train_loss"])
    adapter = script.r2dn_adapter(1, 10, dict(n_units=6), seed=1, backend="numpy")
    rng = np.random.default_rng(0)
    X, labels = rng.standard_normal((5, 3, 1)), np.array([0, 3, 9])
    _, grads = adapter.value_and_grad(adapter.params, X, labels)
    direction = tree.map(lambda a: rng.standard_normal(a.shape), adapter.params)
    h = 1e-6

    def f(s):
        return float(adapter.value_and_grad(tree.map(lambda a, d: a + s * d, adapter.params, direction), X, labels)[0])

    fd = (f(h) - f(-h)) / (2 * h)
    np.testing.assert_allclose(tree.vdot(grads, direction), fd, rtol=1e-5)


def test_tasks_and_pixel_sequences():
    fixed = script.load_task("noise_padded_fixed", 7, 0, "numpy", train_limit=20)
    X = host(fixed.X_train)
    assert X.shape == (15, 20, 8)
    np.testing.assert_array_equal(X[8:, 0, :], X[8:, 5, :])  # one noise block shared by every image
    iid = script.load_task("noise_padded", 7, 0, "numpy", train_limit=20)
    assert not np.array_equal(host(iid.X_train)[8:, 0, :], host(iid.X_train)[8:, 5, :])
    flat = digits.load()
    np.testing.assert_array_equal(host(script.pixel_sequences(flat.X_test)),
                                  host(digits.as_sequences(flat, "pixel").X_test))


def test_mnist_tasks_variants_and_matched_parameter_counts(tmp_path):
    """The MNIST preset end to end on a handful of real digits (T = 784), every Lipschitz RNN
    variant, widths matched to the Lipschitz RNN's parameter count, and the robustness table."""
    results = script.main([
        "--preset", "mnist_quick", "--mnist-train", "12", "--mnist-test", "10", "--epochs", "1",
        "--n-units", "5", "--noise-draws", "1", "--robustness", "--quiet",
        "--model", *script.MODELS, "--out", str(tmp_path / "m.json"),
    ])
    runs = {(r["task"], r["model"]): r for r in results["runs"]}
    assert set(runs) == {(t, m) for t in script.MNIST_TASKS for m in script.MODELS}
    assert all(r["T"] == 784 and r["n_train"] == 12 and r["n_test"] == 10 for r in runs.values())
    target = runs["mnist_pixel", "lipschitz_rnn_euler"]["n_params"]
    for model in ("tanh_rnn", "r2dn"):  # the closest count any width gives
        assert abs(runs["mnist_pixel", model]["n_params"] - target) <= 0.2 * target
    cfgs = {m: runs["mnist_pixel", m]["config"] for m in script.MODELS}
    assert cfgs["lipschitz_rnn_euler"]["scheme"] == "euler" and cfgs["lipschitz_rnn_imex"]["scheme"] == "imex"
    assert cfgs["lipschitz_rnn_gated"]["gated"] and cfgs["lipschitz_rnn_rk4"]["scheme"] == "rk4"
    stab = runs["mnist_permuted", "lipschitz_rnn_stable"]["stability"]
    assert stab["max_re_eig_A"] <= -0.01 + 1e-9 and stab["prop2_interval"][1] == pytest.approx(-0.01)
    assert stab["max_stable_step_scheme"] == float("inf") and "lyapunov_decay_rate_F" in stab
    assert set(results["robustness"]) == set(script.MODELS)
    assert len(runs["mnist_pixel", "tanh_rnn"]["accuracy_per_epoch"]) == 1


def test_matched_width_is_the_closest_count():
    s = dict(script.DEFAULTS, **script.PRESETS["mnist_quick"])
    target = script.n_params(script.lipschitz_rnn_adapter(1, 10, s, 0, "numpy").params)
    width, count = script.matched_width("tanh_rnn", 1, 10, s, target, "numpy")
    # tanh RNN: W (N^2), U, b (N each), D (10 N), by (10)
    assert count == width ** 2 + 12 * width + 10
    for w in (width - 1, width + 1):
        assert abs(w ** 2 + 12 * w + 10 - target) >= abs(count - target)
