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

from .. import _validate

__all__ = ["DataError", "Record", "SysIdData", "Scaler", "fit_scaler", "chunk", "rmse", "nrmse", "nrmse_per_output",
           "check_record"]


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
    _validate.positive_int("length", length)
    offsets = [0] * len(records) if offsets is None else list(offsets)
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


def rmse(y_pred, y_true, washout=0):
    """Root-mean-square error over samples ``t >= washout`` and all outputs (host float)."""
    e = np.asarray(y_pred, dtype=np.float64)[washout:] - np.asarray(y_true, dtype=np.float64)[washout:]
    return float(np.sqrt(np.mean(e * e)))


def nrmse_per_output(y_pred, y_true, washout=0):
    """Normalised RMSE of each output: ``RMSE_j / std(y_true_j)`` over ``t >= washout``, as a
    host array ``(ny,)``."""
    p = np.asarray(y_pred, dtype=np.float64)[washout:]
    t = np.asarray(y_true, dtype=np.float64)[washout:]
    p, t = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
    return np.sqrt(np.mean((p - t) ** 2, axis=0)) / np.where(t.std(axis=0) > 0, t.std(axis=0), 1.0)


def nrmse(y_pred, y_true, washout=0):
    """Normalised RMSE: per output, ``RMSE / std(y_true)`` over ``t >= washout``, then averaged
    over outputs. 0 is perfect; 1 is as good as predicting the mean."""
    return float(np.mean(nrmse_per_output(y_pred, y_true, washout)))
