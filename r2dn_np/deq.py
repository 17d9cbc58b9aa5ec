"""Deep equilibrium layer ``z* = sigma(W z* + U x + b)`` with root-finding forward and
implicit-function backward.

Bai, Kolter & Koltun, "Deep Equilibrium Models". The layer is an infinitely deep
weight-tied network; its output is a fixed point, found by one of three solvers:

- ``"fixed_point"``: plain iteration ``z <- F(z)``; converges when ``F`` contracts.
- ``"anderson"``: Anderson acceleration over the last ``anderson_m`` iterates (Walker & Ni,
  "Anderson Acceleration for Fixed-Point Iterations").
- ``"broyden"``: Broyden's good method on ``g(z) = F(z) - z``, one dense inverse-Jacobian
  estimate ``(n, n)`` per row of the batch.

The backward pass never unrolls the iteration: with ``J = diag(sigma'(W z* + U x + b))``
it solves the adjoint equation ``(I - W^T J) mu = dz`` with the same solver and sends
``J mu`` into ``W, U, b`` and ``x``, so memory does not grow with the iteration count.

Every solve reports a ``SolveResult`` (iterate, relative residual trace, iteration count,
``converged``); ``forward`` and ``backward`` raise :class:`NotConverged`, which carries the
result, instead of returning an iterate that is not an equilibrium. An unconstrained ``W``
may have no equilibrium, or many; ``r2dn_np.mondeq`` parameterises ``W`` so that there is
always exactly one.

Rows are batch entries: ``x`` is ``(N, n_in)``, ``z`` is ``(N, n)``, and the pre-activation
is ``z W^T + x U^T + b``. Derivations: ``docs/derivations/deq.md``.

Examples
--------
>>> import numpy as np
>>> from r2dn_np import deq
>>> cfg = deq.Config(n_in=3, n=5, solver="anderson", tol=1e-10)
>>> explicit, _ = deq.direct_to_explicit(cfg, deq.init(cfg, seed=0))
>>> x = np.random.default_rng(0).standard_normal((4, 3))
>>> z, cache = deq.forward(cfg, explicit, x)
>>> bool(deq.residual(cfg, explicit, x, z) < 1e-10), cache.result.converged
(True, True)
>>> dx, d_explicit = deq.backward(cfg, explicit, cache, np.ones((4, 5)))
>>> dx.shape, d_explicit.W.shape
((4, 3), (5, 5))
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from . import _validate, activations
from ._config import JSONConfig
from ._random import lecun_normal
from .backend import asarray, namespace

__all__ = [
    "SOLVERS",
    "Config",
    "Direct",
    "Explicit",
    "Cache",
    "SolveResult",
    "NotConverged",
    "init",
    "direct_to_explicit",
    "direct_to_explicit_vjp",
    "forward",
    "backward",
    "residual",
    "solve",
    "relative_residual",
    "frobenius_norm",
    "raise_unless_converged",
]

SOLVERS = ("fixed_point", "anderson", "broyden")

# spectral norm of W at initialisation: with slopes in [0, 1] the map is then a contraction
_INIT_W_NORM = 0.5


class NotConverged(RuntimeError):
    """A fixed-point solve stopped at ``max_iter`` (or on a non-finite residual) above ``tol``.

    ``result`` is the :class:`SolveResult`, with the whole residual trace.
    """

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


class SolveResult(NamedTuple):
    z: object  # (N, n) the iterate whose residual was measured last
    fz: object  # (N, n) F(z), evaluated for that residual
    residuals: tuple  # relative_residual at every evaluation of F
    iterations: int  # evaluations of F
    converged: bool
    method: str


def _check_solver_options(solver, tol, max_iter, anderson_m, anderson_beta):
    _validate.one_of("solver", solver, SOLVERS)
    tol = _validate.positive_float("tol", tol)
    max_iter = _validate.positive_int("max_iter", max_iter)
    anderson_m = _validate.positive_int("anderson_m", anderson_m)
    anderson_beta = _validate.positive_float("anderson_beta", anderson_beta)
    if anderson_beta > 1.0:
        raise ValueError(f"anderson_beta must be in (0, 1]; got {anderson_beta!r}")
    return tol, max_iter, anderson_m, anderson_beta


@dataclasses.dataclass(frozen=True)
class Config(JSONConfig):
    """Sizes and solver options of a DEQ layer ``R^n_in -> R^n``.

    ``tol`` bounds the relative residual ``||F(z) - z|| / (||F(z)|| + ||c||)`` (Frobenius
    norms over the batch; ``c`` the input injection, or ``dz`` for the adjoint solve of the
    backward pass); ``max_iter`` caps the evaluations of ``F``. ``anderson_m`` is Anderson's
    memory and ``anderson_beta`` its mixing (1 = undamped). The default ``tol`` suits float64;
    float32 needs about ``1e-6`` or more.
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
        _validate.positive_int("n_in", self.n_in)
        _validate.positive_int("n", self.n)
        _validate.one_of("activation", self.activation, activations.NAMES)
        tol, max_iter, m, beta = _check_solver_options(
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
    result: SolveResult


def init(cfg, seed=0, backend=None, dtype="float64"):
    """Gaussian ``W`` rescaled to spectral norm 0.5, lecun-normal ``U``, ``b = 0``.

    With activation slopes in [0, 1] the initial layer is a contraction (factor 0.5), so every
    solver converges at initialisation; training may move ``W`` anywhere.
    """
    xp = namespace(backend)
    rng = np.random.default_rng(_validate.seed("seed", seed))
    W = rng.standard_normal((cfg.n, cfg.n))
    W *= _INIT_W_NORM / max(float(np.linalg.norm(W, 2)), 1e-300)
    U = lecun_normal(rng, (cfg.n_in, cfg.n)).T
    return Direct(
        asarray(W, xp, dtype), asarray(np.ascontiguousarray(U), xp, dtype),
        asarray(np.zeros(cfg.n), xp, dtype),
    )


@functools.lru_cache(maxsize=32)
def _templates(cfg):
    """``(direct, explicit)`` of this config on the host: the shapes a user's containers must have."""
    direct = init(cfg, 0, backend="numpy")
    return direct, Explicit(direct.W, direct.U, direct.b)


def direct_to_explicit(cfg, direct):
    """The identity map (an unconstrained DEQ has no parameterisation); kept so that every
    model is called the same way. Returns ``(explicit, cache)`` with ``cache = None``."""
    _validate.container("direct", direct, _templates(cfg)[0])
    return Explicit(direct.W, direct.U, direct.b), None


def direct_to_explicit_vjp(cfg, cache, d_explicit):
    return Direct(d_explicit.W, d_explicit.U, d_explicit.b)


# --- fixed-point solvers (r2dn_np.mondeq reuses the residual, the result and the report) --------


def frobenius_norm(a):
    """``sqrt(sum(a**2))`` as a Python float; ``inf`` once an entry is so large (or NaN) that
    the sum of squares could overflow, which the solvers read as divergence."""
    xp = array_namespace(a)
    size = math.prod(int(d) for d in a.shape)
    if size == 0:
        return 0.0
    peak = float(xp.max(xp.abs(a)))
    if not peak < 0.1 * math.sqrt(float(xp.finfo(a.dtype).max) / size):
        return math.inf
    return float(xp.sqrt(xp.sum(a * a)))


def relative_residual(fz, z, scale=0.0):
    """``||F(z) - z|| / (||F(z)|| + scale)`` over the whole batch, as a Python float.

    ``scale`` is the norm of what drives the equilibrium (the input injection ``U x + b``, or
    the cotangent of an adjoint solve): with it the measure stays meaningful when the
    equilibrium itself is zero, as it is for a ReLU layer whose units are all off.
    Returns 0 when ``F(z) = z`` exactly.
    """
    num = frobenius_norm(fz - z)
    if num == 0.0:
        return 0.0
    den = frobenius_norm(fz) + scale
    if math.isinf(den):
        return math.inf
    return num / den if den > 0.0 else math.inf


def solve(F, z0, *, scale=0.0, solver="anderson", tol=1e-8, max_iter=200, anderson_m=5,
          anderson_beta=1.0):
    """Find ``z = F(z)`` for a batch of rows, starting from ``z0``. Never raises on failure.

    Parameters
    ----------
    F : callable ``(N, n) -> (N, n)``, acting on each row independently.
    z0 : (N, n) array, the starting iterate.
    scale : norm added to the residual's denominator (see :func:`relative_residual`).

    Returns
    -------
    SolveResult
        ``converged`` is False when ``max_iter`` evaluations did not reach ``tol`` or the
        residual became non-finite; callers decide whether to raise :class:`NotConverged`.

    Notes
    -----
    ``docs/derivations/deq.md``, section "Solvers".
    """
    tol, max_iter, anderson_m, anderson_beta = _check_solver_options(
        solver, tol, max_iter, anderson_m, anderson_beta
    )
    _validate.array("z0", z0, [("N", None), ("n", None)])
    step = {"fixed_point": _FixedPoint, "anderson": _Anderson, "broyden": _Broyden}[solver]
    state = step(z0, anderson_m, anderson_beta)
    z = z0
    trace = []
    for _ in range(max_iter):
        fz = F(z)
        res = relative_residual(fz, z, scale)
        trace.append(res)
        if res <= tol:
            return SolveResult(z, fz, tuple(trace), len(trace), True, solver)
        if not math.isfinite(res):
            break
        z = state.next(z, fz)
    return SolveResult(z, fz, tuple(trace), len(trace), False, solver)


class _FixedPoint:
    def __init__(self, z0, m, beta):
        pass

    def next(self, z, fz):
        return fz


class _Anderson:
    """Type-II Anderson on differences: with ``g = F(z) - z`` and the last ``m`` differences
    ``dZ, dG`` of iterates and residuals, ``gamma = argmin ||g - dG^T gamma||`` per row and
    ``z+ = z + beta g - (dZ + beta dG)^T gamma``."""

    # relative Tikhonov weight on the small normal equations: keeps them solvable when
    # differences become collinear near convergence
    _REG = 1e-10

    def __init__(self, z0, m, beta):
        self.m, self.beta = m, beta
        self.dZ, self.dG = [], []
        self.prev = None

    def next(self, z, fz):
        xp = array_namespace(z)
        g = fz - z
        if self.prev is not None:
            z_prev, g_prev = self.prev
            self.dZ.append(z - z_prev)
            self.dG.append(g - g_prev)
            if len(self.dZ) > self.m:
                self.dZ.pop(0)
                self.dG.pop(0)
        self.prev = (z, g)
        if not self.dZ:
            return z + self.beta * g
        dZ = xp.stack(self.dZ, axis=1)  # (N, p, n)
        dG = xp.stack(self.dG, axis=1)
        p = dG.shape[1]
        gram = dG @ dG.mT  # (N, p, p)
        eye = xp.eye(p, dtype=z.dtype)
        scale = xp.sum(gram * eye, axis=(1, 2)) / p
        tiny = xp.finfo(z.dtype).smallest_normal
        gram = gram + (self._REG * scale + tiny)[:, None, None] * eye
        gamma = xp.linalg.solve(gram, dG @ g[:, :, None])  # (N, p, 1)
        return z + self.beta * g - xp.sum(gamma * (dZ + self.beta * dG), axis=1)


class _Broyden:
    """Broyden's good method with the inverse-Jacobian estimate ``H`` of ``g(z) = F(z) - z``,
    started at ``-I`` (so the first step is a plain iteration) and updated by
    Sherman-Morrison: ``H += (dz - H dg) dz^T H / (dz^T H dg)``."""

    def __init__(self, z0, m, beta):
        xp = array_namespace(z0)
        n = z0.shape[1]
        self.H = -xp.eye(n, dtype=z0.dtype)[None, :, :] * xp.ones((z0.shape[0], 1, 1), dtype=z0.dtype)
        self.prev = None

    def next(self, z, fz):
        xp = array_namespace(z)
        g = fz - z
        if self.prev is not None:
            dz, g_prev = self.prev
            dg = g - g_prev
            Hdg = (self.H @ dg[:, :, None])[:, :, 0]
            den = xp.sum(dz * Hdg, axis=1)
            # a vanishing denominator means no curvature information along dz: skip the update
            ok = xp.abs(den) > 1e3 * xp.finfo(z.dtype).eps * _row_norm(dz) * _row_norm(Hdg)
            den = xp.where(ok, den, xp.ones_like(den))
            u = xp.where(ok[:, None], (dz - Hdg) / den[:, None], xp.zeros_like(dz))
            vT = (dz[:, None, :] @ self.H)[:, 0, :]
            self.H = self.H + u[:, :, None] * vT[:, None, :]
        dz = -(self.H @ g[:, :, None])[:, :, 0]
        self.prev = (dz, g)
        return z + dz


def _row_norm(a):
    xp = array_namespace(a)
    return xp.sqrt(xp.sum(a * a, axis=1))


_DEQ_HINT = (
    "The equilibrium map may not be a contraction (an unconstrained W can have no equilibrium, "
    "or several); try another solver, a larger max_iter, or the monotone parameterisation of "
    "r2dn_np.mondeq"
)


def raise_unless_converged(result, what, tol, max_iter, hint=_DEQ_HINT):
    """Raise :class:`NotConverged` (carrying ``result``) unless ``result.converged``."""
    if result.converged:
        return
    last = result.residuals[-1] if result.residuals else math.nan
    if math.isfinite(last):
        why = f"did not reach tol={tol:g} in {result.iterations} iterations (max_iter={max_iter}); " \
              f"last relative residual {last:.3e}"
    else:
        why = f"diverged (the iterate overflowed or became NaN) after {result.iterations} iterations"
    raise NotConverged(f"{what}: the {result.method} solver {why}. {hint}", result)


def _solver_options(cfg):
    return dict(
        solver=cfg.solver, tol=cfg.tol, max_iter=cfg.max_iter,
        anderson_m=cfg.anderson_m, anderson_beta=cfg.anderson_beta,
    )


# --- the layer ------------------------------------------------------------------------------


def _check_x(cfg, explicit, x):
    _validate.container("explicit", explicit, _templates(cfg)[1])
    _validate.array("x", x, [("N", None), ("n_in", cfg.n_in)], like=explicit.W)


def forward(cfg, explicit, x, z0=None):
    """Solve for the equilibrium of every row of ``x``.

    Parameters
    ----------
    cfg : Config
    explicit : Explicit
    x : (N, n_in) array
    z0 : optional (N, n) starting iterate (zeros by default), e.g. the last minibatch's.

    Returns
    -------
    z : (N, n) array with ``residual(cfg, explicit, x, z) <= cfg.tol``
    cache : Cache

    Raises
    ------
    NotConverged
        The solver stopped above ``cfg.tol``; ``exc.result`` holds the residual trace.
    """
    _check_x(cfg, explicit, x)
    xp = array_namespace(x)
    if z0 is None:
        z0 = xp.zeros((x.shape[0], cfg.n), dtype=x.dtype)
    else:
        _validate.array("z0", z0, [("N", int(x.shape[0])), ("n", cfg.n)], like=explicit.W)
    W, U, b = explicit.W, explicit.U, explicit.b
    c = x @ U.mT + b  # the input injection does not change during the solve

    def F(z):
        return activations.apply(cfg.activation, z @ W.mT + c)

    result = solve(F, z0, scale=frobenius_norm(c), **_solver_options(cfg))
    raise_unless_converged(result, "deq.forward", cfg.tol, cfg.max_iter)
    return result.z, Cache(x, result.z, result.fz, result)


def backward(cfg, explicit, cache, dz, return_result=False):
    """Cotangents of ``x`` and of the weights by the implicit function theorem.

    Solves ``mu = dz + W^T J mu`` (rows: ``mu = dz + (J * mu) W``) with ``cfg.solver``, then
    with ``v = J mu``: ``dW = v^T z``, ``dU = v^T x``, ``db = sum_rows v``, ``dx = v U``.

    Parameters
    ----------
    dz : (N, n) array, the cotangent of the equilibrium.
    return_result : also return the adjoint solve's :class:`SolveResult`.

    Returns
    -------
    dx : (N, n_in) array
    d_explicit : Explicit
    result : SolveResult, only when ``return_result``

    Raises
    ------
    NotConverged
        The adjoint solve stopped above ``cfg.tol``.

    Notes
    -----
    ``docs/derivations/deq.md``, equations (D2)-(D4).
    """
    _validate.container("explicit", explicit, _templates(cfg)[1])
    _validate.array("dz", dz, [("N", int(cache.x.shape[0])), ("n", cfg.n)], like=explicit.W)
    xp = array_namespace(dz)
    W = explicit.W
    J = activations.slope_from_output(cfg.activation, cache.s)

    def G(mu):
        return dz + (J * mu) @ W

    result = solve(G, dz, scale=frobenius_norm(dz), **_solver_options(cfg))
    raise_unless_converged(result, "deq.backward (adjoint solve)", cfg.tol, cfg.max_iter)
    v = J * result.z
    d_explicit = Explicit(v.mT @ cache.z, v.mT @ cache.x, xp.sum(v, axis=0))
    dx = v @ explicit.U
    if return_result:
        return dx, d_explicit, result
    return dx, d_explicit


def residual(cfg, explicit, x, z):
    """The residual the forward solve stops on: with ``c = x U^T + b`` and
    ``F(z) = sigma(z W^T + c)``, ``||F(z) - z|| / (||F(z)|| + ||c||)``."""
    _check_x(cfg, explicit, x)
    _validate.array("z", z, [("N", int(x.shape[0])), ("n", cfg.n)], like=explicit.W)
    c = x @ explicit.U.mT + explicit.b
    fz = activations.apply(cfg.activation, z @ explicit.W.mT + c)
    return relative_residual(fz, z, frobenius_norm(c))
