"""The Numba kernels of ``compiled.py`` (used only where Numba is installed).

Each kernel runs a whole stretch of time steps of ``feedback.py``'s loops. Sizes travel as arrays,
not as Python tuples, so one compiled kernel serves every network depth and width: the LBDN's
weights are packed into one flat buffer per orientation, and its per-step caches are views into
one flat ``(T, B, sum(hidden))``-sized buffer per pass, layer after layer (``compiled._Packed``).
A kernel is compiled once per dtype and cached on disk.
"""

from __future__ import annotations

import warnings

import numpy as np

try:
    import numba
except ImportError:  # importable anyway (doctest collection); compiled.available() is False then
    numba = None

_warned = []


def _jit(**options):
    """``numba.njit`` with the on-disk cache, or in memory (one warning) where no cache folder is
    writable, as in a read-only install."""

    def wrap(fn):
        if numba is None:
            return fn
        try:
            return numba.njit(cache=True, nogil=True, **options)(fn)
        except RuntimeError as err:
            if not _warned:
                _warned.append(err)
                warnings.warn(f"r2dn_np's compiled loops cannot be cached on disk ({err}); compiling "
                              "them in memory in every process", RuntimeWarning, stacklevel=2)
            return numba.njit(nogil=True, **options)(fn)

    return wrap


# --- elementwise pieces ------------------------------------------------------------------------

RELU, TANH, SIGMOID, IDENTITY = 0, 1, 2, 3


@_jit()
def act(code, z):
    if code == RELU:
        return z if z > 0.0 else 0.0 * z
    if code == TANH:
        return np.tanh(z)
    if code == SIGMOID:  # the tanh form, as activations.py writes it
        return 0.5 + 0.5 * np.tanh(0.5 * z)
    return z


@_jit()
def slope(code, s):
    """``sigma'`` from the output ``s``, as ``activations.slope_from_output`` (ReLU's is 0 at 0)."""
    if code == RELU:
        return 1.0 if s > 0.0 else 0.0
    if code == TANH:
        return 1.0 - s * s
    if code == SIGMOID:
        return s * (1.0 - s)
    return 1.0


@_jit()
def add_cols(out, g, first):
    """``out += g[:, first:first + out.shape[1]]``."""
    m, n = out.shape
    for i in range(m):
        for q in range(n):
            out[i, q] += g[i, first + q]


# --- the LBDN on one step's rows ------------------------------------------------------------------
# dims = (n_0, ..., n_L): layer k maps n_k -> n_{k+1}; W[k] is (n_{k+1}, n_k). Wt packs the W[k]^T
# (forward), Wn the W[k] (backward), each layer's block after the previous one's; b packs the
# biases. S packs the activation outputs of the hidden layers k < L, each as a (T, B, n_{k+1})
# block; dZ the pre-activation cotangents likewise.


@_jit()
def _block(flat, start, rows, cols):
    return flat[start:start + rows * cols].reshape((rows, cols))


@_jit()
def lbdn_forward(code, dims, Wt, b, out_bias, v, S, T, t, w):
    B = v.shape[0]
    h = v
    wo = bo = so = 0
    for k in range(len(dims) - 2):
        n_in, n_out = dims[k], dims[k + 1]
        z = _block(S, so + t * B * n_out, B, n_out)
        np.dot(h, _block(Wt, wo, n_in, n_out), z)
        for i in range(B):
            for q in range(n_out):
                z[i, q] = act(code, z[i, q] + b[bo + q])
        h = z
        wo += n_in * n_out
        bo += n_out
        so += T * B * n_out
    n_in, n_out = dims[len(dims) - 2], dims[len(dims) - 1]
    np.dot(h, _block(Wt, wo, n_in, n_out), w)
    if out_bias:
        for i in range(B):
            for q in range(n_out):
                w[i, q] += b[bo + q]


@_jit()
def lbdn_backward(code, dims, Wn, S, dZ, T, t, dw, dv):
    """``dw`` is the output's cotangent (the last layer's ``dZ``); fills the hidden layers' ``dZ``
    at step ``t`` and ``dv``."""
    B = dv.shape[0]
    L = len(dims) - 1
    wo = 0
    for k in range(L):
        wo += dims[k] * dims[k + 1]
    so = 0
    for k in range(L - 1):
        so += T * B * dims[k + 1]
    d = dw
    for k in range(L - 1, 0, -1):  # d is the cotangent of layer k's pre-activation
        n_in, n_out = dims[k], dims[k + 1]
        wo -= n_in * n_out
        so -= T * B * n_in
        dz = _block(dZ, so + t * B * n_in, B, n_in)
        np.dot(d, _block(Wn, wo, n_out, n_in), dz)
        s = _block(S, so + t * B * n_in, B, n_in)
        for i in range(B):
            for q in range(n_in):
                dz[i, q] *= slope(code, s[i, q])
        d = dz
    np.dot(d, _block(Wn, 0, dims[1], dims[0]), dv)


# --- the REN's acyclic equilibrium layer on one step's rows -----------------------------------------


# the rows are dot products: letting LLVM reorder their sums vectorises them (a summation order of
# its own, as any BLAS has; the tests hold it to the reference's rounding)
@_jit(fastmath={"reassoc"})
def eq_forward(code, D11, v, w):
    """``w = sigma(D11 w + v)`` row by row, ``D11`` strictly lower triangular."""
    m, n = v.shape
    for r in range(m):
        for i in range(n):
            z = v[r, i]
            for q in range(i):
                z += D11[i, q] * w[r, q]
            w[r, i] = act(code, z)


@_jit()
def eq_backward(code, D11, w, dw, dz, acc):
    """Back-substitution ``dz_i = sigma'_i (dw_i + sum_{j>i} D11_ji dz_j)``, column by column:
    once ``dz_i`` is known it joins every earlier row's sum (``acc``), which reads ``D11`` by rows
    and vectorises without reordering any sum (the row-by-row form was 6x slower)."""
    m, n = w.shape
    for r in range(m):
        for i in range(n):
            acc[i] = dw[r, i]
        for i in range(n - 1, -1, -1):
            d = slope(code, w[r, i]) * acc[i]
            dz[r, i] = d
            for q in range(i):
                acc[q] += D11[i, q] * d


# --- the loops: the LTI part of every step, as feedback.py writes it -------------------------------
# x_t meets [A^T C1^T] in one product, dx_{t+1} meets [A B1] in one; every product goes to BLAS
# (np.dot into a buffer), which at these sizes, 4 rows included, beat compiled loops 1.5-3x.


# The R2DN's loops also take A factored, A = diag(a) + U V^T (docs/derivations/r2dn.md (T8)): then
# AC = [V C1^T] and AB1 = [U B1], and the state part is a*x + (g's first r columns) F, with F = U^T
# forward and V^T backward. A dense A comes with an empty ``a``.


@_jit()
def lti_state(out, x, g, a, F, m, sx):
    """``out += x A^T`` (forward; ``out += lam A`` backward) from ``g = x [A^T ...]``: g's first nx
    columns for a dense A (``a`` empty), else ``a*x + g[:, :r] F`` (``m`` (B, r) and ``sx`` buffers)."""
    if a.shape[0] == 0:
        add_cols(out, g, 0)
        return
    B, nx = x.shape
    r = m.shape[1]
    for i in range(B):
        for q in range(r):
            m[i, q] = g[i, q]
        for q in range(nx):
            out[i, q] += a[q] * x[i, q]
    if r > 0:
        np.dot(m, F, sx)
        out += sx


@_jit()
def lbdn_rollout(X, V, W, AC, B1T, a, F, m, code, dims, Wt, b, out_bias, S, keep, g, sx):
    """``keep``: ``S`` holds every step's caches; else one step's, overwritten (a forward-only
    stretch)."""
    T, nv = V.shape[0], V.shape[2]
    k = AC.shape[1] - nv  # nx, or r for a factored A
    for t in range(T):
        np.dot(X[t], AC, g)
        add_cols(V[t], g, k)
        lbdn_forward(code, dims, Wt, b, out_bias, V[t], S, T if keep else 1, t if keep else 0, W[t])
        lti_state(X[t + 1], X[t], g, a, F, m, sx)
        np.dot(W[t], B1T, sx)
        X[t + 1] += sx


@_jit()
def lbdn_bptt(dX, dW, dV, AB1, C1, a, F, m, code, dims, Wn, S, dZ, g, sx):
    T, nv = dV.shape[0], dV.shape[2]
    k = AB1.shape[1] - nv
    for t in range(T - 1, -1, -1):
        np.dot(dX[t + 1], AB1, g)
        add_cols(dW[t], g, k)
        lbdn_backward(code, dims, Wn, S, dZ, T, t, dW[t], dV[t])
        lti_state(dX[t], dX[t + 1], g, a, F, m, sx)
        np.dot(dV[t], C1, sx)
        dX[t] += sx


@_jit()
def eq_rollout(X, V, W, AC, B1T, code, D11, g, sx):
    T, nx = V.shape[0], X.shape[2]
    for t in range(T):
        np.dot(X[t], AC, g)
        add_cols(V[t], g, nx)
        eq_forward(code, D11, V[t], W[t])
        add_cols(X[t + 1], g, 0)
        np.dot(W[t], B1T, sx)
        X[t + 1] += sx


@_jit()
def eq_bptt(dX, dW, dV, AB1, C1, code, D11, W, g, sx, acc):
    T, nx = dV.shape[0], dX.shape[2]
    for t in range(T - 1, -1, -1):
        np.dot(dX[t + 1], AB1, g)
        add_cols(dW[t], g, nx)
        eq_backward(code, D11, W[t], dW[t], dV[t], acc)
        add_cols(dX[t], g, 0)
        np.dot(dV[t], C1, sx)
        dX[t] += sx


# --- one step, for control loops (feedback.step) -------------------------------------------------
# x meets [A^T C1^T C2^T] (Mx), u meets [B2^T D12^T D22^T] (Mu) and w meets
# [B1^T D21^T] (N); ``c`` holds the biases [bx bv by]. Buffers are made here: a control step is
# a few microseconds of arithmetic, and every array made in Python costs as much. A factored A
# (``a`` not empty): Mx = [V C1^T C2^T] and F = U^T, (T8a).


@_jit()
def _step_inputs(x, u, Mx, Mu, c, nv, a, F):
    B, nx = x.shape
    g = np.empty((B, Mx.shape[1]), x.dtype)
    np.dot(x, Mx, g)
    if a.shape[0] > 0:  # widen g to Mu's columns: [x A^T, x C1^T, x C2^T]
        r = F.shape[0]
        full = np.zeros((B, Mu.shape[1]), x.dtype)
        lti_state(full[:, :nx], x, g, a, F, np.empty((B, r), x.dtype), np.empty((B, nx), x.dtype))
        for i in range(B):
            for q in range(Mu.shape[1] - nx):
                full[i, nx + q] = g[i, r + q]
        g = full
    gu = np.empty_like(g)
    np.dot(u, Mu, gu)
    g += gu
    v = np.empty((B, nv), x.dtype)
    for i in range(B):
        for q in range(nv):
            v[i, q] = g[i, nx + q] + c[nx + q]
    return g, v


@_jit()
def _step_outputs(x, g, w, N, c):
    B, nx = x.shape
    nv = w.shape[1]
    h = np.empty((B, N.shape[1]), x.dtype)
    np.dot(w, N, h)
    ny = N.shape[1] - nx
    x_next = np.empty((B, nx), x.dtype)
    y = np.empty((B, ny), x.dtype)
    for i in range(B):
        for q in range(nx):
            x_next[i, q] = g[i, q] + h[i, q] + c[q]
        for q in range(ny):
            y[i, q] = g[i, nx + nv + q] + h[i, nx + q] + c[nx + nv + q]
    return x_next, y


@_jit()
def lbdn_step(x, u, Mx, Mu, N, c, a, F, code, dims, Wt, b, out_bias):
    nv = N.shape[0]
    g, v = _step_inputs(x, u, Mx, Mu, c, nv, a, F)
    B = x.shape[0]
    S = np.empty(B * np.sum(dims[1:-1]), x.dtype)
    w = np.empty((B, nv), x.dtype)
    lbdn_forward(code, dims, Wt, b, out_bias, v, S, 1, 0, w)
    return _step_outputs(x, g, w, N, c)


@_jit()
def eq_step(x, u, Mx, Mu, N, c, code, D11):
    nv = N.shape[0]
    g, v = _step_inputs(x, u, Mx, Mu, c, nv, np.empty(0, x.dtype), np.empty((0, x.shape[1]), x.dtype))
    w = np.empty((x.shape[0], nv), x.dtype)
    eq_forward(code, D11, v, w)
    return _step_outputs(x, g, w, N, c)
