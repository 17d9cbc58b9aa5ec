"""The one time-loop driver for an LTI system in feedback with a static map ``phi``:

    x_{t+1} = A x_t + B1 w_t + B2 u_t + bx
    v_t     = C1 x_t + D12 u_t + bv,       w_t = phi(v_t)
    y_t     = C2 x_t + D21 w_t + D22 u_t + by

used by every recurrent model (the R2DN's phi is an LBDN, the REN's an equilibrium layer).
Sequences are time-major ``(T, B, n)``. Only the recurrence runs in the Python loop: input
projections happen before it and outputs after it as single matrix products over all T*B
rows; the reverse loop propagates only the state and phi adjoints, and every weight
gradient is one matrix product over T*B rows afterwards. Derivation:
``docs/derivations/r2dn.md`` section 4.

The loops write into preallocated ``(T, B, n)`` buffers (from ``allocator.empty``, which hands
NumPy buffers of one pass out again in the next) with in-place updates (``+=`` and
``buf[t, ...] =``), keep one matrix product per step for each of ``x_t [A^T C1^T]`` and
``dx_{t+1} [A B1]``, and never pull a value to the host, so a CuPy run queues the whole loop
without synchronising. A ``phi`` whose ``forward``/``backward`` take ``out=`` (the LBDN's) writes
its per-step caches straight into the stacked buffers (``kernels.py``) instead of returning
arrays that the loop copies.

An explicit model may carry ``A`` in factored form as well, ``A_lowrank = LowRank(a, U, V)`` with
``A = diag(a) + U V^T`` (the R2DN's structured LTI part, ``docs/derivations/r2dn.md`` (T8)). Then
the loops never touch the dense ``A``: a step's state part is ``a*x + (x V) U^T``, O(nx r) instead of
O(nx^2), and the gradient of ``A`` comes back as the factors' cotangents ``(a, U, V)`` from
whole-stretch products, with the dense one None.

Checkpointed BPTT (``checkpoint_every=k``): the forward pass keeps only the state at the
start of every segment of ``k`` steps; the backward pass reruns each segment from its
checkpoint, then backpropagates through it. Memory of the stored sequences falls from
``O(T)`` to ``O(T/k + k)`` at the cost of a second rollout. Every recomputed quantity is
bitwise the one of the first rollout; the weight gradients are sums of one matrix product
per segment, so they match the plain pass to rounding of that sum.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple, Optional

from array_api_compat import array_namespace

from ..core import allocator, kernels, tree
from . import compiled

__all__ = ["Cache", "LowRank", "forward", "backward", "step"]

mm = kernels.matmul  # a @ b, and cuBLAS directly while a CUDA graph is recorded (kernels.py)


class LowRank(NamedTuple):
    """``A = diag(a) + U V^T`` in factored form: what an explicit model's ``A_lowrank`` holds, and the
    shape of its cotangent (``docs/derivations/r2dn.md`` (T8))."""

    a: object  # (nx,)
    U: object  # (nx, r)
    V: object  # (nx, r)


def _lowrank(e):
    """The explicit model's factored ``A`` (a ``LowRank``), or None where it has only the dense one
    (the REN's explicit model has no such field)."""
    return getattr(e, "A_lowrank", None)


class Cache(NamedTuple):
    """What BPTT needs. With ``checkpoint_every=k``, ``X`` holds only the states at
    ``t = 0, k, 2k, ...`` and ``W`` and ``phi_cache`` are None (recomputed)."""

    U: object  # (T, B, nu)
    X: object  # (T + 1, B, nx): x_0 .. x_T; (ceil(T/k), B, nx) when checkpointed
    W: object  # (T, B, nv)
    phi_cache: object  # phi's step caches stacked to (T, B, ...)
    checkpoint_every: Optional[int] = None


def _rows(a):
    """(T, B, n) -> (T*B, n), a view for contiguous arrays."""
    xp = array_namespace(a)
    return xp.reshape(a, (a.shape[0] * a.shape[1],) + tuple(a.shape[2:]))


class _Stack:
    """Per-step containers of one structure stored in ``(T, ...)`` buffers; ``tree`` is the
    buffers in that structure (what ``Cache.phi_cache`` holds)."""

    def __init__(self, tree_of_buffers):
        self.tree = tree_of_buffers
        self.flatten, self.unflatten = tree.flattener(tree_of_buffers)
        self.buffers = self.flatten(tree_of_buffers)

    @classmethod
    def like(cls, xp, example, T):
        return cls(tree.map(lambda a: allocator.empty(xp, (T,) + tuple(a.shape), a.dtype), example))

    def store(self, values, t):
        for buf, val in zip(self.buffers, self.flatten(values)):
            buf[t, ...] = val

    def at(self, t):
        return self.unflatten(iter([buf[t, ...] for buf in self.buffers]))

    def rows(self):
        """The whole stack with time and batch merged: ``(T*B, ...)`` leaves."""
        return self.unflatten(iter([_rows(buf) for buf in self.buffers]))


def _writes_into(fn):
    """Whether a phi's ``forward``/``backward`` takes ``out=``: the step's caches as buffers to
    write into (``lbdn.as_phi`` does), instead of returning fresh arrays to be copied."""
    try:
        return "out" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _segments(T, k):
    k = T if k is None else k
    return [(s, min(s + k, T)) for s in range(0, T, k)]


def _fast(phi, jit, *arrays):
    """``phi.compiled`` when the compiled loops (``compiled.py``) take these arrays, else None."""
    return phi.compiled if phi.compiled is not None and compiled.use(arrays, jit) else None


def _rollout(e, phi, x0, U, keep_cache, jit=None):
    """The recurrence over one stretch of inputs: ``X`` (len+1 states), ``W`` and phi's
    stacked caches (None unless ``keep_cache``)."""
    xp = array_namespace(U)
    T, B, _ = (int(s) for s in U.shape)
    nx, nv = int(e.B1.shape[0]), int(e.C1.shape[0])
    U2 = _rows(U)
    X = allocator.empty(xp, (T + 1, B, nx), U.dtype)
    X[0, ...] = x0
    # in-place bias additions: every fresh (T*B, n) temporary costs page faults at large T*B
    X[1:, ...] = xp.reshape(mm(U2, e.B2.mT), (T, B, nx))  # the input part of x_{t+1}
    X[1:, ...] += e.bx
    V = xp.reshape(mm(U2, e.D12.mT), (T, B, nv))  # becomes v_t in the loop
    V += e.bv
    W = allocator.empty(xp, (T, B, nv), U.dtype)
    fast = _fast(phi, jit, U, e.B1)
    if fast is not None:
        phi_cache = compiled.rollout(*fast, e, X, V, W, keep_cache)
        return X, W, None if phi_cache is None else _Stack(phi_cache)
    return X, W, _forward_loop(e, phi, X, V, W, keep_cache)


def _forward_loop(e, phi, X, V, W, keep_cache):
    """The recurrence: ``X[0]`` and the input parts in ``X[1:]`` and ``V`` given; fills ``X``,
    ``V`` and ``W`` and returns phi's stacked caches (None unless ``keep_cache``)."""
    xp = array_namespace(V)
    T, nx = int(V.shape[0]), int(X.shape[2])
    # x_t enters both x_{t+1} and v_t: one product with [A^T C1^T] per step; with A factored, with
    # [V C1^T], whose first r columns are x_t V, (T8a)
    lr = _lowrank(e)
    k = nx if lr is None else int(lr.V.shape[1])
    AC = xp.concat([e.A.mT if lr is None else lr.V, e.C1.mT], axis=1)
    B1T = e.B1.mT
    stack = None
    into = _writes_into(phi.forward)
    for t in range(T):
        xa = mm(X[t, ...], AC)
        V[t, ...] += xa[:, k:]
        if into and stack is not None:
            w, _ = phi.forward(e.phi, V[t, ...], out=stack.at(t))
        else:
            w, c = phi.forward(e.phi, V[t, ...])
            if keep_cache:
                if stack is None:
                    stack = _Stack.like(xp, c, T)
                stack.store(c, t)
        W[t, ...] = w
        if lr is None:
            X[t + 1, ...] += xa[:, :nx]
        else:
            X[t + 1, ...] += lr.a * X[t, ...]
            X[t + 1, ...] += mm(xa[:, :k], lr.U.mT)
        X[t + 1, ...] += mm(w, B1T)
    return stack


def _outputs(e, U, X, W):
    """``y_t`` for all rows of a stretch at once; ``X`` holds its len+1 states."""
    xp = array_namespace(U)
    T, B, _ = (int(s) for s in U.shape)
    Y2 = mm(_rows(X[:T, ...]), e.C2.mT)
    Y2 += mm(_rows(W), e.D21.mT)
    Y2 += e.by
    if e.D22 is not None:
        Y2 += mm(_rows(U), e.D22.mT)
    return xp.reshape(Y2, (T, B, int(e.C2.shape[0])))


def forward(explicit, phi, x0, U, checkpoint_every=None, jit=None):
    """Roll the feedback system out over a whole input sequence.

    Parameters
    ----------
    explicit : container with fields ``A, B1, B2, C1, C2, D12, D21, D22, bx, bv, by, phi``
        (``D22`` may be None for a zero feedthrough), and optionally ``A_lowrank`` (a ``LowRank``:
        the loop then steps with the factors and never reads ``A``).
    phi : static_map.Phi
    x0 : (B, nx) initial state.
    U : (T, B, nu) inputs.
    checkpoint_every : int or None
        Keep only every ``k``-th state for a checkpointed ``backward``; None keeps all.
    jit : bool or None
        The compiled loop (``compiled.py``) for NumPy arrays: None uses it where it can unless
        ``R2DN_JIT=0``; False keeps this module's array-API loop.

    Returns
    -------
    xT : (B, nx) final state.
    Y : (T, B, ny) outputs.
    cache : Cache

    On NumPy, BLAS runs on one thread during the call (``kernels.single_blas``).
    """
    with kernels.single_blas(U):
        return _forward(explicit, phi, x0, U, checkpoint_every, jit)


def _forward(explicit, phi, x0, U, checkpoint_every, jit):
    """The work of :func:`forward`, which holds BLAS to one thread around it."""
    e = explicit
    xp = array_namespace(U)
    if checkpoint_every is None:
        X, W, stack = _rollout(e, phi, x0, U, keep_cache=True, jit=jit)
        return X[-1, ...], _outputs(e, U, X, W), Cache(U, X, W, stack.tree)
    T, B = int(U.shape[0]), int(U.shape[1])
    segments = _segments(T, checkpoint_every)
    Xc = xp.empty((len(segments), B, int(e.B1.shape[0])), dtype=U.dtype)
    Y = xp.empty((T, B, int(e.C2.shape[0])), dtype=U.dtype)
    x = x0
    for i, (s, f) in enumerate(segments):
        Xc[i, ...] = x
        X, W, _ = _rollout(e, phi, x, U[s:f, ...], keep_cache=False, jit=jit)
        Y[s:f, ...] = _outputs(e, U[s:f, ...], X, W)
        x = X[-1, ...]
    return x, Y, Cache(U, Xc, None, None, checkpoint_every)


def _reverse_loop(e, phi, stack, dXs, dWs, dV):
    """The reverse recurrence: from ``dXs[T]`` and the outputs' shares in ``dXs[:T]`` and
    ``dWs``, the state and phi adjoints of every step; returns phi's stacked gradient caches."""
    xp = array_namespace(dV)
    T, nx = int(dV.shape[0]), int(dXs.shape[2])
    # dx_{t+1} reaches x_t and w_t in one product; with A factored, [U B1], then V^T, (T8b)
    lr = _lowrank(e)
    k = nx if lr is None else int(lr.U.shape[1])
    AB1 = xp.concat([e.A if lr is None else lr.U, e.B1], axis=1)
    grad_stack = None
    into = _writes_into(phi.backward)
    for t in range(T - 1, -1, -1):
        g = mm(dXs[t + 1, ...], AB1)
        dWs[t, ...] += g[:, k:]
        if into and grad_stack is not None:
            dv, _ = phi.backward(e.phi, stack.at(t), dWs[t, ...], out=grad_stack.at(t))
        else:
            dv, gc = phi.backward(e.phi, stack.at(t), dWs[t, ...])
            if grad_stack is None:
                grad_stack = _Stack.like(xp, gc, T)
            grad_stack.store(gc, t)
        dV[t, ...] = dv
        if lr is None:
            dXs[t, ...] += g[:, :nx]
        else:
            dXs[t, ...] += lr.a * dXs[t + 1, ...]
            dXs[t, ...] += mm(g[:, :k], lr.V.mT)
        dXs[t, ...] += mm(dv, e.C1)
    return grad_stack


def _segment_backward(e, phi, U, X, W, stack, dY, dx, jit=None):
    """BPTT through one stretch given the adjoint ``dx`` of its last state. Returns the
    adjoint of its first state, its weight gradients (a dict) and ``dU``."""
    xp = array_namespace(dY)
    T, B, nu = (int(s) for s in U.shape)
    nx, nv = int(e.B1.shape[0]), int(e.C1.shape[0])
    dY2 = _rows(dY)
    U2 = _rows(U)

    # dXs[t] collects the adjoint of x_t, dWs[t] that of w_t: start from the outputs' share
    dXs = allocator.empty(xp, (T + 1, B, nx), dY.dtype)
    dXs[T, ...] = dx
    dXs[:T, ...] = xp.reshape(mm(dY2, e.C2), (T, B, nx))
    dWs = xp.reshape(mm(dY2, e.D21), (T, B, nv))
    dV = allocator.empty(xp, (T, B, nv), dY.dtype)
    fast = _fast(phi, jit, dY, e.B1, X, W)
    if fast is not None:
        grad_stack = _Stack(compiled.bptt(*fast, e, stack.tree, dXs, dWs, dV))
    else:
        grad_stack = _reverse_loop(e, phi, stack, dXs, dWs, dV)

    # weight gradients: one product over all rows each
    X2, W2, dXn2, dV2 = _rows(X[:T, ...]), _rows(W), _rows(dXs[1:, ...]), _rows(dV)
    dU2 = mm(dXn2, e.B2)
    dU2 += mm(dV2, e.D12)
    if e.D22 is not None:
        dU2 += mm(dY2, e.D22)
    lr = _lowrank(e)
    grads = dict(
        A=mm(dXn2.mT, X2) if lr is None else None,
        B1=mm(dXn2.mT, W2),
        B2=mm(dXn2.mT, U2),
        C1=mm(dV2.mT, X2),
        C2=mm(dY2.mT, X2),
        D12=mm(dV2.mT, U2),
        D21=mm(dY2.mT, W2),
        D22=None if e.D22 is None else mm(dY2.mT, U2),
        bx=xp.sum(dXn2, axis=0),
        bv=xp.sum(dV2, axis=0),
        by=xp.sum(dY2, axis=0),
        phi=phi.weight_grads(e.phi, stack.rows(), grad_stack.rows()),
    )
    if lr is not None:  # (T8c): the factors' cotangents from (T*B) x r products, the dense one never formed
        grads["A_lowrank"] = LowRank(xp.sum(dXn2 * X2, axis=0), mm(dXn2.mT, mm(X2, lr.V)), mm(X2.mT, mm(dXn2, lr.U)))
    return dXs[0, ...], grads, xp.reshape(dU2, (T, B, nu))


def backward(explicit, phi, cache, dY, dxT=None, jit=None):
    """Backpropagation through time (checkpointed if ``cache`` came from a checkpointed
    ``forward``).

    Parameters
    ----------
    dY : (T, B, ny) cotangent of the outputs.
    dxT : (B, nx) cotangent of the final state, or None for zero.
    jit : bool or None, the compiled loop as in :func:`forward`.

    Returns
    -------
    d_explicit : container like ``explicit`` (the same NamedTuple type). With ``A_lowrank``, the
        gradient of ``A`` is its ``A_lowrank`` (``LowRank`` of the factors' cotangents) and ``A`` is None.
    dx0 : (B, nx)
    dU : (T, B, nu)
    """
    with kernels.single_blas(dY):
        return _backward(explicit, phi, cache, dY, dxT, jit)


def _backward(explicit, phi, cache, dY, dxT, jit):
    """The work of :func:`backward`, which holds BLAS to one thread around it."""
    e = explicit
    xp = array_namespace(dY)
    U = cache.U
    T, B, nu = (int(s) for s in U.shape)
    dx = xp.zeros((B, int(e.B1.shape[0])), dtype=dY.dtype) if dxT is None else dxT
    if cache.checkpoint_every is None:
        stack = _Stack(cache.phi_cache)
        dx, grads, dU = _segment_backward(e, phi, U, cache.X, cache.W, stack, dY, dx, jit)
    else:
        segments = _segments(T, cache.checkpoint_every)
        dU = xp.empty((T, B, nu), dtype=dY.dtype)
        grads = None
        for i in range(len(segments) - 1, -1, -1):
            s, f = segments[i]
            X, W, stack = _rollout(e, phi, cache.X[i, ...], U[s:f, ...], keep_cache=True, jit=jit)
            dx, g, dU[s:f, ...] = _segment_backward(e, phi, U[s:f, ...], X, W, stack, dY[s:f, ...], dx, jit)
            grads = g if grads is None else tree.map(lambda a, b: a + b, grads, g)
    d_explicit = e._replace(**{k: v for k, v in grads.items() if k in e._fields})
    return d_explicit, dx, dU


def step(explicit, phi, x, u, jit=None):
    """One time-step for control loops that feed back one sample at a time.

    Parameters
    ----------
    x : (B, nx) state; u : (B, nu) input.
    jit : bool or None, the compiled step (``compiled.step``) as in :func:`forward`.

    Returns
    -------
    x_next : (B, nx); y : (B, ny)
    """
    e = explicit
    fast = _fast(phi, jit, x, u, e.B1)
    if fast is not None:
        return compiled.step(*fast, e, x, u)
    w, _ = phi.forward(e.phi, x @ e.C1.mT + u @ e.D12.mT + e.bv)
    lr = _lowrank(e)
    xa = x @ e.A.mT if lr is None else lr.a * x + (x @ lr.V) @ lr.U.mT  # (T8a)
    x_next = xa + w @ e.B1.mT + u @ e.B2.mT + e.bx
    y = x @ e.C2.mT + w @ e.D21.mT + e.by
    if e.D22 is not None:
        y = y + u @ e.D22.mT
    return x_next, y
