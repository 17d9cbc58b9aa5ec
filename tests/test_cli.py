import dataclasses
import json
import os
import shlex
import struct
import subprocess
import sys

import numpy as np
import pytest

from r2dn_np import cli, r2dn
from r2dn_np.experiments import sysid
from r2dn_np.interface import io
from r2dn_np.training import train
from r2dn_np.data import boucwen, f16, sequences

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``python -m r2dn_np sysid --preset tiny`` in a subprocess, as a user runs it."""
    out = tmp_path_factory.mktemp("run")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "r2dn_np", "sysid", "--preset", "tiny", "--out", str(out),
         "--cache-dir", str(out / "cache")],
        capture_output=True, text=True, env=env, cwd=str(out), timeout=300,
    )
    return out, proc


def test_sysid_tiny_end_to_end(tiny_run):
    out, proc = tiny_run
    assert proc.returncode == 0, proc.stderr
    assert "val NRMSE" in proc.stdout and "certificate (contracting): holds" in proc.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"] == "boucwen" and res["preset"] == "tiny" and res["epochs_run"] == 3
    for name in ("multisine", "sweep"):
        t = res["test"][name]
        assert 0 < t["nrmse"] < 10 and 0 < t["linear_nrmse"] < 10 and t["rmse"] > 0
    assert res["certificate"]["holds"] is True
    assert res["seconds_per_epoch"] > 0
    # the command ran with single-threaded BLAS
    pools = res["machine"]["blas_threads"]
    assert pools and all(n == 1 for n in pools.values()), pools
    loaded = io.load(out / "model.npz")
    assert isinstance(loaded.config, r2dn.Config) and loaded.config.nx == sysid.PRESETS["tiny"]["boucwen"].nx
    assert loaded.metadata["dataset"] == "boucwen"
    for png in ("prediction_multisine.png", "prediction_sweep.png", "loss.png"):  # matplotlib: in the test extra
        assert (out / png).stat().st_size > 1000, png
    # the benchmark's figure of merit, recomputed from the saved model, beside the published table
    rows = res["official_test"]["rows"]
    model = train.load_model(out / "model.npz")
    assert rows[0]["rmse"] == boucwen.official_rmse(model.simulate)
    # the steady-state convention is r2dn simulate --periodic's: the second pass of the input
    official = boucwen.official_test()
    e = model.simulate(official.u, periodic=True) - official.y
    assert rows[0]["rmse"] == float(np.sqrt(np.mean(e * e)))
    assert "steady state" in res["conventions"]["official_test"] and "washout" in res["conventions"]["test"]
    assert [r["method"] for r in rows[2:]] == [m for m, _, _ in boucwen.PUBLISHED]
    assert "official multisine test" in proc.stdout and "dynoNet" in proc.stdout


def test_verify_on_the_trained_model(tiny_run, capsys):
    out, _ = tiny_run
    assert cli.main(["verify", "--params", str(out / "model.npz")]) == 0
    text = capsys.readouterr().out
    assert "gradient vs finite differences" in text and "contraction in metric M" in text
    assert "4 of 4 checks held" in text


def test_verify_on_a_corrupted_file_fails_clearly(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    bad = tmp_path / "bad.npz"
    raw = bytearray((out / "model.npz").read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = b"\x00" * 64  # damage the middle of the archive
    bad.write_bytes(bytes(raw))
    assert cli.main(["verify", "--params", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("r2dn verify: error: ") and str(bad) in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_verify_fresh_models(capsys):
    assert cli.main(["verify", "--kind", "lipschitz", "--gamma", "2"]) == 0
    text = capsys.readouterr().out
    assert text.count("Lipschitz: searched gain / gamma") == len(cli.SIZES)
    assert "r2dn lipschitz, nu=1 nx=2 nv=3 ny=1 " in text  # the model line says what each number is


def test_verify_reports_a_failing_check(monkeypatch, capsys):
    # a broken backward pass must turn into a failed row and exit status 1
    real = r2dn.backward

    def wrong(cfg, explicit, cache, dY, dxT=None):
        de, dx0, dU = real(cfg, explicit, cache, dY, dxT)
        return de._replace(A=1.1 * de.A), dx0, dU

    monkeypatch.setattr(r2dn, "backward", wrong)
    assert cli.main(["verify", "--kind", "contracting"]) == 1
    assert "FAILED" in capsys.readouterr().out


def _error(argv, capsys):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_missing_data_dir(tmp_path, capsys):
    err = _error(["sysid", "--dataset", "f16", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path)], capsys)
    assert "does not exist" in err
    assert "--data-dir" in _error(["sysid", "--dataset", "f16", "--out", str(tmp_path)], capsys)


def test_malformed_csv(tmp_path, capsys):
    for level in range(1, 8):
        name = f"F16Data_FullMSine_Level{level}{'_Validation' if level % 2 == 0 else ''}.csv"
        (tmp_path / name).write_text("Force,Voltage,Acceleration1,Acceleration2,Acceleration3\n1,2,3,4,5\n1,2,3\n")
    err = _error(["sysid", "--dataset", "f16", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")], capsys)
    assert "malformed row" in err and "Level1.csv" in err


def test_unknown_preset(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["sysid", "--preset", "huge"])
    assert exc.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_cupy_without_gpu(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as on a machine without CuPy
    err = _error(["sysid", "--backend", "cupy", "--preset", "tiny", "--out", str(tmp_path)], capsys)
    assert "backend='cupy'" in err and "pip install" in err
    assert "backend='cupy'" in _error(["verify", "--backend", "cupy"], capsys)


def test_without_matplotlib_says_how_to_get_the_plot(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc = cli.main(["sysid", "--preset", "tiny", "--dataset", "pendulum", "--epochs", "1", "--out", str(tmp_path),
                   "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    assert "pip install 'r2dn_np[plots]'" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.png"))
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["dataset"] == "pendulum" and "plots" not in res["files"]


def test_lipschitz_sysid_and_resume(tmp_path, capsys):
    argv = ["sysid", "--preset", "tiny", "--kind", "lipschitz", "--gamma", "5", "--out", str(tmp_path),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert cli.main(argv) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    assert [c["name"] for c in first["certificate"]["checks"]][1].startswith("R2DN gamma-Lipschitz")
    assert cli.main(argv + ["--resume"]) == 0  # the checkpoint is complete: nothing left to train
    second = json.loads((tmp_path / "results.json").read_text())
    assert second["test"] == first["test"] and second["history"]["loss"] == first["history"]["loss"]


def test_presets_cover_every_dataset_and_model():
    for name, per_dataset in sysid.PRESETS.items():
        assert sorted(per_dataset) == ["boucwen", "f16", "files", "pendulum"], name
        for dataset, preset in per_dataset.items():
            for model in ("r2dn", "ren"):
                p = preset.for_model(model)
                cfg = sysid.make_config(train.get_model(model), nu=2, nx=p.nx, nv=p.nv, ny=3, hidden=p.hidden,
                                       **p.model)
                assert cfg.nx == p.nx, (name, dataset, model)


def test_the_f16_paper_preset():
    # the R2DN paper's F-16 experiment (its authors' examples/train_sysid.py)
    p = sysid.PRESETS["paper"]["f16"]
    o = p.options
    assert (p.nx, p.nv, p.hidden) == (75, 75, (87, 87, 87))
    assert p.model == {"activation": "relu", "init": "long_memory", "polar": True}
    assert p.for_model("ren").nv == 150 and p.for_model("r2dn").nv == 75
    assert (o.epochs, o.window, o.batch, o.lr, o.decay_rate, o.decay_epochs, o.clip) == (70, 256, 4, 1e-3, 0.1, 20, 10)
    assert o.schedule == "exponential" and o.patience == 0 and o.washout == 100
    # one chunk per 73,728-sample record, whatever random offset below one window it starts at
    assert o.chunk % o.window == 0 and o.chunk + o.window - 1 <= 73728 < o.chunk + 2 * o.window


def test_sysid_refine_end_to_end(tmp_path, capsys):
    """``--refine 5`` on the tiny Bouc-Wen run: Adam, then whole-record refinement; the saved
    model is the refined one, certified, and results.json holds the history and the scores of
    the Adam result beside the refined model's."""
    out = tmp_path / "run"
    assert cli.main(["sysid", "--preset", "tiny", "--refine", "5", "--out", str(out),
                     "--cache-dir", str(tmp_path / "cache")]) == 0
    text = capsys.readouterr().out
    assert "refine    5/5" in text and "whole-record refinement: 5 L-BFGS-B iterations" in text
    assert "certificate (contracting): holds" in text
    res = json.loads((out / "results.json").read_text())
    ref = res["refine"]
    assert ref["options"]["iterations"] == 5 and ref["options"]["washout"] == res["options"]["washout"] == 20
    h = ref["history"]
    assert h["iterations"] == 5 and len(h["loss"]) == len(h["val_nrmse"]) == 6 and ref["seconds"] > 0
    assert all(b <= a for a, b in zip(h["loss"], h["loss"][1:]))
    assert h["val_nrmse"][0] == pytest.approx(res["best_val_nrmse"], rel=1e-12)  # the start is Adam's best
    assert h["best_val_nrmse"] == min(h["val_nrmse"]) <= h["val_nrmse"][0]
    assert set(ref["test_before"]) == set(ref["test_after"]) == {"multisine", "sweep"}
    assert ref["test_after"]["multisine"]["nrmse"] == res["test"]["multisine"]["nrmse"]
    model = train.load_model(out / "model.npz")
    assert ref["official_rmse_after"] == res["official_test"]["rows"][0]["rmse"] == boucwen.official_rmse(
        model.simulate)
    assert ref["official_rmse_before"] != ref["official_rmse_after"] and model.certify().holds
    assert res["certificate"]["holds"] is True
    # from rest, every sample: the other convention of the benchmark's test (and the sweep's)
    official = boucwen.official_test()
    e = model.simulate(official.u) - official.y
    assert res["test"]["multisine"]["rmse_from_rest"] == ref["test_after"]["multisine"]["rmse_from_rest"] == float(
        np.sqrt(np.mean(e * e)))
    assert res["test"]["sweep"]["linear_rmse_from_rest"] > 0 and "from rest" in text


def test_refine_a_finished_run_with_resume(tmp_path, capsys):
    """``--resume --refine N`` on a finished run: no epoch trained again, the Adam result refined."""
    argv = ["sysid", "--preset", "tiny", "--dataset", "pendulum", "--out", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert cli.main(argv) == 0
    first = json.loads((tmp_path / "run" / "results.json").read_text())
    assert first["refine"] is None
    assert cli.main(argv + ["--resume", "--refine", "3"]) == 0
    second = json.loads((tmp_path / "run" / "results.json").read_text())
    assert second["epochs_this_run"] == 0 and second["history"] == first["history"]
    assert second["refine"]["history"]["iterations"] == 3
    assert second["refine"]["test_before"]["multisine"]["nrmse"] == first["test"]["multisine"]["nrmse"]
    capsys.readouterr()


def test_an_interrupted_refinement_resumes(tmp_path, monkeypatch, capsys):
    real_refine = train.refine

    def interrupted(*a, **k):
        options = dataclasses.replace(a[5], max_seconds=1e-9)  # one iteration, then Ctrl-C
        real_refine(*a[:5], options, **k)
        raise KeyboardInterrupt

    argv = ["sysid", "--preset", "tiny", "--dataset", "pendulum", "--refine", "4", "--out", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    monkeypatch.setattr(train, "refine", interrupted)
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert "(refinement iteration 1 done)" in err
    command = err.strip().splitlines()[-1].strip()
    monkeypatch.setattr(train, "refine", real_refine)
    assert cli.main(shlex.split(command)[1:]) == 0
    h = json.loads((tmp_path / "run" / "results.json").read_text())["refine"]["history"]
    assert (h["resumed_from"], h["iterations"], len(h["loss"])) == (1, 4, 5)
    capsys.readouterr()


def test_the_best_preset_is_paper_then_refinement():
    for dataset in ("boucwen", "f16", "pendulum", "files"):
        best, paper = sysid.PRESETS["best"][dataset], sysid.PRESETS["paper"][dataset]
        assert best.refine.iterations >= 200 and paper.refine is None
        assert dataclasses.replace(best, refine=None) == paper, dataset
    opts = sysid.PRESETS["best"]["boucwen"].options
    refine = sysid.refine_options(None, sysid.PRESETS["best"]["boucwen"], opts)
    assert (refine.iterations, refine.washout, refine.val_samples) == (2000, opts.washout, opts.val_samples)
    assert sysid.refine_options(0, sysid.PRESETS["best"]["boucwen"], opts) is None
    assert sysid.refine_options(7, sysid.PRESETS["quick"]["boucwen"], opts).iterations == 7
    assert "refine 2000" in cli._presets_help()


def test_negative_refine_is_one_line_naming_the_flag(tmp_path, capsys):
    assert "--refine" in _error(["sysid", "--preset", "tiny", "--refine", "-1", "--out", str(tmp_path)], capsys)


def test_pretrained_models_by_name(tmp_path, monkeypatch, capsys):
    """``pretrained:NAME`` finds a model shipped in r2dn_np/data/pretrained (here a folder of the
    test's) for train.load_model, r2dn simulate and r2dn verify; a missing name lists those there."""
    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    monkeypatch.setattr(train, "PRETRAINED_DIR", str(shipped))
    assert train.pretrained() == []
    with pytest.raises(FileNotFoundError, match="none in this version"):
        train.load_model("pretrained:boucwen_best")
    cfg = r2dn.Config(nu=1, nx=2, nv=2, ny=1, hidden=(4,))
    scaler = sequences.Scaler(np.zeros(1), np.ones(1), np.zeros(1), np.ones(1))
    io.save(shipped / "toy_best.npz", cfg, r2dn.init(cfg, seed=0), metadata={"scaler": scaler.to_dict()})
    assert train.pretrained() == ["toy_best"] and train.pretrained("toy_best") == str(shipped / "toy_best.npz")
    u = np.linspace(-1, 1, 30)[:, None]
    np.testing.assert_array_equal(train.load_model("pretrained:toy_best").simulate(u),
                                  train.load_model(shipped / "toy_best.npz").simulate(u))
    with pytest.raises(FileNotFoundError, match="shipped: toy_best"):
        train.load_model("pretrained:other")
    with pytest.raises(ValueError, match="name"):
        train.pretrained("../toy_best")
    np.savetxt(tmp_path / "u.csv", u, delimiter=",")
    assert cli.main(["simulate", "--params", "pretrained:toy_best", "--input", str(tmp_path / "u.csv"),
                     "--out", str(tmp_path / "y.csv")]) == 0
    assert (tmp_path / "y.csv").exists()
    assert cli.main(["verify", "--params", "pretrained:toy_best"]) == 0
    capsys.readouterr()
    err = _error(["simulate", "--params", "pretrained:nope", "--input", str(tmp_path / "u.csv"), "--out",
                  str(tmp_path / "z.csv")], capsys)
    assert "--params pretrained:nope" in err and "toy_best" in err


def test_the_pretrained_folder_is_shipped():
    assert os.path.isfile(os.path.join(train.PRETRAINED_DIR, "README.md"))
    with open(os.path.join(ROOT, "setup.cfg"), encoding="utf-8") as fh:
        assert "pretrained/*.npz" in fh.read()
    for name in train.pretrained():  # every shipped model loads, keeps its certificate and has a README row
        model = train.load_model(f"pretrained:{name}")
        assert model.certify().holds, name
        with open(os.path.join(train.PRETRAINED_DIR, "README.md"), encoding="utf-8") as fh:
            assert f"`{name}.npz`" in fh.read(), name


def _f16_folder(folder, T=400):
    """Seven records in the published format (trailing commas, Fs in the first row) of a toy
    two-input, three-output system; level n is excited n times harder."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for level in range(1, 8):
        u = level * rng.standard_normal((T, 2))
        x = np.zeros(3)
        y = np.empty((T, 3))
        for t in range(T):
            x = 0.8 * x + np.tanh(u[t, 0] + 0.5 * u[t, 1]) * np.array([1.0, 0.5, -0.3])
            y[t] = x + 0.1 * level
        lines = ['"Force","Voltage","Acceleration1","Acceleration2","Acceleration3","Fs",']
        lines += [",".join(f"{v:.6g}" for v in row) + (",400," if t == 0 else ",,")
                  for t, row in enumerate(np.hstack([u, y]))]
        name = f"F16Data_FullMSine_Level{level}{'_Validation' if level % 2 == 0 else ''}.csv"
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def test_f16_sysid_reports_every_output(tmp_path, capsys):
    folder = _f16_folder(tmp_path / "data")
    out = tmp_path / "out"
    assert cli.main(["sysid", "--dataset", "f16", "--data-dir", str(folder), "--preset", "tiny", "--out", str(out),
                     "--quiet"]) == 0
    text = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert list(res["test"]) == ["Level6"] and res["data_info"]["levels"]["val"] == [2, 4]
    t = res["test"]["Level6"]
    names = ["Acceleration1", "Acceleration2", "Acceleration3"]
    assert list(t["nrmse_per_output"]) == names and list(t["linear_nrmse_per_output"]) == names
    assert np.isclose(np.mean(list(t["nrmse_per_output"].values())), t["nrmse"])
    assert np.isclose(np.mean(list(t["linear_nrmse_per_output"].values())), t["linear_nrmse"])
    # one figure for the test set, with a row pair per output: three outputs make it taller than wide
    assert res["files"]["plots"] == {"Level6": "prediction_Level6.png"}
    width, height = struct.unpack(">II", (out / "prediction_Level6.png").read_bytes()[16:24])
    assert height > 1.1 * width
    lru = res["published"]["Level6"]["deep LRU [Forgione et al. 2024]"]
    assert lru == {"Acceleration1": 0.134, "Acceleration2": 0.099, "Acceleration3": 0.237}
    assert "NRMSE per output" in text and "Level6  deep LRU [Forgione et al. 2024]" in text
    row = next(line for line in text.splitlines() if line.startswith("Level6  R2DN"))
    assert [float(v) for v in row.split()[2:]] == pytest.approx(
        list(t["nrmse_per_output"].values()) + [t["nrmse"]], abs=6e-5)
    # standardised with level 4's statistics, as the R2DN authors' code
    level4 = f16.read_csv(folder / "F16Data_FullMSine_Level4_Validation.csv")
    scaler = io.load(out / "model.npz").metadata["scaler"]
    np.testing.assert_allclose(scaler["u_std"], level4.u.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler["y_mean"], level4.y.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("argv, env, expect", [
    (["--threads", "1"], {}, 1),
    ([], {}, 1),  # the default
    (["--threads", "1"], {"OMP_NUM_THREADS": "2"}, 1),  # the flag wins over the environment
])
def test_threads_limit_blas_while_the_command_runs(argv, env, expect, monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    for var in cli._THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)

    def no_restart(*a, **k):
        raise AssertionError("the command must not re-execute itself")

    monkeypatch.setattr(os, "execve", no_restart)
    monkeypatch.setattr(os, "execv", no_restart)
    seen = []
    monkeypatch.setattr(cli, "_verify", lambda args: seen.append(threadpool_info()) or 0)
    with threadpool_limits(limits=2):  # a known limit before, so that restoring it shows
        before = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
        assert cli.main(["verify", *argv]) == 0
        after = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
    assert seen and seen[0], "numpy's BLAS must show up in threadpool_info"
    assert all(p["num_threads"] == expect for p in seen[0]), seen[0]
    assert after == before  # the limit ends with the command


def test_threads_from_the_environment_are_left_alone(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cli._thread_limit(None) is None and cli._thread_limit(2) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    for var in cli._THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    assert cli._thread_limit(None) == 1


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_bad_threads_is_one_line_naming_the_flag(value, capsys):
    try:
        rc = cli.main(["verify", "--threads", value])
    except SystemExit as exc:  # argparse's type check: one line too
        rc = exc.code
    assert rc in (1, 2)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and "--threads" in err, err


def test_sysid_workers_flag_reaches_training(monkeypatch, tmp_path, capsys):
    """``r2dn sysid --workers N`` passes N to train.fit; a bad value names the flag."""
    from r2dn_np.training import train

    seen = {}
    real_fit = train.fit

    def fit(*args, **kw):
        seen["workers"] = kw.get("workers")
        return real_fit(*args, **kw)

    monkeypatch.setattr(train, "fit", fit)
    out = tmp_path / "run"
    assert cli.main(["sysid", "--preset", "tiny", "--dataset", "pendulum", "--epochs", "1", "--workers", "1",
                     "--out", str(out), "--quiet", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert seen["workers"] == 1
    capsys.readouterr()
    assert cli.main(["sysid", "--preset", "tiny", "--workers", "0", "--out", str(tmp_path / "x")]) != 0
    assert "--workers" in capsys.readouterr().err


def test_sysid_and_sweep_refuse_to_overwrite_the_data_they_read(tmp_path, capsys):
    # an output file that is (a link to) one of the records read: refused before any work, the
    # record left byte-identical
    folder = _f16_folder(tmp_path / "data")
    level1 = folder / "F16Data_FullMSine_Level1.csv"
    before = level1.read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    os.link(level1, out / "model.npz")
    err = _error(["sysid", "--dataset", "f16", "--data-dir", str(folder), "--preset", "tiny", "--out", str(out),
                  "--quiet"], capsys)
    assert f"--out {out / 'model.npz'} is the same file as --data-dir {level1}: refusing to overwrite" in err
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(level1, root / "table.md")
    err = _error(["sweep", "--tasks", "sysid-f16", "--preset", "tiny", "--data-dir", str(folder), "--root",
                  str(root), "--table"], capsys)
    assert f"--root {root / 'table.md'} is the same file as --data-dir {level1}" in err
    assert level1.read_bytes() == before and (out / "model.npz").read_bytes() == before


def test_the_command_line_shares_passes_by_default_and_the_library_does_not(tmp_path, monkeypatch):
    """``r2dn sysid`` asks for ``workers="auto"`` unless ``--workers`` or ``R2DN_WORKERS`` says
    otherwise; the library's settings default to None (``R2DN_WORKERS``, else serial)."""
    seen = []

    def capture(settings, **kwargs):
        seen.append(settings.workers)
        raise ValueError("captured")

    monkeypatch.setattr(sysid, "run", capture)
    monkeypatch.delenv("R2DN_WORKERS", raising=False)
    argv = ["sysid", "--preset", "tiny", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 1 and cli.main(argv + ["--workers", "2"]) == 1
    monkeypatch.setenv("R2DN_WORKERS", "1")
    assert cli.main(argv) == 1
    assert seen == ["auto", 2, None]
    assert sysid.SysidSettings().workers is None


@pytest.mark.parametrize("fields, match", [
    (dict(dataset="nope"), "^dataset must be one of"),
    (dict(model="lstm"), "^model must be one of"),
    (dict(preset="huge"), "^preset must be one of"),
    (dict(workers=0), "^workers must be an integer >= 1"),
    (dict(val=("v.csv",)), "^val describes your records and needs data"),
    (dict(data=("a.csv",), dataset="f16"), "^data and dataset f16: give one of them"),
    (dict(epochs=0), "^epochs must be"),
])
def test_sysid_settings_name_the_bad_field(fields, match):
    with pytest.raises(ValueError, match=match):
        sysid.SysidSettings(**fields)
