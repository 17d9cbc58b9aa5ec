"""Saving and loading a model's config and parameters as one ``.npz`` file.

The file holds every array under its dotted container path (``layers.0.XY``) and a JSON
metadata record under the key ``__meta__`` (format version, model kind, config, dtype,
the shape and dtype of every field). Loading never unpickles (``allow_pickle=False``),
rebuilds the container from the model's own ``init`` as a template, and checks every
field against it, so a file is either loaded exactly as saved or refused with an error
naming the file and the field. Writes go to a temporary file that is renamed over the
target, so an interrupted save leaves the previous file intact.

Examples
--------
>>> import tempfile, os
>>> from r2dn_np.interface import io
>>> from r2dn_np import lbdn
>>> cfg = lbdn.Config(2, 3, hidden=(4,))
>>> params = lbdn.init(cfg, seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
>>> io.save(path, cfg, params)
>>> loaded = io.load(path)
>>> loaded.config == cfg
True
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import zipfile
from typing import NamedTuple

import numpy as np

from ..core import _validate, tree
from ..core.backend import namespace, to_numpy
from . import registry

__all__ = ["FormatError", "Loaded", "save", "load", "write_arrays", "read_arrays", "read_npz", "atomic_write"]

FORMAT = "r2dn_np"
FORMAT_VERSION = 1
_META_KEY = "__meta__"

class FormatError(ValueError):
    """A file is not a valid r2dn_np parameter file, or does not match its model."""


class Loaded(NamedTuple):
    config: object
    params: object
    metadata: dict


def write_arrays(path, arrays, meta):
    """Atomically write ``{name: ndarray}`` plus a JSON-able ``meta`` dict to ``path``."""
    path = os.fspath(path)
    if _META_KEY in arrays:
        raise ValueError(f"array name {_META_KEY!r} is reserved")
    payload = {k: np.asarray(v, order="C") for k, v in arrays.items()}
    payload[_META_KEY] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    with atomic_write(path) as fh:
        np.savez(fh, **payload)


def _check_folder(path, folder):
    """A clear error where a part of ``path``'s folder is a file (makedirs would raise a bare
    FileExistsError or NotADirectoryError naming only that part)."""
    part = folder
    while part and not os.path.exists(part):
        parent = os.path.dirname(part)
        if parent == part:
            break
        part = parent
    if part and os.path.exists(part) and not os.path.isdir(part):
        raise NotADirectoryError(errno.ENOTDIR, f"cannot write {path}: {part} is a file, not a folder", path)


def _json_problem(value, where):
    """The path (``metadata['a'][0]``) and type of the first value that JSON cannot hold, or None."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                return f"{where} has a key of type {type(k).__name__}"
            found = _json_problem(v, f"{where}[{k!r}]")
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _json_problem(v, f"{where}[{i}]")
            if found:
                return found
        return None
    return f"{where} is a {type(value).__name__}"


@contextlib.contextmanager
def atomic_write(path):
    """A binary file handle whose content replaces ``path`` only when the block finishes;
    an error or interruption inside it leaves any previous file at ``path`` untouched."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    _check_folder(path, folder)
    os.makedirs(folder, exist_ok=True)
    # in the target's folder, so the final rename cannot cross file systems
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_npz(path):
    """Every array of a ``.npz`` archive as ``{name: ndarray}``, never unpickling.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    FormatError
        Not a readable ``.npz`` archive (a ``.npy`` file, a corrupt zip, an object array).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise FormatError(f"{path}: is a folder, not a .npz file")
    if not zipfile.is_zipfile(path):  # np.load would read a .npy file instead
        raise FormatError(f"{path}: not a readable .npz file (not a zip archive, which np.savez writes)")
    try:
        # open the file ourselves: np.load leaks its handle when the zip is corrupt
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            return {k: np.array(data[k]) for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise FormatError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None


def read_arrays(path):
    """Read a file written by :func:`write_arrays`. Returns ``(arrays, meta)``."""
    arrays = read_npz(path)
    if _META_KEY not in arrays:
        raise FormatError(f"{path}: missing the {_META_KEY!r} metadata record; not an r2dn_np file")
    try:
        meta = json.loads(arrays.pop(_META_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: metadata record is corrupt ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FormatError(f"{path}: metadata does not describe an r2dn_np file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise FormatError(
            f"{path}: format_version {meta.get('format_version')!r} is not supported "
            f"(this library reads version {FORMAT_VERSION})"
        )
    return arrays, meta


def save(path, config, params, metadata=None):
    """Save a model config and its parameter container (any backend) to ``path``.

    Parameters
    ----------
    path : str or os.PathLike, conventionally ending in ``.npz``.
    config : a model ``Config`` (has ``model``, ``to_dict``).
    params : the model's ``Direct`` container.
    metadata : optional JSON-serialisable dict stored alongside (for example training info).

    Raises
    ------
    TypeError, ValueError
        Before anything is written, for whatever :func:`load` would refuse: a config of no
        known model, parameters of another model or config (a field missing, extra or of
        another shape), dtypes other than one of float32 / float64, NaN or Inf.
    """
    model = getattr(config, "model", None)
    if not isinstance(model, str) or model not in registry.MODELS or not hasattr(config, "to_dict"):
        raise TypeError(f"config must be the Config of one of the models {sorted(registry.MODELS)}; "
                        f"got {type(config).__name__}")
    module = registry.module(model)
    if not isinstance(config, module.Config):
        raise TypeError(f"config must be a {model}.Config; got {type(config).__name__}")
    template = module.init(config, seed=0, backend="numpy")
    _validate.container("params", params, template)
    named = tree.paths(params)
    dtypes = {str(to_numpy(a).dtype) for _, a in named}
    if not dtypes <= {"float32", "float64"}:
        raise TypeError(f"params must be float32 or float64; got {sorted(dtypes)}")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None; got {type(metadata).__name__}")
    problem = _json_problem(metadata, "metadata")
    if problem:
        raise TypeError(f"metadata must hold only JSON values (str, number, bool, None, list, dict); {problem} "
                        "(convert arrays with .tolist())")
    path = _validate.path("path", path)
    arrays = {name: np.array(to_numpy(a)) for name, a in named}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": config.model,
        "config": config.to_dict(),
        "dtype": dtypes.pop(),
        "fields": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in arrays.items()},
        "metadata": metadata or {},
    }
    write_arrays(path, arrays, meta)


def load(path, backend=None):
    """Load what :func:`save` wrote. Returns ``Loaded(config, params, metadata)``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    FormatError
        The file is corrupt, truncated, of another format version, names an unknown model,
        or a field is missing, unexpected, or of the wrong shape or dtype.
    """
    path = os.fspath(path)
    arrays, meta = read_arrays(path)
    model = meta.get("model")
    if model is None and "checkpoint" in str(meta.get("kind", "")):
        raise FormatError(f"{path}: is a training checkpoint, not a model; use the model.npz beside it")
    if not isinstance(model, str) or model not in registry.MODELS:
        raise FormatError(f"{path}: unknown model kind {model!r}; expected one of {sorted(registry.MODELS)}")
    module = registry.module(model)
    try:
        config = module.Config.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{path}: field 'config' is invalid for model {model!r}: {exc}") from None
    dtype = meta.get("dtype")
    if dtype not in ("float32", "float64"):
        raise FormatError(f"{path}: field 'dtype' must be float32 or float64; got {dtype!r}")
    template = module.init(config, seed=0, backend="numpy", dtype=dtype)
    expected = dict(tree.paths(template))
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise FormatError(f"{path}: missing field {missing[0]!r} for model {model!r}")
    extra = sorted(set(arrays) - set(expected))
    if extra:
        raise FormatError(f"{path}: unexpected field {extra[0]!r} for model {model!r}")
    for name, ref in expected.items():
        got = arrays[name]
        if got.shape != ref.shape:
            raise FormatError(f"{path}: field {name!r} has shape {got.shape}, expected {tuple(ref.shape)}")
        if got.dtype != ref.dtype:
            raise FormatError(f"{path}: field {name!r} has dtype {got.dtype}, expected {ref.dtype}")
        if not np.all(np.isfinite(got)):
            raise FormatError(f"{path}: field {name!r} contains NaN or Inf")
    xp = namespace(backend)
    params = tree.from_paths(template, {n: xp.asarray(a) for n, a in arrays.items()})
    return Loaded(config, params, meta.get("metadata", {}))
