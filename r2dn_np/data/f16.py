"""Loader for the F-16 ground-vibration-test benchmark files (not shipped; 148 MB download).

Noël & Schoukens, "F-16 aircraft benchmark based on ground vibration test data" (Workshop on
Nonlinear System Identification Benchmarks, 2017; data doi 10.4121/12954911). The benchmark's
``BenchmarkData`` folder holds seven full-multisine records, ``F16Data_FullMSine_Level<n>.csv``
for n = 1, 3, 5, 7 and ``F16Data_FullMSine_Level<n>_Validation.csv`` for n = 2, 4, 6, at
increasing excitation levels, each 73,728 samples at 400 Hz. Their header line is
``"Force","Voltage","Acceleration1","Acceleration2","Acceleration3","Fs",``: inputs shaker
force (N) and voltage (V), outputs three accelerations (m/s^2). Every line ends with a comma
(an empty last column) and ``Fs`` is filled in the first data row only; both are read as
published, and a filled ``Fs`` must be 400.

The default split is the protocol of the R2DN paper's F-16 experiment (Barbara, Wang &
Manchester, "R2DN: Scalable parameterization of contracting and Lipschitz recurrent deep
networks"): levels 1, 3, 5, 7 train, levels 2 and 4 validate (model selection), level 6 is the
test set, and all records are standardised with the mean and standard deviation of level 4,
as the authors' code does (``examples/utils/data_handling.py`` of nic-barbara/R2DN). The
training settings are ``sysid.PRESETS["paper"]["f16"]``; measured results in ``docs/sysid.md``.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from r2dn_np.data import f16
>>> folder = tempfile.mkdtemp()
>>> rng = np.random.default_rng(0)
>>> for n in range(1, 8):
...     name = f"F16Data_FullMSine_Level{n}{'_Validation' if n % 2 == 0 else ''}.csv"
...     lines = [",".join(f'"{c}"' for c in f16.COLUMNS + ("Fs",)) + ","]
...     lines += [",".join(f"{v:.5g}" for v in row) + (",400," if i == 0 else ",,")
...               for i, row in enumerate(rng.standard_normal((50, 5)))]
...     with open(os.path.join(folder, name), "w") as fh:
...         _ = fh.write("\\n".join(lines) + "\\n")
>>> data = f16.load(folder)
>>> data.nu, data.ny, len(data.train), len(data.val), sorted(data.test), data.train[0].u.shape
(2, 3, 4, 2, ['Level6'], (50, 2))
>>> data.info["levels"]
{'train': [1, 3, 5, 7], 'val': [2, 4], 'test': [6], 'scale': [4]}
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from ..core import _validate
from .sequences import DataError, SysIdData, check_record

__all__ = ["COLUMNS", "INPUTS", "OUTPUTS", "FS", "PATTERN", "PUBLISHED", "read_csv", "load"]

INPUTS = ("Force", "Voltage")
OUTPUTS = ("Acceleration1", "Acceleration2", "Acceleration3")
COLUMNS = INPUTS + OUTPUTS
FS = 400.0
PATTERN = "F16Data_FullMSine_Level*.csv"
_NAME = re.compile(r"F16Data_FullMSine_Level(\d+)(_Validation)?\.csv$")

# Test NRMSE per output (RMSE / std, Acceleration1-3) on level 6 published for comparison:
# Forgione, Mejari & Piga, "Model order reduction of deep structured state-space models: A
# system-theoretic approach" (CDC 2024), their full-order deep LRU. Not the same protocol: the
# force is its only input, and it trains on the sine-sweep records of levels 1, 3, 5, 7 too.
PUBLISHED = {"Level6": {"deep LRU [Forgione et al. 2024]": (0.134, 0.099, 0.237)}}


def _number_or_nan(text):
    return float(text) if text.strip() else np.nan


def read_csv(path):
    """One benchmark CSV file as a Record ``(u (T, 2), y (T, 3))``.

    Columns are found by their header names; an empty last column (the published files end
    every line with a comma) and empty ``Fs`` fields are allowed.

    Raises
    ------
    DataError
        The header lacks one of :data:`COLUMNS`, a row misses a field, has more fields than the
        header or holds a field that is not a number, fewer than 2 rows, NaN or Inf, or a filled ``Fs`` other than 400.
    """
    path = _validate.path("path", path)
    lines = _validate.text_lines(path, DataError)
    if not lines:
        raise DataError(f"{path}: the file is empty; expected a header line and rows of data")
    header = [h.strip().strip('"') for h in lines[0].strip().split(",")]
    lines = lines[1:]
    # loadtxt reads only the named columns, so a row with a field too many (its values shifted
    # one column along) would pass unseen; a row with fewer fails in loadtxt
    for i, line in enumerate(lines):
        if line.count(",") >= len(header):
            raise DataError(f"{path}: malformed row {i + 2}: {line.count(',') + 1} fields, more than the "
                            f"header's {len(header)}")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(
            f"{path}: header {header} lacks column {missing[0]!r}; expected the columns {list(COLUMNS)}"
        )
    filled = sum(bool(line.strip()) for line in lines)
    if filled < 2:  # here, not in loadtxt, which warns on no data
        raise DataError(f"{path}: expected at least 2 rows of data; got {filled}")
    cols = [header.index(c) for c in COLUMNS]
    fs_col = header.index("Fs") if "Fs" in header else None
    if fs_col is not None:
        cols.append(fs_col)
    try:
        # usecols skips the trailing empty column; the converter reads the empty Fs fields
        rows = np.loadtxt(lines, delimiter=",", usecols=cols, ndmin=2, dtype=np.float64,
                          converters=None if fs_col is None else {fs_col: _number_or_nan})
    except ValueError as exc:
        raise DataError(f"{path}: malformed row ({exc})") from None
    if rows.shape[0] < 2:
        raise DataError(f"{path}: expected at least 2 rows of data; got {rows.shape[0]}")
    if fs_col is not None:
        fs = rows[:, -1][~np.isnan(rows[:, -1])]
        if np.any(fs != FS):
            raise DataError(f"{path}: column Fs says {fs[fs != FS][0]:g} Hz; the benchmark is sampled at {FS:g} Hz")
    try:
        return check_record(path, rows[:, :len(INPUTS)], rows[:, len(INPUTS):len(COLUMNS)])
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _levels(name, levels):
    if isinstance(levels, (str, bytes)) or not isinstance(levels, (list, tuple, range)):
        raise TypeError(f"{name} must list at least one level number >= 1 (a tuple of ints); got {levels!r}")
    if not levels:
        raise ValueError(f"{name} must list at least one level number >= 1; got {levels!r}")
    return list(_validate.positive_ints(name, levels))


def load(data_dir, train=(1, 3, 5, 7), val=(2, 4), test=(6,), scale=(4,)):
    """Training, validation and test records from a folder of benchmark CSV files.

    Parameters
    ----------
    data_dir : the folder with ``F16Data_FullMSine_Level<n>[_Validation].csv``.
    train, val, test : excitation levels (1-7) of each set; the defaults are the R2DN
        paper's protocol. Test records are named ``"Level<n>"``.
    scale : levels whose mean and standard deviation standardise all records (the
        ``scale`` records of the result); ``None``: the training levels.

    Raises
    ------
    FileNotFoundError
        ``data_dir`` does not exist.
    DataError
        A level's file is missing, or a file is malformed.
    ValueError
        An empty list of levels, or a level in more than one of train, val and test.
    """
    if data_dir is None:
        raise FileNotFoundError("the f16 data set needs --data-dir: the folder with F16Data_FullMSine_Level*.csv")
    data_dir = _validate.path("data_dir", data_dir)
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise NotADirectoryError(f"data directory {data_dir!r} is a file, not a folder")
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data directory {data_dir!r} does not exist")
    sets = {"train": _levels("train", train), "val": _levels("val", val), "test": _levels("test", test)}
    sets["scale"] = sets["train"] if scale is None else _levels("scale", scale)
    used = sets["train"] + sets["val"] + sets["test"]
    if len(set(used)) != len(used):
        raise ValueError(f"a level may be in only one of train, val and test; got train={sets['train']}, "
                         f"val={sets['val']}, test={sets['test']}")
    found = {}
    for path in sorted(glob.glob(os.path.join(data_dir, PATTERN))):
        match = _NAME.search(os.path.basename(path))
        if match is not None:
            found[int(match.group(1))] = path
    absent = sorted({n for n in used + sets["scale"] if n not in found})
    if absent:
        raise DataError(
            f"{data_dir}: no file for level(s) {absent} (F16Data_FullMSine_Level<n>.csv or "
            f"F16Data_FullMSine_Level<n>_Validation.csv); found {sorted(map(os.path.basename, found.values())) or 'none'}"
        )
    records = {n: read_csv(found[n]) for n in sorted(set(used + sets["scale"]))}
    info = {"data_dir": os.path.abspath(data_dir), "files": [os.path.basename(found[n]) for n in sorted(records)],
            "levels": sets}
    return SysIdData("f16", FS, [records[n] for n in sets["train"]], [records[n] for n in sets["val"]],
                     {f"Level{n}": records[n] for n in sets["test"]}, INPUTS, OUTPUTS, info,
                     [records[n] for n in sets["scale"]])
