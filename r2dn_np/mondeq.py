"""Monotone operator equilibrium network (monDEQ): a DEQ layer whose equilibrium always exists
and is unique, and a fully connected classifier built on it.

Winston & Kolter, "Monotone operator equilibrium networks". The weight of the equilibrium
layer ``z = sigma(W z + U x + b)`` is parameterised as

    W = (1 - m) I - A^T A + B - B^T,        m > 0,

so that the symmetric part of ``I - W`` is ``m I + A^T A >= m I``: the operator
``z -> (I - W) z`` is strongly monotone and the equilibrium is the unique zero of a sum of
two monotone operators, found by operator splitting with step ``alpha``:

- ``"fb"`` forward-backward: ``z <- sigma((1 - alpha) z + alpha (W z + U x + b))``. Converges
  for ``alpha < 2 m / ||I - W||_2^2``; larger steps may oscillate or diverge, and then the
  layer raises ``r2dn_np.core.fixed_point.NotConverged`` (never returns the iterate).
- ``"pr"`` Peaceman-Rachford: uses the resolvent ``V = (I + alpha (I - W))^{-1}``, computed
  once per forward call (one per parameter update) and reused by the backward pass;
  converges for every ``alpha > 0``.

The activation must be the proximal operator of ``alpha f`` for every ``alpha``, which holds
for ReLU (projection onto the nonnegative orthant) and the identity (``f = 0``). The
backward pass solves the transposed equilibrium ``v = J (W^T v + dz)`` with the same
splitting (its "activation" ``y -> J y`` is the prox of a convex quadratic). The classifier
reads the equilibrium out linearly: ``logits = z C^T + c``.

Rows are batch entries: ``x`` is ``(N, n_in)``, ``z`` is ``(N, n)``, logits ``(N, n_out)``.
The forward solve's ``fixed_point.SolveResult`` is ``cache.result``; the backward solve's is
the third value of ``backward``. Derivations: ``docs/derivations/deq.md``, equations (M1)-(M7).

Examples
--------
>>> import numpy as np
>>> from r2dn_np.training import losses
>>> from r2dn_np import mondeq
>>> cfg = mondeq.Config(n_in=4, n=8, n_out=3, splitting="pr", alpha=1.0, tol=1e-10)
>>> explicit, map_cache = mondeq.direct_to_explicit(cfg, mondeq.init(cfg, seed=0))
>>> x = np.random.default_rng(0).standard_normal((5, 4))
>>> logits, cache = mondeq.forward(cfg, explicit, x)
>>> bool(mondeq.residual(cfg, explicit, x, cache.z) <= 1e-10)
True
>>> d_explicit, dx, result = mondeq.backward(cfg, explicit, cache, np.ones((5, 3)))
>>> d_direct = mondeq.direct_to_explicit_vjp(cfg, map_cache, d_explicit)
>>> d_direct.A.shape, dx.shape, result.converged
((8, 8), (5, 4), True)
>>> labels = np.arange(5) % 3
>>> value, grads = mondeq.value_and_grad(
...     cfg, mondeq.init(cfg, seed=0), x, lambda out: losses.softmax_cross_entropy(out, labels))
>>> grads.direct.A.shape, grads.x.shape
((8, 8), (5, 4))
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from .core import _validate, activations, fixed_point, linalg
from .core._config import JSONConfig
from .core._random import lecun_normal
from .layers import equilibrium_model

__all__ = [
    "ACTIVATIONS",
    "SPLITTINGS",
    "Config",
    "Direct",
    "Explicit",
    "MapCache",
    "Cache",
    "Grads",
    "init",
    "direct_to_explicit",
    "direct_to_explicit_vjp",
    "forward",
    "backward",
    "value_and_grad",
    "residual",
    "fb_alpha_bound",
    "resolvent",
]

ACTIVATIONS = ("relu", "identity")
SPLITTINGS = ("pr", "fb")


@dataclasses.dataclass(frozen=True)
class Config(JSONConfig):
    """Sizes and options of a monDEQ classifier ``R^n_in -> R^n_out`` with ``n`` equilibrium units.

    ``m`` is the strong-monotonicity margin, ``splitting`` and ``alpha`` the operator
    splitting and its step (used by the forward and the backward solve alike), ``tol`` in
    (0, 1) the bound on the relative residual ``||F(z) - z|| / (||F(z)|| + ||c||)`` of both
    solves (``c = x U^T + b`` forward, ``dz`` backward; see
    ``r2dn_np.core.fixed_point.relative_residual``) and ``max_iter`` their iteration cap.
    """

    n_in: int
    n: int
    n_out: int
    m: float = 0.1
    activation: str = "relu"
    splitting: str = "pr"
    alpha: float = 1.0
    tol: float = 1e-6
    max_iter: int = 500

    model: ClassVar[str] = "mondeq"

    def __post_init__(self):
        _validate.dimension("n_in", self.n_in)
        _validate.dimension("n", self.n)
        _validate.dimension("n_out", self.n_out)
        object.__setattr__(self, "m", _validate.positive_float("m", self.m))
        _validate.one_of("activation", self.activation, ACTIVATIONS)
        _validate.one_of("splitting", self.splitting, SPLITTINGS)
        object.__setattr__(self, "alpha", _validate.positive_float("alpha", self.alpha))
        tol, max_iter = fixed_point.check_stopping(self.tol, self.max_iter)
        object.__setattr__(self, "tol", tol)
        object.__setattr__(self, "max_iter", max_iter)


class Direct(NamedTuple):
    A: object  # (n, n)
    B: object  # (n, n)
    U: object  # (n, n_in)
    b: object  # (n,)
    C: object  # (n_out, n) readout
    c: object  # (n_out,)


class Explicit(NamedTuple):
    """``z = sigma(z W^T + x U^T + b)``, ``logits = z C^T + c``."""

    W: object  # (n, n)
    U: object  # (n, n_in)
    b: object  # (n,)
    C: object  # (n_out, n)
    c: object  # (n_out,)


class MapCache(NamedTuple):
    A: object  # (n, n)


class Cache(NamedTuple):
    x: object  # (N, n_in)
    z: object  # (N, n) the equilibrium
    s: object  # (N, n) sigma(z W^T + x U^T + b), from which the slopes J are read
    V: object  # (n, n) resolvent (I + alpha (I - W))^{-1}, None for "fb"
    result: fixed_point.SolveResult  # the forward solve's statistics


class Grads(NamedTuple):
    """What :func:`value_and_grad` returns besides the value."""

    direct: Direct
    x: object  # (N, n_in)


def _draw(cfg, rng):
    """Gaussian ``A, B`` with entries of variance ``1 / (4 n)`` (so ``||A^T A|| ~ 1``),
    lecun-normal ``U`` and ``C``, zero biases."""
    n = cfg.n
    A = rng.standard_normal((n, n)) / (2.0 * math.sqrt(n))
    B = rng.standard_normal((n, n)) / (2.0 * math.sqrt(n))
    U = lecun_normal(rng, (cfg.n_in, n)).T
    C = lecun_normal(rng, (n, cfg.n_out)).T
    return Direct(A, B, U, np.zeros(n), C, np.zeros(cfg.n_out))


def _map(cfg, direct):
    """(M1) of ``docs/derivations/deq.md``: ``W = (1 - m) I - A^T A + B - B^T``; the other
    weights pass through."""
    A, B = direct.A, direct.B
    I = linalg.eye_like(cfg.n, A)
    W = (1.0 - cfg.m) * I - linalg.gram(A) + B - B.mT
    return Explicit(W, direct.U, direct.b, direct.C, direct.c), MapCache(A)


def _map_vjp(cfg, cache, d_explicit):
    """(M2): ``dA = -A (dW + dW^T)``, ``dB = dW - dW^T``; the other fields pass through."""
    dW = d_explicit.W
    return Direct(
        linalg.gram_vjp(cache.A, -dW), dW - dW.mT,
        d_explicit.U, d_explicit.b, d_explicit.C, d_explicit.c,
    )


def fb_alpha_bound(cfg, explicit):
    """``2 m / ||I - W||_2^2``: forward-backward splitting converges for steps below it.

    Notes
    -----
    ``docs/derivations/deq.md``, equation (M6).
    """
    _check_cfg(cfg)
    xp = _validate.container("explicit", explicit, _templates(cfg)[1])
    I = linalg.eye_like(cfg.n, explicit.W)
    # the largest singular value, as the root of the largest eigenvalue of M^T M
    M = I - explicit.W
    L2 = float(xp.max(xp.linalg.eigvalsh(M.mT @ M)))
    return 2.0 * cfg.m / L2


# --- operator splitting, shared by the forward and the transposed backward problem -----------


def _split(cfg, apply_W, apply_V, prox, prox_1, rhs, z0):
    """Find ``z = prox_1(apply_W(z) + rhs)`` by FB or PR splitting.

    ``apply_W`` multiplies rows by the layer matrix, ``apply_V`` by the resolvent,
    ``prox = prox_{alpha f}`` and ``prox_1 = prox_f``. The residual is measured at every
    iterate ``z``; for "fb" the same product ``apply_W(z)`` serves the residual and the step.
    """
    alpha = cfg.alpha
    z = u = z0
    # trusted arrays: the unchecked residual of fixed_point (the public one checks its arguments)
    scale = fixed_point._norm(rhs)
    trace = []
    for _ in range(cfg.max_iter):
        a = apply_W(z) + rhs
        fz = prox_1(a)
        res = fixed_point._relative_residual(fz, z, scale)
        trace.append(res)
        if res <= cfg.tol:
            return fixed_point.SolveResult(z, fz, tuple(trace), len(trace), True, cfg.splitting)
        if not math.isfinite(res) or len(trace) == cfg.max_iter:
            break  # no step after the last evaluation: z stays the iterate that fz and trace measured
        if cfg.splitting == "fb":
            z = prox((1.0 - alpha) * z + alpha * a)
        else:
            u_half = 2.0 * z - u
            u = 2.0 * apply_V(u_half + alpha * rhs) - u_half
            z = prox(u)
    return fixed_point.SolveResult(z, fz, tuple(trace), len(trace), False, cfg.splitting)


def _hint(cfg):
    if cfg.splitting == "fb":
        return (
            f"Forward-backward splitting converges only for alpha < 2 m / ||I - W||^2 "
            f"(see fb_alpha_bound); alpha={cfg.alpha:g} may be too large. Peaceman-Rachford "
            "(splitting='pr') converges for every alpha > 0"
        )
    return "Peaceman-Rachford converges for every alpha > 0 but may need a larger max_iter"


def resolvent(cfg, explicit):
    """``V = (I + alpha (I - W))^{-1}``, invertible because ``I - W`` is monotone.

    Notes
    -----
    ``docs/derivations/deq.md``, equation (M7).
    """
    _check_cfg(cfg)
    _validate.container("explicit", explicit, _templates(cfg)[1])
    return _resolvent(cfg, explicit)


def _resolvent(cfg, explicit):
    I = linalg.eye_like(cfg.n, explicit.W)
    return linalg.solve(I + cfg.alpha * (I - explicit.W), I)


# --- the layer: the forward splitting (D1), (D5), (M6)-(M7) and the backward one (M3)-(M5) --------


def _solve(cfg, explicit, x, z0):
    """The equilibrium of every row of ``x`` by ``cfg.splitting``, and the logits."""
    W = explicit.W
    act = cfg.activation
    V = _resolvent(cfg, explicit) if cfg.splitting == "pr" else None
    rhs = x @ explicit.U.mT + explicit.b

    def apply_W(z):
        return z @ W.mT

    def apply_V(u):
        return u @ V.mT

    def sigma(a):
        # ReLU and the identity are prox_{alpha f} for every alpha
        return activations.apply(act, a)

    result = _split(cfg, apply_W, apply_V, sigma, sigma, rhs, z0)
    fixed_point.raise_unless_converged(result, "mondeq.forward", cfg.tol, cfg.max_iter, _hint(cfg))
    z = result.z
    return z @ explicit.C.mT + explicit.c, Cache(x, z, result.fz, V, result)


def _check_resolvent(cfg, explicit, cache):
    """The cache's own field: Peaceman-Rachford's backward pass reuses the forward's resolvent."""
    if cfg.splitting == "pr":
        if cache.V is None:
            raise ValueError("cache.V is None (a forward-backward cache) but cfg.splitting is 'pr'; "
                             "run mondeq.forward with this cfg")
        _validate.array("cache.V", cache.V, [("n", cfg.n), ("n", cfg.n)], like=explicit.W)


def _solve_adjoint(cfg, explicit, cache, dlogits):
    """Solves ``v = J (W^T v + dz)`` (rows: ``v = J * (v W + dz)``), ``dz = dlogits C``, with
    the same splitting and step as the forward pass, then ``dW = v^T z``, ``dU = v^T x``,
    ``db = sum_rows v``, ``dx = v U``."""
    xp = array_namespace(dlogits)
    W, V, alpha = explicit.W, cache.V, cfg.alpha
    J = activations.slope_from_output(cfg.activation, cache.s)
    dz = dlogits @ explicit.C
    # y -> J y is prox_{alpha g} for g(y) = sum (1/J - 1) y^2 / 2 (J = 0: the indicator of 0)
    shrink = J / (J + alpha * (1.0 - J))

    def apply_W(v):
        return v @ W

    def apply_V(u):
        return u @ V  # the resolvent of I - W^T is V^T: rows multiply by V

    def prox(y):
        return shrink * y

    def prox_1(y):
        return J * y

    result = _split(cfg, apply_W, apply_V, prox, prox_1, dz, xp.zeros_like(dz))
    fixed_point.raise_unless_converged(result, "mondeq.backward", cfg.tol, cfg.max_iter, _hint(cfg))
    v = result.z
    d_explicit = Explicit(
        v.mT @ cache.z, v.mT @ cache.x, xp.sum(v, axis=0),
        dlogits.mT @ cache.z, xp.sum(dlogits, axis=0),
    )
    return d_explicit, v @ explicit.U, result


# --- the rest of the protocol, shared with the DEQ (layers/equilibrium_model.py) ----------------

(init, direct_to_explicit, direct_to_explicit_vjp, forward, backward, value_and_grad, residual,
 _check_cfg, _templates) = equilibrium_model.functions(equilibrium_model.Spec(
    "mondeq", Config, Cache, Grads, _draw, _map, _map_vjp, lambda direct: MapCache(direct.A),
    _solve, _solve_adjoint, ("logits", "n_out"), _check_resolvent))
