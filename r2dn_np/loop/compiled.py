"""Compiled time loops for NumPy arrays (Numba), beside the array-API loop of ``feedback.py``.

At the batch sizes people train with (4-10 sequences), a time step of the array-API loop is some
40 NumPy calls whose dispatch costs several times their arithmetic (``docs/benchmarks.md``). Here
the recurrence of ``feedback._rollout`` and of ``feedback._segment_backward`` is one compiled call
per stretch of ``T`` steps, for the two static maps of the feedback models: the LBDN (R2DN) and the
REN's acyclic equilibrium layer. Everything outside the recurrence (input projections, outputs,
weight gradients) stays the array-API code it was, and the compiled loops fill the very buffers and
caches the array-API loops fill, so a pass can roll out on one path and backpropagate on the
other. ``feedback.py`` is the reference: ``tests/test_compiled.py`` holds the two paths equal to
1e-12 (float64) and 1e-5 (float32), and the gradient and protocol tests run on both.

Which path runs: the compiled one for NumPy arrays when Numba imports and the map supports it
(``static_map.Phi.compiled``), unless ``R2DN_JIT=0`` or ``jit=False`` is passed where the loop is
called. CuPy and array_api_strict arrays always take the array-API path. Compiled code is cached
on disk (``cache=True``, Numba's cache next to this file or in the user's cache folder); where no
folder is writable (a read-only install) the kernels compile in memory, with one warning.

The kernels themselves are in ``_compiled_kernels.py``, the only module that imports Numba. Every
product inside a step goes to BLAS (``np.dot`` into a buffer): measured against compiled loops it
won at every training size, 4 rows included. The loops run with BLAS on one thread
(``kernels.single_blas``, around every pass in ``feedback.py``).
"""

from __future__ import annotations

import os

import numpy as np

from ..core import allocator

__all__ = ["ENV", "available", "use", "rollout", "bptt", "step"]

ENV = "R2DN_JIT"
_ACTIVATIONS = {"relu": 0, "tanh": 1, "sigmoid": 2, "identity": 3}  # _compiled_kernels' codes

_kernels = None  # the kernel module once imported; False when Numba is missing


def _build():
    """The kernel module (``_compiled_kernels``), or None without Numba."""
    global _kernels
    if _kernels is None:
        try:
            import numba  # noqa: F401
        except ImportError:
            _kernels = False
        else:
            from . import _compiled_kernels

            _kernels = _compiled_kernels
    return _kernels or None


def available():
    """Whether the compiled loops can run here (Numba imports)."""
    return _build() is not None


def use(arrays, jit=None):
    """Whether a loop over these arrays takes the compiled path.

    ``jit``: True or False decides (True without Numba raises ``RuntimeError``); None means
    ``R2DN_JIT`` (``0`` turns compiled loops off), else on whenever Numba imports. Never for
    arrays other than NumPy's.
    """
    if jit is not None and not isinstance(jit, bool):
        raise TypeError(f"jit must be True, False or None; got {jit!r}")
    if jit is False or not all(type(a) is np.ndarray for a in arrays):
        return False
    if jit is None:
        env = os.environ.get(ENV, "").strip()
        if env not in ("", "0", "1"):
            raise ValueError(f"{ENV} must be 0 or 1; got {env!r}")
        if env == "0":
            return False
        return available()
    if not available():
        raise RuntimeError("jit=True needs Numba: pip install 'r2dn_np[fast]'")
    return True


def _c(a):
    return np.ascontiguousarray(a)


def _code(activation):
    return _ACTIVATIONS[activation]


def _lbdn_weights(W, b):
    """The LBDN's sizes and packed weights: ``dims``, ``W[k]^T`` and ``W[k]`` blocks, biases (zeros
    where the output layer has none) and whether the output has a bias."""
    dims = np.array([int(W[0].shape[1])] + [int(w.shape[0]) for w in W], dtype=np.int64)
    Wt = np.concatenate([w.T.reshape(-1) for w in W])
    Wn = np.concatenate([w.reshape(-1) for w in W])
    bias = np.concatenate([np.zeros(int(w.shape[0]), w.dtype) if bk is None else bk for w, bk in zip(W, b)])
    return dims, Wt, Wn, bias, b[-1] is not None


def _hidden_stack(dims, T, B, dtype):
    """One flat buffer for the hidden layers' ``(T, B, n)`` step caches, and the views of it."""
    flat = allocator.empty(np, (T * B * int(sum(dims[1:-1])),), dtype)
    views, start = [], 0
    for n in dims[1:-1]:
        views.append(flat[start:start + T * B * int(n)].reshape(T, B, int(n)))
        start += T * B * int(n)
    return flat, tuple(views)


def _lti(e, forward):
    """The LTI part's packed weights: ``(AC, a, F)`` forward, ``(AB1, a, F)`` backward. A dense A:
    ``[A^T C1^T]`` or ``[A B1]`` with an empty ``a`` and F; a factored A (``feedback.LowRank``,
    ``docs/derivations/r2dn.md`` (T8)): ``[V C1^T]`` and F = U^T, or ``[U B1]`` and F = V^T."""
    lr = getattr(e, "A_lowrank", None)
    if lr is None:
        nx = int(e.A.shape[0])
        M = np.concatenate([e.A.T, e.C1.T] if forward else [e.A, e.B1], axis=1)
        return M, np.empty(0, e.A.dtype), np.empty((0, nx), e.A.dtype)
    M = np.concatenate([lr.V, e.C1.T] if forward else [lr.U, e.B1], axis=1)
    return M, _c(lr.a), _c((lr.U if forward else lr.V).T)


def rollout(layer, activation, e, X, V, W, keep_cache=True):
    """The recurrence of ``feedback._rollout`` over prefilled buffers: ``X[0]`` the initial state
    and ``X[1:]``, ``V`` the input parts of ``x_{t+1}`` and ``v_t``; fills ``X``, ``V`` and ``W``
    and returns phi's stacked step caches (the structure the array-API loop builds), or None
    without ``keep_cache``."""
    from ..layers import equilibrium
    from .. import lbdn

    k = _build()
    T, B, nx = X.shape[0] - 1, X.shape[1], X.shape[2]
    nv = V.shape[2]
    B1T, sx = _c(e.B1.T), np.empty((B, nx), X.dtype)
    if layer == "equilibrium":
        AC, g = np.concatenate([e.A.T, e.C1.T], axis=1), np.empty((B, nx + nv), X.dtype)
        k.eq_rollout(X, V, W, AC, B1T, _code(activation), _c(e.phi.D11), g, sx)
        return equilibrium.Cache(W) if keep_cache else None
    dims, Wt, _, bias, out_bias = _lbdn_weights(e.phi.W, e.phi.b)
    flat, S = _hidden_stack(dims, T if keep_cache else 1, B, X.dtype)
    AC, a, F = _lti(e, forward=True)
    g, m = np.empty((B, AC.shape[1]), X.dtype), np.empty((B, F.shape[0]), X.dtype)
    k.lbdn_rollout(X, V, W, AC, B1T, a, F, m, _code(activation), dims, Wt, bias, out_bias, flat, keep_cache, g, sx)
    return lbdn.Cache(V, S) if keep_cache else None


def bptt(layer, activation, e, phi_cache, dX, dW, dV):
    """The reverse recurrence of ``feedback._segment_backward``: ``dX[T]`` the final state's
    adjoint, ``dX[:T]`` and ``dW`` the outputs' shares; fills ``dX``, ``dW`` and ``dV`` and returns
    phi's stacked gradient caches."""
    from ..layers import equilibrium

    k = _build()
    T, B, nx, nv = dV.shape[0], dX.shape[1], dX.shape[2], dV.shape[2]
    C1, sx = _c(e.C1), np.empty((B, nx), dX.dtype)
    if layer == "equilibrium":
        AB1, g = np.concatenate([e.A, e.B1], axis=1), np.empty((B, nx + nv), dX.dtype)
        k.eq_bptt(dX, dW, dV, AB1, C1, _code(activation), _c(e.phi.D11), phi_cache.w, g, sx,
                  np.empty(nv, dX.dtype))
        return equilibrium.GradCache(dV)
    dims, _, Wn, _, _ = _lbdn_weights(e.phi.W, e.phi.b)
    S = phi_cache.S
    S_flat = S[0].base if len(S) and _packed(S) else _pack(S, dX.dtype)
    dZ_flat, dZ = _hidden_stack(dims, T, B, dX.dtype)
    AB1, a, F = _lti(e, forward=False)
    g, m = np.empty((B, AB1.shape[1]), dX.dtype), np.empty((B, F.shape[0]), dX.dtype)
    k.lbdn_bptt(dX, dW, dV, AB1, C1, a, F, m, _code(activation), dims, Wn, S_flat, dZ_flat, g, sx)
    return dZ + (dW,)


def _packed(S):
    """Whether the caches are the views of one flat buffer that :func:`rollout` made."""
    base = S[0].base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return False
    start = 0
    for s in S:
        if s.base is not base or s.__array_interface__["data"][0] != base.__array_interface__["data"][0] + start:
            return False
        start += s.size * s.itemsize
    return start == base.size * base.itemsize


def _pack(S, dtype):
    """The caches of the array-API loop, packed as the kernels read them."""
    return np.concatenate([s.reshape(-1) for s in S]) if S else np.empty(0, dtype)


_STEP = {}  # "last": (explicit, its step weights): a control loop steps one model many times


def _step_weights(layer, e):
    hit = _STEP.get("last")
    if hit is not None and hit[0] is e and hit[1] == layer:
        return hit[2]
    ny = int(e.C2.shape[0])
    D22T = np.zeros((int(e.B2.shape[1]), ny), e.B1.dtype) if e.D22 is None else e.D22.T
    AC, a, F = _lti(e, forward=True)  # a factored A: Mx = [V C1^T C2^T], F = U^T
    Mx = np.concatenate([AC, e.C2.T], axis=1)
    Mu = np.concatenate([e.B2.T, e.D12.T, D22T], axis=1)
    N = np.concatenate([e.B1.T, e.D21.T], axis=1)
    c = np.concatenate([e.bx, e.bv, e.by])
    phi = (_c(e.phi.D11),) if layer == "equilibrium" else _lbdn_weights(e.phi.W, e.phi.b)
    _STEP["last"] = (e, layer, (Mx, Mu, N, c, a, F, phi))
    return Mx, Mu, N, c, a, F, phi


def step(layer, activation, e, x, u):
    """``feedback.step`` in one compiled call: ``(x_next, y)``. The packed weights of the last
    ``explicit`` stepped are kept, so a control loop that steps one model pays for them once."""
    Mx, Mu, N, c, a, F, phi = _step_weights(layer, e)
    x, u = _c(x), _c(u)  # a strided view would compile a slower kernel of its own
    if layer == "equilibrium":
        return _kernels.eq_step(x, u, Mx, Mu, N, c, _ACTIVATIONS[activation], phi[0])
    dims, Wt, _, bias, out_bias = phi
    return _kernels.lbdn_step(x, u, Mx, Mu, N, c, a, F, _ACTIVATIONS[activation], dims, Wt, bias, out_bias)
