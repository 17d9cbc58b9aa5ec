"""Empirical checks of the guarantees on sampled and adversarially searched trajectories
(``docs/guarantees.md``): incremental gain of input-output sequence maps, and the decay
of the state difference in the contraction metric.

These are evidence, not proof: a search can miss the worst direction. They complement the
certificates (``r2dn_np.checks.certificates``), which are the proof. Values come back as host
floats; the functions synchronise with the device and are meant for tests, scripts and
``r2dn verify``, not for training loops.

Examples
--------
>>> import numpy as np
>>> from r2dn_np import r2dn
>>> from r2dn_np.checks import empirical
>>> cfg = r2dn.Config(nu=1, nx=2, nv=3, ny=1, kind="lipschitz", gamma=0.5)
>>> explicit, _ = r2dn.direct_to_explicit(cfg, r2dn.init(cfg, seed=0))
>>> f = empirical.feedback_map(explicit, r2dn.phi(cfg), np.zeros((4, 2)))
>>> rng = np.random.default_rng(0)
>>> U1, U2 = rng.standard_normal((2, 10, 4, 1))
>>> bool(empirical.pair_ratios(f, U1, U2).max() <= 0.5)
True
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from ..loop import feedback
from ..core.backend import to_numpy

__all__ = [
    "SequenceMap",
    "feedback_map",
    "pair_ratios",
    "random_pair_search",
    "jacobian_gain",
    "ascend_pair_ratio",
    "contraction_trace",
    "supply_ratios",
    "descend_supply",
]


class SequenceMap(NamedTuple):
    """An input-output map on sequences from a fixed initial state."""

    outputs: Callable  # U (T, B, nu) -> Y (T, B, ny)
    vjp: Callable  # (U, dY) -> dU


def feedback_map(explicit, phi, x0):
    """The map ``U -> Y`` of a feedback model started at ``x0`` (B, nx), with its BPTT VJP."""
    def outputs(U):
        return feedback.forward(explicit, phi, x0, U)[1]

    def vjp(U, dY):
        _, _, cache = feedback.forward(explicit, phi, x0, U)
        return feedback.backward(explicit, phi, cache, dY)[2]

    return SequenceMap(outputs, vjp)


def _host(a):
    return np.asarray(to_numpy(a), dtype=np.float64)


def pair_ratios(f, U1, U2):
    """Per-sequence ``||Y1 - Y2|| / ||U1 - U2||`` over whole sequences; ``(B,)`` host array."""
    dY = _host(f.outputs(U1)) - _host(f.outputs(U2))
    dU = _host(U1) - _host(U2)
    return np.sqrt(np.sum(dY**2, axis=(0, 2)) / np.sum(dU**2, axis=(0, 2)))


def random_pair_search(f, shape, xp, dtype, rng, scales=(0.1, 1.0, 10.0), dscales=(1e-3, 0.1, 1.0, 10.0)):
    """Largest pair ratio over random inputs at several input and difference scales."""
    best = 0.0
    for s in scales:
        for ds in dscales:
            U1 = s * rng.standard_normal(shape)
            U2 = U1 + ds * rng.standard_normal(shape)
            r = pair_ratios(f, xp.astype(xp.asarray(U1), dtype), xp.astype(xp.asarray(U2), dtype))
            best = max(best, float(r.max()))
    return best


def jacobian_gain(f, U, rng, iters=40, h=1e-6):
    """Power iteration for ``sigma_max(dY/dU)`` at ``U`` (one sequence, B = 1).

    ``J^T`` comes from the model's own backward pass; ``J v`` from a central difference of
    the forward pass with step ``h`` (the maps here are piecewise smooth).
    """
    xp = array_namespace(U)
    v = rng.standard_normal(tuple(U.shape))
    v /= np.linalg.norm(v)
    sigma = 0.0
    for _ in range(iters):
        dv = xp.astype(xp.asarray(h * v), U.dtype)
        Jv = (_host(f.outputs(U + dv)) - _host(f.outputs(U - dv))) / (2 * h)
        sigma = float(np.linalg.norm(Jv))
        if sigma == 0.0:
            return 0.0
        w = _host(f.vjp(U, xp.astype(xp.asarray(Jv), U.dtype)))
        v = w / np.linalg.norm(w)
    return sigma


def ascend_pair_ratio(f, U1, U2, steps=100, lr=0.05):
    """Gradient ascent on the pair ratio ``||Y1 - Y2||^2 / ||U1 - U2||^2`` (all sequences of
    the batch at once), with gradients from the model's backward pass. Returns the best
    ratio seen (not squared)."""
    xp = array_namespace(U1)
    a, b = _host(U1), _host(U2)
    best = 0.0
    for _ in range(steps):
        A, B = xp.astype(xp.asarray(a), U1.dtype), xp.astype(xp.asarray(b), U1.dtype)
        dY = _host(f.outputs(A)) - _host(f.outputs(B))
        dU = a - b
        nu2 = np.sum(dU**2, axis=(0, 2), keepdims=True)
        r2 = np.sum(dY**2, axis=(0, 2), keepdims=True) / nu2
        best = max(best, float(np.sqrt(r2.max())))
        gY = xp.astype(xp.asarray(dY / nu2), U1.dtype)
        ga = 2 * (_host(f.vjp(A, gY)) - r2 * dU / nu2)
        gb = 2 * (-_host(f.vjp(B, gY)) + r2 * dU / nu2)
        # normalised steps, scaled by each pair's distance so both small and large pairs move
        norm = np.sqrt(np.sum(ga**2 + gb**2, axis=(0, 2), keepdims=True)) + 1e-300
        scale = lr * np.sqrt(nu2) / norm
        a, b = a + scale * ga, b + scale * gb
    return best


def supply_ratios(f, Q, S, R, U1, U2):
    """Per-sequence ``sum_t s(dy_t, du_t) / sum_t |du_t|^2`` from a common initial state, with
    ``s(y, u) = y^T Q y + 2 u^T S y + u^T R u``; a (Q, S, R)-dissipative map keeps it ``>= 0``."""
    from ..core.supply import supply_sum

    dY = _host(f.outputs(U1)) - _host(f.outputs(U2))
    dU = _host(U1) - _host(U2)
    return supply_sum(Q, S, R, dY, dU) / np.sum(dU**2, axis=(0, 2))


def descend_supply(f, Q, S, R, U1, U2, steps=100, lr=0.05):
    """Gradient descent on the normalised supply of :func:`supply_ratios` (all sequences at once),
    gradients from the model's backward pass. Returns the smallest ratio seen."""
    xp = array_namespace(U1)
    a, b = _host(U1), _host(U2)
    worst = np.inf
    for _ in range(steps):
        A, B = xp.astype(xp.asarray(a), U1.dtype), xp.astype(xp.asarray(b), U1.dtype)
        dY = _host(f.outputs(A)) - _host(f.outputs(B))
        dU = a - b
        n2 = np.sum(dU**2, axis=(0, 2), keepdims=True)
        r = (np.einsum("tbi,ij,tbj->b", dY, Q, dY) + 2 * np.einsum("tbi,ij,tbj->b", dU, S, dY)
             + np.einsum("tbi,ij,tbj->b", dU, R, dU))[None, :, None] / n2
        worst = min(worst, float(r.min()))
        # d(ratio)/dY = 2 (Q dY + S^T dU) / n2, then through the model to each input sequence
        gY = 2 * (dY @ Q + dU @ S) / n2
        gU = 2 * (dU @ R + dY @ S.T) / n2 - 2 * r * dU / n2
        vjpY = xp.astype(xp.asarray(gY), U1.dtype)
        ga = _host(f.vjp(A, vjpY)) + gU
        gb = -_host(f.vjp(B, vjpY)) - gU
        norm = np.sqrt(np.sum(ga**2 + gb**2, axis=(0, 2), keepdims=True)) + 1e-300
        scale = lr * np.sqrt(n2) / norm
        a, b = a - scale * ga, b - scale * gb
    return worst


def contraction_trace(explicit, phi, M, x0_a, x0_b, U):
    """``V_t = |x^a_t - x^b_t|^2_M`` for t = 0..T along two trajectories under the same input.

    Returns a ``(T + 1, B)`` host array.
    """
    _, _, ca = feedback.forward(explicit, phi, x0_a, U)
    _, _, cb = feedback.forward(explicit, phi, x0_b, U)
    dX = _host(ca.X) - _host(cb.X)
    return np.einsum("tbi,ij,tbj->tb", dX, _host(M), dX)
