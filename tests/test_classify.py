import importlib

import numpy as np
import pytest

from r2dn_np.training import classify, losses
from r2dn_np.data import digits


def test_linear_softmax_learns_digits(xp):
    data = digits.load(backend=xp)
    rng = np.random.default_rng(0)
    params = (xp.asarray(0.01 * rng.standard_normal((10, 64))), xp.zeros(10, dtype=xp.float64))

    def predict(p, X):
        return X @ p[0].mT + p[1]

    def value_and_grad(p, X, y):
        loss, dz = losses.softmax_cross_entropy(predict(p, X), y)
        return loss, (dz.mT @ X, xp.sum(dz, axis=0))

    before = classify.evaluate(predict, params, data.X_test, data.y_test)
    params, hist = classify.train(value_and_grad, predict, params, (data.X_train, data.y_train),
                                  (data.X_test, data.y_test), epochs=5, batch_size=64, lr=0.05)
    assert before < 0.3
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.test_accuracy[-1] > 0.9
    assert len(hist.seconds) == 5


def test_train_stops_on_a_non_finite_loss():
    X, y = np.zeros((8, 2)), np.zeros(8, dtype=int)
    calls = []

    def value_and_grad(p, Xb, yb):
        calls.append(1)
        return (np.nan if len(calls) == 3 else 1.0), p

    with pytest.raises(FloatingPointError, match=r"epoch 2, batch 1"):
        classify.train(value_and_grad, lambda p, Xb: np.zeros((int(Xb.shape[0]), 2)), np.zeros(2), (X, y), (X, y),
                       epochs=3, batch_size=4, lr=0.1)


@pytest.mark.parametrize("name", ["lipschitz_rnn", "tanh_rnn", "r2dn", "ren"])
def test_classify_any_protocol_model(name):
    """The generic classifier is the cross-entropy of the last output of module.value_and_grad."""
    module = importlib.import_module(f"r2dn_np.{name}")
    if name == "r2dn":
        cfg = module.Config(nu=2, nx=3, nv=4, ny=3, hidden=(4,))
    elif name == "ren":
        cfg = module.Config(nu=2, nx=3, nv=4, ny=3)
    else:
        cfg = module.Config(2, 3, 3)
    direct = module.init(cfg, 0)
    rng = np.random.default_rng(0)
    U, labels = rng.standard_normal((4, 5, 2)), np.array([0, 1, 2, 1, 0])
    logits = classify.predict(module, cfg, direct, U)
    assert logits.shape == (5, 3)
    loss, d_direct = classify.value_and_grad(module, cfg, direct, U, labels)
    assert float(loss) == pytest.approx(float(losses.softmax_cross_entropy(logits, labels)[0]), rel=1e-14)
    assert type(d_direct) is module.Direct
