"""Fixed-point solvers for batches of rows: find ``z = F(z)`` and report how the solve went.

Three methods, chosen by name (:data:`SOLVERS`):

- ``"fixed_point"``: plain iteration ``z <- F(z)``; converges when ``F`` contracts.
- ``"anderson"``: Anderson acceleration over the last ``anderson_m`` iterates (Walker & Ni,
  "Anderson Acceleration for Fixed-Point Iterations").
- ``"broyden"``: Broyden's good method on ``g(z) = F(z) - z``, one dense inverse-Jacobian
  estimate ``(n, n)`` per row of the batch.

:func:`solve` never raises on failure: it returns a :class:`SolveResult` (the iterate,
``F`` of it, the relative residual trace, the count, ``converged``), and a caller that must
not go on with a non-equilibrium calls :func:`raise_unless_converged`, which raises
:class:`NotConverged` carrying the result. ``r2dn_np.deq`` uses all of it; ``r2dn_np.mondeq``
has its own splitting iterations and shares the residual, the result and the report.

Examples
--------
>>> import numpy as np
>>> from r2dn_np.core import fixed_point
>>> result = fixed_point.solve(lambda z: 0.5 * z + 1.0, np.zeros((2, 3)), tol=1e-12)
>>> result.converged, bool(np.allclose(result.z, 2.0))
(True, True)
"""

from __future__ import annotations

import math
from typing import NamedTuple

from array_api_compat import array_namespace

from . import _validate

__all__ = [
    "SOLVERS",
    "SolveResult",
    "NotConverged",
    "solve",
    "check_options",
    "check_stopping",
    "relative_residual",
    "frobenius_norm",
    "raise_unless_converged",
]

SOLVERS = ("fixed_point", "anderson", "broyden")


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


def check_stopping(tol, max_iter):
    """``tol`` a finite number in (0, 1) (a relative residual), ``max_iter`` an integer >= 1.
    Returns them as ``(float, int)``."""
    tol = _validate.positive_float("tol", tol)
    if tol >= 1.0:
        raise ValueError(f"tol must be in (0, 1) (a relative residual); got {tol!r}")
    return tol, _validate.positive_int("max_iter", max_iter)


def check_options(solver, tol, max_iter, anderson_m, anderson_beta):
    """Check the options of :func:`solve`; returns ``(tol, max_iter, anderson_m, anderson_beta)``
    as ``float, int, int, float``."""
    _validate.one_of("solver", solver, SOLVERS)
    tol, max_iter = check_stopping(tol, max_iter)
    anderson_m = _validate.positive_int("anderson_m", anderson_m)
    anderson_beta = _validate.positive_float("anderson_beta", anderson_beta)
    if anderson_beta > 1.0:
        raise ValueError(f"anderson_beta must be in (0, 1]; got {anderson_beta!r}")
    return tol, max_iter, anderson_m, anderson_beta


def _check_scale(scale):
    if isinstance(scale, (bool, str, bytes)):
        raise TypeError(f"scale must be a finite number >= 0; got {scale!r}")
    try:
        out = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"scale must be a finite number >= 0; got {scale!r}") from None
    if not (math.isfinite(out) and out >= 0.0):
        raise ValueError(f"scale must be a finite number >= 0; got {scale!r}")
    return out


def frobenius_norm(a):
    """``sqrt(sum(a**2))`` as a Python float; ``inf`` once an entry is so large (or NaN) that
    the sum of squares could overflow, which the solvers read as divergence."""
    _validate.array("a", a, [None] * len(getattr(a, "shape", ())), finite=False)
    return _norm(a)


def _norm(a):
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

    Notes
    -----
    ``docs/derivations/deq.md``, equation (D5).
    """
    _validate.array("z", z, [None] * len(getattr(z, "shape", ())), finite=False)
    _validate.array("fz", fz, tuple(int(d) for d in z.shape), like=z, finite=False)
    return _relative_residual(fz, z, _check_scale(scale))


def _relative_residual(fz, z, scale):
    num = _norm(fz - z)
    if num == 0.0:
        return 0.0
    den = _norm(fz) + scale
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
    solver, tol, max_iter, anderson_m, anderson_beta : see :func:`check_options`.

    Returns
    -------
    SolveResult
        ``converged`` is False when ``max_iter`` evaluations did not reach ``tol`` or the
        residual became non-finite; callers decide whether to raise :class:`NotConverged`.

    Notes
    -----
    ``docs/derivations/deq.md``, equations (D5)-(D7).
    """
    if not callable(F):
        raise TypeError(f"F must be a callable (N, n) -> (N, n); got {type(F).__name__}")
    tol, max_iter, anderson_m, anderson_beta = check_options(
        solver, tol, max_iter, anderson_m, anderson_beta
    )
    scale = _check_scale(scale)
    _validate.array("z0", z0, [("N", None), ("n", None)])
    shape = tuple(int(d) for d in z0.shape)
    step = {"fixed_point": _FixedPoint, "anderson": _Anderson, "broyden": _Broyden}[solver]
    state = step(z0, anderson_m, anderson_beta)
    z = z0
    trace = []
    for _ in range(max_iter):
        fz = F(z)
        if not trace:
            # F is the caller's: its first value shows whether it maps (N, n) to (N, n)
            _validate.array("F(z0)", fz, shape, like=z0, finite=False, like_name="z0")
        res = _relative_residual(fz, z, scale)
        trace.append(res)
        if res <= tol:
            return SolveResult(z, fz, tuple(trace), len(trace), True, solver)
        if not math.isfinite(res) or len(trace) == max_iter:
            break  # no step after the last evaluation: z stays the iterate that fz and trace measured
        z = state.next(z, fz)
    return SolveResult(z, fz, tuple(trace), len(trace), False, solver)


class _FixedPoint:
    def __init__(self, z0, m, beta):
        pass

    def next(self, z, fz):
        return fz


class _Anderson:
    """Type-II Anderson on differences, equation (D6): with ``g = F(z) - z`` and the last ``m``
    differences ``dZ, dG`` of iterates and residuals, ``gamma = argmin ||g - dG^T gamma||`` per
    row and ``z+ = z + beta g - (dZ + beta dG)^T gamma``."""

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
    """Broyden's good method, equation (D7), with the inverse-Jacobian estimate ``H`` of
    ``g(z) = F(z) - z``, started at ``-I`` (so the first step is a plain iteration) and updated
    by Sherman-Morrison: ``H += (dz - H dg) dz^T H / (dz^T H dg)``."""

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


def raise_unless_converged(result, what, tol, max_iter, hint=""):
    """Raise :class:`NotConverged` (carrying ``result``) unless ``result.converged``.

    ``what`` names the solve in the message (``"deq.forward"``), ``hint`` is appended to it.
    """
    if not isinstance(result, SolveResult):
        raise TypeError(f"result must be a fixed_point.SolveResult; got {type(result).__name__}")
    if result.converged:
        return
    last = result.residuals[-1] if result.residuals else math.nan
    if math.isfinite(last):
        why = f"did not reach tol={tol:g} in {result.iterations} iterations (max_iter={max_iter}); " \
              f"last relative residual {last:.3e}"
    else:
        why = f"diverged (the iterate overflowed or became NaN) after {result.iterations} iterations"
    message = f"{what}: the {result.method} solver {why}."
    raise NotConverged(f"{message} {hint}" if hint else message, result)
