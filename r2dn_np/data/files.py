"""A user's own input-output records from CSV or NPZ files, for ``r2dn sysid --data`` and
``r2dn simulate --input``.

The CSV reader refuses what it cannot read exactly, naming the file, the line and the column:
a blank line between rows of data (skipping it would shift every later sample), a first line
that mixes column names with numbers (``nan`` or ``inf`` included), a row separated by another
delimiter than the one found on the first line, a ragged row, or a field that is not a finite
number in a column that is used. The delimiter (``,``, ``;`` or tab) is the one the first line
uses most.

Examples
--------
>>> import os, tempfile
>>> from r2dn_np.data import files
>>> path = os.path.join(tempfile.mkdtemp(), "run.csv")
>>> with open(path, "w") as fh:
...     _ = fh.write("time [s],force [N],displacement [m]\\n0,1,0.5\\n0.5,2,0.25\\n1,3,0.125\\n")
>>> recs = files.load_records([path], inputs=["force [N]"], outputs=["displacement [m]"], time_column="time [s]")
>>> recs.records[0].y[:, 0].tolist(), recs.fs
([0.5, 0.25, 0.125], 2.0)
"""

from __future__ import annotations

import csv
import os
from typing import NamedTuple

import numpy as np

from ..core import _validate
from ..interface import io
from .sequences import DataError, Record, SysIdData

__all__ = ["Table", "Records", "read_csv", "read_table", "load_records", "dataset", "DELIMITERS"]

DELIMITERS = (",", ";", "\t")
_SHOWN = {",": "','", ";": "';'", "\t": "a tab"}


def _float(text):
    """``float(text)`` (``nan`` and ``inf`` included), or None where it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


class Table(NamedTuple):
    """The columns of a CSV or NPZ file: ``names`` (the header, or ``column 1``, ... without one),
    ``fields`` (one list of strings per row; NPZ: floats), ``lines`` (each row's line number)."""

    path: str
    names: tuple
    fields: list
    lines: list
    header: bool

    def index(self, name, flag):
        """The column called ``name``; an error naming ``flag`` and the columns there are."""
        if name in self.names:
            return self.names.index(name)
        raise DataError(f"{flag} {name!r}: {self.path} has no such column; its columns are "
                        f"{', '.join(repr(n) for n in self.names)}")

    def column(self, j):
        """Column ``j`` as a float64 array; an error naming the line and column of a field that is
        not a finite number."""
        out = np.empty(len(self.fields), dtype=np.float64)
        for i, row in enumerate(self.fields):
            v = row[j] if isinstance(row[j], float) else _float(row[j])
            if v is None or not np.isfinite(v):
                raise DataError(f"{self.path}: line {self.lines[i]}, column {j + 1}: {str(row[j]).strip()!r} is not a "
                                "finite number" + (f" (column {self.names[j]!r})" if self.header else ""))
            out[i] = v
        return out

    def numbers(self):
        """Every column, ``(rows, columns)`` float64."""
        return np.stack([self.column(j) for j in range(len(self.names))], axis=1)


def _text(path):
    return _validate.text(path, DataError)


def read_csv(path, header=None):
    """Read a delimited text file exactly.

    Parameters
    ----------
    path : the file.
    header : None: the first line is a header when none of its fields is a number, data when all
        are; True: the first line must be a header naming every column.

    Returns
    -------
    Table

    Raises
    ------
    DataError
        A blank line between rows, a first line that mixes names and numbers (or a header
        required but absent), a row with another delimiter or another number of fields than the
        first line, or no rows of data; the message names the file and the line.
    """
    text = _text(path)
    raw = text.splitlines()
    last = len(raw)
    while last and not raw[last - 1].strip():
        last -= 1  # blank lines at the end are harmless
    first = 0
    while first < last and not raw[first].strip():
        first += 1
    if first == last:
        raise DataError(f"{path}: no data (the file is empty)")
    counts = {d: raw[first].count(d) for d in DELIMITERS}
    delim = max(DELIMITERS, key=lambda d: counts[d]) if any(counts.values()) else ","
    head = next(csv.reader([raw[first]], delimiter=delim))
    values = [_float(f) for f in head]
    numeric = [f for f, v in zip(head, values) if v is not None]
    if numeric and len(numeric) < len(head):
        raise DataError(f"{path}: line {first + 1} mixes column names and numbers ({', '.join(map(repr, head))}); "
                        f"a header must name every column, and no name may read as a number ({numeric[0]!r} does)")
    has_header = not numeric
    if header and not has_header:
        raise DataError(f"{path}: line {first + 1} must be a header naming the columns; found numbers "
                        f"({', '.join(map(repr, head))})")
    names = tuple(h.strip() for h in head) if has_header else tuple(f"column {j + 1}" for j in range(len(head)))
    others = [d for d in (",", ";") if d != delim]
    fields, lines = [], []
    start = first + 1 if has_header else first
    for k in range(start, last):
        line = raw[k]
        if not line.strip():
            raise DataError(f"{path}: line {k + 1} is blank, between rows of data; remove it (skipping it "
                            "would shift every later sample by one step)")
        bad = [d for d in others if d in line]
        if bad:
            raise DataError(f"{path}: line {k + 1} contains {_SHOWN[bad[0]]}, but line {first + 1} separates its "
                            f"fields with {_SHOWN[delim]}; use one delimiter throughout")
        row = next(csv.reader([line], delimiter=delim))
        if len(row) != len(names):
            raise DataError(f"{path}: line {k + 1} has {len(row)} column(s); the first line has {len(names)}")
        fields.append(row)
        lines.append(k + 1)
    if not fields:
        raise DataError(f"{path}: no rows of numbers after the header")
    return Table(path, names, fields, lines, has_header)


def _npz_table(path):
    """An NPZ file's arrays as columns: ``(T,)`` arrays by name, ``(T, k)`` as ``name[0]``, ..."""
    try:
        arrays = io.read_npz(path)
    except io.FormatError as exc:
        raise DataError(str(exc)) from None
    columns = {}
    for key, a in arrays.items():
        if a.ndim == 0:
            continue  # a scalar such as fs
        if a.dtype.kind not in "biuf" or a.ndim > 2:
            raise DataError(f"{path}: array {key!r} must be real numbers of shape (T,) or (T, k); "
                            f"got dtype {a.dtype}, shape {a.shape}")
        cols = a[:, None] if a.ndim == 1 else a
        for j in range(cols.shape[1]):
            columns[key if cols.shape[1] == 1 else f"{key}[{j}]"] = np.asarray(cols[:, j], dtype=np.float64)
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        raise DataError(f"{path}: its arrays have different numbers of samples ({sorted(lengths)})")
    names = tuple(columns)
    T = lengths.pop() if lengths else 0
    rows = [[float(columns[n][t]) for n in names] for t in range(T)] if T else []
    fs = arrays.get("fs")
    return Table(path, names, rows, list(range(T)), True), (None if fs is None or fs.ndim else float(fs))


def read_table(path, header=None):
    """A ``.npz`` file (arrays as columns) or a delimited text file (:func:`read_csv`)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    if str(path).lower().endswith(".npz"):
        return _npz_table(path)[0]
    return read_csv(path, header=header)


class Records(NamedTuple):
    """Records read from files, with the names of their columns and the sampling rate (None: not given)."""

    records: list
    names: list  # one label per record: the file's stem, with ":<id>" for a record column
    input_names: tuple
    output_names: tuple
    fs: float


def _columns(table, flag, wanted):
    return [table.index(n, flag) for n in wanted]


def load_records(paths, inputs=None, outputs=None, record_column=None, time_column=None, fs_column=None,
                 flag="--data"):
    """Records from CSV or NPZ files, one per file or one per value of ``record_column``.

    Parameters
    ----------
    paths : list of files.
    inputs, outputs : column names; default: the last column (not the time or record column) is
        the output and the others are inputs. For NPZ without names: arrays ``u`` and ``y``.
    record_column : a column whose value says which record a row belongs to (contiguous rows).
    time_column : a column of time stamps in seconds, uniformly spaced (within 1 %): gives ``fs``.
    fs_column : a column holding the sampling rate in Hz, in some rows at least (the F-16
        benchmark's ``Fs``: the first row only); the others empty.
    flag : the option the files came from, for messages.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records, labels, fs_seen = [], [], []
    in_names = out_names = None
    for path in paths:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise DataError(f"{flag} {path}: no such file")
        npz_fs = None
        if path.lower().endswith(".npz"):
            table, npz_fs = _npz_table(path)
        else:
            table = read_csv(path, header=True)
        special = [c for c in (record_column, time_column, fs_column) if c is not None]
        for c, opt in ((record_column, "--record-column"), (time_column, "--time-column"), (fs_column, "--fs")):
            if c is not None:
                table.index(c, opt)
        free = [n for n in table.names if n not in special]
        npz_uy = table.header and inputs is None and outputs is None and path.lower().endswith(".npz")
        if npz_uy and "u" not in table.names and not any(n.startswith("u[") for n in table.names):
            raise DataError(f"{flag} {path}: name the input and output arrays with --inputs and --outputs, or call "
                            f"them 'u' and 'y'; its arrays are {', '.join(table.names)}")
        if npz_uy:
            ins = [n for n in free if n == "u" or n.startswith("u[")]
            outs = [n for n in free if n == "y" or n.startswith("y[")]
        else:
            outs = list(outputs) if outputs else free[-1:]
            ins = list(inputs) if inputs else [n for n in free if n not in outs]
        if not ins or not outs:
            raise DataError(f"{flag} {path}: needs at least one input and one output column; its columns are "
                            f"{', '.join(repr(n) for n in table.names)} (name them with --inputs and --outputs)")
        both = set(ins) & set(outs)
        if both:
            raise DataError(f"column {sorted(both)[0]!r} is named both by --inputs and --outputs")
        u = np.stack([table.column(j) for j in _columns(table, "--inputs", ins)], axis=1)
        y = np.stack([table.column(j) for j in _columns(table, "--outputs", outs)], axis=1)
        if in_names is None:
            in_names, out_names = tuple(ins), tuple(outs)
        elif (tuple(ins), tuple(outs)) != (in_names, out_names):
            raise DataError(f"{flag} {path}: columns {ins} -> {outs} differ from the first file's "
                            f"{list(in_names)} -> {list(out_names)}")
        stem = os.path.splitext(os.path.basename(path))[0]
        if record_column is None:
            groups = [(stem, np.arange(u.shape[0]))]
        else:
            ids = table.column(table.index(record_column, "--record-column"))
            starts = np.flatnonzero(np.diff(ids)) + 1
            bounds = np.concatenate([[0], starts, [len(ids)]])
            seen = set()
            groups = []
            for a, b in zip(bounds[:-1], bounds[1:]):
                rid = ids[a]
                if rid in seen:
                    raise DataError(f"{path}: line {table.lines[a]}: record {rid:g} of --record-column "
                                    f"{record_column!r} appears again after other records; keep each record's rows together")
                seen.add(rid)
                groups.append((f"{stem}:{rid:g}", np.arange(a, b)))
        t = table.column(table.index(time_column, "--time-column")) if time_column is not None else None
        for label, idx in groups:
            if len(idx) < 2:
                raise DataError(f"{path}: record {label} has {len(idx)} sample(s); at least 2 are needed")
            if t is not None:
                fs_seen.append((_rate(path, table, t, idx, time_column), path))
            records.append(Record(u[idx], y[idx]))
            labels.append(label)
        if npz_fs is not None:
            fs_seen.append((npz_fs, path))
        if fs_column is not None:
            fs_seen.append((_rate_column(table, fs_column), path))
    fs = None
    if fs_seen:
        fs = fs_seen[0][0]
        for f, path in fs_seen[1:]:
            if abs(f - fs) > 1e-2 * fs:
                raise DataError(f"{path}: sampled at {f:g} Hz, but {fs_seen[0][1]} at {fs:g} Hz")
    return Records(records, labels, in_names, out_names, fs)


def _rate_column(table, name):
    """The sampling rate a column states: its non-empty fields, all equal, positive."""
    j = table.index(name, "--fs")
    found = None
    for row, line in zip(table.fields, table.lines):
        text = str(row[j]).strip()
        if not text:
            continue
        v = _float(text)
        if v is None or not np.isfinite(v) or v <= 0 or (found is not None and v != found[0]):
            want = "a positive number of Hz" if found is None else f"{found[0]:g} Hz as on line {found[1]}"
            raise DataError(f"{table.path}: line {line}, column {j + 1} ({name!r}): {text!r}; --fs {name} "
                            f"expects {want}")
        found = found or (v, line)
    if found is None:
        raise DataError(f"{table.path}: --fs {name}: the column is empty; give the rate in Hz (--fs 400)")
    return found[0]


def _rate(path, table, t, idx, name):
    """The sampling rate of time stamps ``t[idx]``, refused where the steps are not uniform."""
    tt = t[idx]
    dt = np.diff(tt)
    step = float(np.median(dt))
    if not step > 0:
        raise DataError(f"{path}: --time-column {name!r} does not increase")
    off = np.flatnonzero(np.abs(dt - step) > 1e-2 * step)
    if off.size:
        i = idx[off[0] + 1]
        raise DataError(f"{path}: line {table.lines[i]}: --time-column {name!r} steps by {dt[off[0]]:g} s where the "
                        f"record's usual step is {step:g} s; samples must be uniformly spaced (a missing row?)")
    return float((len(tt) - 1) / (tt[-1] - tt[0]))  # the mean step: printed time stamps round each step


def dataset(name, train, val=None, test=None, fs=None):
    """A :class:`SysIdData` from :class:`Records`: ``val`` defaults to the last training record
    (or the last fifth of the only one), ``test`` to the validation records; ``fs`` overrides
    the files' rate (default: theirs, else 1 Hz, time in samples). Returns ``(data, notes)``."""
    notes = []
    recs, labels = list(train.records), list(train.names)
    if val is None:
        if len(recs) > 1:
            vrecs, vlabels = [recs.pop()], [labels.pop()]
            notes.append(f"validation: the last training record ({vlabels[0]}); give --val to choose")
        else:
            r = recs[0]
            cut = r.u.shape[0] - r.u.shape[0] // 5
            recs = [Record(r.u[:cut], r.y[:cut])]
            vrecs, vlabels = [Record(r.u[cut:], r.y[cut:])], [f"{labels[0]}[{cut}:]"]
            notes.append(f"validation: the last {r.u.shape[0] - cut} samples of {labels[0]} (its last fifth); "
                         "give --val to choose")
    else:
        vrecs, vlabels = list(val.records), list(val.names)
    if test is None:
        tests = dict(zip(vlabels, vrecs))
        notes.append("test: no --test given, so the scores are on the validation data, which also chose the "
                     "epoch kept (optimistic)")
    else:
        tests = dict(zip(test.names, test.records))
    for other, what in ((val, "--val"), (test, "--test")):
        if other is not None and (other.input_names, other.output_names) != (train.input_names, train.output_names):
            raise DataError(f"{what}: columns {list(other.input_names)} -> {list(other.output_names)} differ from "
                            f"--data's {list(train.input_names)} -> {list(train.output_names)}")
    rates = [r.fs for r in (train, val, test) if r is not None and r.fs is not None]
    if fs is None:
        fs = rates[0] if rates else None
    if fs is None:
        notes.append("sampling rate unknown (no --fs or --time-column): times are in samples")
    info = {"source": "files", "train": labels, "val": vlabels, "test": list(tests), "fs_given": fs is not None}
    return SysIdData(name, float(fs or 1.0), recs, vrecs, tests, train.input_names, train.output_names, info), notes
