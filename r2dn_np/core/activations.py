"""Monotone activations with slope in [0, 1], each with its derivative from its output.

The one table of activations: every layer looks its ``sigma`` up here. The backward passes keep
only the activation's output ``s`` and recover the slope from it (``1 - s*s`` for tanh,
``s*(1 - s)`` for the sigmoid), which saves storing the pre-activation.
"""

from __future__ import annotations

from array_api_compat import array_namespace

# name -> (sigma bound to a namespace, slope written in terms of the output s = sigma(z))
_TABLE = {
    "relu": (lambda xp: lambda z: xp.maximum(z, 0.0),
             lambda s, xp: xp.astype(s > 0.0, s.dtype)),  # ReLU's slope at 0 is 0
    "tanh": (lambda xp: xp.tanh,
             lambda s, xp: 1.0 - s * s),
    # tanh form: exact, and no overflow warning from exp(-z) at large |z|
    "sigmoid": (lambda xp: lambda z: 0.5 + 0.5 * xp.tanh(0.5 * z),
                lambda s, xp: s * (1.0 - s)),
    "identity": (lambda xp: lambda z: z,
                 lambda s, xp: xp.ones_like(s)),
}

NAMES = tuple(_TABLE)


def _entry(name):
    try:
        return _TABLE[name]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {NAMES}; got {name!r}") from None


def function(name, xp):
    """``sigma`` as a one-argument callable bound to ``xp``, for loops that call it many times
    (looking the name and namespace up per call can cost more than a row's arithmetic)."""
    return _entry(name)[0](xp)


def apply(name, z, xp=None):
    """``sigma(z)`` elementwise. Time loops pass ``xp`` to skip the namespace lookup per call."""
    return function(name, xp or array_namespace(z))(z)


def slope_from_output(name, s, xp=None):
    """``sigma'(z)`` written in terms of ``s = sigma(z)``; ReLU's slope at 0 is 0."""
    return _entry(name)[1](s, xp or array_namespace(s))
