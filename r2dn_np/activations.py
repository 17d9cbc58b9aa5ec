"""Monotone activations with slope in [0, 1], each with its derivative from its output.

The backward passes keep only the activation's output ``s`` and recover the slope from
it (``1 - s*s`` for tanh, ``s*(1 - s)`` for the sigmoid), which saves storing the
pre-activation.
"""

from __future__ import annotations

from array_api_compat import array_namespace

NAMES = ("relu", "tanh", "sigmoid", "identity")


def apply(name, z, xp=None):
    """``sigma(z)`` elementwise. Time loops pass ``xp`` to skip the namespace lookup per call."""
    xp = xp or array_namespace(z)
    if name == "relu":
        return xp.maximum(z, 0.0)
    if name == "tanh":
        return xp.tanh(z)
    if name == "sigmoid":
        # tanh form: exact, and no overflow warning from exp(-z) at large |z|
        return 0.5 + 0.5 * xp.tanh(0.5 * z)
    if name == "identity":
        return z
    raise ValueError(f"activation must be one of {NAMES}; got {name!r}")


def slope_from_output(name, s, xp=None):
    """``sigma'(z)`` written in terms of ``s = sigma(z)``; ReLU's slope at 0 is 0."""
    xp = xp or array_namespace(s)
    if name == "relu":
        return xp.astype(s > 0.0, s.dtype)
    if name == "tanh":
        return 1.0 - s * s
    if name == "sigmoid":
        return s * (1.0 - s)
    if name == "identity":
        return xp.ones_like(s)
    raise ValueError(f"activation must be one of {NAMES}; got {name!r}")
