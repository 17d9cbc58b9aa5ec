import math

import numpy as np
import pytest
from hypothesis import example, given, reject, settings, target
from hypothesis import strategies as st

from r2dn_np import lbdn
from r2dn_np.core import tree
from r2dn_np.core.backend import to_backend
from r2dn_np.checks.testing import FiniteDifferenceUnreliable, check_vjp

from helpers import examples_for, host, put

ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")


@st.composite
def configs(draw, activation=st.sampled_from(ACTIVATIONS)):
    return lbdn.Config(
        n_in=draw(st.integers(1, 8)),
        n_out=draw(st.integers(1, 8)),
        hidden=tuple(draw(st.lists(st.integers(1, 8), max_size=3))),
        activation=draw(activation),
        output_layer=draw(st.sampled_from(["linear", "sandwich"])),
        gamma=draw(st.sampled_from([0.1, 1.0, 10.0])),
        learn_gamma=draw(st.booleans()),
    )


def perturbed(direct, rng, scale):
    """Move every free parameter away from its initial value (d and b start at zero)."""
    return tree.map(lambda a: a + xp_put(a, 0.3 * scale * rng.standard_normal(a.shape)), direct)


def xp_put(like, host_array):
    from array_api_compat import array_namespace

    return put(array_namespace(like), host_array)


def naive_lbdn(cfg, direct, u):
    """docs/derivations/lbdn.md section 2 as written, one column vector at a time, in NumPy."""
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
           "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "identity": lambda z: z}[cfg.activation]
    gamma = math.exp(host(direct.log_gamma)) if cfg.learn_gamma else cfg.gamma
    out = []
    for row in host(u):
        h = math.sqrt(gamma) * row
        for k, (layer, (n_in, n_out)) in enumerate(zip(direct.layers, cfg.layer_sizes)):
            XY, a = host(layer.XY), float(host(layer.a))
            W = a * XY / math.sqrt(np.sum(XY**2) + cfg.eps_n)
            U, V = W[:n_out], W[n_out:]
            Z = U - U.T + V.T @ V
            I = np.eye(n_out)
            A_T = np.linalg.solve(I + Z, I - Z)
            B = (-2 * V @ np.linalg.inv(I + Z)).T
            last = k == len(cfg.hidden)
            if last and cfg.output_layer == "linear":
                h = math.sqrt(gamma) * B @ h + host(layer.b)
                break
            psi = np.exp(np.clip(host(layer.d), -20, 20))
            h = math.sqrt(2) * A_T @ np.diag(psi) @ act(
                math.sqrt(2) * np.diag(1 / psi) @ B @ h + host(layer.b))
            if last:
                h = math.sqrt(gamma) * h
        out.append(h)
    return np.array(out)


def test_forward_matches_naive_formula(xp):
    @settings(max_examples=examples_for(xp, 25))
    @given(cfg=configs(), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.3, 1.0, 3.0]))
    def check(cfg, seed, scale):
        _forward_matches_naive_formula(xp, cfg, seed, scale)

    check()


def _forward_matches_naive_formula(xp, cfg, seed, scale):
    rng = np.random.default_rng(seed)
    direct = perturbed(lbdn.init(cfg, seed, backend=xp), rng, scale)
    u = put(xp, rng.standard_normal((5, cfg.n_in)) * scale)
    explicit, _ = lbdn.direct_to_explicit(cfg, direct)
    y, _ = lbdn.forward(cfg, explicit, u)
    np.testing.assert_allclose(host(y), naive_lbdn(cfg, direct, u), rtol=1e-10, atol=1e-12)


def test_direct_to_explicit_vjp(xp):
    @settings(max_examples=examples_for(xp, 25))
    @given(cfg=configs(), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.3, 1.0, 3.0]))
    def check(cfg, seed, scale):
        _direct_to_explicit_vjp(xp, cfg, seed, scale)

    check()


def _direct_to_explicit_vjp(xp, cfg, seed, scale):
    rng = np.random.default_rng(seed)
    direct = perturbed(lbdn.init(cfg, seed, backend=xp), rng, scale)
    def f(d):
        return lbdn.direct_to_explicit(cfg, d)[0]

    def vjp(d, d_explicit):
        _, cache = lbdn.direct_to_explicit(cfg, d)
        return lbdn.direct_to_explicit_vjp(cfg, cache, d_explicit)

    check_vjp(f, vjp, direct)


def test_network_gradients(xp):
    """Input and free-parameter gradients of the whole map + network against finite differences."""

    @settings(max_examples=examples_for(xp, 25))
    @given(cfg=configs(), seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.3, 1.0, 3.0]))
    @example(cfg=lbdn.Config(3, 2, hidden=(4,), activation="relu"), seed=0, scale=1.0)
    def check(cfg, seed, scale):
        _network_gradients(xp, cfg, seed, scale)

    check()


def _network_gradients(xp, cfg, seed, scale):
    rng = np.random.default_rng(seed)
    direct = perturbed(lbdn.init(cfg, seed, backend=xp), rng, scale)
    h = put(xp, rng.standard_normal((4, cfg.n_in)) * scale)

    def f(args):
        explicit, _ = lbdn.direct_to_explicit(cfg, args[0])
        return lbdn.forward(cfg, explicit, args[1])[0]

    def vjp(args, dy):
        explicit, map_cache = lbdn.direct_to_explicit(cfg, args[0])
        _, cache = lbdn.forward(cfg, explicit, args[1])
        dh, d_explicit = lbdn.backward(cfg, explicit, cache, dy)
        return lbdn.direct_to_explicit_vjp(cfg, map_cache, d_explicit), dh

    try:
        check_vjp(f, vjp, (direct, h))
    except FiniteDifferenceUnreliable:
        reject()  # a ReLU kink lies within the finite-difference step


# d values for the clip tests, interleaved: beyond the clip |d| = 20 on both sides, and inside
# it (just inside, more than the finite-difference step away from the kink, and ordinary values)
_D_VALUES = (25.0, 20.0 - 1e-3, -25.0, -20.0 + 1e-3, 21.0, 0.7, -30.0, -0.4)


def _with_d(cfg, xp, rng, values):
    """A perturbed LBDN whose Sandwich layers take their ``d`` from ``values`` in turn (biases
    nonzero, so the scalings by psi do not cancel through a positively homogeneous activation)."""
    direct = perturbed(lbdn.init(cfg, 0, backend=xp), rng, 1.0)
    layers, i = [], 0
    for layer in direct.layers:
        if layer.d is not None:
            n = int(layer.d.shape[0])
            layer = layer._replace(d=put(xp, [values[(i + j) % len(values)] for j in range(n)]))
            i += n
        layers.append(layer)
    return direct._replace(layers=tuple(layers))


@pytest.mark.parametrize("output_layer", ["linear", "sandwich"])
def test_forward_beyond_the_clip_matches_naive_formula(xp, output_layer):
    """``psi = exp(clip(d, -20, 20))``: beyond the clip the network is that of ``d = +-20``."""
    cfg = lbdn.Config(3, 3, hidden=(4, 3), activation="tanh", output_layer=output_layer)
    rng = np.random.default_rng(1)
    direct = _with_d(cfg, xp, rng, _D_VALUES)
    u = put(xp, rng.standard_normal((5, 3)))
    y, _ = lbdn.forward(cfg, lbdn.direct_to_explicit(cfg, direct)[0], u)
    want = naive_lbdn(cfg, direct, u)
    np.testing.assert_allclose(host(y), want, rtol=1e-9, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("output_layer", ["linear", "sandwich"])
def test_map_vjp_beyond_and_at_the_clip(xp, output_layer):
    """The gradient of ``d`` is zero beyond the clip (psi is constant there) and, by the
    convention of docs/derivations/lbdn.md (L7: the mask is ``-20 < d < 20``), at it; just
    inside it is the full gradient. Checked exactly at the clip and beyond, and against finite
    differences beyond and just inside."""
    cfg = lbdn.Config(3, 3, hidden=(4, 3), activation="tanh", output_layer=output_layer)
    rng = np.random.default_rng(2)
    direct = _with_d(cfg, xp, rng, (20.0, 20.0 - 1e-3, -20.0) + _D_VALUES)
    explicit, cache = lbdn.direct_to_explicit(cfg, direct)
    cot = lbdn.Explicit(tuple(put(xp, rng.standard_normal(tuple(w.shape))) for w in explicit.W),
                        tuple(None if b is None else put(xp, rng.standard_normal(tuple(b.shape)))
                              for b in explicit.b))
    grads = lbdn.direct_to_explicit_vjp(cfg, cache, cot)
    n_clipped = n_inside = 0
    for layer, g in zip(direct.layers, grads.layers):
        if layer.d is None:
            continue
        d, dd = host(layer.d), host(g.d)
        clipped = np.abs(d) >= 20.0
        assert np.all(dd[clipped] == 0.0), f"d = {d[clipped]} has gradient {dd[clipped]}"
        assert np.all(dd[~clipped] != 0.0)  # not vacuous: inside the clip d moves the weights
        n_clipped, n_inside = n_clipped + int(clipped.sum()), n_inside + int((~clipped).sum())
    assert n_clipped >= 4 and n_inside >= 3

    # finite differences, away from the kink at exactly +-20
    direct = _with_d(cfg, xp, rng, _D_VALUES)

    def f(dr):
        return lbdn.direct_to_explicit(cfg, dr)[0]

    def vjp(dr, d_explicit):
        return lbdn.direct_to_explicit_vjp(cfg, lbdn.direct_to_explicit(cfg, dr)[1], d_explicit)

    check_vjp(f, vjp, direct)


def test_relu_slope_at_zero_is_zero(xp):
    cfg = lbdn.Config(1, 1, hidden=(1,), activation="relu")
    direct = lbdn.init(cfg, 0, backend=xp)
    explicit, _ = lbdn.direct_to_explicit(cfg, direct)
    # choose the input that puts the hidden pre-activation exactly at 0
    W0 = float(host(explicit.W[0])[0, 0])
    h = put(xp, [[0.0]])
    assert W0 != 0.0
    _, cache = lbdn.forward(cfg, explicit, h)
    dh, _ = lbdn.backward(cfg, explicit, cache, put(xp, [[1.0]]))
    assert float(host(dh)[0, 0]) == 0.0


def _ratio(cfg, explicit, a, b):
    fa, _ = lbdn.forward(cfg, explicit, a)
    fb, _ = lbdn.forward(cfg, explicit, b)
    return float(np.linalg.norm(host(fa - fb)) / np.linalg.norm(host(a - b)))


def _ascend_gain(cfg, explicit, xp, rng, steps=150):
    """Gradient ascent on ||f(a) - f(b)||^2 / ||a - b||^2 using our own backward pass."""
    a = rng.standard_normal((1, cfg.n_in))
    b = a + 0.1 * rng.standard_normal((1, cfg.n_in))
    best, lr = 0.0, 0.05
    for _ in range(steps):
        A, Bv = put(xp, a), put(xp, b)
        fa, ca = lbdn.forward(cfg, explicit, A)
        fb, cb = lbdn.forward(cfg, explicit, Bv)
        dy = host(fa - fb)
        dx = a - b
        nx2 = float(np.sum(dx**2))
        r2 = float(np.sum(dy**2)) / nx2
        best = max(best, math.sqrt(r2))
        ga = host(lbdn.backward(cfg, explicit, ca, put(xp, dy))[0])
        gb = host(lbdn.backward(cfg, explicit, cb, put(xp, dy))[0])
        grad_a = 2 * (ga / nx2 - r2 * dx / nx2)
        grad_b = 2 * (-gb / nx2 + r2 * dx / nx2)
        g = np.concatenate([grad_a, grad_b])
        step = lr * g / (np.linalg.norm(g) + 1e-300)
        a, b = a + step[:1] * np.sqrt(nx2), b + step[1:] * np.sqrt(nx2)
    return best


def tight_direct(cfg, xp, rng, jitter=1e-3):
    """A nearly tight LBDN: with U = 0 and V = c [I; 0], a Sandwich layer's slope-1 Jacobian is
    4c(1 - c^2)/(1 + c^2)^2, equal to 1 at c = sqrt2 - 1; the linear output layer's
    2c/(1 + c^2) is 1 at c = 1."""
    layers = []
    for k, (layer, (n_in, n_out)) in enumerate(zip(lbdn.init(cfg, 0, backend=xp).layers, cfg.layer_sizes)):
        linear_out = layer.d is None
        c = 1.0 if linear_out else math.sqrt(2.0) - 1.0
        XY = np.zeros((n_in + n_out, n_out))
        m = min(n_in, n_out)
        XY[n_out:n_out + m, :m] = np.eye(m)
        XY += jitter * rng.standard_normal(XY.shape)
        layers.append(layer._replace(XY=put(xp, XY), a=put(xp, c * np.sqrt(np.sum(XY**2)))))
    return lbdn.Direct(tuple(layers), None)


@pytest.mark.parametrize("gamma", [0.1, 1.0, 10.0])
@pytest.mark.parametrize("output_layer", ["linear", "sandwich"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_lipschitz_bound_holds_and_is_approached(xp, gamma, output_layer, activation):
    rng = np.random.default_rng(12345)
    worst = 0.0
    for draw in range(5):
        cfg = lbdn.Config(4, 4, hidden=(4, 4), activation=activation,
                          output_layer=output_layer, gamma=gamma)
        if draw < 4:
            direct = perturbed(lbdn.init(cfg, draw, backend=xp), rng, 1.0)
        else:
            direct = tight_direct(cfg, xp, rng)
        explicit, _ = lbdn.direct_to_explicit(cfg, direct)
        for scale in (0.1, 1.0, 10.0):
            for dscale in (1e-3, 0.1, 1.0, 10.0):
                a = rng.standard_normal((32, cfg.n_in)) * scale
                b = a + rng.standard_normal((32, cfg.n_in)) * dscale
                fa, _ = lbdn.forward(cfg, explicit, put(xp, a))
                fb, _ = lbdn.forward(cfg, explicit, put(xp, b))
                r = np.linalg.norm(host(fa - fb), axis=1) / np.linalg.norm(a - b, axis=1)
                worst = max(worst, float(r.max()))
        worst = max(worst, _ascend_gain(cfg, explicit, xp, rng))
        assert worst <= gamma * (1 + 1e-10)
    assert worst >= 0.5 * gamma, f"search reached only {worst / gamma:.3f} gamma: no power"


@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-3, 1e3),
       gamma=st.sampled_from([0.1, 1.0, 10.0]), activation=st.sampled_from(["relu", "tanh"]))
def test_lipschitz_bound_hypothesis_search(seed, scale, gamma, activation):
    cfg = lbdn.Config(3, 2, hidden=(5,), activation=activation, output_layer="sandwich", gamma=gamma)
    rng = np.random.default_rng(seed)
    direct = perturbed(lbdn.init(cfg, seed % 7), rng, 1.0)
    explicit, _ = lbdn.direct_to_explicit(cfg, direct)
    a = rng.standard_normal((1, 3))
    b = a + scale * rng.standard_normal((1, 3))
    ratio = _ratio(cfg, explicit, a, b) / gamma
    target(ratio)
    assert ratio <= 1 + 1e-10


def test_init_is_seeded_and_backend_independent(xp):
    cfg = lbdn.Config(3, 2, hidden=(4,))
    a = lbdn.init(cfg, 7, backend=xp)
    b = to_backend(lbdn.init(cfg, 7, backend="numpy"), xp)
    for (name, x), (_, y) in zip(tree.paths(a), tree.paths(b)):
        assert np.array_equal(host(x), host(y)), name
    c = lbdn.init(cfg, 8, backend=xp)
    assert not np.array_equal(host(a.layers[0].XY), host(c.layers[0].XY))
    # a = ||XY|| at initialisation, so the normalised weight equals XY
    XY = host(a.layers[0].XY)
    assert float(host(a.layers[0].a)) == pytest.approx(math.sqrt(np.sum(XY**2) + cfg.eps_n), rel=1e-15)
    assert not np.any(host(a.layers[0].d)) and not np.any(host(a.layers[0].b))


def test_init_dtype(xp):
    cfg = lbdn.Config(2, 2)
    d = lbdn.init(cfg, 0, backend=xp, dtype="float32")
    assert all(leaf.dtype == xp.float32 for leaf in tree.leaves(d))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_in=0, n_out=1), "n_in"),
        (dict(n_in=1, n_out=-2), "n_out"),
        (dict(n_in=1, n_out=1, hidden=(3, 0)), r"hidden\[1\]"),
        (dict(n_in=1, n_out=1, activation="gelu"), "activation"),
        (dict(n_in=1, n_out=1, output_layer="dense"), "output_layer"),
        (dict(n_in=1, n_out=1, gamma=0.0), "gamma"),
        (dict(n_in=1, n_out=1, gamma=float("nan")), "gamma"),
        (dict(n_in=2.5, n_out=1), "n_in"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        lbdn.Config(**kwargs)


def test_bad_forward_input(xp):
    cfg = lbdn.Config(3, 2, hidden=(4,))
    explicit, _ = lbdn.direct_to_explicit(cfg, lbdn.init(cfg, 0, backend=xp))
    with pytest.raises(ValueError, match=r"h must have shape \(N, n_in=3\)"):
        lbdn.forward(cfg, explicit, put(xp, np.ones((5, 2))))
    with pytest.raises(ValueError, match="h must have shape"):
        lbdn.forward(cfg, explicit, put(xp, np.ones(3)))
    with pytest.raises(ValueError, match="h contains NaN or Inf"):
        lbdn.forward(cfg, explicit, put(xp, [[1.0, np.nan, 0.0]]))
    with pytest.raises(TypeError, match="h has dtype"):
        lbdn.forward(cfg, explicit, xp.asarray(np.ones((2, 3), dtype=np.float32)))
    with pytest.raises(TypeError, match="h must be a float32 or float64"):
        lbdn.forward(cfg, explicit, xp.asarray(np.ones((2, 3), dtype=np.int64)))
    with pytest.raises(TypeError, match="h must be an array"):
        lbdn.forward(cfg, explicit, [[1.0, 2.0, 3.0]])
    _, cache = lbdn.forward(cfg, explicit, put(xp, np.ones((5, 3))))
    with pytest.raises(ValueError, match=r"dout must have shape \(N=5, n_out=2\)"):
        lbdn.backward(cfg, explicit, cache, put(xp, np.ones((4, 2))))
