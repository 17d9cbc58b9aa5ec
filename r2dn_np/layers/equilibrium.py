"""The REN's equilibrium layer ``w = sigma(D11 w + b)`` with ``D11`` strictly lower triangular,
as a feedback map ``phi`` (``r2dn_np.core.static_map.Phi``); ``docs/derivations/ren.md`` section 4.

Forward: exact, row by row, ``w_i = sigma(b_i + sum_{j<i} D11_ij w_j)``; no iteration and no
tolerance. Backward: the implicit function theorem, ``(I - D11^T J) mu = dw`` with
``J = diag(sigma'(z))``, solved by back-substitution (the matrix is unit upper triangular),
then ``db = J mu``; the unrolled forward loop is never differentiated.

Both loops run over the ``nv`` neurons and are the REN's sequential bottleneck, so they are
written for the fewest array operations per row: the batch is transposed once to ``(nv, B)``
so each neuron is a contiguous row, and ``b`` is written into the same buffer that collects
``w``. With the unit-triangular ``R = D11 + I``, row ``i`` of that buffer holds ``b_i`` until
it is overwritten, so ``z_i = R[i, :i+1] @ S[:i+1]`` is one product with no separate addition.
Derivation: ``docs/derivations/ren.md`` section 4.

Examples
--------
>>> import numpy as np
>>> from r2dn_np.layers import equilibrium
>>> D11 = np.tril(np.random.default_rng(0).standard_normal((4, 4)), -1)
>>> b = np.random.default_rng(1).standard_normal((3, 4))
>>> w = equilibrium.solve("tanh", D11, b)
>>> bool(np.allclose(w, np.tanh(b + w @ D11.T), atol=1e-14))
True
"""

from __future__ import annotations

from typing import NamedTuple

from array_api_compat import array_namespace

from ..core import activations, kernels
from ..core.static_map import Phi

mm = kernels.matmul  # a @ b, and cuBLAS directly while a CUDA graph is recorded (kernels.py)

__all__ = ["Params", "Cache", "solve", "solve_vjp", "weight_grads", "as_phi"]


class Params(NamedTuple):
    """The layer's weight: ``D11 : (nv, nv)``, strictly lower triangular."""

    D11: object


class Cache(NamedTuple):
    w: object  # (B, nv) the equilibrium, from which sigma' is recovered


class GradCache(NamedTuple):
    dz: object  # (B, nv) cotangent of the pre-activation z = D11 w + b


def _unit_triangular(D11, lower):
    xp = array_namespace(D11)
    n = int(D11.shape[0])
    I = xp.eye(n, dtype=D11.dtype, device=getattr(D11, "device", None))
    return (xp.tril(D11, k=-1) if lower else xp.triu(D11.mT, k=1)) + I


def solve(activation, D11, b):
    """The equilibrium ``w : (B, nv)`` of ``w = sigma(D11 w + b)`` for ``b : (B, nv)``.

    Only the strictly lower triangle of ``D11`` is read.
    """
    xp = array_namespace(b)
    return _forward_rows(activations.function(activation, xp), _unit_triangular(D11, lower=True), b)


def _forward_rows(sigma, R, b):
    xp = array_namespace(b)
    S = xp.asarray(b.mT, copy=True)  # (nv, B): row i holds b_i, then w_i
    for i in range(int(R.shape[0])):
        S[i, ...] = sigma(mm(R[i, :i + 1], S[:i + 1, ...]))
    return S.mT


def solve_vjp(activation, D11, w, dw):
    """Cotangent of ``b`` (equal to that of ``z = D11 w + b``) given ``dw``.

    Back-substitution, ``i = nv .. 1``: ``dz_i = sigma'(z_i) (dw_i + sum_{j>i} D11_ji dz_j)``.
    """
    return _backward_rows(activation, _unit_triangular(D11, lower=False), w, dw)


def _backward_rows(activation, R, w, dw):
    xp = array_namespace(dw)
    J = activations.slope_from_output(activation, w).mT  # (nv, B)
    S = xp.asarray(dw.mT, copy=True)  # row i holds dw_i, then dz_i
    for i in range(int(R.shape[0]) - 1, -1, -1):
        S[i, ...] = J[i, ...] * (mm(R[i, i:], S[i:, ...]))
    return S.mT


def weight_grads(dz, w):
    """``dD11 = strict_lower(dz^T w)`` over all rows (``dz, w : (N, nv)``), one product."""
    xp = array_namespace(dz)
    return xp.tril(mm(dz.mT, w), k=-1)


def as_phi(activation):
    """The equilibrium layer as the feedback map ``phi``; its parameters are ``Params(D11)``."""
    # The time loop calls phi with the same D11 at every step; building the unit-triangular
    # matrices once per D11 instead of once per step saves about a tenth of a rollout.
    memo = {}

    def triangular(D11, lower):
        hit = memo.get(lower)
        if hit is None or hit[0] is not D11:
            hit = memo[lower] = (D11, _unit_triangular(D11, lower))
        return hit[1]

    def forward(params, v):
        sigma = activations.function(activation, array_namespace(v))
        w = _forward_rows(sigma, triangular(params.D11, True), v)
        return w, Cache(w)

    def backward(params, cache, dw):
        dz = _backward_rows(activation, triangular(params.D11, False), cache.w, dw)
        return dz, GradCache(dz)

    def grads(params, cache, grad_cache):
        return Params(weight_grads(grad_cache.dz, cache.w))

    return Phi(forward, backward, grads, compiled=("equilibrium", activation))
