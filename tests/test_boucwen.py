import dataclasses
import os

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from r2dn_np.data import _sim, boucwen, pendulum, sequences

SMALL = boucwen.Settings(period=256, n_train=2, transient=64, substeps=4)


def _reference(U, fs, f):
    """solve_ivp (DOP853, tight tolerances) one sample interval at a time, input held."""
    s = np.zeros(f.n)
    out = []
    for u in U:
        out.append(s[0])
        s = solve_ivp(lambda t, s: f(s, u), (0.0, 1.0 / fs), s, method="DOP853", rtol=1e-11, atol=1e-14).y[:, -1]
    return np.array(out)


def _bouc_wen(s, u):
    # the benchmark's equations written out again, independently of the module
    y, v, z = s
    dz = 5e4 * v - 1e3 * (0.8 * abs(v) * z - 1.1 * v * abs(z))
    return np.array([v, (u - 10.0 * v - 5e4 * y - z) / 2.0, dz])


_bouc_wen.n = 3


def test_simulator_matches_solve_ivp():
    rng = np.random.default_rng(1)
    U = _sim.multisine(rng, 1, 256, boucwen.FS, 5.0, 150.0, 50.0)[0, :120]
    ref = _reference(U, boucwen.FS, _bouc_wen)
    got = boucwen.simulate(U, substeps=20)
    assert np.max(np.abs(ref)) > 1e-4  # the signal moves the system
    np.testing.assert_allclose(got, ref, rtol=0, atol=5e-4 * np.max(np.abs(ref)))
    # the hysteresis matters: without it (alpha = beta = 0) the answer is far off
    lin = boucwen.simulate(U, 20, params=dict(boucwen.PARAMS, alpha=0.0, beta=0.0))
    assert np.max(np.abs(lin - ref)) > 0.05 * np.max(np.abs(ref))


def test_pendulum_matches_solve_ivp():
    def f(s, u):
        return np.array([s[1], u - 1.0 * s[1] - 9.81 * np.sin(s[0])])

    f.n = 2
    U = _sim.multisine(np.random.default_rng(2), 1, 128, pendulum.FS, 0.02, 2.0, 4.0)[0, :60]
    np.testing.assert_allclose(pendulum.simulate(U), _reference(U, pendulum.FS, f), rtol=0, atol=1e-7)


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


def test_records_are_steady_state_multisines():
    data = boucwen.load(SMALL, cache_dir=False)
    u = data.train[0].u[:, 0]
    assert u.shape == (256,) and np.sqrt(np.mean(u**2)) == pytest.approx(50.0)
    spec = np.abs(np.fft.rfft(u))
    f = np.fft.rfftfreq(256, 1 / boucwen.FS)
    assert np.all(spec[(f < 5) | (f > 150)] < 1e-9 * spec.max())
    # the data set holds the response after the transient samples
    U = np.concatenate([u[-64:], u])
    np.testing.assert_allclose(data.train[0].y[:, 0], boucwen.simulate(U, SMALL.substeps)[64:], rtol=0, atol=1e-15)
    sweep = data.test["sweep"]
    assert sweep.y[0, 0] == 0.0 and data.val[0].u.shape == (256, 1)


def test_default_transient_reaches_steady_state():
    # with the default transient length one more period of the input repeats the output
    s = boucwen.Settings(period=4096, n_train=1, substeps=2)
    rec = boucwen.load(s, cache_dir=False).train[0]
    u = rec.u[:, 0]
    Y = boucwen.simulate(np.concatenate([u, u]), s.substeps)  # from rest, two periods
    np.testing.assert_allclose(rec.y[:, 0], Y[4096:], rtol=0, atol=1e-4 * np.abs(rec.y).max())
    assert np.abs(Y[:4096] - Y[4096:]).max() > 1e-2 * np.abs(rec.y).max()  # from rest it is not


def test_bad_settings():
    with pytest.raises(ValueError, match="transient"):
        boucwen.Settings(period=10, transient=20)
    with pytest.raises(ValueError, match="f_max"):
        boucwen.Settings(f_max=1000.0)
    with pytest.raises(TypeError, match="settings"):
        boucwen.load({"period": 10})


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
