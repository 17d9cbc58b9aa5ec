"""Input-output records for system identification: the data-set container, standardisation,
chunking into parallel streams for truncated backpropagation through time, and the error
metrics.

Records are host NumPy arrays ``u : (T, nu)``, ``y : (T, ny)``; a training loop moves the
chunks it builds to its backend. Chunks are time-major ``(S, B, n)`` like every sequence in
the library.

Examples
--------
>>> import numpy as np
>>> from r2dn_np.data import sequences
>>> u = np.arange(10.0)[:, None]
>>> U, Y = sequences.chunk([(u, 2 * u)], length=4)
>>> U.shape, U[:, 1, 0].tolist()
((4, 2, 1), [4.0, 5.0, 6.0, 7.0])
>>> round(sequences.nrmse(np.zeros((5, 1)), np.array([[1.0], [-1], [1], [-1], [1]])), 3)
1.021
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core import _validate

__all__ = ["DataError", "Record", "SysIdData", "Scaler", "fit_scaler", "chunk", "rmse", "nrmse", "nrmse_per_output",
           "check_record", "check_records", "check_series", "check_scaler", "check_sysid_data"]


class DataError(ValueError):
    """A data file or folder is missing pieces or malformed."""


class Record(NamedTuple):
    u: np.ndarray  # (T, nu)
    y: np.ndarray  # (T, ny)


class SysIdData(NamedTuple):
    """A system-identification data set: training, validation and named test records."""

    name: str
    fs: float  # sampling frequency in Hz
    train: list  # [Record]
    val: list  # [Record]
    test: dict  # {name: Record}
    input_names: tuple
    output_names: tuple
    info: dict  # generation settings or source files, for results.json
    scale: list = None  # [Record] whose mean and std standardise the data; None: the training records

    @property
    def nu(self):
        return int(self.train[0].u.shape[1])

    @property
    def ny(self):
        return int(self.train[0].y.shape[1])


def check_record(name, u, y):
    """Validate one record: 2-D finite float arrays with the same number of samples."""
    u, y = np.asarray(u, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if u.ndim != 2 or y.ndim != 2:
        raise ValueError(f"{name}: u and y must be 2-D (T, n); got shapes {u.shape} and {y.shape}")
    if u.shape[0] != y.shape[0] or u.shape[0] < 2:
        raise ValueError(f"{name}: u and y must have the same number T >= 2 of samples; got {u.shape[0]} and {y.shape[0]}")
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(y))):
        raise ValueError(f"{name}: contains NaN or Inf")
    return Record(u, y)


def check_series(name, a, n=None, label="n", T=None, min_T=1, finite=True):
    """A host array of real numbers of shape ``(T, n)``, finite (with ``finite``), at least ``min_T``
    rows; ``n`` and ``T`` are checked where given. Returns it as a NumPy array (not copied or cast)."""
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{name} must be an array of shape (T, {label}); got {type(a).__name__}")
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got dtype {a.dtype}")
    if a.ndim != 2 or (n is not None and a.shape[1] != n) or (T is not None and a.shape[0] != T):
        want = f"({'T' if T is None else T}, {label}{'' if n is None else '=%d' % n})"
        raise ValueError(f"{name} must have shape {want}; got {a.shape}")
    if a.shape[0] < min_T:
        raise ValueError(f"{name} must have at least {min_T} samples; got {a.shape[0]}")
    if finite and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        t, j = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{name} contains NaN or Inf (first at sample {t}, channel {j})")
    return a


def check_records(name, records, nu=None, ny=None, outputs=True, min_T=1):
    """Validate a non-empty list of records ``(u (T, nu), y (T, ny))`` (``y`` unchecked with
    ``outputs=False``); errors name ``name[i].u``. ``nu``/``ny`` default to the first record's."""
    if isinstance(records, (str, bytes, dict)) or not isinstance(records, (list, tuple)):
        raise TypeError(f"{name} must be a list of Record(u, y); got {type(records).__name__}")
    if not records:
        raise ValueError(f"{name} must hold at least one record; got none")
    for i, r in enumerate(records):
        nu, ny = _check_one(f"{name}[{i}]", r, nu, ny, outputs, min_T)
    return records


def _check_one(name, r, nu, ny, outputs, min_T):
    """One record; returns its ``(nu, ny)``."""
    if not isinstance(r, tuple) or len(r) != 2:
        raise TypeError(f"{name} must be a Record(u, y); got {type(r).__name__}")
    u = check_series(f"{name}.u", r[0], nu, "nu", min_T=min_T)
    if not outputs:
        return u.shape[1], ny
    y = check_series(f"{name}.y", r[1], ny, "ny", T=u.shape[0], min_T=min_T)
    return u.shape[1], y.shape[1]


def check_sysid_data(name, data, nu=None, ny=None):
    """Validate a :class:`SysIdData`: its training, validation, scale and test records, all with
    the same ``nu`` and ``ny`` (the model's where given)."""
    if not isinstance(data, SysIdData):
        raise TypeError(f"{name} must be a sequences.SysIdData; got {type(data).__name__}")
    check_records(f"{name}.train", data.train, nu, ny)
    nu, ny = data.train[0].u.shape[1], data.train[0].y.shape[1]
    check_records(f"{name}.val", data.val, nu, ny)
    if data.scale is not None:
        check_records(f"{name}.scale", data.scale, nu, ny)
    if not isinstance(data.test, dict):
        raise TypeError(f"{name}.test must be a dict of named records; got {type(data.test).__name__}")
    for key, r in data.test.items():
        _check_one(f"{name}.test[{key!r}]", r, nu, ny, True, 1)
    return data


def check_scaler(name, scaler, nu, ny):
    """A :class:`Scaler` for ``nu`` inputs and ``ny`` outputs: finite, deviations > 0."""
    if not isinstance(scaler, Scaler):
        raise TypeError(f"{name} must be a sequences.Scaler; got {type(scaler).__name__}")
    for field, n in (("u_mean", nu), ("u_std", nu), ("y_mean", ny), ("y_std", ny)):
        v = np.asarray(getattr(scaler, field))
        if v.dtype.kind not in "biuf" or v.shape != (n,) or not np.all(np.isfinite(v)) or (
                field.endswith("std") and not np.all(v > 0)):
            raise ValueError(f"{name}.{field} must hold {n} finite number(s){' > 0' if field.endswith('std') else ''}"
                             f" (shape ({n},)); got {v.tolist() if v.size < 10 else 'shape %s' % (v.shape,)}")
    return scaler


class Scaler(NamedTuple):
    """Affine standardisation ``(x - mean) / std`` of inputs and outputs, fitted on training data."""

    u_mean: np.ndarray
    u_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray

    def u(self, u):
        return (u - self.u_mean) / self.u_std

    def y(self, y):
        return (y - self.y_mean) / self.y_std

    def y_inverse(self, y):
        return y * self.y_std + self.y_mean

    def to_dict(self):
        return {k: np.asarray(v).tolist() for k, v in self._asdict().items()}

    @classmethod
    def from_dict(cls, d):
        """The inverse of :meth:`to_dict` (exact: JSON keeps every digit of a float64)."""
        return cls(*(np.asarray(d[k], dtype=np.float64) for k in cls._fields))


def fit_scaler(records):
    """Per-channel mean and standard deviation over all samples of ``records``."""
    check_records("records", records)
    u = np.concatenate([r.u for r in records], axis=0)
    y = np.concatenate([r.y for r in records], axis=0)
    # a constant channel would divide by zero; leave it unscaled instead
    safe = lambda s: np.where(s > 0, s, 1.0)  # noqa: E731
    return Scaler(u.mean(axis=0), safe(u.std(axis=0)), y.mean(axis=0), safe(y.std(axis=0)))


def chunk(records, length, offsets=None):
    """Cut records into chunks of ``length`` samples, stacked as parallel streams.

    Parameters
    ----------
    records : list of ``(u (T, nu), y (T, ny))``.
    length : samples per chunk; the remainder of each record after its offset is dropped.
    offsets : optional start offset per record (a random offset each epoch shows the model
        chunk boundaries at new places).

    Returns
    -------
    U : (length, B, nu), Y : (length, B, ny) with B the total number of chunks.
    """
    check_records("records", records)
    _validate.positive_int("length", length)
    if offsets is None:
        offsets = [0] * len(records)
    else:
        if isinstance(offsets, (str, bytes)) or not hasattr(offsets, "__len__") or len(offsets) != len(records):
            raise ValueError(f"offsets must hold one start offset per record ({len(records)}); got {offsets!r}")
        offsets = [_validate.nonnegative_int(f"offsets[{i}]", o) for i, o in enumerate(offsets)]
    Us, Ys = [], []
    for (u, y), off in zip(records, offsets):
        n = (u.shape[0] - off) // length
        if n < 1:
            continue
        stop = off + n * length
        Us.append(u[off:stop].reshape(n, length, -1))
        Ys.append(y[off:stop].reshape(n, length, -1))
    if not Us:
        longest = max(int(r[0].shape[0]) for r in records)
        raise ValueError(f"length must not exceed the longest record ({longest} samples); got {length}")
    U = np.concatenate(Us, axis=0).transpose(1, 0, 2)
    Y = np.concatenate(Ys, axis=0).transpose(1, 0, 2)
    return np.ascontiguousarray(U), np.ascontiguousarray(Y)


def _pair(y_pred, y_true, washout):
    """``y_pred``, ``y_true`` as float64 host arrays of one shape ``(T,)`` or ``(T, ny)``, after ``washout``
    (no broadcasting: a ``(T, 1)`` prediction against a ``(T,)`` target is refused)."""
    washout = _validate.nonnegative_int("washout", washout)
    out = []
    for name, a in (("y_pred", y_pred), ("y_true", y_true)):
        a = np.asarray(a)
        if a.dtype.kind not in "biuf" or a.ndim not in (1, 2):
            raise TypeError(f"{name} must be a real array of shape (T,) or (T, ny); got dtype {a.dtype}, shape {a.shape}")
        out.append(np.asarray(a, dtype=np.float64))
    p, t = out
    if p.shape != t.shape:
        raise ValueError(f"y_pred must have the shape of y_true {t.shape}; got {p.shape}")
    if washout >= t.shape[0]:
        raise ValueError(f"washout must be smaller than the number of samples ({t.shape[0]}); got {washout}")
    if not np.all(np.isfinite(t)):
        raise ValueError("y_true contains NaN or Inf")
    return p[washout:], t[washout:]


def rmse(y_pred, y_true, washout=0):
    """Root-mean-square error over samples ``t >= washout`` and all outputs (host float).

    ``y_true`` must be finite; a non-finite ``y_pred`` (a diverged model) scores NaN or Inf, by
    design: it is a result to report, not an input error. The same holds for the NRMSEs below.
    """
    p, t = _pair(y_pred, y_true, washout)
    e = p - t
    return float(np.sqrt(np.mean(e * e)))


def nrmse_per_output(y_pred, y_true, washout=0):
    """Normalised RMSE of each output: ``RMSE_j / std(y_true_j)`` over ``t >= washout``, as a
    host array ``(ny,)``; an output whose ``y_true`` is constant there is scored by its RMSE
    (divided by 1, not by a zero standard deviation)."""
    p, t = _pair(y_pred, y_true, washout)
    p, t = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
    return np.sqrt(np.mean((p - t) ** 2, axis=0)) / np.where(t.std(axis=0) > 0, t.std(axis=0), 1.0)


def nrmse(y_pred, y_true, washout=0):
    """Normalised RMSE: per output, ``RMSE / std(y_true)`` over ``t >= washout``, then averaged
    over outputs. 0 is perfect; 1 is as good as predicting the mean."""
    return float(np.mean(nrmse_per_output(y_pred, y_true, washout)))
