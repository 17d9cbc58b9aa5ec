"""Deep equilibrium layer ``z* = sigma(W z* + U x + b)`` with root-finding forward and
implicit-function backward.

Bai, Kolter & Koltun, "Deep Equilibrium Models". The layer is an infinitely deep
weight-tied network; its output is a fixed point, found by one of the solvers of
``r2dn_np.core.fixed_point`` (``cfg.solver`` in ``fixed_point.SOLVERS``: plain iteration, Anderson
acceleration or Broyden's method).

The backward pass never unrolls the iteration: with ``J = diag(sigma'(W z* + U x + b))``
it solves the adjoint equation ``(I - W^T J) mu = dz`` with the same solver and sends
``J mu`` into ``W, U, b`` and ``x``, so memory does not grow with the iteration count.

Every solve reports a ``fixed_point.SolveResult`` (iterate, relative residual trace,
iteration count, ``converged``): the forward solve's on ``cache.result``, the adjoint
solve's as the third value of ``backward``. ``forward`` and ``backward`` raise
``fixed_point.NotConverged``, which carries the result, instead of returning an iterate that
is not an equilibrium. An unconstrained ``W`` may have no equilibrium, or many;
``r2dn_np.mondeq`` parameterises ``W`` so that there is always exactly one.

Rows are batch entries: ``x`` is ``(N, n_in)``, ``z`` is ``(N, n)``, and the pre-activation
is ``z W^T + x U^T + b``. Derivations: ``docs/derivations/deq.md``, equations (D1)-(D7).

Examples
--------
>>> import numpy as np
>>> from r2dn_np import deq
>>> from r2dn_np.training import losses
>>> cfg = deq.Config(n_in=3, n=5, solver="anderson", tol=1e-10)
>>> explicit, _ = deq.direct_to_explicit(cfg, deq.init(cfg, seed=0))
>>> x = np.random.default_rng(0).standard_normal((4, 3))
>>> z, cache = deq.forward(cfg, explicit, x)
>>> bool(deq.residual(cfg, explicit, x, z) < 1e-10), cache.result.converged
(True, True)
>>> d_explicit, dx, result = deq.backward(cfg, explicit, cache, np.ones((4, 5)))
>>> d_explicit.W.shape, dx.shape, result.converged
((5, 5), (4, 3), True)
>>> value, grads = deq.value_and_grad(cfg, deq.init(cfg, seed=0), x, lambda z: losses.mse(z, 0 * z))
>>> grads.direct.W.shape, grads.x.shape
((5, 5), (4, 3))
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from .core import _validate, activations, fixed_point
from .core._config import JSONConfig
from .core._random import lecun_normal
from .layers import equilibrium_model

__all__ = [
    "Config",
    "Direct",
    "Explicit",
    "Cache",
    "Grads",
    "init",
    "direct_to_explicit",
    "direct_to_explicit_vjp",
    "forward",
    "backward",
    "value_and_grad",
    "residual",
]

# spectral norm of W at initialisation: with slopes in [0, 1] the map is then a contraction
_INIT_W_NORM = 0.5


@dataclasses.dataclass(frozen=True)
class Config(JSONConfig):
    """Sizes and solver options of a DEQ layer ``R^n_in -> R^n``.

    ``solver`` is one of ``fixed_point.SOLVERS``. ``tol`` in (0, 1) bounds the relative
    residual ``||F(z) - z|| / (||F(z)|| + ||c||)`` (Frobenius norms over the batch; ``c`` the
    input injection, or ``dz`` for the adjoint solve of the backward pass); ``max_iter`` caps
    the evaluations of ``F``. ``anderson_m`` is Anderson's memory and ``anderson_beta`` its
    mixing (1 = undamped). The default ``tol`` suits float64; float32 needs about ``1e-6`` or
    more.
    """

    n_in: int
    n: int
    activation: str = "tanh"
    solver: str = "anderson"
    tol: float = 1e-8
    max_iter: int = 200
    anderson_m: int = 5
    anderson_beta: float = 1.0

    model: ClassVar[str] = "deq"

    def __post_init__(self):
        _validate.dimension("n_in", self.n_in)
        _validate.dimension("n", self.n)
        _validate.one_of("activation", self.activation, activations.NAMES)
        tol, max_iter, m, beta = fixed_point.check_options(
            self.solver, self.tol, self.max_iter, self.anderson_m, self.anderson_beta
        )
        object.__setattr__(self, "tol", tol)
        object.__setattr__(self, "max_iter", max_iter)
        object.__setattr__(self, "anderson_m", m)
        object.__setattr__(self, "anderson_beta", beta)


class Direct(NamedTuple):
    W: object  # (n, n)
    U: object  # (n, n_in)
    b: object  # (n,)


class Explicit(NamedTuple):
    """The layer's weights; for an unconstrained DEQ they are the free parameters."""

    W: object  # (n, n)
    U: object  # (n, n_in)
    b: object  # (n,)


class Cache(NamedTuple):
    x: object  # (N, n_in)
    z: object  # (N, n) the equilibrium returned by forward
    s: object  # (N, n) sigma(z W^T + x U^T + b), from which the slopes J are read
    result: fixed_point.SolveResult  # the forward solve's statistics


class Grads(NamedTuple):
    """What :func:`value_and_grad` returns besides the value."""

    direct: Direct
    x: object  # (N, n_in)


def _draw(cfg, rng):
    """Gaussian ``W`` rescaled to spectral norm 0.5, lecun-normal ``U``, ``b = 0``.

    With activation slopes in [0, 1] the initial layer is a contraction (factor 0.5), so every
    solver converges at initialisation; training may move ``W`` anywhere.
    """
    W = rng.standard_normal((cfg.n, cfg.n))
    W *= _INIT_W_NORM / max(float(np.linalg.norm(W, 2)), 1e-300)
    U = lecun_normal(rng, (cfg.n_in, cfg.n)).T
    return Direct(W, U, np.zeros(cfg.n))


# The map is the identity (an unconstrained DEQ has no parameterisation, and no map cache); it is
# kept so that every model is called the same way.


def _map(cfg, direct):
    return Explicit(direct.W, direct.U, direct.b), None


def _map_vjp(cfg, cache, d_explicit):
    return Direct(d_explicit.W, d_explicit.U, d_explicit.b)


def _solver_options(cfg):
    return dict(
        solver=cfg.solver, tol=cfg.tol, max_iter=cfg.max_iter,
        anderson_m=cfg.anderson_m, anderson_beta=cfg.anderson_beta,
    )


_HINT = (
    "The equilibrium map may not be a contraction (an unconstrained W can have no equilibrium, "
    "or several); try another solver, a larger max_iter, or the monotone parameterisation of "
    "r2dn_np.mondeq"
)


# --- the layer: the forward solve (D1), (D5)-(D7) and the adjoint solve (D2)-(D4) ----------------


def _solve(cfg, explicit, x, z0):
    """The equilibrium of every row of ``x`` by ``cfg.solver``; the output is ``z`` itself."""
    W, U, b = explicit.W, explicit.U, explicit.b
    c = x @ U.mT + b  # the input injection does not change during the solve

    def F(z):
        return activations.apply(cfg.activation, z @ W.mT + c)

    result = fixed_point.solve(F, z0, scale=fixed_point.frobenius_norm(c), **_solver_options(cfg))
    fixed_point.raise_unless_converged(result, "deq.forward", cfg.tol, cfg.max_iter, _HINT)
    return result.z, Cache(x, result.z, result.fz, result)


def _solve_adjoint(cfg, explicit, cache, dz):
    """Solves ``mu = dz + W^T J mu`` (rows: ``mu = dz + (J * mu) W``) with ``cfg.solver``, then
    with ``v = J mu``: ``dW = v^T z``, ``dU = v^T x``, ``db = sum_rows v``, ``dx = v U``."""
    xp = array_namespace(dz)
    W = explicit.W
    J = activations.slope_from_output(cfg.activation, cache.s)

    def G(mu):
        return dz + (J * mu) @ W

    result = fixed_point.solve(G, dz, scale=fixed_point.frobenius_norm(dz), **_solver_options(cfg))
    fixed_point.raise_unless_converged(result, "deq.backward (adjoint solve)", cfg.tol, cfg.max_iter, _HINT)
    v = J * result.z
    d_explicit = Explicit(v.mT @ cache.z, v.mT @ cache.x, xp.sum(v, axis=0))
    return d_explicit, v @ explicit.U, result


# --- the rest of the protocol, shared with the monDEQ (layers/equilibrium_model.py) -------------

(init, direct_to_explicit, direct_to_explicit_vjp, forward, backward, value_and_grad, residual,
 _check_cfg, _templates) = equilibrium_model.functions(equilibrium_model.Spec(
    "deq", Config, Cache, Grads, _draw, _map, _map_vjp, None, _solve, _solve_adjoint, ("z", "n")))
