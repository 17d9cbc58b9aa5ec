import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter

from r2dn_np.training import linear
from r2dn_np.data.sequences import Record


def test_output_error_fit_is_unbiased_under_output_noise():
    # y = 0.5 q^-1 / (1 - 1.5 q^-1 + 0.7 q^-2) u + white noise: ARX is biased here, OE is not
    rng = np.random.default_rng(0)
    F_true = [1.0, -1.5, 0.7]
    recs = []
    for _ in range(2):
        u = rng.standard_normal((3000, 1))
        y = lfilter([0.0, 0.5], F_true, u[:, 0]) + 0.5 * rng.standard_normal(3000)
        recs.append(Record(u, y[:, None]))
    model = linear.fit(recs[:1], recs[1:], max_order=3, washout=50)
    clean = Record(recs[1].u, lfilter([0.0, 0.5], F_true, recs[1].u[:, 0])[:, None])
    assert linear.nrmse_of(model, clean, washout=50) < 0.03
    sc = model.scaler
    F_arx, B_arx, c_arx = linear._arx([Record(sc.u(r.u), sc.y(r.y)) for r in recs[:1]], 0, 2)
    arx = linear.OEModel([F_arx], [B_arx], [c_arx], sc, 2)
    assert linear.nrmse_of(arx, clean, washout=50) > 2 * linear.nrmse_of(model, clean, washout=50)


def test_mimo_with_offsets():
    rng = np.random.default_rng(1)
    u = rng.standard_normal((800, 2)) + [3.0, -1.0]
    y = np.stack([lfilter([0.2, 0.1], [1.0, -0.6], u[:, 0]) - lfilter([0.3], [1.0, -0.6], u[:, 1]),
                  lfilter([0.0, 1.0], [1.0, 0.3], u[:, 1]) + 10.0,
                  0.5 * u[:, 0]], axis=1)
    rec = Record(u, y)
    model = linear.fit([rec], [rec], max_order=2, washout=50)
    pred = linear.simulate(model, u)
    assert pred.shape == (800, 3)
    np.testing.assert_allclose(pred[50:], y[50:], atol=1e-6 * np.abs(y).max())
    d = model.to_dict()
    assert d["state_dim"] == 3 * d["order_per_output"] and len(d["c"]) == 3


def test_bad_arguments():
    import pytest

    rec = Record(np.zeros((10, 1)), np.zeros((10, 1)))
    with pytest.raises(ValueError, match="max_order"):
        linear.fit([rec], [rec], max_order=0)
    with pytest.raises(ValueError, match="at least one record"):
        linear.fit([rec], [], max_order=1)


@settings(max_examples=25)
@given(n=st.integers(1, 4), nu=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_sensitivities_match_finite_differences(n, nu, seed):
    rng = np.random.default_rng(seed)
    F = np.poly(rng.uniform(-0.9, 0.9, n))  # a stable denominator, F[0] = 1
    B = rng.standard_normal((nu, n + 1))
    c = float(rng.standard_normal())
    u = rng.standard_normal((60, nu))
    p = np.concatenate([F[1:], B.ravel(), [c]])

    def yhat(p):
        return linear._sim_one(np.concatenate([[1.0], p[:n]]), p[n:-1].reshape(nu, n + 1), p[-1], u)

    h = 1e-6
    fd = np.stack([(yhat(p + h * e) - yhat(p - h * e)) / (2 * h) for e in np.eye(p.size)], axis=1)
    J = linear._sensitivities(F, B, u)
    assert J.shape == fd.shape
    np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-7 * np.max(np.abs(fd)))
