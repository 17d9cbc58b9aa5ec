"""The reference for ``feedback.py``: one time step of an LTI system in feedback with a static map
``phi``, forward and backward, in the plainest array code, one chain-rule fact per line.

    x_{t+1} = A x_t + B1 w_t + B2 u_t + bx
    v_t     = C1 x_t + D12 u_t + bv,       w_t = phi(v_t)
    y_t     = C2 x_t + D21 w_t + D22 u_t + by

``feedback.py`` runs the same maths over a whole sequence, fast: input projections hoisted out of
the loop, one product per step, buffers written in place, weight gradients as one product over all
T*B rows after the loop (and a compiled kernel for the loop where Numba is installed). This module
is what that code computes, step by step: read it first. ``tests/test_reference_steps.py`` runs a
Python loop over :func:`step` and :func:`step_vjp` on random R2DN and REN models and asserts that
``feedback.forward`` and ``feedback.backward`` agree with it to 1e-12.

Inputs are trusted (no checks): rows are batch entries, ``explicit`` has the fields of
``feedback.forward``'s (``D22`` may be None) and ``phi`` is a ``static_map.Phi``. Derivation:
``docs/derivations/r2dn.md`` section 4.
"""

from __future__ import annotations

from typing import NamedTuple

from array_api_compat import array_namespace

__all__ = ["StepCache", "step", "step_vjp"]


class StepCache(NamedTuple):
    """What :func:`step_vjp` needs from :func:`step`."""

    x: object  # (B, nx)
    u: object  # (B, nu)
    w: object  # (B, nv), phi(v)
    phi_cache: object  # phi's cache of this step


def step(explicit, phi, x, u):
    """``(x_next, y, cache)`` from the state ``x`` and the input ``u``."""
    e = explicit
    v = x @ e.C1.mT + u @ e.D12.mT + e.bv
    w, phi_cache = phi.forward(e.phi, v)
    x_next = x @ e.A.mT + w @ e.B1.mT + u @ e.B2.mT + e.bx
    y = x @ e.C2.mT + w @ e.D21.mT + e.by
    if e.D22 is not None:
        y = y + u @ e.D22.mT
    return x_next, y, StepCache(x, u, w, phi_cache)


def step_vjp(explicit, phi, cache, dx_next, dy):
    """Back through :func:`step`: ``(d_explicit, dx, du)`` given the cotangents of ``x_next``
    and ``y``. ``d_explicit`` has ``explicit``'s type; its ``phi`` field is ``phi.weight_grads``
    of this step alone (a sequence's is the sum over its steps)."""
    e = explicit
    xp = array_namespace(dx_next)
    x, u, w = cache.x, cache.u, cache.w
    dw = dx_next @ e.B1 + dy @ e.D21  # w enters x_next through B1 and y through D21
    dv, phi_grad_cache = phi.backward(e.phi, cache.phi_cache, dw)  # w = phi(v)
    grads = dict(
        A=dx_next.mT @ x,  # x_next = x A^T + ...
        B1=dx_next.mT @ w,  # ... + w B1^T + ...
        B2=dx_next.mT @ u,  # ... + u B2^T + ...
        bx=xp.sum(dx_next, axis=0),  # ... + bx, on every row
        C1=dv.mT @ x,  # v = x C1^T + ...
        D12=dv.mT @ u,  # ... + u D12^T + ...
        bv=xp.sum(dv, axis=0),  # ... + bv
        C2=dy.mT @ x,  # y = x C2^T + ...
        D21=dy.mT @ w,  # ... + w D21^T + ...
        D22=None if e.D22 is None else dy.mT @ u,  # ... + u D22^T + ...
        by=xp.sum(dy, axis=0),  # ... + by
        phi=phi.weight_grads(e.phi, cache.phi_cache, phi_grad_cache),
    )
    dx = dx_next @ e.A + dv @ e.C1 + dy @ e.C2  # x reaches x_next, v and y
    du = dx_next @ e.B2 + dv @ e.D12  # u reaches x_next, v ...
    if e.D22 is not None:
        du = du + dy @ e.D22  # ... and y
    return e._replace(**grads), dx, du
