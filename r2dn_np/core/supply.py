"""Incremental (Q, S, R) supply rates, and the map that gives a model one: a unit-gain core on
transformed signals, mapped back by ``L_Q``, ``L_R`` and a feedthrough shift.

A model is incrementally (Q, S, R)-dissipative if, from equal initial states, every pair of input
sequences gives ``sum_t s(Dy_t, Du_t) >= 0`` with ``s(y, u) = y^T Q y + 2 u^T S y + u^T R u``
(``S`` is ``nu x ny``). For ``Q < 0`` and ``R - S Q^-1 S^T > 0`` completing the square gives

    s(y, u) = |u~|^2 - |y~|^2,   u~ = L_R u,   y~ = L_Q (y - (-Q)^-1 S^T u),

with ``L_Q^T L_Q = -Q`` and ``L_R^T L_R = R - S Q^-1 S^T``, so the model is (Q, S, R)-dissipative
exactly when the map ``u~ -> y~`` has incremental l2 gain 1. The feedback models build that unit-gain
core with their gamma-Lipschitz map at gamma = 1 and :func:`transform` maps it back:

    B2 = B2c L_R,  D12 = D12c L_R,  C2 = L_Q^-1 C2c,  D21 = L_Q^-1 D21c,
    D22 = L_Q^-1 D22c L_R + (-Q)^-1 S^T.

The l2 gain gamma is the case ``(Q, S, R) = (-I/gamma, 0, gamma I)``: ``L_Q^-1 = L_R = sqrt(gamma) I``
and no shift, which is how a learnable ``gamma = exp(log_gamma)`` enters (:func:`gain_factors`).
Derivations: ``docs/derivations/qsr.md``; worked examples: ``docs/supply_rates.md``.

Examples
--------
>>> import numpy as np
>>> from r2dn_np.core import supply
>>> Q, S, R = supply.check(1, 1, [[-1.0]], [[0.5]], [[1.0]])   # output-strict passivity-like sector
>>> f = supply.host_factors(Q, S, R)
>>> round(float(f.shift[0, 0]), 12), round(float(f.LR[0, 0] ** 2), 12)   # (-Q)^-1 S^T, R - S Q^-1 S^T
(0.5, 1.25)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import NamedTuple

import numpy as np
from array_api_compat import array_namespace

from . import _validate, linalg
from .backend import asarray

__all__ = ["config_matrix", "check", "model_factors", "supply_map", "supply_map_vjp", "Factors", "host_factors", "factors", "gain_factors", "transform", "transform_vjp",
           "core_config", "matrices", "example", "supply_sum"]


def _matrix(name, value, shape):
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(f"{name} must be a {shape[0]} x {shape[1]} matrix (nested lists of numbers); "
                        f"got {type(value).__name__}")
    rows = []
    for i, row in enumerate(value):
        if isinstance(row, (str, bytes)) or not isinstance(row, (list, tuple, np.ndarray)):
            raise TypeError(f"{name}[{i}] must be a row of numbers; got {type(row).__name__}")
        out = []
        for j, v in enumerate(row):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating, np.integer)):
                raise TypeError(f"{name}[{i}][{j}] must be a number; got {v!r}")
            if not math.isfinite(float(v)):
                raise ValueError(f"{name}[{i}][{j}] must be finite; got {v!r}")
            out.append(float(v))
        rows.append(tuple(out))
    got = (len(rows), len(rows[0]) if rows else 0)
    if got != shape or any(len(r) != shape[1] for r in rows):
        raise ValueError(f"{name} must be {shape[0]} x {shape[1]}; got {got[0]} rows of lengths "
                         f"{sorted({len(r) for r in rows})}")
    return tuple(rows)


def config_matrix(name, value, kind):
    """A Config's ``Q``, ``S`` or ``R``: required for ``kind="qsr"``, None for every other kind."""
    if kind == "qsr" and value is None:
        raise ValueError(f"kind='qsr' needs the supply rate's {name} (nested lists of numbers)")
    if kind != "qsr" and value is not None:
        raise ValueError(f"{name} is the supply rate of kind='qsr'; it must be None for kind={kind!r}")
    return value


def check(nu, ny, Q, S, R):
    """Validated ``(Q, S, R)`` as tuples of tuples: ``Q`` (ny x ny) symmetric negative definite,
    ``S`` (nu x ny), ``R`` (nu x nu) symmetric with ``R - S Q^-1 S^T`` positive definite."""
    Q, S, R = _matrix("Q", Q, (ny, ny)), _matrix("S", S, (nu, ny)), _matrix("R", R, (nu, nu))
    q, s, r = np.array(Q), np.array(S), np.array(R)
    for name, m in (("Q", q), ("R", r)):
        if not np.allclose(m, m.T, rtol=0, atol=1e-12 * max(1.0, np.abs(m).max())):
            raise ValueError(f"{name} must be symmetric; got {m.tolist()}")
    if np.linalg.eigvalsh(q).max() >= 0:
        raise ValueError(f"Q must be negative definite (passivity, Q = 0, is not covered); "
                         f"its eigenvalues are {np.linalg.eigvalsh(q).tolist()}")
    schur = r - s @ np.linalg.solve(q, s.T)
    if np.linalg.eigvalsh(0.5 * (schur + schur.T)).min() <= 0:
        raise ValueError(f"R - S Q^-1 S^T must be positive definite; its eigenvalues are "
                         f"{np.linalg.eigvalsh(0.5 * (schur + schur.T)).tolist()}")
    return Q, S, R


class Factors(NamedTuple):
    LQinv: object  # (ny, ny): L_Q^-1 with L_Q^T L_Q = -Q
    LR: object  # (nu, nu): L_R^T L_R = R - S Q^-1 S^T
    shift: object  # (ny, nu): (-Q)^-1 S^T


@functools.lru_cache(maxsize=64)
def host_factors(Q, S, R):
    """:class:`Factors` in float64 NumPy from validated tuples (:func:`check`)."""
    q, s, r = np.array(Q), np.array(S), np.array(R)
    LQ = np.linalg.cholesky(-q).T  # upper: LQ^T LQ = -Q
    schur = r - s @ np.linalg.solve(q, s.T)
    LR = np.linalg.cholesky(0.5 * (schur + schur.T)).T
    return Factors(np.linalg.inv(LQ), LR, np.linalg.solve(-q, s.T))


def factors(cfg, like):
    """The fixed factors of ``cfg``'s ``(Q, S, R)`` on ``like``'s backend and dtype."""
    xp = array_namespace(like)
    return Factors(*(asarray(a, xp, like.dtype) for a in host_factors(cfg.Q, cfg.S, cfg.R)))


def gain_factors(log_gamma, nu, ny):
    """The factors of ``(-I/gamma, 0, gamma I)`` with ``gamma = exp(log_gamma)`` (a 0-d array), so
    that ``log_gamma`` gets its gradient through :func:`transform_vjp`."""
    xp = array_namespace(log_gamma)
    s = xp.exp(0.5 * log_gamma)
    return Factors(s * linalg.eye_like(ny, log_gamma), s * linalg.eye_like(nu, log_gamma),
                   xp.zeros((ny, nu), dtype=log_gamma.dtype))


def gain_factors_vjp(log_gamma, dLQinv, dLR):
    """Cotangent of ``log_gamma`` from those of the factors of :func:`gain_factors`."""
    xp = array_namespace(log_gamma)
    s = xp.exp(0.5 * log_gamma)
    return 0.5 * s * (xp.linalg.trace(dLQinv) + xp.linalg.trace(dLR))


def transform(core, f):
    """The explicit model of the unit-gain ``core`` mapped back to the supply of ``f``."""
    return core._replace(
        B2=core.B2 @ f.LR, D12=core.D12 @ f.LR, C2=f.LQinv @ core.C2, D21=f.LQinv @ core.D21,
        D22=f.LQinv @ core.D22 @ f.LR + f.shift,
    )


def transform_vjp(core, f, d):
    """Cotangents of the core's explicit model and of ``LQinv``, ``LR`` given ``d`` (that of the
    transformed model; None fields are zero). Returns ``(d_core, dLQinv, dLR)``."""
    xp = array_namespace(core.B2)
    dLQinv = xp.zeros_like(f.LQinv)
    dLR = xp.zeros_like(f.LR)
    out = {}
    if d.B2 is not None:
        out["B2"] = d.B2 @ f.LR.mT
        dLR = dLR + core.B2.mT @ d.B2
    if d.D12 is not None:
        out["D12"] = d.D12 @ f.LR.mT
        dLR = dLR + core.D12.mT @ d.D12
    if d.C2 is not None:
        out["C2"] = f.LQinv.mT @ d.C2
        dLQinv = dLQinv + d.C2 @ core.C2.mT
    if d.D21 is not None:
        out["D21"] = f.LQinv.mT @ d.D21
        dLQinv = dLQinv + d.D21 @ core.D21.mT
    if d.D22 is not None:
        out["D22"] = f.LQinv.mT @ d.D22 @ f.LR.mT
        dLQinv = dLQinv + d.D22 @ (core.D22 @ f.LR).mT
        dLR = dLR + (f.LQinv @ core.D22).mT @ d.D22
    return d._replace(**out), dLQinv, dLR


@functools.lru_cache(maxsize=64)
def core_config(cfg):
    """The config of the unit-gain core: the model's gamma-Lipschitz kind at gamma = 1."""
    return dataclasses.replace(cfg, kind="lipschitz", gamma=1.0, Q=None, S=None, R=None, learn_gamma=False)


def model_factors(cfg, direct):
    """The factors of a model's supply: its ``(Q, S, R)``, or its learned gamma."""
    if cfg.learn_gamma:
        return gain_factors(direct.log_gamma, cfg.nu, cfg.ny)
    return factors(cfg, direct.X)


def supply_map(cfg, direct, core_map):
    """A (Q, S, R) or learned-gamma model: ``core_map`` (the model's gamma-Lipschitz map) at the
    core config, then :func:`transform`. The cache keeps the core's explicit model for the VJP."""
    core, cache = core_map(core_config(cfg), direct)
    return transform(core, model_factors(cfg, direct)), cache._replace(core=core)


def supply_map_vjp(cfg, cache, d_explicit, core_map_vjp):
    """The VJP of :func:`supply_map` through ``core_map_vjp`` (the core's map VJP)."""
    d = cache.direct
    de_core, dLQinv, dLR = transform_vjp(cache.core, model_factors(cfg, d), d_explicit)
    d_direct = core_map_vjp(core_config(cfg), cache, de_core)
    if cfg.learn_gamma:
        return d_direct._replace(log_gamma=gain_factors_vjp(d.log_gamma, dLQinv, dLR))
    return d_direct


def matrices(cfg, direct=None):
    """``(Q, S, R)`` of a Lipschitz or (Q, S, R) model as float64 NumPy arrays; a learned gamma is
    read from ``direct.log_gamma``."""
    from .backend import to_numpy

    if cfg.kind == "qsr":
        return np.array(cfg.Q), np.array(cfg.S), np.array(cfg.R)
    gamma = cfg.gamma
    if getattr(cfg, "learn_gamma", False):
        gamma = float(np.exp(to_numpy(direct.log_gamma)))
    return -np.eye(cfg.ny) / gamma, np.zeros((cfg.nu, cfg.ny)), gamma * np.eye(cfg.nu)


def example(nu, ny, seed=0, kind="random"):
    """A valid ``(Q, S, R)`` as nested lists: ``"random"`` from random factors, ``"sector"`` the
    output-strict passivity-like ``(-I, I/2, I)`` (needs ``nu == ny``)."""
    nu, ny = _validate.dimension("nu", nu), _validate.dimension("ny", ny)
    _validate.seed("seed", seed)
    _validate.one_of("kind", kind, ("random", "sector"))
    if kind == "sector":
        if nu != ny:
            raise ValueError(f"the sector example needs nu == ny; got nu={nu}, ny={ny}")
        return (-np.eye(ny)).tolist(), (0.5 * np.eye(nu)).tolist(), np.eye(nu).tolist()
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((ny, ny))
    Q = -(a @ a.T / ny + 0.5 * np.eye(ny))
    S = 0.3 * rng.standard_normal((nu, ny))
    b = rng.standard_normal((nu, nu))
    R = b @ b.T / nu + 0.5 * np.eye(nu) + S @ np.linalg.solve(Q, S.T)  # so that R - S Q^-1 S^T > 0
    R = 0.5 * (R + R.T)
    return Q.tolist(), S.tolist(), R.tolist()


def supply_sum(Q, S, R, dY, dU):
    """``sum_t s(dy_t, du_t)`` per sequence for differences ``dY (T, B, ny)``, ``dU (T, B, nu)``
    (host float64 arrays); shape ``(B,)``."""
    return (np.einsum("tbi,ij,tbj->b", dY, Q, dY) + 2 * np.einsum("tbi,ij,tbj->b", dU, S, dY)
            + np.einsum("tbi,ij,tbj->b", dU, R, dU))
