"""Certificates: the matrix inequalities that make a model contracting or gamma-Lipschitz,
evaluated on a concrete model: the R2DN (``docs/derivations/r2dn.md`` section 5, (C1)-(C4)) and
the REN (``docs/derivations/ren.md`` section 5, (Q1)-(Q3)).

The certificate of every model here uses the metric ``M = E^T P^-1 E`` (not ``P = H22``).
The explicit forms are built from the explicit weights, so they see a tampered weight; the
implicit form ``Phi`` is built from ``H`` and needs no inverse, so it stays exact when ``H``
is ill-conditioned. Eigenvalues of the explicit forms are "balanced": taken after the
congruence ``T = blkdiag(L_M^-T, I, ...)`` with ``M = L_M L_M^T``, which turns the state
block into ``-I`` and makes the number scale-free. All computations are in float64.

Examples
--------
>>> from r2dn_np import r2dn
>>> from r2dn_np.checks import certificates
>>> cfg = r2dn.Config(nu=1, nx=3, nv=4, ny=1, kind="lipschitz", gamma=0.5)
>>> explicit, cache = r2dn.direct_to_explicit(cfg, r2dn.init(cfg, seed=0))
>>> report = certificates.certify(cfg, explicit, cache)
>>> report.holds
True
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple

from array_api_compat import array_namespace

from ..core import _validate, linalg, supply
from ..interface import registry

__all__ = [
    "Check",
    "Report",
    "judge",
    "report",
    "metric",
    "contracting_lmi",
    "lipschitz_lmi",
    "implicit_lmi",
    "ren_contracting_lmi",
    "ren_lipschitz_lmi",
    "ren_implicit_lmi",
    "qsr_lmi",
    "ren_qsr_lmi",
    "balanced_max_eig",
    "Evidence",
    "Table",
    "TABLES",
    "variant",
    "table",
    "certify",
]

# cond(H) beyond which the explicit forms (which invert P) lose their meaning in float64
EXPLICIT_COND_LIMIT = 1e8


HOLDS, FAILS, NOT_DECISIVE = "holds", "fails", "not decisive"


class Check(NamedTuple):
    """One measured number against its bound, and what it says.

    ``verdict`` is ``"holds"`` or ``"fails"`` when the number can decide, and ``"not decisive"``
    (with ``why``) when it cannot, e.g. an explicit form of a model whose ``cond(H)`` is beyond
    :data:`EXPLICIT_COND_LIMIT`. ``holds`` is true only for a decisive check that holds.
    """

    name: str
    value: float  # the measured number
    bound: float  # it must not exceed this (see `sense`)
    sense: str  # "<=" or ">="
    verdict: str  # HOLDS, FAILS or NOT_DECISIVE
    why: str = ""  # why a check is not decisive

    @property
    def holds(self):
        return self.verdict == HOLDS


def judge(name, value, bound, sense, why_not_decisive=None):
    """The :class:`Check` of ``value`` against ``bound``; not decisive if ``why_not_decisive``."""
    if why_not_decisive:
        return Check(name, value, bound, sense, NOT_DECISIVE, why_not_decisive)
    ok = value <= bound if sense == "<=" else value >= bound
    return Check(name, value, bound, sense, HOLDS if ok else FAILS)


def verdict_text(check):
    return {HOLDS: "holds", FAILS: "FAILS"}.get(check.verdict, f"not decisive: {check.why}")


class Report(NamedTuple):
    """All checks of a model. ``holds``: at least one check decided and none failed;
    ``margin``: smallest distance of a decisive check's value to its bound (> 0 when all hold)."""

    holds: bool
    margin: float
    cond_H: float
    checks: list

    def table(self):
        w = max([44] + [len(c.name) for c in self.checks])
        lines = [f"{'check':<{w}} {'value':>12} {'':>2} {'bound':>10}  verdict"]
        for c in self.checks:
            lines.append(f"{c.name:<{w}} {c.value:>12.3e} {c.sense:>2} {c.bound:>10.3e}  {verdict_text(c)}")
        return "\n".join(lines)


def report(checks, cond_H=float("nan")):
    """The :class:`Report` of a list of checks."""
    decisive = [c for c in checks if c.verdict != NOT_DECISIVE]
    margin = min(((c.bound - c.value) if c.sense == "<=" else (c.value - c.bound) for c in decisive),
                 default=float("nan"))
    return Report(bool(decisive) and all(c.holds for c in decisive), margin, cond_H, list(checks))


def _f64(a):
    xp = array_namespace(a)
    return xp.astype(a, xp.float64)


def _block(rows):
    xp = array_namespace(rows[0][0])
    return xp.concat([xp.concat(r, axis=1) for r in rows], axis=0)


def _zeros(xp, m, n):
    return xp.zeros((m, n), dtype=xp.float64)


def metric(cache):
    """The contraction metric ``M = E^T P^-1 E`` from a map cache (fields ``E`` and ``P``); the
    diagonal ``T^2 = diag(tau^2)`` for a structured LTI part (no ``E``), (T7) of
    ``docs/derivations/r2dn.md``."""
    if getattr(cache, "E", None) is None:
        tau = _f64(cache.tau)
        return linalg.eye_like(int(tau.shape[0]), tau) * (tau * tau)
    E, P = _f64(cache.E), _f64(cache.P)
    M = E.mT @ linalg.solve(P, E)
    return linalg.sym(M)


def contracting_lmi(explicit, M, lam=1.0):
    """``C_contr = [A B1]^T M [A B1] - blkdiag(M, lam I) + lam [C1 0]^T [C1 0]``; negative definite
    for a contracting model, (C1) of ``docs/derivations/r2dn.md``."""
    xp = array_namespace(M)
    A, B1, C1 = _f64(explicit.A), _f64(explicit.B1), _f64(explicit.C1)
    nx, nv = int(A.shape[0]), int(B1.shape[1])
    AB = xp.concat([A, B1], axis=1)
    C = xp.concat([C1, _zeros(xp, int(C1.shape[0]), nv)], axis=1)
    D = _block([[M, _zeros(xp, nx, nv)], [_zeros(xp, nv, nx), lam * linalg.eye_like(nv, M)]])
    return linalg.sym(AB.mT @ M @ AB - D + lam * (C.mT @ C))


def lipschitz_lmi(explicit, M, gamma, lam=1.0):
    """``L_gamma`` over ``(x, w, u)``, (C2) of ``docs/derivations/r2dn.md``; negative definite for a
    gamma-Lipschitz model."""
    xp = array_namespace(M)
    A, B1, B2 = _f64(explicit.A), _f64(explicit.B1), _f64(explicit.B2)
    C1, C2, D12, D21, D22 = (_f64(getattr(explicit, k)) for k in ("C1", "C2", "D12", "D21", "D22"))
    nx, nv, nu = int(A.shape[0]), int(B1.shape[1]), int(B2.shape[1])
    ABB = xp.concat([A, B1, B2], axis=1)
    N1 = xp.concat([C1, _zeros(xp, int(C1.shape[0]), nv), D12], axis=1)
    N2 = xp.concat([C2, D21, D22], axis=1)
    D = _block([
        [M, _zeros(xp, nx, nv), _zeros(xp, nx, nu)],
        [_zeros(xp, nv, nx), lam * linalg.eye_like(nv, M), _zeros(xp, nv, nu)],
        [_zeros(xp, nu, nx), _zeros(xp, nu, nv), gamma * linalg.eye_like(nu, M)],
    ])
    return linalg.sym(ABB.mT @ M @ ABB - D + lam * (N1.mT @ N1) + (N2.mT @ N2) / gamma)


def _supply_terms(explicit, Q, S, R):
    """``G^T Pi G`` over ``(x, w, u)`` with ``G = [[C2 D21 D22], [0 0 I]]``, ``Pi = [[Q, S^T], [S, R]]``."""
    xp = array_namespace(Q)
    C2, D21, D22 = (_f64(getattr(explicit, k)) for k in ("C2", "D21", "D22"))
    nx, nv, nu = int(C2.shape[1]), int(D21.shape[1]), int(D22.shape[1])
    G = _block([[C2, D21, D22], [_zeros(xp, nu, nx), _zeros(xp, nu, nv), linalg.eye_like(nu, Q)]])
    Pi = _block([[Q, S.mT], [S, R]])
    return G.mT @ Pi @ G


def qsr_lmi(explicit, M, Q, S, R, lam=1.0):
    """(Q4) of ``docs/derivations/qsr.md`` over ``(x, w, u)``: ``[A B1 B2]^T M [A B1 B2] -
    blkdiag(M, I, 0) + [C1 0 D12]^T [C1 0 D12] - G^T Pi G``, negative definite for an R2DN
    that is incrementally (Q, S, R)-dissipative (``Q, S, R`` float64 arrays)."""
    xp = array_namespace(M)
    A, B1, B2 = _f64(explicit.A), _f64(explicit.B1), _f64(explicit.B2)
    C1, D12 = _f64(explicit.C1), _f64(explicit.D12)
    nx, nv, nu = int(A.shape[0]), int(B1.shape[1]), int(B2.shape[1])
    ABB = xp.concat([A, B1, B2], axis=1)
    N1 = xp.concat([C1, _zeros(xp, int(C1.shape[0]), nv), D12], axis=1)
    D = _block([
        [M, _zeros(xp, nx, nv), _zeros(xp, nx, nu)],
        [_zeros(xp, nv, nx), lam * linalg.eye_like(nv, M), _zeros(xp, nv, nu)],
        [_zeros(xp, nu, nx), _zeros(xp, nu, nv), _zeros(xp, nu, nu)],
    ])
    return linalg.sym(ABB.mT @ M @ ABB - D + lam * (N1.mT @ N1) - _supply_terms(explicit, Q, S, R))


def implicit_lmi(cfg, cache):
    """The implicit, inverse-free form ``Phi`` (positive definite when the certificate holds).

    Contracting kind: (C3) of ``docs/derivations/r2dn.md``,
    ``[[E+E^T-P-C1^T C1, 0, F^T], [0, I, B1~^T], [F, B1~, P]]``; Lipschitz kind: (C4).
    """
    d = cache.direct
    E, P, F = _f64(cache.E), _f64(cache.P), _f64(cache.F)
    xp = array_namespace(E)
    nx, nv, nu = cfg.nx, cfg.nv, cfg.nu
    C1, B1t = _f64(d.C1), _f64(d.B1)
    Q = E + E.mT - P
    if cfg.kind == "contracting":
        return linalg.sym(_block([
            [Q - C1.mT @ C1, _zeros(xp, nx, nv), F.mT],
            [_zeros(xp, nv, nx), linalg.eye_like(nv, E), B1t.mT],
            [F, B1t, P],
        ]))
    g = cfg.gamma
    lip = cache.lip
    C2, D12, D21, D22 = _f64(d.C2), _f64(lip.D12), _f64(lip.D21), _f64(lip.D22)
    N = _block([
        [C1, _zeros(xp, nv, nv), D12],
        [C2 / math.sqrt(g), D21 / math.sqrt(g), D22 / math.sqrt(g)],
    ])
    top = _block([
        [Q, _zeros(xp, nx, nv), _zeros(xp, nx, nu)],
        [_zeros(xp, nv, nx), linalg.eye_like(nv, E), _zeros(xp, nv, nu)],
        [_zeros(xp, nu, nx), _zeros(xp, nu, nv), g * linalg.eye_like(nu, E)],
    ]) - N.mT @ N
    FB = xp.concat([F, B1t, _f64(d.B2)], axis=1)
    return linalg.sym(_block([[top, FB.mT], [FB, P]]))


# --- REN (docs/derivations/ren.md section 5): the multiplier Lambda and the equilibrium layer's D11 enter -------


def _ren_multiplier_terms(explicit, lam):
    """``Lambda C1``, ``Lambda D11 + D11^T Lambda - 2 Lambda`` and ``Lambda D12``."""
    xp = array_namespace(lam)
    nv = int(lam.shape[0])
    col = xp.reshape(lam, (nv, 1))
    LD11 = col * _f64(explicit.D11)
    W = LD11 + LD11.mT - 2.0 * (linalg.eye_like(nv, lam) * lam)
    return col * _f64(explicit.C1), W, col * _f64(explicit.D12)


def ren_contracting_lmi(explicit, M, lam, abar=1.0):
    """``[A B1]^T M [A B1] - blkdiag(abar^2 M, 0) + [[0, C1^T L], [L C1, L D11 + D11^T L - 2 L]]``
    with ``L = diag(lam)``; negative definite for a REN contracting at rate ``abar``."""
    xp = array_namespace(M)
    A, B1 = _f64(explicit.A), _f64(explicit.B1)
    LC1, W, _ = _ren_multiplier_terms(explicit, _f64(lam))
    AB = xp.concat([A, B1], axis=1)
    Q = _block([[-(abar**2) * M, LC1.mT], [LC1, W]])
    return linalg.sym(AB.mT @ M @ AB + Q)


def ren_lipschitz_lmi(explicit, M, lam, gamma, abar=1.0):
    """(Q2) of ``docs/derivations/ren.md`` over ``(x, w, u)``: ``[A B1 B2]^T M [A B1 B2] - blkdiag(abar^2 M, 0, gamma I)
    + [C2 D21 D22]^T [C2 D21 D22] / gamma + Q_Lambda``; negative definite for a
    gamma-Lipschitz REN."""
    xp = array_namespace(M)
    A, B1, B2 = _f64(explicit.A), _f64(explicit.B1), _f64(explicit.B2)
    C2, D21, D22 = _f64(explicit.C2), _f64(explicit.D21), _f64(explicit.D22)
    nx, nu = int(A.shape[0]), int(B2.shape[1])
    LC1, W, LD12 = _ren_multiplier_terms(explicit, _f64(lam))
    ABB = xp.concat([A, B1, B2], axis=1)
    N2 = xp.concat([C2, D21, D22], axis=1)
    Q = _block([
        [-(abar**2) * M, LC1.mT, _zeros(xp, nx, nu)],
        [LC1, W, LD12],
        [_zeros(xp, nu, nx), LD12.mT, -gamma * linalg.eye_like(nu, M)],
    ])
    return linalg.sym(ABB.mT @ M @ ABB + Q + (N2.mT @ N2) / gamma)


def ren_qsr_lmi(explicit, M, lam, Q, S, R, abar=1.0):
    """(Q5) of ``docs/derivations/qsr.md``: ``[A B1 B2]^T M [A B1 B2] - blkdiag(abar^2 M, 0, 0) +
    Q_Lambda - G^T Pi G``, negative definite for a REN that is (Q, S, R)-dissipative."""
    xp = array_namespace(M)
    A, B1, B2 = _f64(explicit.A), _f64(explicit.B1), _f64(explicit.B2)
    nx, nu = int(A.shape[0]), int(B2.shape[1])
    LC1, W, LD12 = _ren_multiplier_terms(explicit, _f64(lam))
    ABB = xp.concat([A, B1, B2], axis=1)
    Qlam = _block([
        [-(abar**2) * M, LC1.mT, _zeros(xp, nx, nu)],
        [LC1, W, LD12],
        [_zeros(xp, nu, nx), LD12.mT, _zeros(xp, nu, nu)],
    ])
    return linalg.sym(ABB.mT @ M @ ABB + Qlam - _supply_terms(explicit, Q, S, R))


def ren_implicit_lmi(cfg, cache):
    """The inverse-free form, positive definite when the certificate holds: the matrix
    ``Hc = [[E+E^T-P/abar^2, -C1~^T, F^T], [-C1~, 2 Lambda - D11~ - D11~^T, B1~^T], [F, B1~, P]]``
    rebuilt from the implicit model (it equals ``polar + eps I`` for the contracting kind), and
    for the Lipschitz kind the Schur form ``[[Hc - m_Q^T m_Q / gamma, m_R^T], [m_R, R_gamma]]``."""
    E, P, F = _f64(cache.E), _f64(cache.P), _f64(cache.F)
    B1t, C1t, D11t = _f64(cache.B1t), _f64(cache.C1t), _f64(cache.D11t)
    lam = 1.0 / _f64(cache.lam_inv)  # Lambda = diag(H22) / 2
    W = 2.0 * (linalg.eye_like(cfg.nv, E) * lam) - D11t - D11t.mT
    Hc = linalg.sym(_block([
        [E + E.mT - P / cfg.abar**2, -C1t.mT, F.mT],
        [-C1t, W, B1t.mT],
        [F, B1t, P],
    ]))
    if cfg.kind == "contracting":
        return Hc
    lip = cache.lip
    mQ, mR, Rg = _f64(lip.mQ), _f64(lip.mR), _f64(lip.Rg)
    return linalg.sym(_block([[Hc - (mQ.mT @ mQ) / cfg.gamma, mR.mT], [mR, Rg]]))


def balanced_max_eig(Q, M):
    """Largest eigenvalue of ``T^T Q T`` with ``T = blkdiag(L_M^-T, I)``, ``M = L_M L_M^T``."""
    xp = array_namespace(Q)
    nx = int(M.shape[0])
    n = int(Q.shape[0])
    Linv = linalg.solve(linalg.cholesky(M), linalg.eye_like(nx, M))  # L_M^-1
    T = _block([
        [Linv.mT, _zeros(xp, nx, n - nx)],
        [_zeros(xp, n - nx, nx), linalg.eye_like(n - nx, M)],
    ])
    return float(xp.max(xp.linalg.eigvalsh(linalg.sym(T.mT @ Q @ T))))


# --- structured LTI part of the R2DN ((T0)-(T6) of docs/derivations/r2dn.md) -----------------------

STRUCTURED_DENSE_LIMIT = 512  # nx up to which certify also evaluates the dense (C1)/(C2) with M = I


def _structured_signals(cfg, cache, z, w, u):
    """``(x0+, v, y)`` of (T3) for probe rows ``z, w, u`` in the base coordinates ``x0 = T x`` of
    (T7), through the factors: O(nx width) per row."""
    xp = array_namespace(z)
    Oa, Ob = _f64(cache.Oa), _f64(cache.Ob)
    a, rho, kappa = _f64(cache.a), _f64(cache.rho), _f64(cache.kappa)
    nx, nv, r = cfg.nx, cfg.nv, cfg.rank
    lip = cfg.kind == "lipschitz"
    cu, su, cy, sy = (_f64(t) for t in cache.splits) if lip else (None,) * 4
    ut = math.sqrt(cfg.gamma) * u
    ina = xp.concat([z * kappa, cu * ut], axis=1) if lip else z * kappa
    outa = ina @ Oa.mT  # rows (v, y1, m)
    ny = cfg.ny if lip else 0
    v, y1, m = outa[:, :nv], outa[:, nv:nv + ny], outa[:, nv + ny:nv + ny + r]
    inb = xp.concat([m, w, su * ut] if lip else [m, w], axis=1)
    outb = inb @ Ob.mT  # rows (p, y2)
    x_next = a * z + rho * outb[:, :nx]
    y = math.sqrt(cfg.gamma) * (cy * y1 + sy * outb[:, nx:]) if lip else None
    return x_next, v, y


def _to_base(cfg, explicit, tau):
    """The explicit model in the base coordinates ``x0 = T x`` (T = diag(tau)), where (T0) reads
    with ``M = I``: ``A0 = T A T^-1``, ``B0 = T B``, ``C0 = C T^-1``."""
    xp = array_namespace(tau)
    nx = int(tau.shape[0])
    col, row = xp.reshape(tau, (nx, 1)), xp.reshape(tau, (1, nx))
    e = explicit._replace(**{k: _f64(getattr(explicit, k))
                             for k in ("A", "B1", "B2", "C1", "C2", "D12", "D21", "D22")})
    out = dict(A=col * e.A / row, B1=col * e.B1, C1=e.C1 / row)
    if cfg.kind == "lipschitz":
        out.update(B2=col * e.B2, C2=e.C2 / row)
    return e._replace(**out)


# --- the checks: each reads what it needs from the Evidence and returns (value, bound, sense, why) ----------

IMPLICIT_BOUND = -1e-12  # lambda_min of the implicit form / max|H| must not fall below this
STRUCTURED_BUDGET = 1.0 + 1e-12  # (T1), (T3): sums of squares that are 1 by construction, plus rounding
STRUCTURED_PROBE_TOL = 1e-10  # (T6): explicit model against the factors, relative error


class Evidence:
    """What the checks of one :func:`certify` call read, each computed once, when a check first
    asks for it (a structured LTI part has no ``H``, so never computes the metric from it)."""

    def __init__(self, cfg, explicit, cache, tol):
        self.cfg, self.explicit, self.cache, self.tol = cfg, explicit, cache, tol

    @functools.cached_property
    def xp(self):
        return array_namespace(self.explicit.A)

    @functools.cached_property
    def eig_H(self):
        return self.xp.linalg.eigvalsh(_f64(self.cache.H))

    @functools.cached_property
    def cond_H(self):
        return float(self.xp.max(self.eig_H) / self.xp.min(self.eig_H))

    @functools.cached_property
    def M(self):
        return metric(self.cache)

    @functools.cached_property
    def explicit_tol(self):
        # (C5) of docs/derivations/r2dn.md: rounding in the explicit weights grows as cond(H)^2
        return self.tol * max(1.0, self.cond_H / 1e6) ** 2

    @functools.cached_property
    def why(self):
        """Why the explicit forms cannot decide (None when they can)."""
        if self.cond_H <= EXPLICIT_COND_LIMIT:
            return None
        return f"cond(H) = {self.cond_H:.1e} > {EXPLICIT_COND_LIMIT:.0e}, inverting P is not meaningful in float64"

    @functools.cached_property
    def multiplier(self):
        """The R2DN's IQC multiplier lambda, weighting |dv|^2 - |dw|^2 in its explicit forms."""
        if not self.cfg.learn_multiplier:
            return 1.0
        return float(self.xp.exp(_f64(self.cache.direct.log_lambda)))

    @property
    def at(self):
        return f" at lambda = {self.multiplier:.4g}" if self.cfg.learn_multiplier else ""

    @functools.cached_property
    def ren_multiplier(self):
        """The REN's Lambda = diag(H22) / 2, as a vector."""
        return 1.0 / _f64(self.cache.lam_inv)

    @functools.cached_property
    def supply(self):
        """``(Q, S, R)`` of a (Q, S, R) or learned-gamma model, float64 arrays of the namespace."""
        return tuple(self.xp.asarray(a, dtype=self.xp.float64) for a in supply.matrices(self.cfg, self.cache.direct))

    @property
    def learned_gamma(self):
        return float(self.supply[2][0, 0])

    @functools.cached_property
    def base(self):
        """A structured R2DN's explicit model in the base coordinates of (T7), where M = I."""
        return _to_base(self.cfg, self.explicit, _f64(self.cache.tau))


def _explicit_form(e, Q):
    """An explicit form: its balanced largest eigenvalue, counted while cond(H) allows."""
    return balanced_max_eig(Q, e.M), e.explicit_tol, "<=", e.why


def _implicit_form(e, Phi):
    """The inverse-free form: its smallest eigenvalue relative to the scale of H."""
    scale_H = float(e.xp.max(e.xp.abs(_f64(e.cache.H))))
    return float(e.xp.min(e.xp.linalg.eigvalsh(Phi))) / scale_H, IMPLICIT_BOUND, ">=", None


def r2dn_contraction(e):
    """(C1) at the multiplier."""
    return _explicit_form(e, contracting_lmi(e.explicit, e.M, e.multiplier))


def r2dn_lipschitz(e):
    """(C2) at the multiplier."""
    return _explicit_form(e, lipschitz_lmi(e.explicit, e.M, e.cfg.gamma, e.multiplier))


def r2dn_supply(e):
    """(Q4) of docs/derivations/qsr.md: the model's own (Q, S, R) inequality."""
    return _explicit_form(e, qsr_lmi(e.explicit, e.M, *e.supply, e.multiplier))


def r2dn_implicit(e):
    """(C3) or (C4)."""
    return _implicit_form(e, implicit_lmi(e.cfg, e.cache))


def r2dn_core_implicit(e):
    """(C4) of the unit-gain core a (Q, S, R) or learned-gamma model is built from."""
    return _implicit_form(e, implicit_lmi(supply.core_config(e.cfg), e.cache))


def ren_contraction(e):
    """(Q1) of docs/derivations/ren.md, at rate abar."""
    return _explicit_form(e, ren_contracting_lmi(e.explicit, e.M, e.ren_multiplier, e.cfg.abar))


def ren_lipschitz(e):
    """(Q2) of docs/derivations/ren.md."""
    return _explicit_form(e, ren_lipschitz_lmi(e.explicit, e.M, e.ren_multiplier, e.cfg.gamma, e.cfg.abar))


def ren_supply(e):
    """(Q5) of docs/derivations/qsr.md."""
    return _explicit_form(e, ren_qsr_lmi(e.explicit, e.M, e.ren_multiplier, *e.supply, e.cfg.abar))


def ren_implicit(e):
    """(Q3) of docs/derivations/ren.md."""
    return _implicit_form(e, ren_implicit_lmi(e.cfg, e.cache))


def ren_core_implicit(e):
    """(Q3) of the unit-gain core."""
    return _implicit_form(e, ren_implicit_lmi(supply.core_config(e.cfg), e.cache))


def _spectral_norm(G):
    """``||O||_2`` from a Gram matrix ``G`` of ``O`` (small: its rows or its columns)."""
    xp = array_namespace(G)
    return math.sqrt(max(0.0, float(xp.max(xp.linalg.eigvalsh(linalg.sym(G))))))


def structured_omega_a(e):
    """(T2): Omega_a is a contraction."""
    Oa = _f64(e.cache.Oa)
    return _spectral_norm(Oa @ Oa.mT), 1.0, "<=", None


def structured_omega_b(e):
    """(T2): Omega_b is a contraction."""
    Ob = _f64(e.cache.Ob)
    return _spectral_norm(Ob.mT @ Ob), 1.0, "<=", None


def structured_state_budget(e):
    """(T1): a_i^2 / s_i + rho_i^2 <= 1 for every state."""
    s, a, rho = (_f64(getattr(e.cache, k)) for k in ("s", "a", "rho"))
    return float(e.xp.max(a * a / s + rho * rho)), STRUCTURED_BUDGET, "<=", None


def structured_input_budget(e):
    """(T1): s_i + kappa_i^2 <= 1 for every state."""
    s, kappa = _f64(e.cache.s), _f64(e.cache.kappa)
    return float(e.xp.max(s + kappa * kappa)), STRUCTURED_BUDGET, "<=", None


def structured_splits(e):
    """(T3): the splits of the input and of the output are rotations."""
    cu, su, cy, sy = (float(_f64(t)) for t in e.cache.splits)
    return max(cu * cu + su * su, cy * cy + sy * sy), STRUCTURED_BUDGET, "<=", None


def structured_probes(e, probes=4, seed=0):
    """(T6): the explicit model against the factors on random probe rows, relative error: the dense
    ``A`` the inequalities read and the factored ``A_lowrank`` the time loop steps with."""
    import numpy as np

    cfg, xp, base = e.cfg, e.xp, e.base
    lip = cfg.kind == "lipschitz"
    rng = np.random.default_rng(seed)
    z, w, u = (xp.asarray(rng.standard_normal((probes, n))) for n in (cfg.nx, cfg.nv, cfg.nu))
    x_next, v, y = _structured_signals(cfg, e.cache, z, w, u)
    inputs = w @ base.B1.mT + (u @ base.B2.mT if lip else 0.0)
    got = [z @ base.A.mT + inputs, z @ base.C1.mT + (u @ base.D12.mT if lip else 0.0)]
    want = [x_next, v]
    lowrank = getattr(e.explicit, "A_lowrank", None)
    if lowrank is not None:
        # the time loop steps with the factors A = diag(a) + U V^T, not with the dense A the LMIs
        # read: both must be the model of the factors. In base coordinates A0 = T A T^-1 =
        # diag(a) + (T U)(T^-1 V)^T.
        tau = xp.reshape(_f64(e.cache.tau), (cfg.nx, 1))
        a, U, V = (_f64(f) for f in lowrank)
        got.append(a * z + (z @ (V / tau)) @ (tau * U).mT + inputs)
        want.append(x_next)
    if lip:
        got.append(z @ base.C2.mT + w @ base.D21.mT + u @ base.D22.mT)
        want.append(y)
    scale = sum(float(xp.sqrt(xp.sum(t * t))) for t in (z, w, u))
    err = max(float(xp.max(xp.abs(g - h))) for g, h in zip(got, want)) / scale
    return err, STRUCTURED_PROBE_TOL, "<=", None


def structured_dense_contraction(e):
    """(C1) with M = diag(tau^2), while nx is small enough for a dense eigenvalue problem."""
    if e.cfg.nx > STRUCTURED_DENSE_LIMIT:
        return None
    I = linalg.eye_like(e.cfg.nx, e.base.A)
    return balanced_max_eig(contracting_lmi(e.base, I), I), e.tol, "<=", None


def structured_dense_lipschitz(e):
    """(C2) with M = diag(tau^2), while nx is small enough."""
    if e.cfg.nx > STRUCTURED_DENSE_LIMIT:
        return None
    I = linalg.eye_like(e.cfg.nx, e.base.A)
    return balanced_max_eig(lipschitz_lmi(e.base, I, e.cfg.gamma), I), e.tol, "<=", None


# --- the tables: per (certificate, variant) the cache fields it reads and its checks, run in order ---------


class Table(NamedTuple):
    """The certificate of one model kind: the map-cache fields it reads (checked before any
    arithmetic) and its ``(name, check)`` pairs, run in order. A name is a ``str.format``
    template over the :class:`Evidence` ``e``; a check returns ``(value, bound, sense, why)``,
    ``why`` saying why it cannot decide (None when it can), or None where it does not apply."""

    cache: tuple
    checks: tuple


_R2DN_CACHE, _REN_CACHE = ("H", "E", "P"), ("H", "E", "P", "lam_inv")
_STRUCTURED_CACHE = ("Oa", "Ob", "s", "a", "rho", "kappa", "tau")
_EIG = "balanced max eigenvalue"
_R2DN_CONTRACTION = (f"R2DN contraction LMI{{e.at}}, {_EIG}", r2dn_contraction)
_R2DN_IMPLICIT = ("R2DN implicit LMI, min eigenvalue / max|H|", r2dn_implicit)
_R2DN_CORE_IMPLICIT = (_R2DN_IMPLICIT[0], r2dn_core_implicit)
_REN_CONTRACTION = (f"REN contraction LMI (rate abar), {_EIG}", ren_contraction)
_REN_IMPLICIT = ("REN implicit LMI, min eigenvalue / max|H|", ren_implicit)
_REN_CORE_IMPLICIT = (_REN_IMPLICIT[0], ren_core_implicit)
_LEARNED = "gamma-Lipschitz LMI (learned gamma = {e.learned_gamma:.4g})"
_STRUCTURED = (
    ("R2DN structured ||Omega_a||_2 (T2)", structured_omega_a),
    ("R2DN structured ||Omega_b||_2 (T2)", structured_omega_b),
    ("R2DN structured max_i a_i^2/s_i + rho_i^2 (T1)", structured_state_budget),
    ("R2DN structured max_i s_i + kappa_i^2 (T1)", structured_input_budget),
)
_PROBES = ("R2DN structured explicit model vs factors on probes, rel. error (T6)", structured_probes)
_DENSE_C1 = ("R2DN structured contraction LMI (C1) with M = diag(tau^2), max eigenvalue", structured_dense_contraction)
_DENSE_C2 = ("R2DN structured gamma-Lipschitz LMI (C2) with M = diag(tau^2), max eigenvalue",
             structured_dense_lipschitz)
_SPLITS = ("R2DN structured max(c_u^2 + s_u^2, c_y^2 + s_y^2) (T3)", structured_splits)

# keyed by (the registry's `certificate` of the model, variant(cfg)); a learned gamma and the
# (Q, S, R) kind check the model's own supply rate explicitly and its unit-gain core implicitly
TABLES = {
    ("r2dn", "contracting"): Table(_R2DN_CACHE, (_R2DN_CONTRACTION, _R2DN_IMPLICIT)),
    ("r2dn", "lipschitz"): Table(_R2DN_CACHE, (
        _R2DN_CONTRACTION, (f"R2DN gamma-Lipschitz LMI{{e.at}}, {_EIG}", r2dn_lipschitz), _R2DN_IMPLICIT)),
    ("r2dn", "lipschitz, learned gamma"): Table(_R2DN_CACHE, (
        _R2DN_CONTRACTION, (f"R2DN {_LEARNED}{{e.at}}, {_EIG}", r2dn_supply), _R2DN_CORE_IMPLICIT)),
    ("r2dn", "qsr"): Table(_R2DN_CACHE, (
        _R2DN_CONTRACTION, (f"R2DN (Q,S,R) LMI{{e.at}}, {_EIG}", r2dn_supply), _R2DN_CORE_IMPLICIT)),
    ("r2dn", "structured contracting"): Table(_STRUCTURED_CACHE, (*_STRUCTURED, _PROBES, _DENSE_C1)),
    ("r2dn", "structured lipschitz"): Table(_STRUCTURED_CACHE, (*_STRUCTURED, _SPLITS, _PROBES, _DENSE_C1, _DENSE_C2)),
    ("ren", "contracting"): Table(_REN_CACHE, (_REN_CONTRACTION, _REN_IMPLICIT)),
    ("ren", "lipschitz"): Table(_REN_CACHE, (
        _REN_CONTRACTION, (f"REN gamma-Lipschitz LMI, {_EIG}", ren_lipschitz), _REN_IMPLICIT)),
    ("ren", "lipschitz, learned gamma"): Table(_REN_CACHE, (
        _REN_CONTRACTION, (f"REN {_LEARNED}, {_EIG}", ren_supply), _REN_CORE_IMPLICIT)),
    ("ren", "qsr"): Table(_REN_CACHE, (
        _REN_CONTRACTION, (f"REN (Q,S,R) LMI, {_EIG}", ren_supply), _REN_CORE_IMPLICIT)),
}


def variant(cfg):
    """The second key of ``cfg``'s table: its kind, except that a learned gamma is certified as
    the supply rate it is (``docs/derivations/qsr.md``) and a structured LTI part by its own
    checks ((T6) of ``docs/derivations/r2dn.md``)."""
    if getattr(cfg, "learn_gamma", False):
        return f"{cfg.kind}, learned gamma"
    if getattr(cfg, "structured", False):
        return f"structured {cfg.kind}"
    return cfg.kind


def table(cfg):
    """The :class:`Table` that certifies ``cfg``'s model.

    Raises
    ------
    TypeError
        ``cfg`` is not the Config of a model with a certificate here.
    """
    certified = tuple(n for n, m in registry.MODELS.items() if m.certificate)
    model = getattr(cfg, "model", None)
    if model not in certified or not isinstance(cfg, registry.module(model).Config):
        raise TypeError(f"cfg must be the Config of a certified model {certified}; got {type(cfg).__name__}")
    return TABLES[(registry.get(model).certificate, variant(cfg))]


def _check_certify_inputs(cfg, explicit, cache, tol, fields):
    module = registry.module(cfg.model)
    _validate.container("explicit", explicit, module._templates(cfg)[1])
    for field in fields:
        value = getattr(cache, field, None)
        if value is None:
            raise TypeError(f"cache must be the map cache of {cfg.model}.direct_to_explicit; it has no {field!r}")
        _validate.array(f"cache.{field}", value, tuple(int(s) for s in value.shape))
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0; got {tol!r}")


def certify(cfg, explicit, cache, tol=1e-10):
    """Check a model's certificates and report by what margin they hold: the checks of its
    :class:`Table` in :data:`TABLES`, in order.

    Parameters
    ----------
    cfg : the model's Config (an R2DN's or a REN's; its model and :func:`variant` pick the table).
    explicit : the explicit model to certify (its weights enter the explicit forms).
    cache : the map cache from ``direct_to_explicit`` (gives ``H, E, P`` and the implicit form).
    tol : bound on the balanced largest eigenvalue of the explicit forms when
        ``cond(H) <= 1e6``; it grows as ``cond(H)^2`` up to ``cond(H) = 1e8``, beyond which
        the explicit forms are reported but the verdict rests on the implicit form.

    Returns
    -------
    Report

    Raises
    ------
    TypeError, ValueError
        ``cfg`` is not an R2DN's or a REN's, ``explicit`` does not fit it, or ``explicit`` or the
        matrices of ``cache`` hold NaN or Inf (no certificate can be read from those).
    """
    t = table(cfg)
    _check_certify_inputs(cfg, explicit, cache, tol, t.cache)
    e = Evidence(cfg, explicit, cache, tol)
    checks = []
    for name, check in t.checks:
        result = check(e)
        if result is not None:
            checks.append(judge(name.format(e=e), *result))
    return report(checks, e.cond_H if "H" in t.cache else float("nan"))
