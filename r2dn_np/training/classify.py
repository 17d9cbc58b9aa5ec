"""A minibatch training loop for classifiers (the digits tasks of the Lipschitz RNN and the
monDEQ). The model enters through two functions, so any model of the library fits:

- ``value_and_grad(params, X, y) -> (loss, grads)``, grads in the container of ``params``;
- ``predict(params, X) -> logits (N, C)``.

``X`` is batched along ``batch_axis`` (0 for flat data, 1 for time-major sequences).

For a sequence model of the protocol (``r2dn``, ``ren``, ``lipschitz_rnn``, ``tanh_rnn``, ...),
:func:`predict` and :func:`value_and_grad` classify from the last output ``Y[-1]``, starting from
the zero state:

>>> import numpy as np
>>> from r2dn_np.training import classify
>>> from r2dn_np import tanh_rnn
>>> cfg = tanh_rnn.Config(n_in=1, n_units=8, n_out=3)
>>> direct = tanh_rnn.init(cfg, seed=0)
>>> U, labels = np.ones((20, 4, 1)), np.array([0, 1, 2, 0])       # (T, B, nu), (B,)
>>> loss, d_direct = classify.value_and_grad(tanh_rnn, cfg, direct, U, labels)
>>> classify.predict(tanh_rnn, cfg, direct, U).shape
(4, 3)
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np
from array_api_compat import array_namespace, device

from ..core import _validate
from . import losses, optim

__all__ = ["History", "predict", "value_and_grad", "evaluate", "train"]


class History(NamedTuple):
    train_loss: list  # mean minibatch loss per epoch
    test_accuracy: list  # accuracy on the test set after each epoch
    seconds: list  # wall time per epoch


def _zero_state(cfg, U):
    xp = array_namespace(U)
    return xp.zeros((int(U.shape[1]), cfg.nx), dtype=U.dtype, device=device(U))


def _check_model(module):
    missing = [n for n in ("direct_to_explicit", "forward", "value_and_grad") if not hasattr(module, n)]
    if missing:
        raise TypeError(f"module must be a model module of r2dn_np (e.g. r2dn_np.tanh_rnn); "
                        f"{getattr(module, '__name__', type(module).__name__)} has no {missing[0]}")


def _check_labels(labels, B, C):
    """``labels : (B,)`` integers in ``[0, C)``."""
    if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
        raise TypeError(f"labels must be an integer array of shape (B={B},); got {type(labels).__name__}")
    xp = array_namespace(labels)
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"labels must be an integer array (class indices); got dtype {labels.dtype}")
    if tuple(int(s) for s in labels.shape) != (B,):
        raise ValueError(f"labels must have shape (B={B},); got {tuple(labels.shape)}")
    if bool(xp.any((labels < 0) | (labels >= C))):
        raise ValueError(f"labels must lie in [0, n_out) with n_out={C} classes; got values from "
                         f"{int(xp.min(labels))} to {int(xp.max(labels))}")


def predict(module, cfg, direct, U):
    """Logits ``Y[-1] : (B, ny)`` of the sequence model ``module`` (e.g. ``r2dn_np.lipschitz_rnn``)
    with free parameters ``direct`` on inputs ``U : (T, B, nu)`` from the zero state."""
    _check_model(module)
    explicit, _ = module.direct_to_explicit(cfg, direct)
    _validate.array("U", U, [("T", None), ("B", None), ("nu", cfg.nu)])
    return module.forward(cfg, explicit, _zero_state(cfg, U), U)[1][-1, ...]


def value_and_grad(module, cfg, direct, U, labels):
    """Mean softmax cross-entropy of the last output ``Y[-1] : (B, ny)`` against integer
    ``labels : (B,)`` in ``[0, ny)``, and its gradient, through ``module.value_and_grad``.

    Returns ``(loss, d_direct)``: the loss as a 0-d array, the gradient a ``module.Direct``.
    """
    _check_model(module)
    _validate.array("U", U, [("T", None), ("B", None), ("nu", cfg.nu)])
    _check_labels(labels, int(U.shape[1]), cfg.ny)
    xp = array_namespace(U)

    def last_output_loss(Y):
        loss, d_logits = losses.softmax_cross_entropy(Y[-1, ...], labels)
        return loss, xp.concat([xp.zeros_like(Y[:-1, ...]), d_logits[None, ...]], axis=0)

    loss, grads = module.value_and_grad(cfg, direct, _zero_state(cfg, U), U, last_output_loss)
    return loss, grads.direct


def evaluate(predict, params, X, y, batch_axis=0, batch_size=512):
    """Accuracy of ``predict`` on ``(X, y)``, in batches to bound memory. ``X`` is finite (an
    accuracy over NaN inputs would be a number about nothing), ``y`` one label per example."""
    if not callable(predict):
        raise TypeError(f"predict must be callable (params, X) -> logits; got {type(predict).__name__}")
    _check_xy("X", "y (labels)", X, y, batch_axis)
    batch_size = _validate.positive_int("batch_size", batch_size)
    xp = array_namespace(X)
    n = int(X.shape[batch_axis])
    correct = 0.0
    for start in range(0, n, batch_size):
        idx = xp.arange(start, min(start + batch_size, n))
        logits = predict(params, xp.take(X, idx, axis=batch_axis))
        correct += losses.accuracy(logits, xp.take(y, idx, axis=0)) * int(idx.shape[0])
    return correct / n


def _check_set(name, pair, batch_axis):
    """``(X, y)``: ``X`` a finite floating array, ``y`` integer labels, one per example."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{name} must be a pair (X, y); got {type(pair).__name__}")
    _check_xy(f"{name}[0] (X)", f"{name}[1] (labels)", *pair, batch_axis)


def _check_xy(x_name, y_name, X, y, batch_axis):
    _validate.nonnegative_int("batch_axis", batch_axis)
    _validate.array(x_name, X, (None,) * max(len(getattr(X, "shape", ())), batch_axis + 1))
    n = int(X.shape[batch_axis])
    if not hasattr(y, "shape") or tuple(y.shape) != (n,):
        raise ValueError(f"{y_name} must have shape ({n},), one per example along axis "
                         f"{batch_axis} of X; got {getattr(y, 'shape', type(y).__name__)}")


def train(value_and_grad, predict, params, train_set, test_set, *, epochs, batch_size, lr,
          batch_axis=0, seed=0, clip_norm=None, log=None):
    """Adam over shuffled minibatches; returns ``(params, History)``. A non-finite minibatch
    loss stops training with ``FloatingPointError`` naming the epoch and the batch.

    Parameters
    ----------
    train_set, test_set : ``(X, y)`` pairs.
    clip_norm : optional global-norm gradient clipping.
    log : optional callable receiving one progress line per epoch.
    """
    _validate.positive_int("epochs", epochs)
    _validate.positive_int("batch_size", batch_size)
    _validate.positive_float("lr", lr)
    _validate.one_of("batch_axis", batch_axis, (0, 1))
    if clip_norm is not None:
        _validate.positive_float("clip_norm", clip_norm)
    for name, pair in (("train_set", train_set), ("test_set", test_set)):
        _check_set(name, pair, batch_axis)
    X, y = train_set
    xp = array_namespace(X)
    n = int(X.shape[batch_axis])
    rng = np.random.default_rng(_validate.seed("seed", seed))
    state = optim.adam_init(params)
    history = History([], [], [])
    for epoch in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(n)
        total, count = 0.0, 0
        for k, b in enumerate(range(0, n, batch_size)):
            idx = xp.asarray(order[b:b + batch_size])
            loss, grads = value_and_grad(params, xp.take(X, idx, axis=batch_axis), xp.take(y, idx, axis=0))
            if not math.isfinite(float(loss)):
                raise FloatingPointError(
                    f"the training loss is {float(loss)!r} at epoch {epoch + 1}, batch {k + 1}: the model "
                    "diverged; lower lr, set clip_norm or choose a more stable model"
                )
            if clip_norm is not None:
                grads, _ = optim.clip_by_global_norm(grads, clip_norm)
            params, state = optim.adam_step(params, grads, state, lr)
            total += float(loss)
            count += 1
        seconds = time.perf_counter() - start
        acc = evaluate(predict, params, *test_set, batch_axis=batch_axis)
        history.train_loss.append(total / count)
        history.test_accuracy.append(acc)
        history.seconds.append(seconds)
        if log is not None:
            log(f"epoch {epoch + 1:3d}/{epochs}  loss {total / count:.4f}  test acc {acc:.4f}  {seconds:.2f} s")
    return params, history
