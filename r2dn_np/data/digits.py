"""scikit-learn's 8x8 handwritten digits (1,797 images, shipped inside scikit-learn: no download)
as flat vectors or as sequences for recurrent classifiers.

Requires the optional extra ``pip install 'r2dn_np[tasks]'`` (scikit-learn).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from array_api_compat import array_namespace

from ..core import _validate
from ..core.backend import asarray, namespace, to_numpy

__all__ = ["Split", "load", "as_sequences"]

SEQUENCE_KINDS = ("pixel", "permuted", "rows", "noise_padded")


class Split(NamedTuple):
    X_train: object  # (N_train, 64) pixels scaled to [0, 1], or (T, N_train, n) sequences
    y_train: object  # (N_train,) int64 labels 0..9
    X_test: object
    y_test: object


def _sklearn_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "the digits task needs scikit-learn: pip install 'r2dn_np[tasks]'"
        ) from exc
    data = load_digits()
    return data.data / 16.0, data.target.astype(np.int64)


def load(test_fraction=0.25, seed=0, backend=None, dtype="float64"):
    """Flat digits, shuffled with ``seed`` and split into train and test sets.

    Returns
    -------
    Split with ``X`` of shape (N, 64) in [0, 1] and integer labels.
    """
    test_fraction = _validate.real("test_fraction", test_fraction, 0, 1, low_open=True, high_open=True)
    _validate.seed("seed", seed)
    _validate.one_of("dtype", dtype, ("float32", "float64"))
    X, y = _sklearn_digits()
    order = np.random.default_rng(seed).permutation(len(y))
    X, y = X[order], y[order]
    n_test = int(round(test_fraction * len(y)))
    xp = namespace(backend)
    return Split(
        asarray(X[n_test:], xp, dtype), xp.asarray(y[n_test:]),
        asarray(X[:n_test], xp, dtype), xp.asarray(y[:n_test]),
    )


def as_sequences(split, kind="pixel", noise_rows=200, noise_std=1.0, seed=0):
    """Turn a flat split into time-major sequences ``(T, N, n)``.

    ``"pixel"``: one pixel per step (T = 64, n = 1). ``"permuted"``: the same with a fixed
    random permutation of the 64 positions (drawn from ``seed``). ``"rows"``: one image row
    per step (T = 8, n = 8). ``"noise_padded"``: the 8 rows followed by ``noise_rows`` rows
    of Gaussian noise (T = 8 + noise_rows, n = 8), a long-memory task: the label must be
    carried across the noise.
    """
    if not isinstance(split, Split):
        raise TypeError(f"split must be a digits.Split (from digits.load); got {type(split).__name__}")
    _validate.one_of("kind", kind, SEQUENCE_KINDS)
    _validate.nonnegative_int("noise_rows", noise_rows)
    _validate.real("noise_std", noise_std, 0)
    _validate.seed("seed", seed)
    perm = np.random.default_rng(seed).permutation(64)
    rng = np.random.default_rng(seed + 1)

    def convert(name, X):
        _validate.array(name, X, [("N", None), ("pixels", 64)])
        xp = array_namespace(X)
        host = np.asarray(to_numpy(X))
        n = host.shape[0]
        if kind == "pixel":
            seq = host.T[:, :, None]
        elif kind == "permuted":
            seq = host[:, perm].T[:, :, None]
        else:
            seq = host.reshape(n, 8, 8).transpose(1, 0, 2)
            if kind == "noise_padded":
                _validate.allocation(f"noise_rows={noise_rows}", "the noise rows", (noise_rows, n, 8))
                noise = noise_std * rng.standard_normal((noise_rows, n, 8))
                seq = np.concatenate([seq, noise], axis=0)
        return xp.astype(xp.asarray(np.ascontiguousarray(seq)), X.dtype)

    return Split(convert("split.X_train", split.X_train), split.y_train,
                 convert("split.X_test", split.X_test), split.y_test)
