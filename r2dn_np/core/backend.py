"""Where arrays are created: the only module that knows backend names or imports CuPy.

Everything downstream finds its namespace from its arrays with :func:`array_namespace`
and uses only functions of the Python array API standard, so the same code runs on
NumPy, CuPy and ``array_api_strict``.
"""

from __future__ import annotations

import os

import numpy as np
from array_api_compat import array_namespace, is_cupy_array, is_numpy_array

from . import tree

__all__ = [
    "BackendError",
    "ENV_VAR",
    "array_namespace",
    "asarray",
    "namespace",
    "resolve_dtype",
    "to_backend",
    "to_numpy",
]

ENV_VAR = "R2DN_BACKEND"
BACKENDS = ("numpy", "cupy")
_GPU_HINT = "install it with: pip install 'r2dn_np[gpu]'"


class BackendError(RuntimeError):
    """The requested backend cannot be used on this machine."""


def namespace(backend=None):
    """Return the array namespace for a backend.

    Parameters
    ----------
    backend : {"numpy", "cupy"}, an array namespace module, or None
        None reads the environment variable ``R2DN_BACKEND`` and falls back to
        ``"numpy"``. A module (for example ``array_api_strict``) is used as given;
        tests use this to run the library on a strict implementation of the standard.

    Raises
    ------
    BackendError
        ``"cupy"`` was asked for but CuPy is not installed or sees no CUDA device.
    ValueError
        ``backend`` is not a known name.
    """
    if backend is None:
        backend = os.environ.get(ENV_VAR, "").strip() or "numpy"
    if not isinstance(backend, str):
        if not hasattr(backend, "asarray"):
            raise ValueError(
                f"backend must be one of {BACKENDS} or an array namespace module; got {backend!r}"
            )
        return array_namespace(backend.asarray(0.0))
    if backend == "numpy":
        import array_api_compat.numpy as xp

        return xp
    if backend == "cupy":
        return _cupy_namespace()
    raise ValueError(
        f"backend must be one of {BACKENDS} (or set {ENV_VAR}); got {backend!r}"
    )


def _cupy_namespace():
    try:
        import cupy
    except ImportError as exc:
        raise BackendError(f"backend='cupy' needs CuPy, which is not installed; {_GPU_HINT}") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise BackendError(
            f"backend='cupy': CuPy is installed but no CUDA device is usable ({exc}); "
            "use backend='numpy' on this machine"
        ) from exc
    if count < 1:
        raise BackendError(
            "backend='cupy': CuPy is installed but no CUDA device is visible; "
            "use backend='numpy' on this machine"
        )
    import array_api_compat.cupy as xp

    return xp


def resolve_dtype(xp, dtype):
    """Map ``"float32"``/``"float64"`` (or a dtype object) to the namespace's float dtype."""
    if isinstance(dtype, str):
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:  # a non-NumPy namespace's dtype object
            name = str(dtype)
    name = {"float": "float64", "double": "float64", "single": "float32"}.get(name, name)
    if name.endswith("float64"):
        return xp.float64
    if name.endswith("float32"):
        return xp.float32
    raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")


def to_numpy(x):
    """A host NumPy copy (or view) of an array from any supported backend."""
    if is_numpy_array(x):
        return x
    if is_cupy_array(x):
        return x.get()
    return np.from_dlpack(x)


def asarray(host, xp, dtype=None):
    """Place a NumPy array in namespace ``xp`` (with an optional float dtype)."""
    out = xp.asarray(host)
    if dtype is not None:
        out = xp.astype(out, resolve_dtype(xp, dtype))
    return out


def to_backend(params, backend):
    """Copy every array of a parameter container to another backend, keeping dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> from r2dn_np.core.backend import to_backend
    >>> out = to_backend((np.ones(2), None), "numpy")
    >>> type(out[0]).__name__, out[1]
    ('ndarray', None)
    """
    xp = namespace(backend)
    return tree.map(lambda leaf: xp.asarray(np.array(to_numpy(leaf), copy=True)), params)
