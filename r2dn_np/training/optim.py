"""Optimisation as pure functions over parameter containers: Adam, gradient clipping and
learning-rate schedules. Gradients come in the same container type as the parameters;
``None`` leaves (absent parameters) stay ``None``.

Examples
--------
>>> import numpy as np
>>> from r2dn_np.training import optim
>>> params = (np.array([1.0]),)
>>> state = optim.adam_init(params)
>>> params, state = optim.adam_step(params, (np.array([0.5]),), state, lr=0.1)
>>> round(float(params[0][0]), 6), state.step
(0.9, 1)
"""

from __future__ import annotations

import math
from typing import NamedTuple

from array_api_compat import array_namespace

from ..core import _validate, tree

__all__ = [
    "AdamState",
    "adam_init",
    "adam_step",
    "global_norm",
    "clip_by_global_norm",
    "clip_elementwise",
    "exponential_decay",
    "PlateauState",
    "plateau_init",
    "plateau_update",
]


class AdamState(NamedTuple):
    m: object  # first-moment estimates, same container as the parameters
    v: object  # second-moment estimates
    step: int  # number of steps taken (a Python int: bias corrections need no device sync)


def adam_init(params):
    zeros = tree.map(lambda p: array_namespace(p).zeros_like(p), params)
    return AdamState(zeros, tree.map(lambda z: z, zeros), 0)


def adam_step(params, grads, state, lr, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step (Kingma & Ba, "Adam: A Method for Stochastic Optimization").

    ``p <- p - lr * m_hat / (sqrt(v_hat) + eps)`` with bias-corrected moments.
    Returns ``(params, state)``.
    """
    # scalars only (no array is read back): cheap enough for every step
    lr = _validate.real("lr", lr, 0.0)
    b1, b2 = _validate.real("b1", b1, 0.0, 1.0, high_open=True), _validate.real("b2", b2, 0.0, 1.0, high_open=True)
    eps = _validate.positive_float("eps", eps)
    t = state.step + 1
    c1 = 1.0 - b1**t
    c2 = 1.0 - b2**t
    m = tree.map(lambda m_, g: b1 * m_ + (1.0 - b1) * g, state.m, grads)
    v = tree.map(lambda v_, g: b2 * v_ + (1.0 - b2) * (g * g), state.v, grads)

    def update(p, m_, v_):
        xp = array_namespace(p)
        return p - lr * (m_ / c1) / (xp.sqrt(v_ / c2) + eps)

    return tree.map(update, params, m, v), AdamState(m, v, t)


def global_norm(grads):
    """``sqrt(sum of squares)`` over every leaf, as a 0-d array (no host sync)."""
    leaves = tree.leaves(grads)
    xp = array_namespace(leaves[0])
    total = xp.sum(leaves[0] * leaves[0])
    for g in leaves[1:]:
        total = total + xp.sum(g * g)
    return xp.sqrt(total)


def clip_by_global_norm(grads, max_norm):
    """Scale all gradients by ``min(1, max_norm / global_norm)``. Returns ``(grads, norm)``."""
    max_norm = _validate.positive_float("max_norm", max_norm)
    norm = global_norm(grads)
    xp = array_namespace(norm)
    scale = max_norm / xp.maximum(norm, max_norm)
    return tree.map(lambda g: g * scale, grads), norm


def clip_elementwise(grads, limit):
    """Clip every gradient entry to ``[-limit, limit]`` (the authors clip at 10)."""
    limit = _validate.positive_float("limit", limit)
    return tree.map(lambda g: array_namespace(g).clip(g, -limit, limit), grads)


def exponential_decay(step, lr0, decay_rate, decay_steps, staircase=True):
    """``lr0 * decay_rate ** (step / decay_steps)``, the exponent floored when ``staircase``."""
    _validate.nonnegative_int("step", step)
    _validate.positive_float("lr0", lr0)
    _validate.positive_float("decay_rate", decay_rate)
    _validate.positive_int("decay_steps", decay_steps)
    exponent = step // decay_steps if staircase else step / decay_steps
    return lr0 * decay_rate**exponent


class PlateauState(NamedTuple):
    lr: float
    best: float
    wait: int


def plateau_init(lr):
    return PlateauState(_validate.positive_float("lr", lr), math.inf, 0)


def plateau_update(state, metric, factor=0.1, patience=10, threshold=1e-4, min_lr=0.0):
    """Reduce-on-plateau for a metric to minimise.

    A value counts as an improvement when it is below ``best * (1 - threshold)``. After
    ``patience`` updates in a row without one, ``lr`` is multiplied by ``factor`` (not
    below ``min_lr``) and the count restarts.
    """
    metric = float(metric)
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must be in (0, 1); got {factor!r}")
    _validate.positive_int("patience", patience)
    if metric < state.best * (1.0 - threshold) or (math.isinf(state.best) and math.isfinite(metric)):
        return PlateauState(state.lr, metric, 0)
    wait = state.wait + 1
    if wait >= patience:
        return PlateauState(max(state.lr * factor, min_lr), state.best, 0)
    return PlateauState(state.lr, state.best, wait)
