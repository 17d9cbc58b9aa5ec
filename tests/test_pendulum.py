import numpy as np

from r2dn_np.data import pendulum

SMALL = pendulum.Settings(period=128, n_train=2, transient=40)


def test_pendulum_data_is_seeded_and_nonlinear():
    a = pendulum.load(SMALL, cache_dir=False)
    b = pendulum.load(SMALL, cache_dir=False)
    np.testing.assert_array_equal(a.train[1].y, b.train[1].y)
    assert (a.nu, a.ny, len(a.train), len(a.val)) == (1, 1, 2, 1)
    # swings far enough that sin(theta) departs from theta by more than 10 %
    assert np.abs(a.test["multisine"].y).max() > 0.8


def test_pendulum_small_angles_are_linear():
    # a tiny torque: the response scales linearly with it
    U = 1e-4 * np.sin(np.arange(200) * 0.3)
    np.testing.assert_allclose(pendulum.simulate(2 * U), 2 * pendulum.simulate(U), rtol=1e-6, atol=1e-14)
