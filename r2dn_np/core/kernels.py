"""In-place kernels for the time loop's hot path: each writes its result into a given buffer.

A time step of a small model is dozens of array calls, and at batch 64 each costs more in Python
dispatch and in fresh temporaries than in arithmetic (``docs/benchmarks.md``, "Per-step floor").
NumPy and CuPy take ``out=``, so there the fused forms below skip the temporaries; any other
namespace gets the plain array-API expression, assigned into ``out``. Both forms do the same
floating-point operations in the same order, so their results are bitwise equal
(``tests/test_kernels.py``). Every function returns ``out``. ``m`` is ``native(out)``, looked up
once by the caller (the lookup costs more than a small kernel).

- ``bias_act(m, activation, z, bias, out)``: ``out = sigma(z + bias)``; ``z`` is scratch and is
  overwritten.
- ``times_slope(m, activation, d, s, out)``: ``out = d * sigma'`` with the slope recovered from
  the output ``s = sigma(z)`` (``activations.slope_from_output``); ``out`` may be ``d``.
- ``single_blas(a)``: a context for a pass over arrays like ``a`` (a parameter map, a rollout, a
  BPTT): on NumPy, BLAS on one thread (NumPy's and SciPy's, which the compiled loops call). A
  step's products are too small to gain from threads, and at the sizes people train with even the
  map's factorisations and the weight gradients over all T*B rows gained less from a second
  thread than they lost whenever another process held the other core (4-5x slower under load;
  ``docs/benchmarks.md``, "Defaults"). A second core is used by sharding the batch over processes
  instead (``parallel.py``).
- ``matmul(a, b)``: ``a @ b``. The time loops (``feedback``, ``lbdn``, ``equilibrium``) write their
  products this way so that, while ``graph.captured`` records a pass on CuPy (inside
  :func:`direct_blas`), they go to cuBLAS directly (``_cublas``), which CuPy's own product refuses
  during capture. Everywhere else it is ``a @ b``.
"""

from __future__ import annotations

import contextlib
import sys
import threading

from array_api_compat import array_namespace, is_cupy_array, is_numpy_array

from . import activations

__all__ = ["native", "bias_act", "times_slope", "single_blas", "matmul", "direct_blas"]

_LOCAL = threading.local()
_BLAS = {}  # "controller": threadpoolctl's view of the BLAS libraries, made once


def native(a):
    """The array library's own module when it takes ``out=`` (NumPy, CuPy), else None."""
    if is_numpy_array(a) or is_cupy_array(a):
        return sys.modules[type(a).__module__.partition(".")[0]]
    return None


def bias_act(m, activation, z, bias, out):
    if m is None:
        xp = array_namespace(out)
        out[...] = activations.apply(activation, z + bias, xp)
        return out
    m.add(z, bias, out=z)
    if activation == "relu":
        m.maximum(z, 0.0, out=out)
    elif activation == "tanh":
        m.tanh(z, out=out)
    elif activation == "sigmoid":  # 0.5 + 0.5 * tanh(0.5 * z), as activations writes it
        m.multiply(z, 0.5, out=z)
        m.tanh(z, out=out)
        m.multiply(out, 0.5, out=out)
        m.add(out, 0.5, out=out)
    else:
        out[...] = activations.apply(activation, z, m)
    return out


def times_slope(m, activation, d, s, out):
    if m is None:
        xp = array_namespace(out)
        out[...] = d * activations.slope_from_output(activation, s, xp)
        return out
    if activation == "relu":  # d * 1.0 or d * 0.0, as d * astype(s > 0)
        m.multiply(d, s > 0.0, out=out)
    elif activation == "tanh":
        t = m.multiply(s, s)
        m.subtract(1.0, t, out=t)
        m.multiply(d, t, out=out)
    else:
        m.multiply(d, activations.slope_from_output(activation, s, m), out=out)
    return out


@contextlib.contextmanager
def _one_thread():
    # nested passes (value_and_grad runs the map, the rollout, BPTT and the VJP) set it once
    depth = getattr(_LOCAL, "single_blas", 0)
    if depth:
        _LOCAL.single_blas = depth + 1
        try:
            yield
        finally:
            _LOCAL.single_blas = depth
        return
    controller = _BLAS.get("controller")
    if controller is None:
        # load the BLAS that SciPy (and Numba through it) calls first, or it would escape the limit
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController

        controller = _BLAS["controller"] = ThreadpoolController()
    with controller.limit(limits=1, user_api="blas"):
        _LOCAL.single_blas = 1
        try:
            yield
        finally:
            _LOCAL.single_blas = 0


def single_blas(a):
    return _one_thread() if is_numpy_array(a) else contextlib.nullcontext()


def matmul(a, b):
    if getattr(_LOCAL, "direct", False) and is_cupy_array(a):
        from . import _cublas

        return _cublas.matmul(a, b)
    return a @ b


@contextlib.contextmanager
def direct_blas():
    """Within this block (in this thread), :func:`matmul` on CuPy arrays calls cuBLAS directly."""
    previous = getattr(_LOCAL, "direct", False)
    _LOCAL.direct = True
    try:
        yield
    finally:
        _LOCAL.direct = previous
