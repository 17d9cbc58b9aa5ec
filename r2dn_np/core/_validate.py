"""Checks for public entry points: each error names the argument and what was expected."""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import threading

import numpy as np
from array_api_compat import array_namespace

_LOCAL = threading.local()


@contextlib.contextmanager
def values_unchecked():
    """Within this block, checks that read array values back from the device (NaN/Inf, a loss
    value) are skipped; types, shapes and dtypes are still checked. For ``graph.captured``, which
    records a call as a CUDA graph, where any host sync would end the recording: it checks the
    values of each replay itself."""
    previous = getattr(_LOCAL, "unchecked", False)
    _LOCAL.unchecked = True
    try:
        yield
    finally:
        _LOCAL.unchecked = previous


def _values_checked():
    return not getattr(_LOCAL, "unchecked", False)


def positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 1; got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value}")
    return int(value)


def nonnegative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= 0; got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {value}")
    return int(value)


def positive_float(name, value):
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{name} must be a positive finite number; got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive finite number; got {value!r}") from None
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return out


def seed(name, value):
    """A seed for ``np.random.default_rng``: a non-negative integer (not a bool, float or None)."""
    return nonnegative_int(name, value)


def _memory_bytes():
    """The machine's physical memory in bytes (1 TiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 2**40


def dimension(name, value):
    """A model size: an integer >= 1 small enough that one ``value x value`` float64 matrix fits
    in this machine's memory (every model size enters such a matrix), so an absurd size such as
    ``10**12`` is refused here, naming it, instead of in NumPy's MemoryError."""
    value = positive_int(name, value)
    allocation(f"{name}={value}", f"a {name} x {name} float64 matrix", (value, value))
    return value


def dimensions(name, value):
    """:func:`positive_ints`, each entry a :func:`dimension`."""
    return tuple(dimension(f"{name}[{i}]", v) for i, v in enumerate(positive_ints(name, value)))


def allocation(name, what, shape, itemsize=8):
    """Refuse, naming ``name`` and the sizes, an array of ``shape`` (``what`` says which) that
    would not fit in this machine's memory, before it is allocated."""
    need = math.prod(int(n) for n in shape) * itemsize
    have = _memory_bytes()
    if need > have:
        raise ValueError(f"{name} is too large: {what} would need {need:.3g} bytes, more than this "
                         f"machine's memory ({have:.3g} bytes)")


def positive_ints(name, value):
    """A sequence (tuple, list, range or 1-d integer array) of integers >= 1, as a tuple.

    A string is refused although it is a sequence: ``"16"`` would read as ``(1, 6)``.
    """
    if isinstance(value, (str, bytes)) or not (
        isinstance(value, (tuple, list, range)) or getattr(value, "ndim", None) == 1
    ):
        raise TypeError(f"{name} must be a tuple of integers >= 1; got {value!r}")
    return tuple(positive_int(f"{name}[{i}]", v) for i, v in enumerate(value))


def one_of(name, value, options):
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}; got {value!r}")
    return value


def _float32_or_64(xp, dtype):
    # float16 is a real floating dtype too, but nothing here is written or tested for it
    return dtype == xp.float32 or dtype == xp.float64


def array(name, x, shape, *, like=None, finite=True, like_name="the model parameters"):
    """Check an array's type, shape (``None`` entries are free) and dtype, and that it is finite.

    ``shape`` entries may be ``(label, size)`` pairs so the message reads ``(T, B, nu=3)``.
    ``like`` is an array whose namespace and dtype ``x`` must share; ``like_name`` names it.
    """
    if type(x) is np.ndarray and (like is None or (type(like) is np.ndarray and x.dtype == like.dtype)) \
            and _float32_or_64(np, x.dtype) and x.ndim == len(shape):
        # NumPy's own checks, first: a controller checks a small x at every step, and looking the
        # namespace up costs more than the check
        for d, s in zip(x.shape, shape):
            n = s[1] if type(s) is tuple else s
            if n is not None and d != n:
                break
        else:
            if finite and _values_checked() and not np.isfinite(x).all():
                raise ValueError(f"{name} contains NaN or Inf")
            return x
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array; got {type(x).__name__}")
    expect = [s if isinstance(s, tuple) else (None, s) for s in shape]
    if len(x.shape) != len(expect) or any(
        n is not None and int(d) != n for d, (_, n) in zip(x.shape, expect)
    ):
        text = ", ".join(
            (f"{lab}={n}" if lab and n is not None else (lab or str(n) if n is not None else lab or "any"))
            for lab, n in expect
        )
        raise ValueError(f"{name} must have shape ({text}); got {tuple(x.shape)}")
    xp = array_namespace(x)
    if not _float32_or_64(xp, x.dtype):
        raise TypeError(f"{name} must be a float32 or float64 array; got dtype {x.dtype}")
    if like is not None:
        if array_namespace(like) is not xp:
            raise TypeError(
                f"{name} lives on a different backend ({xp.__name__}) from {like_name} "
                f"({array_namespace(like).__name__}); move it with r2dn_np.to_backend"
            )
        if x.dtype != like.dtype:
            raise TypeError(
                f"{name} has dtype {x.dtype} but {like_name} {'is' if like_name[-1] != 's' else 'are'} {like.dtype}; "
                "cast one of them"
            )
    if finite and _values_checked() and not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def _is_namedtuple(node):
    return isinstance(node, tuple) and hasattr(node, "_fields")


def _type_name(node):
    kind = type(node)
    return f"{kind.__module__.rsplit('.', 1)[-1]}.{kind.__qualname__}"


def _walk(name, value, template, leaves, optional):
    """Match ``value`` against ``template`` node by node; collect ``(path, leaf, shape)``.
    With ``optional``, a None in ``value`` stands for zeros of the template's shape."""
    if template is None:
        if value is not None:
            raise ValueError(f"{name} must be None for this config (the model has no such parameter); "
                             f"got {type(value).__name__}")
        return
    if value is None:
        if optional:
            return
        raise ValueError(f"{name} is missing (None); expected an array of shape {tuple(template.shape)}"
                         if not isinstance(template, tuple) else f"{name} is missing (None)")
    if _is_namedtuple(template):
        # compare by name and fields, not identity, so a reloaded module's containers still match
        if not (_is_namedtuple(value) and type(value).__qualname__ == type(template).__qualname__
                and type(value).__module__ == type(template).__module__
                and value._fields == template._fields):
            raise TypeError(f"{name} must be of type {_type_name(template)}; got {_type_name(value)}")
        for field, v, t in zip(template._fields, value, template):
            _walk(f"{name}.{field}", v, t, leaves, optional)
        return
    if isinstance(template, (tuple, list)):
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{name} must be a tuple of {len(template)}; got {type(value).__name__}")
        if len(value) != len(template):
            raise ValueError(f"{name} must have {len(template)} entries for this config; got {len(value)}")
        for i, (v, t) in enumerate(zip(value, template)):
            _walk(f"{name}[{i}]", v, t, leaves, optional)
        return
    leaves.append((name, value, tuple(int(s) for s in template.shape)))


def container(name, value, template, *, finite=True, optional=False):
    """Check a parameter container against ``template`` (the same model's container, e.g. from
    ``init``): the same container types, ``None`` exactly where the template has ``None``, every
    array of exactly the template's shape (no broadcasting), one real floating dtype and one
    namespace for all, and (with ``finite``) no NaN or Inf. Errors name the field as
    ``direct.phi.layers[0].XY``. ``optional=True`` accepts None for any part (a cotangent's
    zero). Returns the arrays' namespace.
    """
    leaves = []
    _walk(name, value, template, leaves, optional)
    if not leaves:
        return None
    xp = ref_dtype = ref_type = None
    for path, leaf, shape in leaves:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            raise TypeError(f"{path} must be an array of shape {shape}; got {type(leaf).__name__}")
        if tuple(leaf.shape) != shape:
            raise ValueError(f"{path} must have shape {shape}; got {tuple(leaf.shape)}")
        # the namespace lookup is the costly part of this loop: once per array type
        leaf_xp = xp if type(leaf) is ref_type else array_namespace(leaf)
        if xp is None:
            ref_type = type(leaf)
            xp, ref_dtype, ref_path = leaf_xp, leaf.dtype, path
            if not _float32_or_64(xp, leaf.dtype):
                raise TypeError(f"{path} must be a float32 or float64 array; got dtype {leaf.dtype}")
        elif leaf_xp is not xp:
            raise TypeError(f"{path} lives on a different backend ({leaf_xp.__name__}) from {ref_path} "
                            f"({xp.__name__})")
        elif leaf.dtype != ref_dtype:
            raise TypeError(f"{path} has dtype {leaf.dtype} but {ref_path} has {ref_dtype}; "
                            "all parameters must share one dtype")
    if finite and _values_checked():
        # one reduction and one host sync for the whole tree; only on failure look per field
        # (a sum that overflows, or meets +Inf and -Inf, must not warn: it only sends us looking)
        with np.errstate(over="ignore", invalid="ignore"):
            total = sum(xp.sum(leaf) for _, leaf, _ in leaves)
        if not bool(xp.isfinite(total)):
            for path, leaf, _ in leaves:
                if not bool(xp.all(xp.isfinite(leaf))):
                    raise ValueError(f"{path} contains NaN or Inf")
    return xp


def loss_output(out, Y):
    """What a user's ``loss(Y)`` returned: ``(value, dY)``, a finite scalar and a finite ``dY`` of
    exactly ``Y``'s shape and dtype. Returns ``(value, dY)``."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"loss must return a pair (value, dY); got {type(out).__name__}")
    value, dY = out
    if isinstance(value, (bool, str, bytes)) or not (
        isinstance(value, numbers.Real) or getattr(value, "shape", None) == ()
    ):
        got = f"shape {tuple(value.shape)}" if hasattr(value, "shape") else type(value).__name__
        raise TypeError(f"loss must return a scalar value (a float or 0-d array); got {got}")
    if _values_checked() and not math.isfinite(float(value)):
        xp = array_namespace(Y)
        if not bool(xp.all(xp.isfinite(Y))):
            raise ValueError("the model output Y contains NaN or Inf (finite parameters gave a non-finite "
                             f"model), so loss returned {float(value)!r}")
        raise ValueError(f"loss returned a non-finite value {float(value)!r}")
    array("dY returned by loss", dY, tuple(int(s) for s in Y.shape), like=Y, like_name="the model output Y")
    return value, dY


def real(name, value, low=-math.inf, high=math.inf, *, low_open=False, high_open=False):
    """A finite real number (not a bool or string) in the interval from ``low`` to ``high``, as a float;
    ``low_open``/``high_open`` exclude an end. The message names the interval: ``in (0, 1]``."""
    text = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if isinstance(value, (bool, str, bytes)) or not (
        isinstance(value, numbers.Real) or getattr(value, "shape", None) == ()
    ):
        raise TypeError(f"{name} must be a finite number in {text}; got {value!r}")
    out = float(value)
    if not (math.isfinite(out) and (low < out if low_open else low <= out)
            and (out < high if high_open else out <= high)):
        raise ValueError(f"{name} must be a finite number in {text}; got {value!r}")
    return out


def number_dict(name, value, keys):
    """A dict with exactly the string ``keys``, each a finite real number; returns ``{key: float}``
    in the order of ``keys``. Errors name the dict and the key (``params['m']``)."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict with the keys {list(keys)}; got {type(value).__name__}")
    missing = [k for k in keys if k not in value]
    if missing:
        raise ValueError(f"{name} lacks the key {missing[0]!r}; expected the keys {list(keys)}")
    extra = [k for k in value if k not in keys]
    if extra:
        raise ValueError(f"{name} has an unknown key {extra[0]!r}; expected the keys {list(keys)}")
    return {k: real(f"{name}[{k!r}]", value[k]) for k in keys}


def host_array(name, x, ndim, min_len=1, *, text=None):
    """A real, finite NumPy array (or array-like) of ``ndim`` dimensions (None: one or more) whose
    last axis holds at least ``min_len`` entries, as float64. ``text`` describes the expected shape
    in messages (say so when ``min_len > 1``)."""
    text = text or (f"{ndim}-D" if ndim is not None else "(..., n)")
    try:
        a = np.asarray(x)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real {text} array; got {type(x).__name__}") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real {text} array; got dtype {a.dtype}")
    if (a.ndim != ndim if ndim is not None else a.ndim < 1) or (a.ndim and a.shape[-1] < min_len):
        raise ValueError(f"{name} must be a {text} array; got shape {a.shape}")
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{name} contains NaN or Inf (first at index {tuple(int(i) for i in bad)})")
    return a


def text(path, error=ValueError):
    """The text of the UTF-8 (or ASCII) file ``path``, a leading byte-order mark dropped; a file in
    another encoding raises ``error`` naming the file, the line and the byte (not a bare
    UnicodeDecodeError)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw.count(b"\n", 0, start) + 1
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        raise error(f"{path}: line {line}, column {column}: byte 0x{raw[start]:02x} is not UTF-8 text; "
                    "save the file as UTF-8 (or ASCII)") from None


def text_lines(path, error=ValueError):
    """The lines of :func:`text`."""
    return text(path, error).splitlines()


def path(name, value):
    """A file-system path (``str`` or ``os.PathLike``), as a ``str``."""
    import os

    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike); got {type(value).__name__}")
    out = os.fspath(value)
    if not isinstance(out, str) or not out:
        raise ValueError(f"{name} must be a non-empty path; got {value!r}")
    return out


def flag(name, value):
    """A bool (or NumPy bool), never a string such as ``"False"``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def callable_or_none(name, value):
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None; got {type(value).__name__}")
    return value
