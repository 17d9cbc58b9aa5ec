"""The REN's full (cyclic) equilibrium layer ``w = sigma(D11 w + b)``, ``D11`` not triangular,
as a feedback map ``phi`` (``r2dn_np.core.static_map.Phi``); ``docs/derivations/ren.md`` section 7.

Well-posed because the REN's map makes ``2 Lambda - Lambda D11 - D11^T Lambda = H22 > 0`` for the
positive diagonal ``Lambda = diag(H22)/2`` (section 7, (F1)-(F2)): in the inner product weighted by
``Lambda`` the layer is the zero of a strongly monotone linear operator plus the subdifferential of
a separable convex function whose proximal map is ``sigma``.

Forward: Peaceman-Rachford splitting with step 1 in that inner product (the only step for which
the proximal map is ``sigma`` itself), on the pre-activation ``u``,

    h = 2 sigma(u) - u,      u <- 2 (h + b) V^T - h,      V = (2 I - D11)^-1,        (F3)

a contraction in the ``Lambda``-norm with factor ``delta = sqrt(1 - 4 m / (1 + 2 m + L^2))``
(``rate_bound``), so it converges linearly from any start; at its fixed point ``u = D11 sigma(u) + b``
and ``w = sigma(u)``. ``V`` is formed once per ``D11`` (``O(nv^3)``); an iteration costs one
``(B, nv) x (nv, nv)`` product. ``solver="anderson"`` accelerates the same map with
``r2dn_np.core.fixed_point``'s Anderson iteration and, should that not reach ``tol``, finishes with the
plain iteration from its last iterate (so the guarantee is kept).

Backward: the implicit function theorem, ``(I - D11^T J) mu = dw``, ``dz = J mu``, solved by the
transposed splitting (the same ``delta`` in the ``Lambda^-1``-norm),

    h = 2 J u - u,           u <- 2 (h + dw) V - h,           dz = J u.              (F5)

A solve that does not reach ``tol`` raises ``r2dn_np.core.fixed_point.NotConverged``.

Examples
--------
>>> import numpy as np
>>> from r2dn_np.layers import equilibrium_full
>>> rng = np.random.default_rng(0)
>>> G = rng.standard_normal((4, 4)); H22 = G @ G.T + np.eye(4)        # any H22 > 0
>>> lam = np.diag(H22) / 2
>>> S = rng.standard_normal((4, 4))
>>> D11 = (-np.tril(H22, -1) + S - S.T) / lam[:, None]                # (F2): Lambda D11 = -L + skew
>>> b = rng.standard_normal((3, 4))
>>> w, result = equilibrium_full.solve("tanh", D11, b, tol=1e-13)
>>> result.converged, bool(np.allclose(w, np.tanh(b + w @ D11.T), atol=1e-11))
(True, True)
"""

from __future__ import annotations

import math
from typing import NamedTuple

from array_api_compat import array_namespace

from ..core import activations, fixed_point, kernels, linalg
from .equilibrium import Params  # the same container as the acyclic layer's: Explicit.phi has one type
from ..core.static_map import Phi

mm = kernels.matmul

__all__ = ["SOLVERS", "Params", "Cache", "resolvent", "solve", "solve_vjp", "weight_grads", "rate_bound",
           "as_phi"]

SOLVERS = ("pr", "anderson")


class Cache(NamedTuple):
    w: object  # (B, nv) the equilibrium, from which sigma' is recovered


class GradCache(NamedTuple):
    dz: object  # (B, nv) cotangent of the pre-activation z = D11 w + b


def resolvent(D11):
    """``V = (2 I - D11)^-1``, the resolvent of the linear part at step 1 (invertible when the
    layer is well-posed: ``Lambda (2 I - D11)`` has symmetric part ``Lambda + H22/2 > 0``)."""
    I = linalg.eye_like(int(D11.shape[0]), D11)
    return linalg.solve(2.0 * I - D11, I)


def _tolerance(tol, dtype, xp):
    """``tol``, raised to ``64 eps`` of the working dtype (a float32 residual cannot go lower)."""
    return max(float(tol), 64.0 * float(xp.finfo(dtype).eps))


def _residual(tu, u, scale):
    """The relative residual (D5) of ``docs/derivations/deq.md``, ``|T(u) - u| / (|T(u)| + scale)``,
    in four reductions: a quarter of ``fixed_point.relative_residual``'s cost at small sizes (which
    also guards the sums of squares against overflow; here an overflow gives inf or NaN, which
    stops the iteration the same way)."""
    xp = array_namespace(u)
    d = tu - u
    num = float(xp.sqrt(xp.sum(d * d)))
    if num == 0.0:
        return 0.0
    den = float(xp.sqrt(xp.sum(tu * tu))) + scale
    return num / den if den > 0.0 else math.inf


def _iterate(T, u0, scale, tol, max_iter, solver):
    """Find ``u = T(u)`` by plain iteration, or Anderson then plain iteration. ``SolveResult``."""
    if solver == "anderson":
        first = fixed_point.solve(T, u0, scale=scale, solver="anderson", tol=tol, max_iter=max_iter)
        if first.converged or not all(math.isfinite(r) for r in first.residuals):
            return first
        u0 = first.z
    u = u0
    trace = []
    for _ in range(max_iter):
        tu = T(u)
        res = _residual(tu, u, scale)
        trace.append(res)
        if res <= tol:
            return fixed_point.SolveResult(u, tu, tuple(trace), len(trace), True, solver)
        if not math.isfinite(res):
            break
        u = tu
    return fixed_point.SolveResult(u, tu, tuple(trace), len(trace), False, solver)


def _forward(sigma, D11, V, b, tol, max_iter, solver):
    xp = array_namespace(b)
    VT = V.mT

    def T(u):  # (F3)
        h = 2.0 * sigma(u) - u
        return 2.0 * mm(h + b, VT) - h

    tol = _tolerance(tol, b.dtype, xp)
    result = _iterate(T, b, fixed_point._norm(b), tol, max_iter, solver)
    fixed_point.raise_unless_converged(
        result, "ren full equilibrium layer (forward)", tol, max_iter,
        "Peaceman-Rachford converges for every well-posed D11 (the REN's map gives one); "
        "raise layer_max_iter, or the D11 passed in is not the map's")
    return sigma(result.fz), result


def _backward(activation, V, w, dw, tol, max_iter, solver):
    xp = array_namespace(dw)
    J = activations.slope_from_output(activation, w, xp)

    def T(u):  # (F5)
        h = 2.0 * (J * u) - u
        return 2.0 * mm(h + dw, V) - h

    tol = _tolerance(tol, dw.dtype, xp)
    result = _iterate(T, dw, fixed_point._norm(dw), tol, max_iter, solver)
    fixed_point.raise_unless_converged(result, "ren full equilibrium layer (backward)", tol, max_iter)
    return J * result.fz, result


def solve(activation, D11, b, tol=1e-12, max_iter=2000, solver="pr"):
    """The equilibrium ``w : (B, nv)`` of ``w = sigma(D11 w + b)`` for ``b : (B, nv)``, and the
    ``fixed_point.SolveResult`` of the splitting (its ``z`` is the pre-activation ``u``)."""
    xp = array_namespace(b)
    return _forward(activations.function(activation, xp), D11, resolvent(D11), b, tol, max_iter, solver)


def solve_vjp(activation, D11, w, dw, tol=1e-12, max_iter=2000, solver="pr"):
    """Cotangent of ``b`` (equal to that of ``z = D11 w + b``) given ``dw``: ``J (I - D11^T J)^-1 dw``."""
    return _backward(activation, resolvent(D11), w, dw, tol, max_iter, solver)[0]


def weight_grads(dz, w):
    """``dD11 = dz^T w`` over all rows (``dz, w : (N, nv)``), one product."""
    return mm(dz.mT, w)


def rate_bound(D11, lam):
    """The contraction factor ``delta`` of (F3) and (F5), (F4) of ``docs/derivations/ren.md``:
    ``sqrt(1 - 4 m / (1 + 2 m + L^2))`` with ``m`` the smallest eigenvalue of the symmetric part and
    ``L`` the norm of ``Lambda^1/2 (I - D11) Lambda^-1/2``; ``lam`` is the diagonal of ``Lambda``.
    ``>= 1`` (no guarantee) when ``m <= 0``."""
    xp = array_namespace(D11)
    n = int(D11.shape[0])
    r = xp.sqrt(lam)
    K = xp.reshape(r, (n, 1)) * (linalg.eye_like(n, D11) - D11) / xp.reshape(r, (1, n))
    m = float(xp.min(xp.linalg.eigvalsh(linalg.sym(K))))
    L2 = float(xp.max(xp.linalg.eigvalsh(K.mT @ K)))
    return math.sqrt(max(0.0, 1.0 - 4.0 * m / (1.0 + 2.0 * m + L2)))


def as_phi(activation, tol=1e-12, max_iter=2000, solver="pr"):
    """The layer as the feedback map ``phi``; its parameters are ``Params(D11)``."""
    # the time loop calls phi with the same D11 at every step: the resolvent is formed once per D11
    memo = {}

    def V_of(D11):
        hit = memo.get("V")
        if hit is None or hit[0] is not D11:
            hit = memo["V"] = (D11, resolvent(D11))
        return hit[1]

    def forward(params, v):
        sigma = activations.function(activation, array_namespace(v))
        w, _ = _forward(sigma, params.D11, V_of(params.D11), v, tol, max_iter, solver)
        return w, Cache(w)

    def backward(params, cache, dw):
        dz, _ = _backward(activation, V_of(params.D11), cache.w, dw, tol, max_iter, solver)
        return dz, GradCache(dz)

    def grads(params, cache, grad_cache):
        return Params(weight_grads(grad_cache.dz, cache.w))

    return Phi(forward, backward, grads)
