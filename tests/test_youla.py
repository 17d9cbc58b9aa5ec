"""Youla-parameterised control (``r2dn_np.experiments.youla``): the plant, the closed-loop gradient
against finite differences, boundedness under the largest disturbance, the script end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r2dn_np import r2dn, ren
from r2dn_np.core import tree
from r2dn_np.experiments import youla
from r2dn_np.checks.testing import FiniteDifferenceUnreliable, check_vjp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(model, nx=2, nv=3):
    if model == "r2dn":
        return r2dn.Config(nu=1, nx=nx, nv=nv, ny=1, hidden=(4,), activation="tanh")
    return ren.Config(nu=1, nx=nx, nv=nv, ny=1, activation="tanh")


def test_plant_is_the_transfer_function():
    """Impulse response of (A, B, C) against the recursion of 0.3 / (z^2 - a1 z + 0.64)."""
    P = youla.plant()
    a1 = 1.6 * np.cos(0.2 * np.pi)
    h = np.zeros(30)
    h[2] = 0.3
    for k in range(3, 30):
        h[k] = a1 * h[k - 1] - 0.64 * h[k - 2]
    x, got = P.B[:, 0].copy(), [0.0]
    for _ in range(29):
        got.append(float(P.C[0] @ x))
        x = P.A @ x
    np.testing.assert_allclose(got, h, atol=1e-14)
    assert float((P.C @ P.B)[0, 0]) == 0.0  # relative degree 2


def test_y_tilde_is_minus_T_w_and_z_uses_the_clipped_control():
    cfg = _config("r2dn")
    direct = r2dn.init(cfg, seed=1)
    direct = direct._replace(D12=direct.D12 * 50.0, bv=direct.bv + 3.0)  # large outputs: the clip acts
    w = youla.disturbances(np.random.default_rng(0), 120, 3)
    roll = youla.rollout(cfg, direct, youla.initial_state(cfg, 3), w)
    P = youla.plant()
    x = np.zeros((3, 2))
    for t in range(120):
        np.testing.assert_allclose(roll.Yt[t], -(x @ P.C.T)[:, 0], atol=1e-12)
        x = x @ P.A.T + w[t] * P.B[:, 0]
    np.testing.assert_array_equal(roll.U, np.clip(roll.Ut, -5, 5))
    value = np.mean(np.abs(roll.Z)) + 1e-4 * np.mean(roll.U**2)
    assert roll.value == pytest.approx(value, rel=1e-13)


@pytest.mark.parametrize("model", ["r2dn", "ren"])
@pytest.mark.parametrize("cuts", [(40,), (7, 50, 51)])
def test_carried_stretches_are_one_long_rollout(model, cuts):
    """The training carries the state from one stretch to the next: stretches run one after the
    other from the carried state give exactly the one long rollout (plant and policy states)."""
    cfg = _config(model)
    base = (r2dn if model == "r2dn" else ren).init(cfg, seed=2)
    direct = base._replace(bv=base.bv + 0.3)
    w = youla.disturbances(np.random.default_rng(4), 90, 3, hold=9)
    whole = youla.rollout(cfg, direct, youla.initial_state(cfg, 3), w)
    state, parts = youla.initial_state(cfg, 3), []
    for a, b in zip((0,) + cuts, cuts + (90,)):
        _, _, after = youla.loss_and_grad(cfg, direct, state, w[a:b])
        roll = youla.rollout(cfg, direct, state, w[a:b])
        for x, y in zip(after, roll.final):
            np.testing.assert_array_equal(x, y)
        parts.append(roll)
        state = roll.final
    for field in ("Z", "U", "Yt"):
        np.testing.assert_allclose(np.concatenate([getattr(r, field) for r in parts]), getattr(whole, field),
                                   rtol=1e-12, atol=1e-12, err_msg=field)
    for x, y in zip(state, whole.final):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(whole.final.x[:, 2:4])) > 1e-3  # the controlled plant copy has moved


@pytest.mark.parametrize("model", ["r2dn", "ren"])
def test_closed_loop_gradient_against_finite_differences(model):
    @settings(max_examples=10)
    @given(nx=st.integers(1, 3), nv=st.integers(1, 4), T=st.integers(3, 12), B=st.integers(1, 3),
           seed=st.integers(0, 2**31 - 1), gain=st.sampled_from([1.0, 30.0]))
    def check(nx, nv, T, B, seed, gain):
        cfg = _config(model, nx, nv)
        rng = np.random.default_rng(seed)
        module = r2dn if model == "r2dn" else ren
        direct = tree.map(lambda a: a + 0.3 * rng.standard_normal(a.shape), module.init(cfg, seed))
        direct = direct._replace(by=direct.by + gain * 0.1)  # gain 30: the clip is active sometimes
        state = youla.State(rng.standard_normal((B, 6)), rng.standard_normal((B, nx)))
        w = youla.disturbances(rng, T, B, hold=3)

        def f(d):
            return np.asarray(youla.loss_and_grad(cfg, d, state, w)[0])

        def vjp(d, dv):
            return tree.map(lambda g: float(dv) * g, youla.loss_and_grad(cfg, d, state, w)[1])

        try:
            check_vjp(f, vjp, direct)
        except FiniteDifferenceUnreliable:
            pass  # |z| or the clip has a kink within the step

    check()


def test_last_two_controls_reach_only_the_control_penalty():
    """Relative degree 2: z_t sees u_s only for s <= t - 2 (so u_{T-1}, u_{T-2} reach only the penalty)."""
    cfg = _config("r2dn")
    direct = r2dn.init(cfg, seed=0)
    w = 0.05 * youla.disturbances(np.random.default_rng(1), 10, 2)
    state = youla.initial_state(cfg, 2)
    base = youla.rollout(cfg, direct, state, w)
    assert np.all(np.abs(base.Ut) < 5)
    # moving the policy's output bias moves every u; z over the stretch sees only u_0..u_{T-3}
    shifted = youla.rollout(cfg, direct._replace(by=direct.by + 1e-3), state, w)
    np.testing.assert_array_equal(shifted.Z[:2], base.Z[:2])
    assert not np.array_equal(shifted.Z[2:], base.Z[2:])


@pytest.mark.parametrize("model", ["r2dn", "ren"])
def test_closed_loop_stays_bounded_under_the_largest_disturbance(model):
    """A random contracting policy, the largest disturbance (+-10 held 50 steps), 2000 steps:
    |u| <= 5 and the stable plant keep z and every state bounded."""
    cfg = _config(model, nx=4, nv=6)
    module = r2dn if model == "r2dn" else ren
    rng = np.random.default_rng(7)
    direct = tree.map(lambda a: a + 1.0 * rng.standard_normal(a.shape), module.init(cfg, seed=7))
    w = 10.0 * np.sign(youla.disturbances(rng, 2000, 4))
    roll = youla.rollout(cfg, direct, youla.initial_state(cfg, 4), w)
    # |T|_1 (sum of |impulse response|) bounds |z| by it times (10 + 5)
    P = youla.plant()
    x, l1 = P.B[:, 0].copy(), 0.0
    for _ in range(500):
        l1 += abs(float(P.C[0] @ x))
        x = P.A @ x
    assert np.max(np.abs(roll.Z)) <= l1 * 15.0 + 1e-9
    assert np.all(np.isfinite(roll.final.q)) and np.max(np.abs(roll.U)) <= 5.0


def test_bad_inputs():
    cfg = _config("r2dn")
    d = r2dn.init(cfg)
    with pytest.raises(TypeError, match="rng"):
        youla.disturbances(0, 10, 2)
    with pytest.raises(ValueError, match="hold"):
        youla.disturbances(np.random.default_rng(), 10, 2, hold=0)
    with pytest.raises(TypeError, match="nu = ny = 1"):
        youla.initial_state(r2dn.Config(nu=2, nx=2, nv=2, ny=1), 2)
    with pytest.raises(TypeError, match="state"):
        youla.loss_and_grad(cfg, d, (0, 0), np.zeros((5, 2, 1)))
    with pytest.raises(ValueError, match="w"):
        youla.loss_and_grad(cfg, d, youla.initial_state(cfg, 2), np.zeros((5, 2, 2)))
    with pytest.raises(ValueError, match="segments"):
        youla.fit(cfg, epochs=1, T=10, segments=3)
    with pytest.raises(ValueError, match="model"):
        youla.model_config("gru")


def test_quick_script_end_to_end(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "youla.py"), "--epochs", "2", "--T", "40",
                    "--batch", "4", "--tiny", "--out", str(tmp_path)], check=True, env=env, capture_output=True,
                   text=True)
    res = json.loads((tmp_path / "results.json").read_text())
    for model in ("r2dn", "ren"):
        assert len(res[model]["test_losses"]) == 3 and np.isfinite(res[model]["final_test_loss"])
    assert (tmp_path / "loss_time.png").exists()
