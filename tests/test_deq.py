import dataclasses

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from r2dn_np import deq
from r2dn_np.core import fixed_point, tree
from r2dn_np.interface import io
from r2dn_np.training import losses
from r2dn_np.checks.testing import FiniteDifferenceUnreliable, check_vjp

from helpers import examples_for, host, put

ACT = {"relu": lambda a: np.maximum(a, 0), "tanh": np.tanh,
       "sigmoid": lambda a: 1 / (1 + np.exp(-a)), "identity": lambda a: a}


@st.composite
def problems(draw, activations=tuple(ACT)):
    """A DEQ whose map contracts with factor rho (Gaussian W rescaled to spectral norm rho)."""
    cfg = deq.Config(
        n_in=draw(st.integers(1, 5)), n=draw(st.integers(1, 8)),
        activation=draw(st.sampled_from(activations)),
        solver=draw(st.sampled_from(fixed_point.SOLVERS)), tol=1e-13, max_iter=2000,
        anderson_m=draw(st.integers(1, 6)),
    )
    rho = draw(st.sampled_from([0.2, 0.6, 0.9]))
    seed = draw(st.integers(0, 2**31 - 1))
    N = draw(st.integers(1, 4))
    return cfg, rho, seed, N


def make(xp, cfg, rho, seed, N):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((cfg.n, cfg.n))
    W *= rho / np.linalg.norm(W, 2)
    U = rng.standard_normal((cfg.n, cfg.n_in))
    b = 0.5 * rng.standard_normal(cfg.n)
    x = rng.standard_normal((N, cfg.n_in))
    return deq.Explicit(put(xp, W), put(xp, U), put(xp, b)), put(xp, x)


def test_residual_below_tol_at_return(xp):
    @settings(max_examples=examples_for(xp, 25))
    @given(problem=problems())
    def check(problem):
        cfg, rho, seed, N = problem
        explicit, x = make(xp, cfg, rho, seed, N)
        z, cache = deq.forward(cfg, explicit, x)
        assert cache.result.converged
        assert cache.result.residuals[-1] <= cfg.tol
        assert len(cache.result.residuals) == cache.result.iterations
        # recomputed here from the definition, not through the module
        W, U, b = (host(a) for a in explicit)
        c = host(x) @ U.T + b
        fz = ACT[cfg.activation](host(z) @ W.T + c)
        diff = np.linalg.norm(fz - host(z))
        assert diff == 0.0 or diff <= cfg.tol * (np.linalg.norm(fz) + np.linalg.norm(c))

    check()


def test_solvers_agree():
    cfg, rho, seed, N = deq.Config(3, 7, tol=1e-13), 0.8, 4, 5
    zs = []
    for solver in fixed_point.SOLVERS:
        c = dataclasses.replace(cfg, solver=solver)
        explicit, x = make(np, c, rho, seed, N)
        zs.append(deq.forward(c, explicit, x)[0])
    for z in zs[1:]:
        np.testing.assert_allclose(z, zs[0], rtol=0, atol=1e-12)


def test_accelerated_solvers_take_fewer_iterations():
    cfg = deq.Config(4, 16, tol=1e-10, max_iter=5000)
    counts = {}
    for solver in fixed_point.SOLVERS:
        c = dataclasses.replace(cfg, solver=solver)
        explicit, x = make(np, c, 0.95, 1, 8)
        counts[solver] = deq.forward(c, explicit, x)[1].result.iterations
    assert counts["anderson"] < counts["fixed_point"]
    assert counts["broyden"] < counts["fixed_point"]


def test_ift_gradients_match_finite_differences(xp):
    @settings(max_examples=examples_for(xp, 25))
    @given(problem=problems())
    def check(problem):
        cfg, rho, seed, N = problem
        explicit, x = make(xp, cfg, rho, seed, N)

        def f(args):
            return deq.forward(cfg, args[0], args[1])[0]

        def vjp(args, dz):
            _, cache = deq.forward(cfg, args[0], args[1])
            d_explicit, dx, _ = deq.backward(cfg, args[0], cache, dz)
            return d_explicit, dx

        try:
            check_vjp(f, vjp, (explicit, x), rtol=1e-6)
        except FiniteDifferenceUnreliable:
            reject()  # a ReLU kink lies within the finite-difference step

    check()


def unrolled_value_and_grad(W, U, b, x, dzK, act, K):
    """``K`` plain iterations from zero and backpropagation through every one of them."""
    c = x @ U.T + b
    zs = [np.zeros((x.shape[0], W.shape[0]))]
    ss = []
    for _ in range(K):
        s = act(zs[-1] @ W.T + c)
        ss.append(s)
        zs.append(s)
    slope = {np.tanh: lambda s: 1 - s * s}[act]
    dW, dc, dz = np.zeros_like(W), np.zeros_like(c), dzK
    for k in range(K - 1, -1, -1):
        da = dz * slope(ss[k])
        dW += da.T @ zs[k]
        dc += da
        dz = da @ W
    return zs[-1], dW, dc.T @ x, dc.sum(0), dc @ U


@pytest.mark.parametrize("solver", fixed_point.SOLVERS)
def test_ift_gradients_match_unrolled_backprop(solver):
    cfg = deq.Config(3, 6, activation="tanh", solver=solver, tol=1e-14, max_iter=500)
    explicit, x = make(np, cfg, 0.7, 11, 4)
    rng = np.random.default_rng(1)
    dz = rng.standard_normal((4, 6))
    z, cache = deq.forward(cfg, explicit, x)
    d_explicit, dx, _ = deq.backward(cfg, explicit, cache, dz)
    zK, dW, dU, db, dxK = unrolled_value_and_grad(*explicit, x, dz, np.tanh, K=300)
    np.testing.assert_allclose(z, zK, rtol=0, atol=1e-12)
    for got, want in zip((d_explicit.W, d_explicit.U, d_explicit.b, dx), (dW, dU, db, dxK)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_backward_reports_its_own_iterations():
    cfg = deq.Config(3, 6, solver="anderson", tol=1e-10)
    explicit, x = make(np, cfg, 0.9, 2, 3)
    _, cache = deq.forward(cfg, explicit, x)
    _, _, result = deq.backward(cfg, explicit, cache, np.ones((3, 6)))
    assert result.converged and result.residuals[-1] <= cfg.tol and result.iterations >= 2


@pytest.mark.parametrize("solver", fixed_point.SOLVERS)
def test_no_equilibrium_raises_with_trace(xp, solver):
    """W = I with the identity activation: z = z + U x + b has no solution when U x + b != 0."""
    cfg = deq.Config(2, 3, activation="identity", solver=solver, max_iter=40)
    explicit = deq.Explicit(put(xp, np.eye(3)), put(xp, np.ones((3, 2))), put(xp, np.ones(3)))
    with pytest.raises(fixed_point.NotConverged, match=f"{solver} solver did not reach tol") as info:
        deq.forward(cfg, explicit, put(xp, np.ones((2, 2))))
    result = info.value.result
    assert not result.converged
    assert len(result.residuals) == result.iterations == 40
    assert min(result.residuals) > cfg.tol


def test_large_normal_weights_fail_plain_iteration():
    """The lecture's failure mode: an unconstrained W with large Gaussian entries makes the
    tanh iteration wander (here it oscillates) and the layer says so instead of returning."""
    n = 20
    rng = np.random.default_rng(0)
    cfg = deq.Config(4, n, activation="tanh", solver="fixed_point", tol=1e-6, max_iter=300)
    explicit = deq.Explicit(3.0 * rng.standard_normal((n, n)) / np.sqrt(n),
                            rng.standard_normal((n, 4)), np.zeros(n))
    with pytest.raises(fixed_point.NotConverged) as info:
        deq.forward(cfg, explicit, rng.standard_normal((8, 4)))
    trace = info.value.result.residuals
    assert len(trace) == 300 and min(trace[-50:]) > 1e-3


def test_backward_non_convergence_raises():
    cfg = deq.Config(2, 3, activation="identity", max_iter=30)
    explicit, x = make(np, cfg, 0.5, 0, 2)
    _, cache = deq.forward(cfg, explicit, x)
    singular = explicit._replace(W=np.eye(3))  # I - W^T J = 0: no adjoint exists
    with pytest.raises(fixed_point.NotConverged, match="adjoint solve"):
        deq.backward(cfg, singular, cache, np.ones((2, 3)))


def test_bad_inputs(xp):
    cfg = deq.Config(2, 3)
    explicit, _ = deq.direct_to_explicit(cfg, deq.init(cfg, 0, backend=xp))
    with pytest.raises(ValueError, match=r"x must have shape \(N, n_in=2\)"):
        deq.forward(cfg, explicit, put(xp, np.ones((4, 3))))
    with pytest.raises(ValueError, match="x contains NaN"):
        deq.forward(cfg, explicit, put(xp, np.full((4, 2), np.nan)))
    with pytest.raises(TypeError, match="dtype"):
        deq.forward(cfg, explicit, xp.ones((4, 2), dtype=xp.float32))
    with pytest.raises(ValueError, match=r"z0 must have shape \(N=4, n=3\)"):
        deq.forward(cfg, explicit, put(xp, np.ones((4, 2))), z0=put(xp, np.ones((4, 2))))
    _, cache = deq.forward(cfg, explicit, put(xp, np.ones((4, 2))))
    with pytest.raises(ValueError, match=r"dout must have shape \(N=4, n=3\)"):
        deq.backward(cfg, explicit, cache, put(xp, np.ones((5, 3))))


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(solver="newton"), ValueError, "solver must be one of"),
    (dict(tol=0.0), ValueError, "tol must be a positive"),
    (dict(max_iter=0), ValueError, "max_iter must be an integer >= 1"),
    (dict(anderson_beta=1.5), ValueError, r"anderson_beta must be in \(0, 1\]"),
    (dict(activation="gelu"), ValueError, "activation must be one of"),
    (dict(n=2.5), TypeError, "n must be an integer"),
])
def test_bad_config(kwargs, error, text):
    with pytest.raises(error, match=text):
        deq.Config(**{"n_in": 2, "n": 3, **kwargs})


def test_init_is_a_contraction_and_seeded(xp):
    cfg = deq.Config(3, 10)
    a, b = deq.init(cfg, 5, backend=xp), deq.init(cfg, 5, backend=xp)
    for u, v in zip(a, b):
        assert np.array_equal(host(u), host(v))
    assert np.linalg.norm(host(a.W), 2) == pytest.approx(0.5)
    explicit, cache = deq.direct_to_explicit(cfg, a)
    assert deq.direct_to_explicit_vjp(cfg, cache, explicit) == deq.Direct(*explicit)


def test_io_round_trip(tmp_path):
    cfg = deq.Config(3, 4, activation="relu", solver="broyden", tol=1e-7, max_iter=50)
    params = tree.map(lambda a: a + 1.0, deq.init(cfg, 2))
    io.save(tmp_path / "deq.npz", cfg, params)
    loaded = io.load(tmp_path / "deq.npz")
    assert loaded.config == cfg
    for u, v in zip(params, loaded.params):
        assert np.array_equal(u, v)


def test_divergence_is_reported_before_overflow():
    """z = relu(3 z + 1) has no solution; the iterate grows as 3^k and the solver stops with a
    'diverged' report before any square overflows (warnings are errors in this suite)."""
    cfg = deq.Config(1, 2, activation="relu", solver="fixed_point", max_iter=5000)
    explicit = deq.Explicit(3.0 * np.eye(2), np.ones((2, 1)), np.zeros(2))
    with pytest.raises(fixed_point.NotConverged, match="diverged") as info:
        deq.forward(cfg, explicit, np.ones((3, 1)))
    result = info.value.result
    assert result.residuals[-1] == np.inf and 300 < result.iterations < 5000
    assert np.all(np.isfinite(result.z))


def test_value_and_grad_composes_the_stages(xp):
    cfg = deq.Config(3, 5, activation="tanh", tol=1e-12)
    direct = deq.init(cfg, 4, backend=xp)
    x = put(xp, np.random.default_rng(2).standard_normal((6, 3)))
    target = put(xp, np.random.default_rng(3).standard_normal((6, 5)))
    value, grads = deq.value_and_grad(cfg, direct, x, lambda z: losses.mse(z, target))
    explicit, map_cache = deq.direct_to_explicit(cfg, direct)
    z, cache = deq.forward(cfg, explicit, x)
    want, dz = losses.mse(z, target)
    d_explicit, dx, result = deq.backward(cfg, explicit, cache, dz)
    assert float(value) == float(want) and result.converged
    assert isinstance(grads, deq.Grads) and isinstance(grads.direct, deq.Direct)
    for got, ref in zip((*grads.direct, grads.x), (*deq.direct_to_explicit_vjp(cfg, map_cache, d_explicit), dx)):
        assert np.array_equal(host(got), host(ref))


def test_warm_start_finds_the_same_equilibrium_sooner():
    cfg = deq.Config(3, 6, solver="fixed_point", tol=1e-12, max_iter=500)
    explicit, x = make(np, cfg, 0.8, 6, 4)
    z, cache = deq.forward(cfg, explicit, x)
    z2, cache2 = deq.forward(cfg, explicit, x, z0=z + 1e-6)
    np.testing.assert_allclose(z2, z, rtol=0, atol=1e-11)
    assert cache2.result.iterations < cache.result.iterations
