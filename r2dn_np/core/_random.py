"""Seeded host-side initialisers. Arrays are drawn with NumPy and then placed on the backend,
so a seed gives the same parameters on every backend."""

from __future__ import annotations

import numpy as np

# std of a standard normal truncated to [-2, 2]; dividing by it restores unit variance
_TRUNC_STD = 0.87962566103423978


def lecun_normal(rng, shape):
    """Truncated normal with variance ``1 / shape[0]`` (``fan_in`` of a ``(in, out)`` kernel,
    as Flax's ``lecun_normal`` for 2-D kernels)."""
    fan_in = shape[0] if len(shape) > 1 else 1
    draw = rng.standard_normal(shape)
    bad = np.abs(draw) > 2.0
    while bad.any():
        draw[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(draw) > 2.0
    return draw * (np.sqrt(1.0 / fan_in) / _TRUNC_STD)
