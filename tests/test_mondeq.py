import dataclasses

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from r2dn_np import deq, mondeq
from r2dn_np.core import fixed_point, tree
from r2dn_np.interface import io
from r2dn_np.training import losses
from r2dn_np.checks.testing import FiniteDifferenceUnreliable, check_vjp

from helpers import examples_for, host, put


@st.composite
def problems(draw, splittings=mondeq.SPLITTINGS, alphas=(0.3, 1.0, 3.0), fb_scales=(0.3, 1.0)):
    splitting = draw(st.sampled_from(splittings))
    # forward-backward at a step inside its bound 2m/||I - W||^2 needs ~1/(m * step)
    # iterations: keep its draws well conditioned so that the tests stay fast
    fb = splitting == "fb"
    cfg = mondeq.Config(
        n_in=draw(st.integers(1, 5)), n=draw(st.integers(1, 8)), n_out=draw(st.integers(1, 4)),
        m=draw(st.sampled_from([0.3, 1.0] if fb else [0.05, 0.3, 1.0])),
        activation=draw(st.sampled_from(mondeq.ACTIVATIONS)),
        splitting=splitting,
        alpha=draw(st.sampled_from(alphas)), tol=1e-13, max_iter=20000,
    )
    scale = draw(st.sampled_from(fb_scales if fb else (0.3, 1.0, 3.0)))
    seed = draw(st.integers(0, 2**31 - 1))
    N = draw(st.integers(1, 4))
    return cfg, scale, seed, N


def make(xp, cfg, scale, seed, N):
    """Free parameters at scale ``scale`` (A and B scaled directly: ||A^T A|| ~ scale^2)."""
    rng = np.random.default_rng(seed)
    n = cfg.n
    d = mondeq.Direct(
        A=scale * rng.standard_normal((n, n)) / np.sqrt(n),
        B=scale * rng.standard_normal((n, n)) / np.sqrt(n),
        U=rng.standard_normal((n, cfg.n_in)), b=0.5 * rng.standard_normal(n),
        C=rng.standard_normal((cfg.n_out, n)), c=rng.standard_normal(cfg.n_out),
    )
    return tree.map(lambda a: put(xp, a), d), put(xp, rng.standard_normal((N, cfg.n_in)))


def fb_safe(cfg, direct):
    """The same problem with forward-backward at a step inside its convergence bound."""
    if cfg.splitting != "fb":
        return cfg
    explicit, _ = mondeq.direct_to_explicit(cfg, direct)
    return dataclasses.replace(cfg, alpha=0.9 * mondeq.fb_alpha_bound(cfg, explicit))


def test_strong_monotonicity(xp):
    """The symmetric part of I - W has every eigenvalue >= m, for any A and B."""

    @settings(max_examples=examples_for(xp, 25))
    @given(problem=problems(), big=st.sampled_from([1.0, 30.0]))
    def check(problem, big):
        cfg, scale, seed, N = problem
        direct, _ = make(xp, cfg, scale * big, seed, N)
        W = host(mondeq.direct_to_explicit(cfg, direct)[0].W)
        S = np.eye(cfg.n) - 0.5 * (W + W.T)
        lam = np.linalg.eigvalsh(S)
        assert lam.min() >= cfg.m - 1e-12 * max(1.0, np.abs(lam).max())
        # and the bound is attained when A has a null direction (here, when A = 0)
        W0 = host(mondeq.direct_to_explicit(cfg, direct._replace(A=0.0 * direct.A))[0].W)
        S0 = np.eye(cfg.n) - 0.5 * (W0 + W0.T)
        np.testing.assert_allclose(np.linalg.eigvalsh(S0), cfg.m, rtol=1e-12)

    check()


def test_direct_to_explicit_vjp(xp):
    @settings(max_examples=examples_for(xp, 25))
    @given(problem=problems())
    def check(problem):
        cfg, scale, seed, N = problem
        direct, _ = make(xp, cfg, scale, seed, N)
        check_vjp(
            lambda d: mondeq.direct_to_explicit(cfg, d)[0],
            lambda d, de: mondeq.direct_to_explicit_vjp(cfg, mondeq.direct_to_explicit(cfg, d)[1], de),
            direct,
        )

    check()


def test_residual_below_tol_at_return(xp):
    @settings(max_examples=examples_for(xp, 25))
    @given(problem=problems())
    def check(problem):
        cfg, scale, seed, N = problem
        direct, x = make(xp, cfg, scale, seed, N)
        cfg = fb_safe(dataclasses.replace(cfg, tol=1e-9), direct)
        explicit, _ = mondeq.direct_to_explicit(cfg, direct)
        _, cache = mondeq.forward(cfg, explicit, x)
        assert cache.result.converged and cache.result.residuals[-1] <= cfg.tol
        W, U, b = host(explicit.W), host(explicit.U), host(explicit.b)
        c = host(x) @ U.T + b
        a = host(cache.z) @ W.T + c
        fz = np.maximum(a, 0) if cfg.activation == "relu" else a
        diff = np.linalg.norm(fz - host(cache.z))
        assert diff == 0.0 or diff <= cfg.tol * (np.linalg.norm(fz) + np.linalg.norm(c))

    check()


def test_gradients_match_finite_differences(xp):
    """Every free parameter and the input, through the parameterisation, the splitting forward,
    the transposed splitting backward and the readout."""

    # each example runs some 30 solves: steps near PR's fastest keep them short
    @settings(max_examples=examples_for(xp, 25))
    @given(problem=problems(alphas=(0.5, 1.0), fb_scales=(0.3,)))
    def check(problem):
        cfg, scale, seed, N = problem
        direct, x = make(xp, cfg, scale, seed, N)
        cfg = fb_safe(cfg, direct)

        def f(args):
            explicit, _ = mondeq.direct_to_explicit(cfg, args[0])
            return mondeq.forward(cfg, explicit, args[1])[0]

        def vjp(args, dlogits):
            explicit, map_cache = mondeq.direct_to_explicit(cfg, args[0])
            _, cache = mondeq.forward(cfg, explicit, args[1])
            d_explicit, dx, _ = mondeq.backward(cfg, explicit, cache, dlogits)
            return mondeq.direct_to_explicit_vjp(cfg, map_cache, d_explicit), dx

        try:
            check_vjp(f, vjp, (direct, x), rtol=1e-6, n_directions=1)
        except FiniteDifferenceUnreliable:
            reject()  # a ReLU kink lies within the finite-difference step

    check()


@pytest.mark.parametrize("splitting", mondeq.SPLITTINGS)
def test_matches_the_generic_deq_layer(splitting):
    """The splitting backward equals the generic adjoint solve of r2dn_np.deq on the same W."""
    cfg = mondeq.Config(4, 7, 3, splitting=splitting, alpha=0.05, tol=1e-13, max_iter=20000)
    direct, x = make(np, cfg, 0.7, 3, 5)
    explicit, _ = mondeq.direct_to_explicit(cfg, direct)
    logits, cache = mondeq.forward(cfg, explicit, x)
    dlogits = np.random.default_rng(0).standard_normal(logits.shape)
    d_explicit, dx, _ = mondeq.backward(cfg, explicit, cache, dlogits)

    dcfg = deq.Config(4, 7, activation="relu", solver="broyden", tol=1e-13, max_iter=500)
    layer = deq.Explicit(explicit.W, explicit.U, explicit.b)
    z, dcache = deq.forward(dcfg, layer, x)
    np.testing.assert_allclose(cache.z, z, atol=1e-11)
    d_layer, dx2, _ = deq.backward(dcfg, layer, dcache, dlogits @ explicit.C)
    for got, want in zip((dx, d_explicit.W, d_explicit.U, d_explicit.b), (dx2, *d_layer)):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-11)


def test_pr_converges_where_fb_with_large_alpha_does_not(xp):
    cfg = mondeq.Config(6, 30, 2, m=0.1, splitting="fb", alpha=1.5, tol=1e-8, max_iter=400)
    direct, x = make(xp, cfg, 1.0, 7, 8)
    explicit, _ = mondeq.direct_to_explicit(cfg, direct)
    assert cfg.alpha > mondeq.fb_alpha_bound(cfg, explicit)
    with pytest.raises(fixed_point.NotConverged, match="fb_alpha_bound") as info:
        mondeq.forward(cfg, explicit, x)
    trace = info.value.result.residuals
    assert not info.value.result.converged and min(trace) > cfg.tol

    pr = dataclasses.replace(cfg, splitting="pr")
    logits, cache = mondeq.forward(pr, explicit, x)
    assert cache.result.converged and mondeq.residual(pr, explicit, x, cache.z) <= pr.tol
    _, _, result = mondeq.backward(pr, explicit, cache, logits)
    assert result.converged

    small = dataclasses.replace(cfg, alpha=mondeq.fb_alpha_bound(cfg, explicit), max_iter=100000)
    _, fb_cache = mondeq.forward(small, explicit, x)
    np.testing.assert_allclose(host(fb_cache.z), host(cache.z), atol=1e-6)


@pytest.mark.parametrize("alpha", [0.01, 1.0, 100.0])
def test_pr_converges_for_any_alpha(alpha):
    cfg = mondeq.Config(5, 12, 3, splitting="pr", alpha=alpha, tol=1e-9, max_iter=50000)
    direct, x = make(np, cfg, 3.0, 2, 6)
    explicit, _ = mondeq.direct_to_explicit(cfg, direct)
    logits, cache = mondeq.forward(cfg, explicit, x)
    assert mondeq.residual(cfg, explicit, x, cache.z) <= cfg.tol
    mondeq.backward(cfg, explicit, cache, logits)


def test_backward_non_convergence_raises():
    cfg = mondeq.Config(3, 10, 2, splitting="fb", alpha=0.01, tol=1e-10, max_iter=20000)
    direct, x = make(np, cfg, 1.0, 1, 4)
    explicit, _ = mondeq.direct_to_explicit(cfg, direct)
    _, cache = mondeq.forward(cfg, explicit, x)
    hasty = dataclasses.replace(cfg, max_iter=3)
    with pytest.raises(fixed_point.NotConverged, match="mondeq.backward"):
        mondeq.backward(hasty, explicit, cache, np.ones((4, 2)))


def test_bad_inputs(xp):
    cfg = mondeq.Config(2, 3, 4)
    explicit, _ = mondeq.direct_to_explicit(cfg, mondeq.init(cfg, 0, backend=xp))
    with pytest.raises(ValueError, match=r"x must have shape \(N, n_in=2\)"):
        mondeq.forward(cfg, explicit, put(xp, np.ones((5, 3))))
    with pytest.raises(ValueError, match="x contains NaN"):
        mondeq.forward(cfg, explicit, put(xp, np.full((5, 2), np.inf)))
    with pytest.raises(TypeError, match="dtype"):
        mondeq.forward(cfg, explicit, xp.ones((5, 2), dtype=xp.float32))
    _, cache = mondeq.forward(cfg, explicit, put(xp, np.ones((5, 2))))
    with pytest.raises(ValueError, match=r"dout must have shape \(N=5, n_out=4\)"):
        mondeq.backward(cfg, explicit, cache, put(xp, np.ones((5, 3))))


@pytest.mark.parametrize("kwargs, error, text", [
    (dict(m=0.0), ValueError, "m must be a positive"),
    (dict(m=-1.0), ValueError, "m must be a positive"),
    (dict(alpha=0.0), ValueError, "alpha must be a positive"),
    (dict(splitting="dr"), ValueError, "splitting must be one of"),
    (dict(activation="tanh"), ValueError, "activation must be one of"),
    (dict(n_out=0), ValueError, "n_out must be an integer >= 1"),
])
def test_bad_config(kwargs, error, text):
    with pytest.raises(error, match=text):
        mondeq.Config(**{"n_in": 2, "n": 3, "n_out": 2, **kwargs})


def test_io_round_trip(tmp_path):
    cfg = mondeq.Config(3, 4, 2, m=0.5, splitting="fb", alpha=0.1, tol=1e-5)
    params = tree.map(lambda a: a - 0.25, mondeq.init(cfg, 2))
    io.save(tmp_path / "mondeq.npz", cfg, params)
    loaded = io.load(tmp_path / "mondeq.npz")
    assert loaded.config == cfg
    for u, v in zip(params, loaded.params):
        assert np.array_equal(u, v)


@pytest.mark.parametrize("splitting, alpha", [("pr", 0.5), ("pr", 2.0), ("fb", 0.02)])
def test_backward_prox_with_fractional_slopes(splitting, alpha):
    """Equation (M4) for slopes strictly between 0 and 1 (ReLU only ever gives 0 or 1): the
    splitting with prox y -> J y / (J + alpha (1 - J)) finds v = (I - J W^T)^{-1} J dz."""
    cfg = mondeq.Config(3, 6, 2, splitting=splitting, alpha=alpha, tol=1e-13, max_iter=100000)
    direct, _ = make(np, cfg, 1.0, 5, 1)
    explicit = mondeq.direct_to_explicit(cfg, direct)[0]
    W = explicit.W
    rng = np.random.default_rng(0)
    J = rng.uniform(0.0, 1.0, (4, 6))
    J[0, :2] = 0.0
    dz = rng.standard_normal((4, 6))
    V = mondeq.resolvent(cfg, explicit)
    shrink = J / (J + alpha * (1.0 - J))
    result = mondeq._split(cfg, lambda v: v @ W, lambda u: u @ V, lambda y: shrink * y,
                           lambda y: J * y, dz, np.zeros_like(dz))
    assert result.converged
    for i in range(4):
        want = np.linalg.solve(np.eye(6) - np.diag(J[i]) @ W.T, J[i] * dz[i])
        np.testing.assert_allclose(result.z[i], want, rtol=1e-10, atol=1e-12)


def test_value_and_grad_composes_the_stages(xp):
    cfg = mondeq.Config(4, 6, 3, splitting="pr", tol=1e-10)
    direct = mondeq.init(cfg, 1, backend=xp)
    x = put(xp, np.random.default_rng(2).standard_normal((5, 4)))
    labels = xp.asarray(np.array([0, 2, 1, 1, 0]))
    value, grads = mondeq.value_and_grad(cfg, direct, x, lambda out: losses.softmax_cross_entropy(out, labels))
    explicit, map_cache = mondeq.direct_to_explicit(cfg, direct)
    logits, cache = mondeq.forward(cfg, explicit, x)
    want, dlogits = losses.softmax_cross_entropy(logits, labels)
    d_explicit, dx, result = mondeq.backward(cfg, explicit, cache, dlogits)
    assert float(value) == float(want) and result.converged
    assert isinstance(grads, mondeq.Grads) and isinstance(grads.direct, mondeq.Direct)
    ref = (*mondeq.direct_to_explicit_vjp(cfg, map_cache, d_explicit), dx)
    for got, want in zip((*grads.direct, grads.x), ref):
        assert np.array_equal(host(got), host(want))


@pytest.mark.parametrize("splitting", mondeq.SPLITTINGS)
def test_warm_start_finds_the_same_equilibrium_sooner(splitting):
    cfg = mondeq.Config(4, 7, 2, splitting=splitting, alpha=0.2, tol=1e-11, max_iter=20000)
    direct, x = make(np, cfg, 0.7, 3, 5)
    explicit, _ = mondeq.direct_to_explicit(cfg, direct)
    _, cache = mondeq.forward(cfg, explicit, x)
    _, cache2 = mondeq.forward(cfg, explicit, x, z0=cache.z)
    np.testing.assert_allclose(cache2.z, cache.z, rtol=0, atol=1e-9)
    assert cache2.result.iterations < cache.result.iterations
