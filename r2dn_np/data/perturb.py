"""Input perturbations for robustness experiments (the Lipschitz RNN paper's section 6.4): additive
Gaussian noise and salt-and-pepper noise. Noise is drawn on the host with a seed and placed on the
array's backend, so a seed gives the same perturbation on every backend.

Examples
--------
>>> import numpy as np
>>> from r2dn_np.data import perturb
>>> X = np.full((2, 4), 0.5)
>>> perturb.salt_and_pepper(X, 1.0, seed=0).tolist()      # every pixel replaced by 0 or 1
[[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 1.0]]
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace

from ..core import _validate
from ..core.backend import to_numpy

__all__ = ["gaussian_noise", "salt_and_pepper"]


def _host(name, X):
    """``X`` (any backend, float32 or float64, finite) on the host."""
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        raise TypeError(f"{name} must be an array; got {type(X).__name__}")
    _validate.array(name, X, [None] * len(X.shape))
    return np.asarray(to_numpy(X))


def _place(host, like):
    xp = array_namespace(like)
    return xp.astype(xp.asarray(np.ascontiguousarray(host)), like.dtype)


def gaussian_noise(X, sigma, seed=0):
    """``X + sigma * N(0, 1)`` elementwise (no clipping). ``sigma >= 0``."""
    sigma = _validate.real("sigma", sigma, 0)
    _validate.seed("seed", seed)
    host = _host("X", X)
    noise = np.random.default_rng(seed).standard_normal(host.shape)
    return _place(host + sigma * noise, X)


def salt_and_pepper(X, p, seed=0, low=0.0, high=1.0):
    """Replace each entry with probability ``p`` by ``low`` or ``high`` (equally likely)."""
    p = _validate.real("p", p, 0, 1)
    _validate.seed("seed", seed)
    low, high = _validate.real("low", low), _validate.real("high", high)
    host = _host("X", X)
    rng = np.random.default_rng(seed)
    hit = rng.random(host.shape) < p
    salt = rng.random(host.shape) < 0.5
    return _place(np.where(hit, np.where(salt, high, low), host), X)
