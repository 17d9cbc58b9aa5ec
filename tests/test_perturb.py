import numpy as np
import pytest

from r2dn_np.data import perturb

from helpers import host, put


def test_gaussian_noise(xp):
    X = put(xp, np.zeros((400, 64)))
    Y = perturb.gaussian_noise(X, 0.3, seed=1)
    assert Y.dtype == X.dtype and Y.shape == X.shape
    assert np.std(host(Y)) == pytest.approx(0.3, rel=0.02)
    np.testing.assert_array_equal(host(perturb.gaussian_noise(X, 0.3, seed=1)), host(Y))
    assert not np.array_equal(host(perturb.gaussian_noise(X, 0.3, seed=2)), host(Y))
    np.testing.assert_array_equal(host(perturb.gaussian_noise(X, 0.0)), host(X))


def test_salt_and_pepper(xp):
    X = put(xp, np.full((400, 64), 0.5))
    Y = host(perturb.salt_and_pepper(X, 0.2, seed=3))
    changed = Y != 0.5
    assert changed.mean() == pytest.approx(0.2, abs=0.01)
    assert set(np.unique(Y[changed])) == {0.0, 1.0}
    assert (Y[changed] == 1.0).mean() == pytest.approx(0.5, abs=0.03)
    np.testing.assert_array_equal(host(perturb.salt_and_pepper(X, 0.0)), host(X))


@pytest.mark.parametrize("fn, arg, match", [
    (perturb.gaussian_noise, -0.1, "sigma"),
    (perturb.gaussian_noise, float("nan"), "sigma"),
    (perturb.salt_and_pepper, 1.5, "p must be"),
    (perturb.salt_and_pepper, -0.1, "p must be"),
])
def test_bad_levels(fn, arg, match):
    with pytest.raises(ValueError, match=match):
        fn(np.zeros((2, 2)), arg)
    with pytest.raises(TypeError, match="X must be an array"):
        fn([[0.0]], 0.1)
