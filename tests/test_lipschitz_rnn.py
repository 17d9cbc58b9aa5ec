import math

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from r2dn_np.training import classify, losses
from r2dn_np.interface import io
from r2dn_np import lipschitz_rnn as lrnn
from r2dn_np.checks import stability
from r2dn_np.core import tree
from r2dn_np.core.backend import to_backend
from r2dn_np.checks.testing import assert_close, check_vjp

from helpers import host, put

BETAS = st.sampled_from([0.5, 0.75, 1.0]) | st.floats(0.5, 1.0)


@st.composite
def configs(draw, scheme=st.sampled_from(lrnn.SCHEMES), decoder=st.sampled_from(lrnn.DECODERS),
            gated=st.booleans(), stable_margin=st.sampled_from([None, None, 0.1, 1.0])):
    scheme = draw(scheme)
    return lrnn.Config(
        n_in=draw(st.integers(1, 4)),
        n_units=draw(st.integers(1, 6)),
        n_out=draw(st.integers(1, 3)),
        beta=draw(BETAS),
        gamma=draw(st.sampled_from([0.0, 0.1, 1.0])),
        eps=draw(st.sampled_from([0.05, 0.3, 1.0])),
        alpha=draw(st.sampled_from([0.0, 1.0, 2.0])),
        scheme=scheme,
        rho=draw(st.sampled_from([0.0, 0.3, 0.5, 1.0])),
        decoder=draw(decoder),
        gated=draw(gated) if scheme == "euler" else False,
        stable_margin=draw(stable_margin),
    )


def random_direct(cfg, xp, rng, scale=1.0):
    """Free parameters of order ``scale`` (M, C with spectral radius about ``scale``)."""
    N = cfg.n_units
    shapes = dict(M=(N, N), C=(N, N), U=(N, cfg.n_in), b=(N,), D=(cfg.n_out, N), by=(cfg.n_out,))
    if cfg.gated:
        shapes.update(Ug=(N, cfg.n_in), bg=(N,))
    parts = {k: rng.standard_normal(s) * scale for k, s in shapes.items()}
    parts["M"] /= math.sqrt(N)
    parts["C"] /= math.sqrt(N)
    return lrnn.Direct(**{k: put(xp, v) for k, v in parts.items()})


def gamma_A(cfg, M):
    """Proposition 2's sufficient condition as the stable mode applies it, in NumPy."""
    if cfg.stable_margin is None:
        return cfg.gamma
    return max(cfg.gamma, (1 - cfg.beta) * np.linalg.eigvalsh(M + M.T)[-1] + cfg.stable_margin)


def well_posed(cfg, direct):
    """Keep draws whose IMEX matrix I - eps rho alpha A is well conditioned and, in the stable
    mode, away from the kinks of gamma_A (a repeated lmax of M + M^T, or the two branches of the
    max meeting), where the map is not differentiable."""
    M = host(direct.M)
    if cfg.stable_margin is not None:
        lam = np.linalg.eigvalsh(M + M.T)
        needed = (1 - cfg.beta) * lam[-1] + cfg.stable_margin
        if abs(needed - cfg.gamma) < 1e-3 or (len(lam) > 1 and lam[-1] - lam[-2] < 1e-3):
            return False
    if cfg.scheme != "imex":
        return True
    A = (1 - cfg.beta) * (M + M.T) + cfg.beta * (M - M.T) - gamma_A(cfg, M) * np.eye(cfg.n_units)
    S = np.eye(cfg.n_units) - cfg.eps * cfg.rho * cfg.alpha * A
    return np.linalg.svd(S, compute_uv=False)[-1] > 0.05


def draw_problem(cfg, xp, seed, scale, T, B):
    rng = np.random.default_rng(seed)
    direct = random_direct(cfg, xp, rng, scale)
    h0 = put(xp, rng.standard_normal((B, cfg.n_units)) * 0.5)
    X = put(xp, rng.standard_normal((T, B, cfg.n_in)))
    return direct, h0, X


def naive(cfg, direct, h0, X):
    """The paper's update rules and the authors' gated cell and ODE solvers as written, one
    column vector at a time, in NumPy (for rk4, torchdiffeq's 3/8 rule ``rk4_alt_step_func``)."""
    M, C, U, b, D, by = (host(a) for a in direct[:6])
    N, beta, gamma = cfg.n_units, cfg.beta, cfg.gamma
    I = np.eye(N)
    A = (1 - beta) * (M + M.T) + beta * (M - M.T) - gamma_A(cfg, M) * I
    W = (1 - beta) * (C + C.T) + beta * (C - C.T) - gamma * I
    X, h0 = host(X), host(h0)
    eps, alpha = cfg.eps, cfg.alpha
    out = np.zeros((X.shape[0], X.shape[1], cfg.n_out))
    for j in range(X.shape[1]):
        h = h0[j]
        for t in range(X.shape[0]):
            u = U @ X[t, j] + b
            z = W @ h + u
            f = lambda g: alpha * A @ g + np.tanh(W @ g + u)  # noqa: E731
            if cfg.gated:
                zg = W @ h + host(direct.Ug) @ X[t, j] + host(direct.bg)
                h = h + eps * (alpha * A @ h + np.tanh(z)) / (1 + np.exp(-zg))
            elif cfg.scheme == "euler":
                h = h + cfg.eps * (cfg.alpha * A @ h + np.tanh(z))
            elif cfg.scheme == "midpoint":
                h = h + eps * f(h + eps / 2 * f(h))
            elif cfg.scheme == "rk4":
                k1 = f(h)
                k2 = f(h + eps * k1 / 3)
                k3 = f(h + eps * (k2 - k1 / 3))
                k4 = f(h + eps * (k1 - k2 + k3))
                h = h + (k1 + 3 * (k2 + k3) + k4) * eps * 0.125
            else:
                rhs = h + cfg.eps * np.tanh(z) + cfg.eps * (1 - cfg.rho) * cfg.alpha * A @ h
                h = np.linalg.solve(I - cfg.eps * cfg.rho * cfg.alpha * A, rhs)
            out[t, j] = D @ h + by
    return out[-1:] if cfg.decoder == "last" else out


SIZES = dict(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.3, 1.0, 2.0]),
             T=st.integers(1, 5), B=st.integers(1, 3))


# every form pinned once, whatever Hypothesis draws: the gated cell, both ODE solvers, the stable mode
PINNED = [
    lrnn.Config(2, 3, 2, gated=True, alpha=2.0, decoder="sequence"),
    lrnn.Config(2, 3, 2, scheme="midpoint", eps=0.3, alpha=2.0),
    lrnn.Config(2, 4, 2, scheme="rk4", eps=0.3, decoder="sequence"),
    lrnn.Config(2, 3, 2, scheme="imex", rho=0.5, stable_margin=0.5, gamma=0.0, beta=0.6),
    lrnn.Config(1, 3, 2, scheme="rk4", gated=False, stable_margin=1.0, gamma=0.1, beta=0.75),
    lrnn.Config(1, 3, 2, gated=True, stable_margin=1.0, gamma=0.0),
]


def pin(test):
    for cfg in PINNED:
        test = example(cfg=cfg, seed=3, scale=2.0, T=4, B=2)(test)
    return test


@given(cfg=configs(), **SIZES)
@pin
def test_forward_matches_naive_formula(xp, cfg, seed, scale, T, B):
    direct, h0, X = draw_problem(cfg, xp, seed, scale, T, B)
    assume(well_posed(cfg, direct))
    explicit, _ = lrnn.direct_to_explicit(cfg, direct)
    hT, y, cache = lrnn.forward(cfg, explicit, h0, X)
    np.testing.assert_allclose(host(y), naive(cfg, direct, h0, X), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(host(hT), host(cache.H[-1, ...]))
    stages = {"midpoint": (2,), "rk4": (4,)}.get(cfg.scheme, ())
    assert cache.H.shape == (T + 1, B, cfg.n_units) and cache.S.shape == (T, *stages, B, cfg.n_units)


@given(cfg=configs(), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.3, 1.0, 2.0]))
def test_direct_to_explicit_vjp(xp, cfg, seed, scale):
    direct = random_direct(cfg, xp, np.random.default_rng(seed), scale)
    assume(well_posed(cfg, direct))

    def f(d):
        return lrnn.direct_to_explicit(cfg, d)[0]

    def vjp(d, d_explicit):
        _, cache = lrnn.direct_to_explicit(cfg, d)
        return lrnn.direct_to_explicit_vjp(cfg, cache, d_explicit)

    check_vjp(f, vjp, direct)


@given(cfg=configs(), **SIZES)
@pin
def test_backward_on_free_explicit_weights(xp, cfg, seed, scale, T, B):
    """BPTT alone, with A, W, F and G arbitrary matrices (not derived from M, C)."""
    direct, h0, X = draw_problem(cfg, xp, seed, scale, T, B)
    rng = np.random.default_rng(seed + 1)
    N = cfg.n_units

    def rand():
        return put(xp, rng.standard_normal((N, N)) / math.sqrt(N))

    linear_update = not cfg.gated and cfg.scheme in ("euler", "imex")
    # the Euler and IMEX loops read A only through F and G: its cotangent is None (zero)
    explicit = lrnn.Explicit(
        A=rand(), W=rand(), U=direct.U, b=direct.b, D=direct.D, by=direct.by,
        F=rand() if linear_update else None, G=rand() if cfg.scheme == "imex" else None,
        Ug=direct.Ug, bg=direct.bg,
    )

    def f(args):
        return lrnn.forward(cfg, args[0], args[1], args[2])[:2]

    def vjp(args, cot):
        _, _, cache = lrnn.forward(cfg, *args)
        d_explicit, dh0, dX = lrnn.backward(cfg, args[0], cache, cot[1], cot[0])
        assert (d_explicit.A is None) == linear_update and (d_explicit.F is None) != linear_update
        return d_explicit, dh0, dX

    check_vjp(f, vjp, (explicit, h0, X))


@given(cfg=configs(), **SIZES)
@example(cfg=lrnn.Config(2, 3, 2, scheme="imex", rho=1.0, decoder="sequence"), seed=0, scale=1.0, T=4, B=2)
@example(cfg=lrnn.Config(1, 1, 1), seed=1, scale=2.0, T=1, B=1)
@pin
def test_gradients_end_to_end(xp, cfg, seed, scale, T, B):
    """Free parameters, initial state and inputs through the map, the rollout and the decoder."""
    direct, h0, X = draw_problem(cfg, xp, seed, scale, T, B)
    assume(well_posed(cfg, direct))

    def f(args):
        explicit, _ = lrnn.direct_to_explicit(cfg, args[0])
        return lrnn.forward(cfg, explicit, args[1], args[2])[:2]

    def vjp(args, cot):
        explicit, map_cache = lrnn.direct_to_explicit(cfg, args[0])
        _, _, cache = lrnn.forward(cfg, explicit, args[1], args[2])
        d_explicit, dh0, dX = lrnn.backward(cfg, explicit, cache, cot[1], cot[0])
        return lrnn.direct_to_explicit_vjp(cfg, map_cache, d_explicit), dh0, dX

    check_vjp(f, vjp, (direct, h0, X))


@given(cfg=configs(decoder=st.just("last")), seed=st.integers(0, 2**31 - 1),
       scale=st.sampled_from([0.3, 1.0]), T=st.integers(1, 5), B=st.integers(1, 3))
def test_classify_value_and_grad(xp, cfg, seed, scale, T, B):
    direct, _, X = draw_problem(cfg, xp, seed, scale, T, B)
    assume(well_posed(cfg, direct))
    labels = xp.asarray(np.random.default_rng(seed).integers(0, cfg.n_out, B))
    # a nearly saturated softmax loses the loss's relative precision (log of 1 + tiny), which the
    # finite-difference noise model does not see
    assume(float(classify.value_and_grad(lrnn, cfg, direct, X, labels)[0]) > 0.05)

    def f(d):
        return classify.value_and_grad(lrnn, cfg, d, X, labels)[0]

    def vjp(d, c):
        return tree.map(lambda g: g * c, classify.value_and_grad(lrnn, cfg, d, X, labels)[1])

    check_vjp(f, vjp, direct)
    logits = classify.predict(lrnn, cfg, direct, X)
    assert logits.shape == (B, cfg.n_out)


@given(cfg=configs(), **SIZES)
@pin
def test_value_and_grad_and_step(xp, cfg, seed, scale, T, B):
    """The protocol's value_and_grad is forward + backward + the map's VJP; step is one step of forward."""
    direct, h0, X = draw_problem(cfg, xp, seed, scale, T, B)
    assume(well_posed(cfg, direct))
    explicit, map_cache = lrnn.direct_to_explicit(cfg, direct)
    hT, Y, cache = lrnn.forward(cfg, explicit, h0, X)
    target = put(xp, np.random.default_rng(seed).standard_normal(tuple(Y.shape)))
    value, grads = lrnn.value_and_grad(cfg, direct, h0, X, lambda Y: losses.mse(Y, target))
    d_explicit, dh0, dX = lrnn.backward(cfg, explicit, cache, losses.mse(Y, target)[1])
    assert_close(value, losses.mse(Y, target)[0])
    for (name, a), (_, b) in zip(tree.paths(grads), tree.paths(
            lrnn.Grads(lrnn.direct_to_explicit_vjp(cfg, map_cache, d_explicit), dh0, dX))):
        assert_close(a, b, rtol=1e-14, err_msg=name)
    h1, y1 = lrnn.step(cfg, explicit, h0, X[0, ...])
    _, Y1, _ = lrnn.forward(cfg, explicit, h0, X[:1, ...])
    assert_close(h1, lrnn.forward(cfg, explicit, h0, X[:1, ...])[0], rtol=0, atol=0)
    assert_close(y1, Y1[0, ...], rtol=1e-14, atol=1e-14)


def test_h0_none_is_zeros(xp):
    cfg = lrnn.Config(2, 4, 3, decoder="sequence")
    direct, _, X = draw_problem(cfg, xp, 0, 1.0, 5, 2)
    explicit, _ = lrnn.direct_to_explicit(cfg, direct)
    y0 = lrnn.forward(cfg, explicit, None, X)[1]
    y1 = lrnn.forward(cfg, explicit, xp.zeros((2, 4), dtype=xp.float64), X)[1]
    assert_close(y0, y1)


@given(cfg=configs(scheme=st.just("euler"), gated=st.just(False)), **SIZES)
def test_imex_with_rho_zero_is_euler(xp, cfg, seed, scale, T, B):
    direct, h0, X = draw_problem(cfg, xp, seed, scale, T, B)
    imex = lrnn.Config(**{**cfg.to_dict(), "scheme": "imex", "rho": 0.0})
    e_euler, _ = lrnn.direct_to_explicit(cfg, direct)
    e_imex, _ = lrnn.direct_to_explicit(imex, direct)
    assert_close(e_imex.F, e_euler.F, rtol=1e-15)
    assert_close(e_imex.G, cfg.eps * xp.eye(cfg.n_units, dtype=xp.float64), rtol=1e-15)
    y_euler = lrnn.forward(cfg, e_euler, h0, X)[1]
    y_imex = lrnn.forward(imex, e_imex, h0, X)[1]
    assert_close(y_imex, y_euler, rtol=1e-13, atol=1e-14)


def test_float32_runs(xp):
    cfg = lrnn.Config(1, 8, 3, scheme="imex")
    direct = lrnn.init(cfg, 0, backend=xp, dtype="float32")
    X = xp.asarray(np.ones((6, 2, 1), dtype=np.float32))
    loss, grads = classify.value_and_grad(lrnn, cfg, direct, X, xp.asarray(np.array([0, 2])))
    assert loss.dtype == xp.float32
    assert all(g.dtype == xp.float32 for g in tree.leaves(grads))


# --- the parameterisation: Proposition 2 and the schemes' stability -------------------------------


def _eig_real(A):
    return np.sort(np.linalg.eigvals(host(A)).real)


@given(N=st.integers(1, 12), beta=BETAS, gamma=st.sampled_from([0.0, 0.001, 0.5, 3.0]),
       scale=st.sampled_from([0.1, 1.0, 10.0]), seed=st.integers(0, 2**31 - 1))
def test_proposition_2_bound_holds(xp, N, beta, gamma, scale, seed):
    M = put(xp, np.random.default_rng(seed).standard_normal((N, N)) * scale)
    cfg = lrnn.Config(1, N, 1, beta=beta, gamma=gamma)
    A = lrnn.direct_to_explicit(cfg, lrnn.init(cfg, 0, backend=xp)._replace(M=M))[0].A
    lo, hi = stability.eigenvalue_bounds(M, beta, gamma)
    re = _eig_real(A)
    tol = 1e-12 * (scale * N + gamma + 1)
    assert lo - tol <= re[0] and re[-1] <= hi + tol


@pytest.mark.parametrize("beta", [0.5, 0.6, 0.8, 0.99])
def test_proposition_2_attained_for_symmetric_and_normal_M(xp, beta):
    """Attainment: for symmetric M, A is symmetric and its extreme eigenvalues are the bounds;
    for normal M (commuting symmetric and skew parts) A is normal and the real parts of its
    eigenvalues are exactly the eigenvalues of (1 - beta)(M + M^T) - gamma I."""
    rng = np.random.default_rng(7)
    N, gamma = 8, 0.3
    S = rng.standard_normal((N, N))
    sym = S + S.T
    Q, _ = np.linalg.qr(rng.standard_normal((N, N)))
    blocks = np.zeros((N, N))
    for k in range(0, N, 2):  # 2x2 blocks a I + b J commute with each other's kind
        a, b = rng.standard_normal(2)
        blocks[k:k + 2, k:k + 2] = [[a, b], [-b, a]]
    normal = Q @ blocks @ Q.T
    for M in (sym, normal):
        lo, hi = stability.eigenvalue_bounds(put(xp, M), beta, gamma)
        A = lrnn.symmetric_skew(put(xp, M), beta, gamma)
        re = _eig_real(A)
        assert re[0] == pytest.approx(lo, abs=1e-12) and re[-1] == pytest.approx(hi, abs=1e-12)


def test_proposition_2_is_strict_for_non_normal_M():
    """The bound is a numerical-range bound: for a generic non-normal M it is not attained."""
    M = np.random.default_rng(3).standard_normal((10, 10))
    lo, hi = stability.eigenvalue_bounds(M, 0.75, 0.0)
    re = _eig_real(lrnn.symmetric_skew(M, 0.75, 0.0))
    assert lo < re[0] - 1e-3 and re[-1] < hi - 1e-3


@pytest.mark.parametrize("gamma", [0.0, 0.25])
def test_beta_one_gives_skew_symmetric_A_and_W(xp, gamma):
    cfg = lrnn.Config(2, 7, 2, beta=1.0, gamma=gamma)
    direct = random_direct(cfg, xp, np.random.default_rng(0))
    explicit, _ = lrnn.direct_to_explicit(cfg, direct)
    for K in (host(explicit.A), host(explicit.W)):
        K = K + gamma * np.eye(7)
        np.testing.assert_array_equal(K, -K.T)
        np.testing.assert_allclose(np.linalg.eigvals(K).real, 0.0, atol=1e-13)
    assert stability.eigenvalue_bounds(direct.M, 1.0, gamma) == (-gamma, -gamma)


def test_beta_half_leaves_M_unconstrained():
    M = np.random.default_rng(0).standard_normal((5, 5))
    np.testing.assert_array_equal(lrnn.symmetric_skew(M, 0.5, 0.2), M - 0.2 * np.eye(5))


def _hurwitz_A(rng, N, beta=0.75):
    """A whose Proposition-2 upper bound is -0.05: Hurwitz for every M."""
    M = rng.standard_normal((N, N))
    gamma = (1 - beta) * np.linalg.eigvalsh(M + M.T)[-1] + 0.05
    return lrnn.symmetric_skew(M, beta, gamma), M, gamma


def _radius(cfg, xp, M):
    direct = lrnn.init(cfg, 0, backend=xp)._replace(M=put(xp, M))
    return np.max(np.abs(np.linalg.eigvals(host(lrnn.direct_to_explicit(cfg, direct)[0].F))))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("rho", [0.0, 0.2, 0.45])
def test_max_stable_step_is_the_stability_edge(xp, alpha, rho):
    """Just below the bound the update matrix F of ``direct_to_explicit`` contracts, just above
    it does not (rho = 0 is forward Euler, the paper's scheme)."""
    for seed in (0, 1):
        A, M, gamma = _hurwitz_A(np.random.default_rng(seed), 6)
        eps_max = stability.max_stable_step(A, alpha, rho)
        assert 0 < eps_max < math.inf

        def radius(eps):
            scheme = "euler" if rho == 0.0 else "imex"
            cfg = lrnn.Config(1, 6, 1, beta=0.75, gamma=gamma, eps=eps, alpha=alpha, scheme=scheme, rho=rho)
            return _radius(cfg, xp, M)

        assert radius(0.999 * eps_max) < 1.0 < radius(1.001 * eps_max)
        assert radius(eps_max) == pytest.approx(1.0, abs=1e-9)
    if rho == 0.0:  # the closed form for Euler, eigenvalue by eigenvalue
        lam = np.linalg.eigvals(A)
        assert eps_max == pytest.approx(np.min(-2 * lam.real / (alpha * np.abs(lam) ** 2)), rel=1e-12)


def test_max_stable_step_edge_cases():
    K = np.array([[0.0, 1.0], [-1.0, 0.0]])
    assert stability.max_stable_step(K) == 0.0  # pure rotation: forward Euler always grows
    assert stability.max_stable_step(K, rho=0.5) == 0.0  # Crank-Nicolson keeps |mu| = 1: not contracting
    assert stability.max_stable_step(K, rho=0.75) == math.inf  # rho > 1/2 damps the rotation
    assert stability.max_stable_step(np.eye(2), rho=1.0) == 0.0  # unstable modes: small steps grow
    assert stability.max_stable_step(np.zeros((2, 2)), rho=1.0) == 0.0
    assert stability.max_stable_step(-np.eye(3), alpha=0.0) == math.inf
    assert stability.max_stable_step(-np.eye(3), alpha=2.0) == pytest.approx(1.0)
    assert stability.max_stable_step(-np.eye(3), rho=0.5) == math.inf


def _rk_step_of_linear_field(A, eps, alpha, scheme):
    """One step of the authors' solvers (torchdiffeq midpoint, 3/8-rule rk4) on h' = alpha A h,
    applied to the identity: the update matrix column by column."""
    f = lambda g: alpha * A @ g  # noqa: E731
    h = np.eye(A.shape[0])
    if scheme == "midpoint":
        return h + eps * f(h + eps / 2 * f(h))
    k1 = f(h)
    k2 = f(h + eps * k1 / 3)
    k3 = f(h + eps * (k2 - k1 / 3))
    k4 = f(h + eps * (k1 - k2 + k3))
    return h + (k1 + 3 * (k2 + k3) + k4) * eps / 8


@pytest.mark.parametrize("scheme", ["midpoint", "rk4"])
@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_max_stable_step_runge_kutta_is_the_stability_edge(scheme, alpha):
    for seed in (0, 1, 2):
        A, _, _ = _hurwitz_A(np.random.default_rng(seed), 6, beta=0.9)
        eps_max = stability.max_stable_step(A, alpha, scheme=scheme)
        assert 0 < eps_max < math.inf

        def radius(eps):
            F = stability.linear_update_matrix(A, eps, alpha, scheme=scheme)
            np.testing.assert_allclose(F, _rk_step_of_linear_field(A, eps, alpha, scheme), rtol=1e-12, atol=1e-12)
            return np.max(np.abs(np.linalg.eigvals(F)))

        assert radius(0.999 * eps_max) < 1.0 < radius(1.001 * eps_max)
        # every smaller step is stable too, not only the one just below the edge
        assert all(radius(f * eps_max) < 1.0 for f in (0.01, 0.2, 0.5, 0.8))


def test_max_stable_step_runge_kutta_closed_forms():
    rot = np.array([[0.0, 3.0], [-3.0, 0.0]])  # lambda = +-3i
    assert stability.max_stable_step(rot, scheme="midpoint") == 0.0  # |R(iy)|^2 = 1 + y^4/4
    assert stability.max_stable_step(rot, scheme="rk4") == pytest.approx(2 * math.sqrt(2) / 3, rel=1e-10)
    assert stability.max_stable_step(-2 * np.eye(3), scheme="midpoint") == pytest.approx(1.0, rel=1e-12)
    assert stability.max_stable_step(-np.eye(3), 2.0, scheme="rk4") == pytest.approx(2.785293563405 / 2, rel=1e-10)
    assert stability.max_stable_step(np.eye(2), scheme="rk4") == 0.0
    assert stability.max_stable_step(np.zeros((2, 2)), scheme="rk4") == 0.0
    assert stability.max_stable_step(-np.eye(2), 0.0, scheme="rk4") == math.inf
    assert stability.max_stable_step(-np.eye(2), rho=0.9, scheme="euler") == pytest.approx(2.0)  # euler ignores rho
    with pytest.raises(ValueError, match="scheme must be one of"):
        stability.max_stable_step(-np.eye(2), scheme="rk3")


@pytest.mark.parametrize("scheme", ["euler", "imex"])
def test_linear_update_matrix_is_the_maps_F(xp, scheme):
    cfg = lrnn.Config(1, 5, 1, eps=0.3, alpha=1.5, scheme=scheme, rho=0.7)
    explicit, _ = lrnn.direct_to_explicit(cfg, random_direct(cfg, xp, np.random.default_rng(0)))
    F = stability.linear_update_matrix(explicit.A, cfg.eps, cfg.alpha, scheme=scheme, rho=cfg.rho)
    np.testing.assert_allclose(F, host(explicit.F), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("beta", [0.5, 0.75, 1.0])
def test_stable_mode_enforces_proposition_2(xp, beta):
    """Whatever M, every eigenvalue of A has real part <= -delta; W keeps the fixed gamma; and
    when gamma alone already satisfies the condition, the mode changes nothing."""
    rng = np.random.default_rng(1)
    delta = 0.3
    for scale in (0.1, 1.0, 10.0):
        cfg = lrnn.Config(1, 8, 1, beta=beta, gamma=0.01, stable_margin=delta)
        direct = random_direct(cfg, xp, rng, scale)
        explicit, _ = lrnn.direct_to_explicit(cfg, direct)
        assert _eig_real(explicit.A)[-1] <= -delta + 1e-12
        lo, hi = stability.eigenvalue_bounds(direct.M, beta, gamma_A(cfg, host(direct.M)))
        assert hi == pytest.approx(-delta if beta < 1 else -max(0.01, delta), abs=1e-12)
        free = lrnn.direct_to_explicit(lrnn.Config(1, 8, 1, beta=beta, gamma=0.01), direct)[0]
        assert_close(explicit.W, free.W, rtol=0, atol=0)
        if beta < 1 and scale == 10.0:
            assert _eig_real(free.A)[-1] > 0  # without the mode this A is unstable
    big_gamma = lrnn.Config(1, 8, 1, beta=beta, gamma=50.0, stable_margin=delta)
    direct = random_direct(big_gamma, xp, rng, 1.0)
    on = lrnn.direct_to_explicit(big_gamma, direct)
    off = lrnn.direct_to_explicit(lrnn.Config(1, 8, 1, beta=beta, gamma=50.0), direct)[0]
    assert on[1].v is None and np.array_equal(host(on[0].A), host(off.A))


def test_stable_mode_with_imex_half_is_stable_for_every_step(xp):
    cfg = lrnn.Config(1, 6, 1, beta=0.6, gamma=0.0, scheme="imex", rho=0.5, eps=50.0, stable_margin=0.05)
    direct = random_direct(cfg, xp, np.random.default_rng(4), scale=5.0)
    F = host(lrnn.direct_to_explicit(cfg, direct)[0].F)
    assert np.max(np.abs(np.linalg.eigvals(F))) < 1.0
    assert stability.lyapunov_certificate(F, discrete=True).certified


@pytest.mark.parametrize("rho", [0.5, 0.75, 1.0])
def test_imex_is_stable_for_every_step_when_rho_at_least_half(xp, rho):
    rng = np.random.default_rng(5)
    A, M, gamma = _hurwitz_A(rng, 6)
    assert stability.max_stable_step(A, rho=rho) == math.inf
    for eps in (0.01, 1.0, 100.0, 1e4):
        cfg = lrnn.Config(1, 6, 1, beta=0.75, gamma=gamma, eps=eps, scheme="imex", rho=rho)
        assert _radius(cfg, xp, M) < 1.0
    # forward Euler with the largest of these steps is unstable
    assert stability.max_stable_step(A) < 1e4


def test_imex_crank_nicolson_preserves_norm_for_skew_A(xp):
    """beta = 1, gamma = 0, rho = 1/2: F is the Cayley transform of a skew matrix, orthogonal."""
    cfg = lrnn.Config(1, 5, 1, beta=1.0, gamma=0.0, eps=0.7, scheme="imex", rho=0.5)
    direct = random_direct(cfg, xp, np.random.default_rng(2))
    F = host(lrnn.direct_to_explicit(cfg, direct)[0].F)
    np.testing.assert_allclose(F.T @ F, np.eye(5), atol=1e-13)


@pytest.mark.parametrize("seed", [0, 1])
def test_lyapunov_certificate(xp, seed):
    rng = np.random.default_rng(seed)
    A, M, gamma = _hurwitz_A(rng, 7)
    cert = stability.lyapunov_certificate(put(xp, A))
    assert cert.certified and cert.residual < 1e-12 and cert.eig_min_P > 0
    np.testing.assert_allclose(cert.P @ A + A.T @ cert.P, -np.eye(7), atol=1e-10)
    # dV/dt = -h^T Q h <= -rate V for V = h^T P h
    h = rng.standard_normal((7, 50))
    V = np.sum(h * (cert.P @ h), axis=0)
    assert np.all(-np.sum(h * h, axis=0) <= -cert.decay_rate * V * (1 - 1e-12))

    Q = rng.standard_normal((7, 7))
    Q = Q @ Q.T + np.eye(7)
    cert_q = stability.lyapunov_certificate(A, Q)
    np.testing.assert_allclose(cert_q.P @ A + A.T @ cert_q.P, -Q, atol=1e-9)

    # the discrete certificate of the Euler update matrix, at a stable step
    cfg = lrnn.Config(1, 7, 1, beta=0.75, gamma=gamma, eps=0.5 * stability.max_stable_step(A))
    F = lrnn.direct_to_explicit(cfg, lrnn.init(cfg, 0, backend=xp)._replace(M=put(xp, M)))[0].F
    dcert = stability.lyapunov_certificate(F, discrete=True)
    Fh = host(F)
    assert dcert.certified
    Vn = np.sum((Fh @ h) * (dcert.P @ (Fh @ h)), axis=0)
    Vd = np.sum(h * (dcert.P @ h), axis=0)
    assert np.all(Vn <= (1 - dcert.decay_rate) * Vd * (1 + 1e-12))


def test_lyapunov_certificate_refuses_bad_input():
    with pytest.raises(ValueError, match="A must have eigenvalues of negative real part"):
        stability.lyapunov_certificate(np.eye(3))
    with pytest.raises(ValueError, match="spectral radius < 1"):
        stability.lyapunov_certificate(np.eye(3), discrete=True)
    with pytest.raises(ValueError, match="A must be a square"):
        stability.lyapunov_certificate(-np.ones((2, 3)))
    with pytest.raises(ValueError, match="A contains NaN"):
        stability.lyapunov_certificate(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="Q must be symmetric"):
        stability.lyapunov_certificate(-np.eye(2), np.array([[1.0, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="Q must be positive definite"):
        stability.lyapunov_certificate(-np.eye(2), np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="Q must have the shape of A"):
        stability.lyapunov_certificate(-np.eye(2), np.eye(3))
    with pytest.raises(TypeError, match="A must be an array"):
        stability.lyapunov_certificate([[-1.0]])


def test_stability_tools_validate():
    with pytest.raises(ValueError, match="beta"):
        stability.eigenvalue_bounds(np.eye(2), 0.4, 0.0)
    with pytest.raises(ValueError, match="gamma"):
        stability.eigenvalue_bounds(np.eye(2), 0.7, -1.0)
    with pytest.raises(ValueError, match="M must be a square"):
        stability.eigenvalue_bounds(np.ones(3), 0.7, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        stability.max_stable_step(-np.eye(2), alpha=-1.0)
    with pytest.raises(ValueError, match="rho"):
        stability.max_stable_step(-np.eye(2), rho=2.0)
    with pytest.raises(ValueError, match="A must be a square"):
        stability.max_stable_step(np.ones((0, 0)))


# --- initialisation, validation, saving -----------------------------------------------------------


def test_init_is_seeded_and_backend_independent(xp):
    cfg = lrnn.Config(3, 5, 2)
    a = lrnn.init(cfg, 7, backend=xp)
    b = to_backend(lrnn.init(cfg, 7, backend="numpy"), xp)
    for (name, x), (_, y) in zip(tree.paths(a), tree.paths(b)):
        assert np.array_equal(host(x), host(y)), name
    c = lrnn.init(cfg, 8, backend=xp)
    assert not np.array_equal(host(a.M), host(c.M))
    assert not np.any(host(a.b)) and not np.any(host(a.by))


def test_init_scales():
    cfg = lrnn.Config(40, 300, 30, init_std=6.0)
    d = lrnn.init(cfg, 0)
    assert np.std(d.M) == pytest.approx(6.0 / 300, rel=0.02)
    assert np.std(d.C) == pytest.approx(6.0 / 300, rel=0.02)
    assert np.std(d.U) == pytest.approx(math.sqrt(2 / 340), rel=0.03)
    assert np.std(d.D) == pytest.approx(math.sqrt(2 / 330), rel=0.03)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_in=0), "n_in"),
        (dict(n_units=-1), "n_units"),
        (dict(n_out=2.5), "n_out"),
        (dict(beta=0.4), r"beta must be a finite number in \[0.5, 1\]"),
        (dict(beta=1.01), "beta"),
        (dict(beta=float("nan")), "beta"),
        (dict(gamma=-0.1), "gamma"),
        (dict(gamma=float("inf")), "gamma"),
        (dict(eps=0.0), "eps"),
        (dict(eps=-1.0), "eps"),
        (dict(alpha=-1.0), "alpha"),
        (dict(rho=1.5), "rho"),
        (dict(rho=-0.1), "rho"),
        (dict(rho="half"), "rho"),
        (dict(scheme="rk5"), "scheme"),
        (dict(gated=True, scheme="imex"), "gated=True .* scheme must be 'euler'"),
        (dict(gated=1), "gated must be a bool"),
        (dict(stable_margin=0.0), "stable_margin must be a positive"),
        (dict(stable_margin=float("nan")), "stable_margin"),
        (dict(decoder="mean"), "decoder"),
        (dict(init_std=0.0), "init_std"),
    ],
)
def test_bad_config(kwargs, match):
    base = dict(n_in=1, n_units=2, n_out=1)
    with pytest.raises((ValueError, TypeError), match=match):
        lrnn.Config(**{**base, **kwargs})


def test_bad_inputs(xp):
    cfg = lrnn.Config(3, 4, 2)
    direct = lrnn.init(cfg, 0, backend=xp)
    explicit, _ = lrnn.direct_to_explicit(cfg, direct)
    ok = put(xp, np.ones((5, 2, 3)))
    with pytest.raises(ValueError, match=r"U must have shape \(T, B, n_in=3\)"):
        lrnn.forward(cfg, explicit, None, put(xp, np.ones((5, 2, 2))))
    with pytest.raises(ValueError, match="U must have shape"):
        lrnn.forward(cfg, explicit, None, put(xp, np.ones((5, 3))))
    with pytest.raises(ValueError, match="U must have T >= 1 time-steps and B >= 1"):
        lrnn.forward(cfg, explicit, None, put(xp, np.ones((0, 2, 3))))
    with pytest.raises(ValueError, match="U must have T >= 1 time-steps and B >= 1"):
        lrnn.forward(cfg, explicit, None, put(xp, np.ones((4, 0, 3))))
    bad = np.ones((5, 2, 3))
    bad[1, 1, 1] = np.inf
    with pytest.raises(ValueError, match="U contains NaN or Inf"):
        lrnn.forward(cfg, explicit, None, put(xp, bad))
    with pytest.raises(TypeError, match="U has dtype"):
        lrnn.forward(cfg, explicit, None, xp.asarray(np.ones((5, 2, 3), dtype=np.float32)))
    with pytest.raises(TypeError, match="U must be a float32 or float64"):
        lrnn.forward(cfg, explicit, None, xp.asarray(np.ones((5, 2, 3), dtype=np.int64)))
    with pytest.raises(TypeError, match="U must be an array"):
        lrnn.forward(cfg, explicit, None, [[[1.0, 2.0, 3.0]]])
    with pytest.raises(ValueError, match=r"x0 must have shape \(B=2, n_units=4\)"):
        lrnn.forward(cfg, explicit, put(xp, np.ones((3, 4))), ok)
    with pytest.raises(ValueError, match="x0 contains NaN"):
        lrnn.forward(cfg, explicit, put(xp, np.full((2, 4), np.nan)), ok)
    _, _, cache = lrnn.forward(cfg, explicit, None, ok)
    with pytest.raises(ValueError, match=r"dY must have shape \(T_out=1, B=2, n_out=2\)"):
        lrnn.backward(cfg, explicit, cache, put(xp, np.ones((5, 2, 2))))
    seq = lrnn.Config(3, 4, 2, decoder="sequence")
    with pytest.raises(ValueError, match=r"dY must have shape \(T_out=5, B=2, n_out=2\)"):
        lrnn.backward(seq, explicit, cache, put(xp, np.ones((2, 2))))
    with pytest.raises(ValueError, match=r"direct.M must have shape \(4, 4\)"):
        lrnn.direct_to_explicit(cfg, direct._replace(M=put(xp, np.ones((4, 3)))))
    with pytest.raises(ValueError, match="direct.U contains NaN"):
        lrnn.direct_to_explicit(cfg, direct._replace(U=put(xp, np.full((4, 3), np.nan))))
    with pytest.raises(TypeError, match="direct must be of type lipschitz_rnn.Direct"):
        lrnn.direct_to_explicit(cfg, tuple(direct))
    with pytest.raises(ValueError, match=r"labels must have shape \(B=2,\)"):
        classify.value_and_grad(lrnn, cfg, direct, ok, xp.asarray(np.array([0, 1, 1])))
    with pytest.raises(TypeError, match="labels must be an integer array"):
        classify.value_and_grad(lrnn, cfg, direct, ok, put(xp, [0.0, 1.0]))


def test_imex_with_singular_matrix_fails_loudly():
    """I - eps rho alpha A can be singular only when A has an eigenvalue 1/(eps rho alpha) > 0."""
    cfg = lrnn.Config(1, 2, 1, beta=0.5, gamma=0.0, eps=1.0, scheme="imex", rho=1.0)
    direct = lrnn.init(cfg, 0)._replace(M=np.eye(2))  # beta = 1/2: A = M = I
    with pytest.raises(np.linalg.LinAlgError):
        lrnn.direct_to_explicit(cfg, direct)


@pytest.mark.parametrize("scheme", lrnn.SCHEMES)
def test_io_round_trip(xp, tmp_path, scheme):
    cfg = lrnn.Config(2, 5, 3, beta=0.9, gamma=0.01, eps=0.1, alpha=0.5, scheme=scheme, rho=0.25,
                      decoder="sequence", init_std=3.0)
    params = random_direct(cfg, xp, np.random.default_rng(0))
    io.save(tmp_path / "m.npz", cfg, params, metadata={"task": "test"})
    loaded = io.load(tmp_path / "m.npz", backend=xp)
    assert loaded.config == cfg and type(loaded.params) is lrnn.Direct
    for (n1, a), (n2, b) in zip(tree.paths(params), tree.paths(loaded.params)):
        assert n1 == n2 and host(a).tobytes() == host(b).tobytes(), n1
    X = put(xp, np.ones((3, 2, 2)))
    assert_close(classify.predict(lrnn, cfg, loaded.params, X), classify.predict(lrnn, cfg, params, X))


def test_learns_digit_rows():
    """A short training run on the 8-step row sequences of the digits learns the task."""
    from r2dn_np.data import digits

    data = digits.as_sequences(digits.load(seed=0), "rows")
    cfg = lrnn.Config(8, 32, 10, eps=0.5, beta=0.75, gamma=0.001)
    params, hist = classify.train(
        lambda p, X, y: classify.value_and_grad(lrnn, cfg, p, X, y),
        lambda p, X: classify.predict(lrnn, cfg, p, X),
        lrnn.init(cfg, 0), (data.X_train, data.y_train), (data.X_test, data.y_test),
        epochs=5, batch_size=64, lr=2e-2, batch_axis=1,
    )
    assert hist.train_loss[-1] < 0.5 * hist.train_loss[0]
    assert max(hist.test_accuracy) > 0.75  # chance is 0.1; about 0.83 here


def test_gated_init_validation_and_io(xp, tmp_path):
    plain, gated = lrnn.Config(3, 5, 2), lrnn.Config(3, 5, 2, gated=True, stable_margin=0.1)
    a, g = lrnn.init(plain, 7, backend=xp), lrnn.init(gated, 7, backend=xp)
    assert a.Ug is None and a.bg is None
    for x, y in zip(a, g[:6]):  # the gate's weights are drawn last: the rest is unchanged
        assert np.array_equal(host(x), host(y))
    assert g.Ug.shape == (5, 3) and not np.any(host(g.bg))
    assert np.std(host(g.Ug)) > 0.1
    with pytest.raises(ValueError, match="direct.Ug must be None for this config"):
        lrnn.direct_to_explicit(plain, g)
    with pytest.raises(ValueError, match=r"direct.Ug is missing \(None\)"):
        lrnn.direct_to_explicit(gated, a)
    with pytest.raises(ValueError, match=r"direct.bg must have shape \(5,\)"):
        lrnn.direct_to_explicit(gated, g._replace(bg=put(xp, np.zeros(4))))
    io.save(tmp_path / "g.npz", gated, g)
    loaded = io.load(tmp_path / "g.npz", backend=xp)
    assert loaded.config == gated and host(loaded.params.Ug).tobytes() == host(g.Ug).tobytes()
    X = put(xp, np.ones((3, 2, 3)))
    assert_close(classify.predict(lrnn, gated, loaded.params, X), classify.predict(lrnn, gated, g, X))


def test_gate_closed_is_a_frozen_state(xp):
    """A gate driven to 0 (b_g very negative) freezes the state: h_T = h_0."""
    cfg = lrnn.Config(2, 4, 3, gated=True, decoder="sequence")
    direct = random_direct(cfg, xp, np.random.default_rng(0))._replace(bg=put(xp, np.full(4, -60.0)))
    _, h0, X = draw_problem(cfg, xp, 1, 1.0, 6, 2)
    explicit, _ = lrnn.direct_to_explicit(cfg, direct)
    hT, _, _ = lrnn.forward(cfg, explicit, h0, X)
    np.testing.assert_allclose(host(hT), host(h0), atol=1e-20)
