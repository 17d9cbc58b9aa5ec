import dataclasses
import os

import numpy as np
import pytest
import scipy.signal
from scipy.integrate import solve_ivp

from r2dn_np.data import _sim, boucwen, pendulum, sequences

SMALL = boucwen.Settings(period=256, n_train=2, sweep_seconds=0.5)
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "boucwen")


def _rel_rms(a, b):
    return np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2))


def test_reproduces_the_official_multisine_test_output():
    rec = boucwen.official_test()
    assert rec.u.shape == rec.y.shape == (8192, 1)
    y = boucwen.steady_state(rec.u[:, 0])
    assert _rel_rms(y, rec.y[:, 0]) <= 1e-9
    # each step of the procedure matters: a cascade other than 2, 2, 5 or a coarser integrator is far off
    fast = boucwen.integrate(np.tile(boucwen.upsample_periodic(rec.u[:, 0]), 2))[-8192 * 20:]
    assert _rel_rms(boucwen.decimate(np.tile(fast, 3), 20)[8192:16384], rec.y[:, 0]) > 1e-3
    coarse = boucwen.integrate(np.tile(boucwen.upsample_periodic(rec.u[:, 0], 10), 2), fs=7500.0)[-8192 * 10:]
    y10 = np.tile(coarse, 3)
    for r in (2, 5):
        y10 = boucwen.decimate(y10, r)
    assert _rel_rms(y10[8192:16384], rec.y[:, 0]) > 1e-5


@pytest.mark.skipif(not os.path.isdir(SHARED), reason=f"the published .mat files are not at {SHARED}")
def test_shipped_record_equals_the_published_files():
    from scipy.io import loadmat

    rec = boucwen.official_test()
    u = loadmat(os.path.join(SHARED, "uval_multisine.mat"))["uval_multisine"]
    y = loadmat(os.path.join(SHARED, "yval_multisine.mat"))["yval_multisine"]
    np.testing.assert_array_equal(rec.u[:, 0], u.ravel())
    np.testing.assert_array_equal(rec.y[:, 0], y.ravel())


def test_integrator_on_a_linear_system_is_the_trapezoidal_rule():
    # with alpha = beta = 0, z stays 0 and Newmark's average acceleration is the bilinear
    # (Tustin) discretisation of the mass-spring-damper with the input u_n, u_{n+1}
    p = dict(boucwen.PARAMS, alpha=0.0, beta=0.0)
    fs = 2000.0
    u = _sim.multisine(np.random.default_rng(0), 1, 400, fs, 5.0, 150.0, 50.0)[0]
    A = np.array([[0.0, 1.0], [-p["k"] / p["m"], -p["c"] / p["m"]]])
    B = np.array([[0.0], [1.0 / p["m"]]])
    h = 1.0 / fs
    M1 = np.linalg.solve(np.eye(2) - 0.5 * h * A, np.eye(2) + 0.5 * h * A)
    M2 = np.linalg.solve(np.eye(2) - 0.5 * h * A, 0.5 * h * B)
    s, ref = np.zeros(2), [0.0]
    for n in range(1, u.size):
        s = M1 @ s + (M2 * (u[n - 1] + u[n]))[:, 0]
        ref.append(s[0])
    np.testing.assert_allclose(boucwen.integrate(u, fs=fs, params=p), ref, rtol=0, atol=1e-12 * np.max(np.abs(ref)))


def test_integrator_converges_to_the_ode():
    # against solve_ivp on the same (piecewise-linear) input; second order in the step
    fs = 15000.0
    t = np.arange(1500) / fs
    u = 40 * np.sin(2 * np.pi * 40 * t) + 20 * np.sin(2 * np.pi * 97 * t)

    def f(tt, s):
        y, v, z = s
        dz = 5e4 * v - 1e3 * (0.8 * abs(v) * z - 1.1 * v * abs(z))
        return [v, (np.interp(tt, t, u) - 10.0 * v - 5e4 * y - z) / 2.0, dz]

    ref = solve_ivp(f, (0, t[-1]), [0.0, 0.0, 0.0], t_eval=t, method="DOP853", rtol=1e-10, atol=1e-13,
                    max_step=1 / fs).y[0]
    err = np.max(np.abs(boucwen.integrate(u, fs) - ref)) / np.max(np.abs(ref))
    assert err < 1e-3
    u4 = np.interp(np.arange(4 * 1500 - 3) / (4 * fs), t, u)
    err4 = np.max(np.abs(boucwen.integrate(u4, 4 * fs)[::4] - ref)) / np.max(np.abs(ref))
    assert err4 < err / 10  # about 16 times smaller: second order
    # the hysteresis matters: without it the answer is far off
    lin = boucwen.integrate(u, fs, params=dict(boucwen.PARAMS, alpha=0.0, beta=0.0))
    assert np.max(np.abs(lin - ref)) > 0.05 * np.max(np.abs(ref))


def test_decimate_is_matlab_fir_decimation():
    x = np.random.default_rng(3).standard_normal(203)
    b = scipy.signal.firwin(31, 1 / 4, window="hamming")
    assert b.sum() == pytest.approx(1.0) and np.allclose(b, b[::-1])
    d = boucwen.decimate(x, 4)
    assert d.shape == (51,)
    # interior: the zero-phase FIR; ends: the same filter on the odd reflection about the end samples
    ext = np.concatenate([2 * x[0] - x[31:0:-1], x, 2 * x[-1] - x[-2:-33:-1]])
    full = np.convolve(ext, b, mode="same")[31:-31]
    np.testing.assert_allclose(d, full[::4], rtol=0, atol=1e-13)
    np.testing.assert_allclose(d[4:-4], np.convolve(x, b, mode="same")[16:-16:4], rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="32 samples"):
        boucwen.decimate(x[:20], 2)


def test_upsample_periodic_interpolates_and_is_band_limited():
    u = np.random.default_rng(4).standard_normal(64)
    up = boucwen.upsample_periodic(u, 5)
    np.testing.assert_allclose(up[::5], u, rtol=0, atol=1e-13)
    spec = np.abs(np.fft.rfft(up))
    assert np.all(spec[33:] < 1e-10 * spec.max())


def test_sweep_is_the_benchmarks_from_rest():
    u, y = boucwen.sweep(2.0)
    t = np.arange(1500) / boucwen.FS
    np.testing.assert_allclose(u, 40 * np.sin(2 * np.pi * (18 * t + t * t / 12)), rtol=0, atol=1e-9)
    assert y.shape == (1500,) and abs(y[0]) < 1e-12 and np.abs(y).max() > 1e-4
    # a longer sweep starts the same way (except where the shorter one's filter sees its end)
    np.testing.assert_allclose(boucwen.sweep(3.0)[1][:1400], y[:1400], rtol=0, atol=1e-15)


def test_data_set_noise_and_tests():
    data = boucwen.load(SMALL, cache_dir=False)
    clean = boucwen.load(dataclasses.replace(SMALL, noise_std=0.0), cache_dir=False)
    assert len(data.train) == 2 and len(data.val) == 1
    for noisy, exact in zip(data.train + data.val, clean.train + clean.val):
        np.testing.assert_array_equal(noisy.u, exact.u)
        assert np.std(noisy.y - exact.y) == pytest.approx(boucwen.NOISE_STD, rel=0.2)
        u = exact.u[:, 0]
        assert u.shape == (256,) and np.sqrt(np.mean(u**2)) == pytest.approx(50.0)
    np.testing.assert_array_equal(clean.train[0].y[:, 0], boucwen.steady_state(clean.train[0].u[:, 0]))
    official = boucwen.official_test()
    np.testing.assert_array_equal(data.test["multisine"].y, official.y)  # tests are never noisy
    u, y = boucwen.sweep(0.5)
    np.testing.assert_array_equal(data.test["sweep"].y[:, 0], y)


def test_official_rmse_scores_the_second_period():
    rec = boucwen.official_test()
    assert boucwen.official_rmse(lambda u: np.concatenate([rec.y, rec.y])) == 0.0
    assert boucwen.official_rmse(lambda u: np.zeros_like(u)) == pytest.approx(np.sqrt(np.mean(rec.y**2)))
    with pytest.raises(ValueError, match="shape"):
        boucwen.official_rmse(lambda u: u[:10])


def test_generation_is_deterministic_and_cached(tmp_path):
    a = boucwen.load(SMALL, cache_dir=False)
    b = boucwen.load(SMALL, cache_dir=tmp_path)
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".npz")
    c = boucwen.load(SMALL, cache_dir=tmp_path)  # from the cache
    for x, y, z in zip(a.train + a.val + list(a.test.values()), b.train + b.val + list(b.test.values()),
                       c.train + c.val + list(c.test.values())):
        np.testing.assert_array_equal(x.u, y.u)
        np.testing.assert_array_equal(x.y, y.y)
        np.testing.assert_array_equal(x.y, z.y)
    other = boucwen.load(dataclasses.replace(SMALL, seed=1), cache_dir=tmp_path)
    assert len(os.listdir(tmp_path)) == 2
    assert not np.array_equal(other.train[0].u, a.train[0].u)


def test_corrupt_cache_is_regenerated(tmp_path):
    a = boucwen.load(SMALL, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not a zip")
    b = boucwen.load(SMALL, cache_dir=tmp_path)
    np.testing.assert_array_equal(a.train[1].y, b.train[1].y)


def test_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="transient_periods"):
        boucwen.Settings(transient_periods=-1)
    with pytest.raises(ValueError, match="f_max"):
        boucwen.Settings(f_max=1000.0)
    with pytest.raises(ValueError, match="sweep_seconds"):
        boucwen.Settings(sweep_seconds=0.0)
    with pytest.raises(TypeError, match="settings"):
        boucwen.load({"period": 10})
    with pytest.raises(ValueError, match=r"u contains NaN or Inf \(first at index \(1,\)\)"):
        boucwen.integrate(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="nu = 1"):
        boucwen.integrate(np.zeros(3), params=dict(boucwen.PARAMS, nu=2.0))


def test_pendulum_matches_solve_ivp():
    def f(s, u):
        return np.array([s[1], u - 1.0 * s[1] - 9.81 * np.sin(s[0])])

    U = _sim.multisine(np.random.default_rng(2), 1, 128, pendulum.FS, 0.02, 2.0, 4.0)[0, :60]
    s, ref = np.zeros(2), []
    for u in U:
        ref.append(s[0])
        s = solve_ivp(lambda t, s: f(s, u), (0.0, 1.0 / pendulum.FS), s, method="DOP853", rtol=1e-11, atol=1e-14).y[:, -1]
    np.testing.assert_allclose(pendulum.simulate(U), ref, rtol=0, atol=1e-7)


def test_sequences_chunk_scale_and_metrics():
    u = np.arange(20.0).reshape(10, 2)
    y = -np.arange(10.0)[:, None]
    U, Y = sequences.chunk([(u, y), (u[:7], y[:7])], length=3, offsets=[1, 0])
    assert U.shape == (3, 5, 2) and Y.shape == (3, 5, 1)
    np.testing.assert_array_equal(U[:, 0, :], u[1:4])
    np.testing.assert_array_equal(U[:, 2, :], u[7:10])
    np.testing.assert_array_equal(Y[:, 3, 0], y[0:3, 0])
    with pytest.raises(ValueError, match="length"):
        sequences.chunk([(u, y)], length=11)
    sc = sequences.fit_scaler([sequences.Record(u, y)])
    np.testing.assert_allclose(sc.u(u).mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(sc.y(y).std(axis=0), 1)
    np.testing.assert_allclose(sc.y_inverse(sc.y(y)), y)
    t = np.sin(np.arange(100.0))[:, None]
    assert sequences.nrmse(t, t) == 0.0
    assert sequences.nrmse(t + 0.1 * t.std(), t) == pytest.approx(0.1)
    assert sequences.nrmse(np.zeros_like(t), t, washout=10) == pytest.approx(
        np.sqrt(np.mean(t[10:] ** 2)) / t[10:].std())
    assert sequences.rmse(t + 2.0, t, washout=5) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same number"):
        sequences.check_record("r", np.zeros((5, 1)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="NaN"):
        sequences.check_record("r", np.full((5, 1), np.nan), np.zeros((5, 1)))


def test_unwritable_cache_dir_still_gives_the_data(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    data = boucwen.load(SMALL, cache_dir=blocker / "cache")
    np.testing.assert_array_equal(data.train[0].y, boucwen.load(SMALL, cache_dir=False).train[0].y)
