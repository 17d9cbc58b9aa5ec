"""Small helpers shared by the tests."""

import numpy as np
import pytest

from r2dn_np.core.backend import to_numpy


def put(xp, a):
    """Float64 host array -> namespace ``xp``."""
    return xp.asarray(np.asarray(a, dtype=np.float64))


def host(x):
    return np.asarray(to_numpy(x))


def examples_for(xp, n):
    """Hypothesis examples on backend ``xp``. array_api_strict is about eight times slower and
    is there to prove portability (the maths is checked in full on numpy), so it gets fewer."""
    return max(4, n // 5) if "array_api_strict" in getattr(xp, "__name__", "") else n


def cupy_or_skip():
    """CuPy's array-API namespace; skips the test, saying why, where there is no GPU."""
    try:
        import cupy
    except ImportError:
        pytest.skip("cupy backend: CuPy is not installed (pip install 'r2dn_np[gpu]')")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no device")
    except Exception:
        pytest.skip("cupy backend: no CUDA device on this machine")
    import array_api_compat.cupy as xp

    return xp
