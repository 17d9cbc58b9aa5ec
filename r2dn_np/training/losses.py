"""Losses, each returning ``(value, d_prediction)``: the value as a 0-d array and the gradient
with respect to the prediction, in the prediction's namespace and dtype.

Shapes are exact: a target must have the prediction's shape (no broadcasting), labels must be
integers in ``[0, C)``; anything else raises ``ValueError``/``TypeError`` naming the argument."""

from __future__ import annotations

from array_api_compat import array_namespace

from ..core import _validate

__all__ = ["mse", "sum_squares", "softmax_cross_entropy", "accuracy"]


def _size(x):
    n = 1
    for s in x.shape:
        n *= int(s)
    return n


def _check_pair(pred, target):
    _validate.array("pred", pred, tuple(int(s) for s in getattr(pred, "shape", ())), finite=False)
    _validate.array("target", target, tuple(int(s) for s in pred.shape), like=pred)


def _check_labels(logits, labels):
    """``logits : (N, C)`` floating; ``labels : (N,)`` integers in ``[0, C)``."""
    _validate.array("logits", logits, [("N", None), ("C", None)], finite=False)
    n, c = (int(s) for s in logits.shape)
    if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
        raise TypeError(f"labels must be an integer array of shape (N={n},); got {type(labels).__name__}")
    xp = array_namespace(logits)
    if array_namespace(labels) is not xp:
        raise TypeError(f"labels live on a different backend from logits ({xp.__name__})")
    if tuple(labels.shape) != (n,):
        raise ValueError(f"labels must have shape (N={n},); got {tuple(labels.shape)}")
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"labels must be an integer array (class indices); got dtype {labels.dtype}")
    if n and bool(xp.any((labels < 0) | (labels >= c))):
        raise ValueError(f"labels must lie in [0, C) with C={c} classes; got values from "
                         f"{int(xp.min(labels))} to {int(xp.max(labels))}")


def mse(pred, target):
    """Mean over all entries of ``(pred - target)**2``; ``target`` of exactly ``pred``'s shape."""
    _check_pair(pred, target)
    xp = array_namespace(pred)
    r = pred - target
    n = _size(r)
    return xp.sum(r * r) / n, (2.0 / n) * r


def sum_squares(pred, target):
    """Sum over all entries of ``(pred - target)**2``; ``target`` of exactly ``pred``'s shape."""
    _check_pair(pred, target)
    xp = array_namespace(pred)
    r = pred - target
    return xp.sum(r * r), 2.0 * r


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of ``softmax(logits)`` (N, C) against integer ``labels`` (N,) in ``[0, C)``."""
    _check_labels(logits, labels)
    xp = array_namespace(logits)
    n, c = logits.shape
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    expz = xp.exp(shifted)
    total = xp.sum(expz, axis=1, keepdims=True)
    onehot = xp.astype(labels[:, None] == xp.arange(c)[None, :], logits.dtype)
    log_prob = shifted - xp.log(total)
    value = -xp.sum(onehot * log_prob) / n
    return value, (expz / total - onehot) / n


def accuracy(logits, labels):
    """Fraction of rows whose largest logit is the label, as a Python float."""
    _check_labels(logits, labels)
    xp = array_namespace(logits)
    return float(xp.mean(xp.astype(xp.argmax(logits, axis=1) == labels, logits.dtype)))
