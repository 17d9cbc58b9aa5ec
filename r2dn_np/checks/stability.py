"""Stability tools for the Lipschitz RNN's linear part ``h' = alpha A h``: the interval of
Proposition 2 for the real parts of A's eigenvalues, the largest stable step of each scheme, the
update matrix of one step, and Lyapunov certificates.

Analysis utilities, not part of training: they copy their input to host NumPy and use NumPy/SciPy
eigen- and Lyapunov solvers, which the array API does not have.
Derivations: ``docs/derivations/lipschitz_rnn.md`` sections 5 and 8.

Examples
--------
>>> from r2dn_np import lipschitz_rnn as lrnn
>>> from r2dn_np.checks import stability
>>> cfg = lrnn.Config(n_in=1, n_units=8, n_out=2, stable_margin=0.1)   # A Hurwitz for every M
>>> direct = lrnn.init(cfg, seed=0)
>>> A = lrnn.direct_to_explicit(cfg, direct)[0].A
>>> lo, hi = stability.eigenvalue_bounds(direct.M, cfg.beta, 0.0)       # Proposition 2 before the shift
>>> stability.lyapunov_certificate(A).certified, stability.max_stable_step(A, rho=0.5)
(True, inf)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..core import _validate
from ..core.backend import to_numpy
from ..lipschitz_rnn import SCHEMES

__all__ = [
    "eigenvalue_bounds",
    "max_stable_step",
    "linear_update_matrix",
    "LyapunovCertificate",
    "lyapunov_certificate",
]

# order p of each explicit method: its stability polynomial is sum_{j <= p} w^j / j! (section 8)
_RK_ORDER = {"euler": 1, "midpoint": 2, "rk4": 4}


def _host_square(name, A):
    if not hasattr(A, "shape"):
        raise TypeError(f"{name} must be an array; got {type(A).__name__}")
    a = np.asarray(to_numpy(A), dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"{name} must be a square (N, N) matrix with N >= 1; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def eigenvalue_bounds(M, beta, gamma):
    """Proposition 2: every eigenvalue of ``A = lipschitz_rnn.symmetric_skew(M, beta, gamma)`` has
    real part in ``[(1 - beta) lmin(M + M^T) - gamma, (1 - beta) lmax(M + M^T) - gamma]``.

    Runs on host NumPy (``numpy.linalg.eigvalsh``). Returns ``(lower, upper)`` as floats.

    Examples
    --------
    >>> import numpy as np
    >>> lo, hi = eigenvalue_bounds(np.diag([1.0, -2.0]), beta=0.75, gamma=0.1)
    >>> round(lo, 12), round(hi, 12)
    (-1.1, 0.4)
    """
    m = _host_square("M", M)
    beta = _validate.real("beta", beta, 0.5, 1.0)
    gamma = _validate.real("gamma", gamma, 0.0, math.inf, high_open=True)
    lam = np.linalg.eigvalsh(m + m.T)
    return (1.0 - beta) * float(lam[0]) - gamma, (1.0 - beta) * float(lam[-1]) - gamma


def max_stable_step(A, alpha=1.0, rho=0.0, *, scheme=None):
    """Largest ``eps`` below which the linear part of the scheme is stable: ``sup{e : the update
    matrix F of every eps in (0, e) has spectral radius < 1}``.

    ``scheme`` (keyword): ``None`` or ``"imex"`` read the IMEX weight ``rho``; ``"euler"`` is
    ``rho = 0``; ``"midpoint"`` and ``"rk4"`` are the explicit Runge-Kutta steps of the ODE form,
    whose update matrix is ``R(eps alpha A)`` with ``R(w) = 1 + w + w^2/2`` or
    ``sum_{j <= 4} w^j / j!``: the bound is the first positive ``eps`` with ``|R(eps alpha
    lambda)| = 1`` (section 8 of the derivation). Unlike Euler and midpoint, RK4 is stable on part
    of the imaginary axis, ``eps alpha |lambda| < 2 sqrt 2``.

    ``rho = 0`` (the default) is forward Euler, ``h_{t+1} = (I + eps alpha A) h_t``: stable iff
    ``|1 + eps alpha lambda| < 1`` for every eigenvalue ``lambda`` of A, that is
    ``eps < min_lambda 2 |Re lambda| / (alpha |lambda|^2)``, which needs every ``Re lambda < 0``.
    For the IMEX scheme with weight ``rho`` the eigenvalues of F are
    ``(1 + c (1 - rho) lambda) / (1 - c rho lambda)`` (``c = eps alpha``) and the condition reads
    ``2 Re lambda + c (1 - 2 rho) |lambda|^2 < 0``: the bound is divided by ``1 - 2 rho`` for
    ``rho < 1/2``, and is ``inf`` for ``rho >= 1/2`` when A is Hurwitz (A-stability; for
    ``rho > 1/2`` also when A has eigenvalues on the imaginary axis, other than 0).

    Returns ``0.0`` when no small step is stable (some ``Re lambda > 0``, or a marginal eigenvalue
    the scheme does not damp) and ``inf`` when ``alpha = 0``. An eigenvalue whose real part is
    within ``1e-12 max|lambda|`` of zero counts as marginal. Runs on host NumPy.
    Derivation: ``docs/derivations/lipschitz_rnn.md`` section 5.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[-1.0, 2.0], [-2.0, -1.0]])           # lambda = -1 +- 2i
    >>> round(max_stable_step(A), 12), round(max_stable_step(A, rho=0.25), 12), max_stable_step(A, rho=0.5)
    (0.4, 0.8, inf)
    >>> round(max_stable_step(-np.eye(2), scheme="midpoint"), 12), round(max_stable_step(-np.eye(2), scheme="rk4"), 6)
    (2.0, 2.785294)
    """
    a = _host_square("A", A)
    alpha = _validate.real("alpha", alpha, 0.0, math.inf, high_open=True)
    rho = _validate.real("rho", rho, 0.0, 1.0)
    if scheme is not None:
        _validate.one_of("scheme", scheme, SCHEMES)
    if alpha == 0.0:
        return math.inf
    lam = np.linalg.eigvals(a)
    mod2 = np.abs(lam) ** 2
    re = np.where(np.abs(lam.real) <= 1e-12 * np.sqrt(np.max(mod2)), 0.0, lam.real)
    if scheme in ("midpoint", "rk4"):
        return min(_rk_edge(_RK_ORDER[scheme], complex(r, i)) for r, i in zip(re, lam.imag)) / alpha
    if scheme == "euler":
        rho = 0.0
    q = (1.0 - 2.0 * rho) * mod2
    bound = np.full(lam.shape, math.inf)
    bound[(re > 0.0) | (mod2 == 0.0) | ((re == 0.0) & (q >= 0.0))] = 0.0
    damped = (re < 0.0) & (q > 0.0)
    bound[damped] = -2.0 * re[damped] / q[damped]
    return float(np.min(bound)) / alpha


def _rk_edge(p, lam):
    """First positive ``e`` with ``|R_p(e lam)| = 1``, ``R_p(w) = sum_{j <= p} w^j / j!``, if
    ``|R_p(e lam)| < 1`` just right of 0; else 0 (section 8)."""
    r = abs(lam)
    if r == 0.0:
        return 0.0
    u = lam / r
    # R(x u) = sum_j c_j x^j; |R|^2 - 1 = sum_{n >= 1} d_n x^n with d_n = sum_{j + k = n} c_j conj(c_k)
    c = [1.0 + 0.0j]
    for j in range(1, p + 1):
        c.append(c[-1] * u / j)
    d = np.zeros(2 * p + 1)
    for j in range(p + 1):
        for k in range(p + 1):
            d[j + k] += (c[j] * np.conj(c[k])).real
    d = d[1:]
    # cancellations of exactly-zero coefficients (marginal lam) leave rounding noise: drop it
    d[np.abs(d) < 1e-12 * np.max(np.abs(d))] = 0.0
    low = int(np.flatnonzero(d)[0])
    if d[low] > 0.0:  # |R| > 1 for every small step
        return 0.0
    d = d[low:]
    roots = np.roots(d[::-1])
    real = roots[(np.abs(roots.imag) <= 1e-9 * (1.0 + np.abs(roots))) & (roots.real > 0.0)].real
    return float(np.min(real)) / r if real.size else math.inf


def linear_update_matrix(A, eps, alpha=1.0, scheme="euler", rho=0.5):
    """The matrix ``F`` of one step of the linear part ``h' = alpha A h`` under ``scheme``:
    ``I + eps alpha A`` (Euler), ``(I - eps rho alpha A)^-1 (I + eps (1 - rho) alpha A)`` (IMEX),
    ``R(eps alpha A)`` (midpoint, rk4; section 8). For the discrete forms it equals
    ``lipschitz_rnn.direct_to_explicit``'s ``F``; ``lyapunov_certificate(F, discrete=True)`` certifies it.
    Host NumPy; returns an ``(N, N)`` float64 array.
    """
    a = _host_square("A", A)
    eps = _validate.positive_float("eps", eps)
    alpha = _validate.real("alpha", alpha, 0.0, math.inf, high_open=True)
    rho = _validate.real("rho", rho, 0.0, 1.0)
    _validate.one_of("scheme", scheme, SCHEMES)
    I = np.eye(a.shape[0])
    w = eps * alpha * a
    if scheme == "imex":
        return np.linalg.solve(I - rho * w, I + (1.0 - rho) * w)
    F, term = I.copy(), I
    for j in range(1, _RK_ORDER[scheme] + 1):
        term = term @ w / j
        F = F + term
    return F


class LyapunovCertificate(NamedTuple):
    """``P`` solving the Lyapunov equation for ``Q``; ``V(h) = h^T P h`` then decays along the
    linear dynamics. ``certified`` is True when ``P`` is positive definite (``eig_min_P > 0``) and
    the relative residual is below ``1e-8``; ``decay_rate`` is ``lmin(Q) / lmax(P)``, so that
    ``dV/dt <= -decay_rate V`` (continuous) or ``V_{t+1} <= (1 - decay_rate) V_t`` (discrete)."""

    P: np.ndarray
    Q: np.ndarray
    eig_min_P: float
    eig_max_P: float
    residual: float
    decay_rate: float
    certified: bool


def lyapunov_certificate(A, Q=None, *, discrete=False):
    """A Lyapunov certificate for ``h' = A h`` (or ``h_{t+1} = A h_t`` with ``discrete=True``).

    Solves ``P A + A^T P = -Q`` with SciPy's ``solve_continuous_lyapunov`` (or
    ``A^T P A - P = -Q`` with ``solve_discrete_lyapunov``; pass the update matrix ``F`` of
    ``direct_to_explicit`` to certify the linear part of either discretisation). Runs on host
    NumPy: device arrays are copied to the host.

    Parameters
    ----------
    A : (N, N) array with eigenvalues of negative real part (inside the unit circle if discrete)
    Q : (N, N) symmetric positive-definite array; identity by default

    Returns
    -------
    LyapunovCertificate

    Raises
    ------
    ValueError
        ``A`` is not Hurwitz (not Schur when ``discrete``), or ``Q`` is not symmetric positive
        definite.
    """
    from scipy import linalg as sla

    a = _host_square("A", A)
    n = a.shape[0]
    q = np.eye(n) if Q is None else _host_square("Q", Q)
    if q.shape != a.shape:
        raise ValueError(f"Q must have the shape of A {a.shape}; got {q.shape}")
    if not np.allclose(q, q.T, rtol=1e-12, atol=1e-14 * np.max(np.abs(q))):
        raise ValueError("Q must be symmetric")
    q = 0.5 * (q + q.T)
    q_eigs = np.linalg.eigvalsh(q)
    if q_eigs[0] <= 0.0:
        raise ValueError(f"Q must be positive definite; its smallest eigenvalue is {q_eigs[0]:.3e}")
    lam = np.linalg.eigvals(a)
    if discrete:
        radius = float(np.max(np.abs(lam)))
        if radius >= 1.0:
            raise ValueError(f"A must have spectral radius < 1 for a discrete certificate; got {radius:.6g}")
        P = sla.solve_discrete_lyapunov(a.T, q)
        res = a.T @ P @ a - P + q
    else:
        abscissa = float(np.max(lam.real))
        if abscissa >= 0.0:
            raise ValueError(
                f"A must have eigenvalues of negative real part; its largest real part is {abscissa:.6g}"
            )
        P = sla.solve_continuous_lyapunov(a.T, -q)
        res = P @ a + a.T @ P + q
    P = 0.5 * (P + P.T)
    p_eigs = np.linalg.eigvalsh(P)
    residual = float(np.linalg.norm(res) / max(np.linalg.norm(q), 1e-300))
    return LyapunovCertificate(
        P=P, Q=q, eig_min_P=float(p_eigs[0]), eig_max_P=float(p_eigs[-1]), residual=residual,
        decay_rate=float(q_eigs[0] / p_eigs[-1]),
        certified=bool(p_eigs[0] > 0.0 and residual < 1e-8),
    )
