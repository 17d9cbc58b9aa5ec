"""A minibatch training loop for classifiers (the digits tasks of the Lipschitz RNN and the
monDEQ). The model enters through two functions, so any model of the library fits:

- ``value_and_grad(params, X, y) -> (loss, grads)``, grads in the container of ``params``;
- ``predict(params, X) -> logits (N, C)``.

``X`` is batched along ``batch_axis`` (0 for flat data, 1 for time-major sequences).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
from array_api_compat import array_namespace

from . import _validate, losses, optim

__all__ = ["History", "evaluate", "train"]


class History(NamedTuple):
    train_loss: list  # mean minibatch loss per epoch
    test_accuracy: list  # accuracy on the test set after each epoch
    seconds: list  # wall time per epoch


def evaluate(predict, params, X, y, batch_axis=0, batch_size=512):
    """Accuracy of ``predict`` on ``(X, y)``, in batches to bound memory."""
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
    X, y = pair
    _validate.array(f"{name}[0] (X)", X, (None,) * max(len(getattr(X, "shape", ())), batch_axis + 1))
    n = int(X.shape[batch_axis])
    if not hasattr(y, "shape") or tuple(y.shape) != (n,):
        raise ValueError(f"{name}[1] (labels) must have shape ({n},), one per example along axis "
                         f"{batch_axis} of X; got {getattr(y, 'shape', type(y).__name__)}")


def train(value_and_grad, predict, params, train_set, test_set, *, epochs, batch_size, lr,
          batch_axis=0, seed=0, clip_norm=None, log=None):
    """Adam over shuffled minibatches; returns ``(params, History)``.

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
        for b in range(0, n, batch_size):
            idx = xp.asarray(order[b:b + batch_size])
            loss, grads = value_and_grad(params, xp.take(X, idx, axis=batch_axis), xp.take(y, idx, axis=0))
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
