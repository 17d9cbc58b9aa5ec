import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from r2dn_np.training import classify, losses
from r2dn_np.interface import io
from r2dn_np import tanh_rnn
from r2dn_np.core import tree
from r2dn_np.core.backend import to_backend
from r2dn_np.checks.testing import assert_close, check_vjp

from helpers import host, put


@st.composite
def problems(draw, xp, decoder=st.sampled_from(["last", "sequence"])):
    cfg = tanh_rnn.Config(
        n_in=draw(st.integers(1, 4)), n_units=draw(st.integers(1, 6)), n_out=draw(st.integers(1, 3)),
        decoder=draw(decoder),
    )
    T, B = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    scale = draw(st.sampled_from([0.3, 1.0, 2.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    N = cfg.n_units
    shapes = dict(W=(N, N), U=(N, cfg.n_in), b=(N,), D=(cfg.n_out, N), by=(cfg.n_out,))
    direct = tanh_rnn.Direct(**{k: put(xp, rng.standard_normal(s) * scale / math.sqrt(s[-1]))
                                for k, s in shapes.items()})
    h0 = put(xp, 0.5 * rng.standard_normal((B, N)))
    X = put(xp, rng.standard_normal((T, B, cfg.n_in)))
    return cfg, direct, h0, X


def naive(cfg, direct, h0, X):
    W, U, b, D, by = (host(a) for a in direct)
    X, h0 = host(X), host(h0)
    out = np.zeros((X.shape[0], X.shape[1], cfg.n_out))
    for j in range(X.shape[1]):
        h = h0[j]
        for t in range(X.shape[0]):
            h = np.tanh(W @ h + U @ X[t, j] + b)
            out[t, j] = D @ h + by
    return out[-1:] if cfg.decoder == "last" else out


@given(data=st.data())
def test_forward_matches_naive_formula(xp, data):
    cfg, direct, h0, X = data.draw(problems(xp))
    explicit, _ = tanh_rnn.direct_to_explicit(cfg, direct)
    hT, y, cache = tanh_rnn.forward(cfg, explicit, h0, X)
    np.testing.assert_allclose(host(y), naive(cfg, direct, h0, X), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(host(hT), host(cache.H[-1, ...]))
    h1, y1 = tanh_rnn.step(cfg, explicit, h0, X[0, ...])
    _, Y1, cache1 = tanh_rnn.forward(cfg, explicit, h0, X[:1, ...])
    assert_close(h1, cache1.H[1, ...], rtol=1e-14, atol=1e-15)
    assert_close(y1, Y1[0, ...], rtol=1e-13, atol=1e-14)


@given(data=st.data())
def test_gradients_end_to_end(xp, data):
    cfg, direct, h0, X = data.draw(problems(xp))

    def f(args):
        explicit, _ = tanh_rnn.direct_to_explicit(cfg, args[0])
        return tanh_rnn.forward(cfg, explicit, args[1], args[2])[:2]

    def vjp(args, cot):
        explicit, map_cache = tanh_rnn.direct_to_explicit(cfg, args[0])
        _, _, cache = tanh_rnn.forward(cfg, explicit, args[1], args[2])
        d_explicit, dh0, dX = tanh_rnn.backward(cfg, explicit, cache, cot[1], cot[0])
        return tanh_rnn.direct_to_explicit_vjp(cfg, map_cache, d_explicit), dh0, dX

    check_vjp(f, vjp, (direct, h0, X))


@given(data=st.data())
def test_classify_value_and_grad(xp, data):
    cfg, direct, _, X = data.draw(problems(xp, decoder=st.just("last")))
    B = int(X.shape[1])
    labels = xp.asarray(np.arange(B) % cfg.n_out)
    assume(float(classify.value_and_grad(tanh_rnn, cfg, direct, X, labels)[0]) > 0.05)

    def vjp(d, c):
        return tree.map(lambda g: g * c, classify.value_and_grad(tanh_rnn, cfg, d, X, labels)[1])

    check_vjp(lambda d: classify.value_and_grad(tanh_rnn, cfg, d, X, labels)[0], vjp, direct)


@given(data=st.data())
def test_value_and_grad_is_forward_backward(xp, data):
    cfg, direct, h0, X = data.draw(problems(xp))
    explicit, _ = tanh_rnn.direct_to_explicit(cfg, direct)
    _, Y, cache = tanh_rnn.forward(cfg, explicit, h0, X)
    target = xp.zeros_like(Y)
    value, grads = tanh_rnn.value_and_grad(cfg, direct, h0, X, lambda Y: losses.mse(Y, target))
    d_explicit, dh0, dX = tanh_rnn.backward(cfg, explicit, cache, losses.mse(Y, target)[1])
    assert_close(value, losses.mse(Y, target)[0])
    for a, b in zip(tree.leaves(grads), tree.leaves(tanh_rnn.Grads(d_explicit, dh0, dX))):
        assert_close(a, b, rtol=0)


def test_vjp_of_identity_map_fills_none(xp):
    cfg = tanh_rnn.Config(2, 3, 1)
    direct = tanh_rnn.init(cfg, 0, backend=xp)
    _, cache = tanh_rnn.direct_to_explicit(cfg, direct)
    d = tanh_rnn.direct_to_explicit_vjp(cfg, cache, tanh_rnn.Explicit(None, None, None, direct.D, None))
    assert not np.any(host(d.W)) and d.W.shape == (3, 3)
    assert_close(d.D, direct.D)


def test_init(xp):
    cfg = tanh_rnn.Config(3, 200, 4, init_std=6.0)
    a = tanh_rnn.init(cfg, 1, backend=xp)
    b = to_backend(tanh_rnn.init(cfg, 1), xp)
    for (name, x), (_, y) in zip(tree.paths(a), tree.paths(b)):
        assert np.array_equal(host(x), host(y)), name
    assert np.std(host(a.W)) == pytest.approx(6.0 / 200, rel=0.02)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(n_in=0), "n_in"), (dict(n_units=1.5), "n_units"), (dict(n_out=-1), "n_out"),
     (dict(decoder="all"), "decoder"), (dict(init_std=-1.0), "init_std")],
)
def test_bad_config(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tanh_rnn.Config(**{**dict(n_in=1, n_units=2, n_out=1), **kwargs})


def test_bad_inputs(xp):
    cfg = tanh_rnn.Config(3, 4, 2)
    direct = tanh_rnn.init(cfg, 0, backend=xp)
    explicit, _ = tanh_rnn.direct_to_explicit(cfg, direct)
    with pytest.raises(ValueError, match=r"U must have shape \(T, B, n_in=3\)"):
        tanh_rnn.forward(cfg, explicit, None, put(xp, np.ones((5, 2, 1))))
    with pytest.raises(ValueError, match="U must have T >= 1"):
        tanh_rnn.forward(cfg, explicit, None, put(xp, np.ones((0, 2, 3))))
    with pytest.raises(ValueError, match="U contains NaN"):
        tanh_rnn.forward(cfg, explicit, None, put(xp, np.full((2, 2, 3), np.nan)))
    with pytest.raises(ValueError, match=r"x0 must have shape \(B=2, n_units=4\)"):
        tanh_rnn.forward(cfg, explicit, put(xp, np.ones((2, 3))), put(xp, np.ones((5, 2, 3))))
    _, _, cache = tanh_rnn.forward(cfg, explicit, None, put(xp, np.ones((5, 2, 3))))
    with pytest.raises(ValueError, match=r"dY must have shape \(T_out=1, B=2, n_out=2\)"):
        tanh_rnn.backward(cfg, explicit, cache, put(xp, np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"direct.W must have shape \(4, 4\)"):
        tanh_rnn.direct_to_explicit(cfg, direct._replace(W=put(xp, np.ones((4, 1)))))
    with pytest.raises(ValueError, match="labels must have shape"):
        classify.value_and_grad(tanh_rnn, cfg, direct, put(xp, np.ones((5, 2, 3))), xp.asarray(np.array([1])))


def test_io_round_trip(xp, tmp_path):
    cfg = tanh_rnn.Config(2, 5, 3, decoder="sequence", init_std=2.0)
    params = tanh_rnn.init(cfg, 4, backend=xp)
    io.save(tmp_path / "t.npz", cfg, params)
    loaded = io.load(tmp_path / "t.npz", backend=xp)
    assert loaded.config == cfg and type(loaded.params) is tanh_rnn.Direct
    for (n1, a), (n2, b) in zip(tree.paths(params), tree.paths(loaded.params)):
        assert n1 == n2 and host(a).tobytes() == host(b).tobytes(), n1
