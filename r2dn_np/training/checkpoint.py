"""Checkpoints: the one file format from which every training loop that resumes continues.

A checkpoint is a file of ``io.write_arrays`` (a ``.npz`` written to a temporary file and
renamed over the target, so an interrupted write leaves the previous checkpoint intact; read
with ``allow_pickle=False``). It holds

- arrays: named trees of arrays (parameters, Adam's moments, a flat iterate), each leaf under
  ``NAME.PATH`` (``params.layers.0.XY``; a tree that is one array under ``NAME``);
- JSON metadata: ``format`` and ``format_version`` (``io``'s), ``kind`` (which loop wrote it:
  another loop's checkpoint is refused), ``fingerprint`` (what must match to continue: the
  model, its options, the data; a checkpoint of another run is refused with the parts that
  differ named), and the loop's own fields (epoch, history, random-generator state).

:func:`read` checks all of it against what the caller expects (the trees' shapes and dtypes
from templates, each field with a predicate), so a checkpoint either resumes exactly as written
or is refused with an error naming the file and what does not match.

Used by ``train.fit``, ``train.refine`` and ``experiments.expressivity.run``; a new loop that
resumes picks a ``kind`` string and calls :func:`write` after each epoch and :func:`read` on
resume.

Examples
--------
>>> import os, tempfile
>>> import numpy as np
>>> from r2dn_np.training import checkpoint
>>> path = os.path.join(tempfile.mkdtemp(), "checkpoint.npz")
>>> theta = np.arange(3.0)
>>> checkpoint.write(path, "example", {"lr": 0.1}, {"theta": theta}, {"epoch": 2})
>>> ck = checkpoint.read(path, "example", {"lr": 0.1}, {"theta": np.zeros(3)}, fields={"epoch": checkpoint.count})
>>> ck.trees["theta"].tolist(), ck.fields["epoch"]
([0.0, 1.0, 2.0], 2)
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np

from ..core import _validate, tree
from ..core.backend import to_numpy
from ..interface import io

__all__ = ["Checkpoint", "write", "read", "differences", "count", "number"]

# metadata keys of every checkpoint; a loop's own fields take any other name
_RESERVED = ("format", "format_version", "kind", "fingerprint")


class Checkpoint(NamedTuple):
    trees: dict  # name -> the template's container type, leaves on the requested namespace (None: absent optional)
    fields: dict  # the loop's own metadata fields (all but format, format_version, kind, fingerprint)


def count(value):
    """A field predicate: a non-negative int (JSON has no separate bool here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def number(value):
    """A field predicate: an int or float (``inf`` included: a best value not yet found)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json(value, name):
    """``value`` as JSON reads it back (tuples become lists), so a fingerprint compares equal to
    the one a file holds; an error naming ``name`` where JSON cannot hold it."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must hold only JSON values (str, number, bool, None, list, dict): {exc}") from None


def write(path, kind, fingerprint, trees, fields):
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : the file (conventionally ``.npz``); its folder is created.
    kind : which loop writes it (``"r2dn_np.training.train checkpoint"``).
    fingerprint : dict of what must match to resume (JSON values).
    trees : ``{name: container or array or None}``; leaves of any backend, written as host
        arrays; a None tree is left out (an optional tree, :func:`read`'s ``optional``).
    fields : dict of the loop's own JSON fields; none named ``format``, ``format_version``,
        ``kind`` or ``fingerprint``.

    Raises
    ------
    TypeError, ValueError
        An argument malformed, named in the message.
    """
    path = _validate.path("path", path)
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"kind must be a non-empty str; got {kind!r}")
    if not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint must be a dict; got {type(fingerprint).__name__}")
    if not isinstance(trees, dict):
        raise TypeError(f"trees must be a dict of name to container; got {type(trees).__name__}")
    if not isinstance(fields, dict):
        raise TypeError(f"fields must be a dict; got {type(fields).__name__}")
    taken = sorted(set(fields) & set(_RESERVED))
    if taken:
        raise ValueError(f"fields must not use the reserved name {taken[0]!r}")
    arrays = {}
    for name, container in trees.items():
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"trees: name {name!r} must be a non-empty str without '.'")
        for leaf_path, leaf in tree.paths(container):
            arrays[f"{name}.{leaf_path}" if leaf_path else name] = np.array(to_numpy(leaf))
    meta = {"format": io.FORMAT, "format_version": io.FORMAT_VERSION, "kind": kind,
            "fingerprint": _json(fingerprint, "fingerprint"), **_json(fields, "fields")}
    io.write_arrays(path, arrays, meta)


def differences(found, expected, where=""):
    """The dotted keys at which two JSON values differ, each with both values
    (``"options.lr: 0.01 in the file, 0.5 here"``), dicts compared key by key."""
    if isinstance(found, dict) and isinstance(expected, dict):
        out = []
        for key in sorted(set(found) | set(expected), key=str):
            at = f"{where}.{key}" if where else str(key)
            if key not in found:
                out.append(f"{at}: absent in the file")
            elif key not in expected:
                out.append(f"{at}: in the file only")
            else:
                out += differences(found[key], expected[key], at)
        return out
    if found == expected:
        return []

    def short(v):
        text = json.dumps(v)
        return text if len(text) <= 40 else text[:37] + "..."

    return [f"{where or 'fingerprint'}: {short(found)} in the file, {short(expected)} here"]


def read(path, kind, fingerprint, templates, *, fields=None, optional=(), xp=None):
    """Read a checkpoint written by :func:`write` for the same run.

    Parameters
    ----------
    path : the file.
    kind : the ``kind`` it must have been written with.
    fingerprint : the dict it must match exactly (compared as JSON values).
    templates : ``{name: container or array}``: every leaf of each tree must be in the file
        with the template leaf's shape and dtype, and finite.
    fields : ``{name: predicate}``: each of the loop's fields must be there and satisfy its
        predicate (:func:`count`, :func:`number`, or any callable).
    optional : names of ``templates`` that may be absent (read as None).
    xp : array namespace of the returned leaves; default NumPy.

    Returns
    -------
    Checkpoint(trees, fields): the trees rebuilt in the templates' container types, and every
    field of the loop's metadata.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    io.FormatError
        Naming ``path``: not a readable file (truncated, corrupt, another format version),
        another ``kind``, a different fingerprint (the keys that differ named), or an array or
        field missing or malformed (named).
    """
    path = _validate.path("path", path)
    arrays, meta = io.read_arrays(path)
    if meta.get("kind") != kind:
        raise io.FormatError(f"{path}: not a {kind} (its kind is {meta.get('kind')!r}); delete it or choose "
                             "another output folder")
    found = meta.get("fingerprint")
    if not isinstance(found, dict):
        raise io.FormatError(f"{path}: checkpoint field 'fingerprint' is missing or malformed")
    differ = differences(found, _json(fingerprint, "fingerprint"))
    if differ:
        more = f"; {len(differ) - 4} more" if len(differ) > 4 else ""
        raise io.FormatError(f"{path}: a checkpoint of a different run ({'; '.join(differ[:4])}{more}); "
                             "delete it or choose another output folder")
    trees = {}
    for name, template in templates.items():
        keys = [f"{name}.{p}" if p else name for p, _ in tree.paths(template)]
        if name in optional and not any(k in arrays for k in keys):
            trees[name] = None
            continue
        values = {}
        for key, (leaf_path, ref) in zip(keys, tree.paths(template)):
            got = arrays.get(key)
            shape, dtype = tuple(ref.shape), np.dtype(ref.dtype)  # of any backend, without a copy to the host
            if got is None:
                raise io.FormatError(f"{path}: checkpoint array {key!r} is missing")
            if got.shape != shape or got.dtype != dtype:
                raise io.FormatError(f"{path}: checkpoint array {key!r} is {got.dtype} {got.shape}, "
                                     f"expected {dtype} {shape}")
            if got.dtype.kind == "f" and not np.all(np.isfinite(got)):
                raise io.FormatError(f"{path}: checkpoint array {key!r} contains NaN or Inf")
            values[leaf_path] = got if xp is None else xp.asarray(got)
        trees[name] = tree.from_paths(template, values)
    for key, check in (fields or {}).items():
        try:
            ok = key in meta and bool(check(meta[key]))
        except (TypeError, ValueError, KeyError, IndexError):
            ok = False
        if not ok:
            raise io.FormatError(f"{path}: checkpoint field {key!r} is missing or malformed")
    return Checkpoint(trees, {k: v for k, v in meta.items() if k not in _RESERVED})
