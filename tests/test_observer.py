"""The PDE observer task (``r2dn_np.experiments.observer``): simulator, data, loss gradient,
convergence from a wrong initial guess, and the script end to end on tiny sizes."""

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
from r2dn_np.experiments import observer
from r2dn_np.checks.testing import FiniteDifferenceUnreliable, check_vjp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_constant_equilibria_are_steady(level):
    """xi = 0, 1/2, 1 zero the reaction term and the Laplacian: with b at the same level they stay."""
    xi = np.full((2, 11), level)
    np.testing.assert_array_equal(observer.pde_step(xi, np.full((2, 1), level), substeps=7), xi)


def test_one_euler_step_by_hand():
    xi = np.array([0.0, 0.2, 0.9, 0.4, 0.0])  # nodes 5 on [0, 10]: dz = 2.5, dt = 0.1 * 6.25
    dz, dt = 2.5, 0.625
    want = xi.copy()
    for i in (1, 2, 3):
        lap = (xi[i - 1] + xi[i + 1] - 2 * xi[i]) / dz**2
        want[i] = xi[i] + dt * (lap + 0.5 * xi[i] * (1 - xi[i]) * (xi[i] - 0.5))
    want[0] = want[-1] = 0.3
    np.testing.assert_allclose(observer.pde_step(xi, np.array([0.3]), substeps=1), want, rtol=1e-15)


def test_maximum_principle_and_boundaries():
    """Explicit Euler with dt = 0.1 dz^2 keeps xi in [0, 1]; the boundary nodes of xi_{t+1} hold b_t."""
    Xi, b = observer.simulate(3000, seed=3, xi0=1.0, b0=0.5)
    assert Xi.min() >= 0.0 and Xi.max() <= 1.0 and b.min() >= 0.0 and b.max() <= 1.0
    np.testing.assert_array_equal(Xi[1:, 0], b[:-1, 0])
    np.testing.assert_array_equal(Xi[1:, -1], b[:-1, 0])
    rng = np.random.default_rng(0)
    xi = rng.uniform(0, 1, (50, 51))
    for _ in range(20):
        xi = observer.pde_step(xi, rng.uniform(0, 1, (50, 1)))
        assert xi.min() >= 0.0 and xi.max() <= 1.0


def test_substeps_compose():
    """Four sub-steps are two samples of two sub-steps with the same boundary (the authors' data)."""
    xi, bb = np.random.default_rng(1).uniform(0, 1, (3, 51)), np.full((3, 1), 0.7)
    twice = observer.pde_step(observer.pde_step(xi, bb, 2), bb, 2)
    np.testing.assert_allclose(observer.pde_step(xi, bb, 4), twice, rtol=0, atol=1e-15)


@pytest.mark.parametrize("substeps", [1, 2, 7])
def test_simulate_and_make_data_apply_their_substeps(substeps):
    """Away from the default 4: each sample of ``simulate`` is ``pde_step`` with the given substeps
    (and a different trajectory from the default's); ``make_data`` passes them on."""
    Xi, b = observer.simulate(30, seed=2, xi0=0.3, b0=0.6, nodes=9, substeps=substeps)
    for t in range(29):
        np.testing.assert_array_equal(Xi[t + 1], observer.pde_step(Xi[t], b[t], substeps))
    assert np.max(np.abs(Xi - observer.simulate(30, seed=2, xi0=0.3, b0=0.6, nodes=9)[0])) > 1e-6
    data = observer.make_data(T=30, chunks=1, seed=2, nodes=9, substeps=substeps)
    np.testing.assert_array_equal(data[0].xi_next, observer.simulate(30, seed=2, nodes=9, substeps=substeps)[0][1:])


def test_data_shapes_and_measurement():
    data = observer.make_data(T=101, chunks=4, seed=0, nodes=11)
    assert len(data) == 4 and sum(c.xi.shape[0] for c in data) == 100
    Xi, b = observer.simulate(101, seed=0, nodes=11)
    y = observer.measure(Xi, b)
    np.testing.assert_array_equal(y[:, 0], b[:, 0])
    np.testing.assert_array_equal(y[:, 1], Xi[:, 5])
    got = np.concatenate([c.xi for c in data])
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(Xi[:-1], axis=0))


def _small_config(model, nx, nv):
    if model == "r2dn":
        return r2dn.Config(nu=2, nx=nx, nv=nv, ny=nx, hidden=(3,), activation="tanh", identity_output=True,
                           output_layer="sandwich")
    return ren.Config(nu=2, nx=nx, nv=nv, ny=nx, activation="tanh", identity_output=True)


@pytest.mark.parametrize("model", ["r2dn", "ren"])
def test_loss_gradient_against_finite_differences(model):
    @settings(max_examples=10)
    @given(nx=st.integers(3, 6), nv=st.integers(1, 4), B=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
    def check(nx, nv, B, seed):
        cfg = _small_config(model, nx, nv)
        rng = np.random.default_rng(seed)
        module = r2dn if model == "r2dn" else ren
        direct = tree.map(lambda a: a + 0.3 * rng.standard_normal(a.shape), module.init(cfg, seed))
        chunk = observer.Chunk(rng.uniform(0, 1, (B, nx)), rng.uniform(0, 1, (B, 2)), rng.uniform(0, 1, (B, nx)))

        def f(d):
            return np.asarray(observer.loss_and_grad(cfg, d, chunk)[0])

        def vjp(d, dv):
            return tree.map(lambda g: float(dv) * g, observer.loss_and_grad(cfg, d, chunk)[1])

        try:
            check_vjp(f, vjp, direct)
        except FiniteDifferenceUnreliable:
            pass

    check()


@pytest.mark.parametrize("model", ["r2dn", "ren"])
def test_estimates_forget_a_wrong_initial_guess(model):
    """Contracting observer: estimates from different initial guesses converge to each other, on
    any parameters (here random, untrained), so a trained one forgets a wrong start."""
    cfg = _small_config(model, 11, 6)
    module = r2dn if model == "r2dn" else ren
    direct = module.init(cfg, seed=4)
    Xi, b = observer.simulate(400, seed=2, xi0=1.0, b0=0.5, nodes=11)
    y = observer.measure(Xi, b)[:, None, :]
    starts = np.random.default_rng(5).uniform(-3, 3, (4, 11))
    Xh = [observer.estimate(cfg, direct, y, x0=s[None, :])[:, 0, :] for s in starts]
    gaps = np.array([np.linalg.norm(Xh[k] - Xh[0], axis=1) for k in range(1, 4)])
    assert np.all(gaps[:, -1] < 1e-3 * gaps[:, 0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="nodes"):
        observer.simulate(10, nodes=2)
    with pytest.raises(ValueError, match="xi0"):
        observer.simulate(10, xi0=2.0)
    with pytest.raises(ValueError, match="substeps"):
        observer.pde_step(np.zeros(5), np.zeros(1), substeps=0)
    with pytest.raises(ValueError, match="b"):
        observer.pde_step(np.zeros(5), np.zeros(2))
    with pytest.raises(ValueError, match="chunks"):
        observer.make_data(T=5, chunks=10)
    with pytest.raises(ValueError, match="model"):
        observer.model_config("lstm")
    with pytest.raises(TypeError, match="identity_output"):
        observer.loss_and_grad(r2dn.Config(nu=2, nx=3, nv=2, ny=3), None, None)
    cfg = _small_config("r2dn", 3, 2)
    with pytest.raises(TypeError, match="data"):
        observer.fit(cfg, [], epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        observer.fit(cfg, observer.make_data(T=9, chunks=2, nodes=3), epochs=0)


def test_quick_script_end_to_end(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "observer.py"), "--T", "300", "--chunks", "3",
                    "--epochs", "2", "--val-T", "30", "--nodes", "9", "--out", str(tmp_path)],
                   check=True, env=env, capture_output=True, text=True)
    res = json.loads((tmp_path / "results.json").read_text())
    for model in ("r2dn", "ren"):
        assert len(res[model]["losses"]) == 2 and np.isfinite(res[model]["val_nrmse"])
    assert (tmp_path / "loss_time.png").exists() and (tmp_path / "convergence.png").exists()
