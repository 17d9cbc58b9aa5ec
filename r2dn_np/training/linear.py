"""The linear baseline: the best linear time-invariant model in simulation error, fitted on
the same standardised training records as the networks.

Per output ``j``, an output-error (OE) model with a common denominator,

    y_j(t) = sum_i B_ij(q) / F_j(q) u_i(t) + c_j,    deg F_j = n, deg B_ij = n (feedthrough allowed)

(equivalently a linear state-space model of order n per output, ``scipy.signal.tf2ss``).
For each order up to ``max_order``: a least-squares ARX fit gives a start, unstable poles are
reflected into the unit disc, then ``scipy.optimize.least_squares`` minimises the
free-run simulation error from rest (after ``washout`` samples) over all training records,
with the exact Jacobian (each parameter's sensitivity is a filtered, delayed signal).
The order with the lowest validation NRMSE is kept. Simulation is ``scipy.signal.lfilter``
(zero initial state), so it is exact and fast. Host NumPy only: this is a baseline, not a
model of the library.

Examples
--------
>>> import numpy as np
>>> from scipy.signal import lfilter
>>> from r2dn_np.training import linear
>>> from r2dn_np.data.sequences import Record
>>> u = np.random.default_rng(0).standard_normal((500, 1))
>>> y = lfilter([0.0, 0.5], [1.0, -0.8], u[:, 0])[:, None]
>>> model = linear.fit([Record(u, y)], [Record(u, y)], max_order=2, washout=50)
>>> linear.nrmse_of(model, Record(u, y), washout=50) < 1e-6
True
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter

from ..core import _validate
from ..data import sequences

__all__ = ["OEModel", "fit", "simulate", "nrmse_of"]


class OEModel(NamedTuple):
    F: list  # per output: denominator (n + 1,), F[0] = 1
    B: list  # per output: numerators (nu, n + 1)
    c: list  # per output: constant offset (standardised units)
    scaler: sequences.Scaler
    order: int  # n per output; the state-space order is n * ny

    def to_dict(self):
        return {"order_per_output": self.order, "state_dim": self.order * len(self.F),
                "F": [f.tolist() for f in self.F], "B": [b.tolist() for b in self.B], "c": list(self.c)}


def _sim_one(F, B, c, u):
    """``sum_i B_i / F u_i + c`` for standardised ``u : (T, nu)``."""
    num = sum(lfilter(B[i], [1.0], u[:, i]) for i in range(u.shape[1]))
    return lfilter([1.0], F, num) + c


def _delayed(x, k):
    """``q^-k x``: ``x`` delayed by ``k`` samples from a zero initial state."""
    return np.concatenate([np.zeros(k), x[:x.size - k]]) if k else x


def _sensitivities(F, B, u):
    """``d yhat / d (f_1..f_n, b_00..b_{nu-1,n}, c)`` as a ``(T, n + nu (n + 1) + 1)`` array, the
    columns in :func:`_fit_output`'s parameter order. From ``F s = sum_i B_i u_i``
    (``yhat = s + c``): ``ds/db_ik = q^-k u_i / F`` and ``ds/df_k = -q^-k s / F``, so one filter
    per input and one for ``s`` give every column (shifted copies); finite differences would
    need a simulation per parameter."""
    n = F.size - 1
    s = _sim_one(F, B, 0.0, u)
    z = lfilter([1.0], F, -s)
    cols = [_delayed(z, k) for k in range(1, n + 1)]
    for i in range(u.shape[1]):
        w = lfilter([1.0], F, u[:, i])
        cols.extend(_delayed(w, k) for k in range(n + 1))
    cols.append(np.ones(u.shape[0]))
    return np.stack(cols, axis=1)


def simulate(model, u):
    """Free-run output from rest for input ``u : (T, nu)`` in original units; ``(T, ny)``."""
    if not isinstance(model, OEModel):
        raise TypeError(f"model must be a linear.OEModel (from linear.fit); got {type(model).__name__}")
    u = sequences.check_series("u", u, int(model.B[0].shape[0]), "nu")
    us = model.scaler.u(np.asarray(u, dtype=np.float64))
    ys = np.stack([_sim_one(F, B, c, us) for F, B, c in zip(model.F, model.B, model.c)], axis=1)
    return model.scaler.y_inverse(ys)


def nrmse_of(model, record, washout=0):
    """NRMSE of the model's free-run simulation of ``record`` after ``washout`` samples."""
    sequences.check_records("record", [record])
    return sequences.nrmse(simulate(model, record.u), record.y, washout)


def _stabilise(F):
    roots = np.roots(F)
    big = np.abs(roots) >= 1.0
    if not big.any():
        return F
    roots[big] = 0.98 / np.conj(roots[big])  # reflect into the unit disc (a little inside)
    return np.real(np.poly(roots))


def _arx(records, j, n):
    """Least-squares ARX(n, n) for output j on standardised records."""
    rows, rhs = [], []
    for u, y in records:
        T, nu = u.shape
        lag_y = np.stack([y[n - k:T - k, j] for k in range(1, n + 1)], axis=1)
        lag_u = np.concatenate([np.stack([u[n - k:T - k, i] for k in range(0, n + 1)], axis=1)
                                for i in range(nu)], axis=1)
        rows.append(np.concatenate([-lag_y, lag_u, np.ones((T - n, 1))], axis=1))
        rhs.append(y[n:, j])
    theta, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)
    F = _stabilise(np.concatenate([[1.0], theta[:n]]))
    # the ARX constant d enters through 1/F: the output offset is d / F(1)
    return F, theta[n:-1].reshape(-1, n + 1), theta[-1] / np.sum(F)


def _fit_output(records, j, n, washout):
    F0, B0, c0 = _arx(records, j, n)
    nu = B0.shape[0]

    def unpack(p):
        return np.concatenate([[1.0], p[:n]]), p[n:-1].reshape(nu, n + 1), p[-1]

    rows = sum(r.u.shape[0] - washout for r in records)

    def unstable(F):
        return np.max(np.abs(np.roots(F))) >= 1.0

    def residual(p):
        F, B, c = unpack(p)
        # an unstable denominator blows up; a large finite residual steers the solver away
        if unstable(F):
            return np.full(rows, 1e3)
        return np.concatenate([(_sim_one(F, B, c, r.u) - r.y[:, j])[washout:] for r in records])

    def jacobian(p):
        F, B, _ = unpack(p)
        if unstable(F):
            return np.zeros((rows, p.size))
        return np.concatenate([_sensitivities(F, B, r.u)[washout:] for r in records])

    p0 = np.concatenate([F0[1:], B0.ravel(), [c0]])
    sol = least_squares(residual, p0, jac=jacobian, method="trf", x_scale="jac", max_nfev=200 * (p0.size + 1))
    F, B, c = unpack(sol.x)
    if np.max(np.abs(np.roots(F))) >= 1.0:
        F, B, c = F0, B0, c0
    return F, B, c


def fit(train, val, max_order=6, washout=100):
    """Fit OE models of orders 1..``max_order`` and keep the best on validation.

    ``train``, ``val`` : lists of ``Record(u (T, nu), y (T, ny))`` in original units.
    """
    _validate.positive_int("max_order", max_order)
    _validate.nonnegative_int("washout", washout)
    if not train or not val:
        raise ValueError("train and val must each hold at least one record")
    sequences.check_records("train", train)
    nu, ny = train[0].u.shape[1], train[0].y.shape[1]
    sequences.check_records("val", val, nu, ny)
    # checked here: a short record would otherwise reach a reshape deep inside the fit
    for name, records, need in (("train", train, washout + max_order), ("val", val, washout)):
        for i, r in enumerate(records):
            T = int(np.shape(r.u)[0]) if np.ndim(r.u) else 0
            if T <= need:
                raise ValueError(f"{name}[{i}] has {T} samples; the linear baseline needs more than "
                                 f"{need} (washout={washout}{', max_order=%d' % max_order if name == 'train' else ''})")
    scaler = sequences.fit_scaler(train)
    tr = [sequences.Record(scaler.u(r.u), scaler.y(r.y)) for r in train]
    ny = train[0].y.shape[1]
    best, best_score = None, np.inf
    for n in range(1, max_order + 1):
        parts = [_fit_output(tr, j, n, washout) for j in range(ny)]
        model = OEModel([p[0] for p in parts], [p[1] for p in parts], [float(p[2]) for p in parts], scaler, n)
        score = float(np.mean([nrmse_of(model, r, washout) for r in val]))
        if score < best_score:
            best, best_score = model, score
    return best
