"""Loader for the F-16 ground-vibration-test benchmark files (not shipped; 148 MB download).

Noel & Schoukens, "F-16 aircraft benchmark based on ground vibration test data" (Workshop on
Nonlinear System Identification Benchmarks, 2017). Each ``F16Data_FullMSine_Level*.csv`` of
the benchmark's ``BenchmarkData`` folder has a header line and the columns ``Force``,
``Voltage`` (inputs: the shaker force in N and its voltage in V) and ``Acceleration1``,
``Acceleration2``, ``Acceleration3`` (outputs, m/s^2), sampled at 400 Hz. Levels 1, 3, 5
and 7 are the training records and levels 2, 4 and 6 (``..._Validation.csv``) the test
records, as the benchmark prescribes; the last ``val_fraction`` of every training record
is held out for validation and early stopping.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from r2dn_np.data import f16
>>> folder = tempfile.mkdtemp()
>>> rows = np.random.default_rng(0).standard_normal((50, 5))
>>> for name in ("F16Data_FullMSine_Level1.csv", "F16Data_FullMSine_Level2_Validation.csv"):
...     np.savetxt(os.path.join(folder, name), rows, delimiter=",", header=",".join(f16.COLUMNS), comments="")
>>> data = f16.load(folder)
>>> data.nu, data.ny, sorted(data.test), data.train[0].u.shape
(2, 3, ['Level2'], (40, 2))
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from .sequences import DataError, Record, SysIdData, check_record

__all__ = ["COLUMNS", "INPUTS", "OUTPUTS", "FS", "PATTERN", "read_csv", "load"]

INPUTS = ("Force", "Voltage")
OUTPUTS = ("Acceleration1", "Acceleration2", "Acceleration3")
COLUMNS = INPUTS + OUTPUTS
FS = 400.0
PATTERN = "F16Data_FullMSine_Level*.csv"
_NAME = re.compile(r"F16Data_FullMSine_Level(\d+)(_Validation)?\.csv$")


def read_csv(path):
    """One benchmark CSV file as a Record ``(u (T, 2), y (T, 3))``.

    Raises
    ------
    DataError
        The header lacks one of :data:`COLUMNS`, a row has the wrong number of fields, or a
        field is not a number.
    """
    with open(path, newline="") as fh:
        header = [h.strip().strip('"') for h in fh.readline().strip().split(",")]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DataError(
                f"{path}: header {header} lacks column {missing[0]!r}; expected the columns {list(COLUMNS)}"
            )
        try:
            rows = np.loadtxt(fh, delimiter=",", ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise DataError(f"{path}: malformed row ({exc})") from None
    if rows.shape[0] < 2 or rows.shape[1] != len(header):
        raise DataError(f"{path}: expected at least 2 rows of {len(header)} fields; got shape {rows.shape}")
    col = {name: i for i, name in enumerate(header)}
    try:
        return check_record(path, rows[:, [col[c] for c in INPUTS]], rows[:, [col[c] for c in OUTPUTS]])
    except ValueError as exc:
        raise DataError(str(exc)) from None


def load(data_dir, val_fraction=0.2):
    """Training, validation and test records from a folder of benchmark CSV files.

    Raises
    ------
    FileNotFoundError
        ``data_dir`` does not exist.
    DataError
        No training or no test file matches :data:`PATTERN` in it, or a file is malformed.
    """
    if data_dir is None:
        raise FileNotFoundError("the f16 data set needs --data-dir: the folder with F16Data_FullMSine_Level*.csv")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data directory {data_dir!r} does not exist")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction!r}")
    train, val, test, files = [], [], {}, []
    for path in sorted(glob.glob(os.path.join(data_dir, PATTERN))):
        match = _NAME.search(os.path.basename(path))
        if match is None:
            continue
        rec = read_csv(path)
        files.append(os.path.basename(path))
        if match.group(2):
            test[f"Level{match.group(1)}"] = rec
        else:
            cut = int(round((1 - val_fraction) * rec.u.shape[0]))
            train.append(Record(rec.u[:cut], rec.y[:cut]))
            val.append(Record(rec.u[cut:], rec.y[cut:]))
    if not train or not test:
        raise DataError(
            f"{data_dir}: needs training files F16Data_FullMSine_Level<n>.csv and test files "
            f"F16Data_FullMSine_Level<n>_Validation.csv; found {files or 'none'}"
        )
    return SysIdData("f16", FS, train, val, test, INPUTS, OUTPUTS,
                     {"data_dir": os.path.abspath(data_dir), "files": files, "val_fraction": val_fraction})
