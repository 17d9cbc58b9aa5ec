"""Matrix products through cuBLAS called directly, for CUDA-graph capture on CuPy.

CuPy refuses any cuBLAS call while its stream is being captured into a CUDA graph (its
``cublas.setStream`` raises ``NotImplementedError``), although cuBLAS itself supports capture
(cuBLAS documentation, "CUDA Graphs Support"). So while ``graph.captured`` records a pass,
``kernels.matmul`` sends products here: the same cuBLAS library CuPy loaded, CuPy's handle,
the current stream, one ``gemm`` call through ``ctypes``.

Layout: a C-order (row-major) ``(M, K)`` array is the column-major ``(K, M)`` matrix of the
same memory, so ``C = A B`` in row-major is ``C^T = B^T A^T`` in column-major, which is one
``gemm`` with ``m = N, n = M`` and each operand transposed or not by its own order (C order:
as is; F order, e.g. a ``.mT`` view: transposed). Other layouts are copied to C order first.
"""

from __future__ import annotations

import ctypes

__all__ = ["matmul"]

_OP_N, _OP_T = 0, 1
_POINTER_MODE_HOST = 0
_LIB = []


def _library():
    if not _LIB:
        import cupy

        cupy.cuda.device.get_cublas_handle()  # makes CuPy load cuBLAS, so its path is mapped
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libcublas.so" in line}
        if not paths:
            raise RuntimeError("cannot find the cuBLAS library CuPy loaded in /proc/self/maps")
        lib = ctypes.CDLL(sorted(paths)[0])
        p, i = ctypes.c_void_p, ctypes.c_int
        for name in ("cublasSgemm_v2", "cublasDgemm_v2"):
            fn = getattr(lib, name)
            fn.argtypes = [p, i, i, i, i, i, p, p, i, p, i, p, p, i]
            fn.restype = i
        lib.cublasSetStream_v2.argtypes = [p, p]
        lib.cublasSetStream_v2.restype = i
        lib.cublasSetPointerMode_v2.argtypes = [p, i]
        lib.cublasSetPointerMode_v2.restype = i
        _LIB.append(lib)
    return _LIB[0]


def _operand(a):
    """``(array, op, ld)`` of a 2-D operand as column-major cuBLAS sees its memory."""
    import cupy

    if a.flags.c_contiguous:
        return a, _OP_N, max(1, int(a.shape[1]))
    if a.flags.f_contiguous:
        return a, _OP_T, max(1, int(a.shape[0]))
    return cupy.ascontiguousarray(a), _OP_N, max(1, int(a.shape[1]))


def matmul(a, b):
    """``a @ b`` for CuPy float32/float64 arrays of one dtype, ``a`` 1-D or 2-D and ``b`` 2-D,
    as one cuBLAS ``gemm`` on the current stream. Returns a new C-order array."""
    import cupy

    vector = a.ndim == 1
    if vector:
        a = a.reshape(1, -1)
    M, K = (int(s) for s in a.shape)
    N = int(b.shape[1])
    out = cupy.empty((M, N), dtype=a.dtype)
    if M and N:
        if K == 0:
            out.fill(0)
        else:
            lib = _library()
            A, op_a, lda = _operand(a)
            B, op_b, ldb = _operand(b)
            if a.dtype == cupy.float64:
                gemm, scalar = lib.cublasDgemm_v2, ctypes.c_double
            else:
                gemm, scalar = lib.cublasSgemm_v2, ctypes.c_float
            one, zero = scalar(1.0), scalar(0.0)
            handle = cupy.cuda.device.get_cublas_handle()
            status = lib.cublasSetStream_v2(handle, cupy.cuda.get_current_stream().ptr)
            status = status or lib.cublasSetPointerMode_v2(handle, _POINTER_MODE_HOST)
            status = status or gemm(handle, op_b, op_a, N, M, K, ctypes.byref(one), B.data.ptr, ldb,
                                    A.data.ptr, lda, ctypes.byref(zero), out.data.ptr, N)
            if status:
                raise RuntimeError(f"cuBLAS gemm failed with status {status}")
    return out.reshape(N) if vector else out
