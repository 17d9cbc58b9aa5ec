import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from r2dn_np.training import losses
from r2dn_np.checks.testing import check_vjp

from helpers import host, put


@pytest.mark.parametrize("loss", [losses.mse, losses.sum_squares])
def test_squared_losses(xp, loss):
    rng = np.random.default_rng(0)
    p, t = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    value, _ = loss(put(xp, p), put(xp, t))
    expected = np.sum((p - t) ** 2) / (p.size if loss is losses.mse else 1)
    assert float(value) == pytest.approx(expected, rel=1e-13)
    check_vjp(lambda a: loss(a, put(xp, t))[0], lambda a, d: d * loss(a, put(xp, t))[1], put(xp, p))


@given(n=st.integers(1, 6), c=st.integers(1, 6), seed=st.integers(0, 1000))
def test_softmax_cross_entropy(xp, n, c, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, c)) * 3
    y = rng.integers(0, c, n)
    value, _ = losses.softmax_cross_entropy(put(xp, z), xp.asarray(y))
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    assert float(value) == pytest.approx(-np.mean(logp[np.arange(n), y]), rel=1e-12)
    check_vjp(lambda a: losses.softmax_cross_entropy(a, xp.asarray(y))[0],
              lambda a, d: d * losses.softmax_cross_entropy(a, xp.asarray(y))[1], put(xp, z))


def test_cross_entropy_is_stable_for_large_logits(xp):
    value, grad = losses.softmax_cross_entropy(put(xp, [[1000.0, -1000.0]]), xp.asarray(np.array([0])))
    assert float(value) == 0.0 and np.all(np.isfinite(host(grad)))


def test_accuracy(xp):
    logits = put(xp, [[1.0, 0.0], [0.0, 1.0], [2.0, 3.0]])
    assert losses.accuracy(logits, xp.asarray(np.array([0, 1, 0]))) == pytest.approx(2 / 3)
