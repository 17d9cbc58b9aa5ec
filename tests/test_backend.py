import sys
import types

import array_api_strict
import numpy as np
import pytest

from r2dn_np.core import backend, tree
from r2dn_np import lbdn
from r2dn_np.core.backend import BackendError, namespace, to_backend

from helpers import host


def test_default_is_numpy(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    assert namespace().__name__ == "array_api_compat.numpy"


def test_environment_variable_selects(monkeypatch):
    monkeypatch.setenv(backend.ENV_VAR, "numpy")
    assert namespace().__name__ == "array_api_compat.numpy"
    monkeypatch.setenv(backend.ENV_VAR, "tpu")
    with pytest.raises(ValueError, match="R2DN_BACKEND"):
        namespace()


def test_unknown_backend():
    with pytest.raises(ValueError, match=r"backend must be one of \('numpy', 'cupy'\)"):
        namespace("torch")
    with pytest.raises(ValueError, match="backend must be one of"):
        namespace(42)


def test_module_namespace_accepted():
    assert namespace(array_api_strict) is array_api_strict


def test_cupy_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    with pytest.raises(BackendError, match=r"not installed.*pip install 'r2dn_np\[gpu\]'"):
        namespace("cupy")


def test_cupy_without_device_says_so(monkeypatch):
    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendError, match="no CUDA device is usable"):
        namespace("cupy")
    fake.cuda.runtime.getDeviceCount = lambda: 0
    with pytest.raises(BackendError, match="no CUDA device is visible"):
        namespace("cupy")


def test_resolve_dtype():
    xp = namespace("numpy")
    assert backend.resolve_dtype(xp, "float32") == xp.float32
    assert backend.resolve_dtype(xp, np.float64) == xp.float64
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        backend.resolve_dtype(xp, "int8")


def test_to_backend_round_trip(xp):
    cfg = lbdn.Config(2, 3, hidden=(4,))
    params = lbdn.init(cfg, 0, dtype="float32")
    moved = to_backend(params, xp)
    back = to_backend(moved, "numpy")
    for (n, a), (_, b), (_, c) in zip(tree.paths(params), tree.paths(moved), tree.paths(back)):
        assert backend.array_namespace(b) is backend.array_namespace(xp.asarray(0.0))
        assert c.dtype == a.dtype and np.array_equal(host(a), host(c)), n
    assert back.layers[-1].d is None  # absent parameters stay absent


def test_to_backend_copies():
    a = np.ones(3)
    b = to_backend(a, "numpy")
    b[0] = 5.0
    assert a[0] == 1.0
