"""Certificate checks that are proven able to fail ((C1)-(C5) of docs/derivations/r2dn.md,
(Q1)-(Q3) of docs/derivations/ren.md).

``certify`` is only worth its power to say "no". For every check it performs (the explicit
forms of the R2DN and the REN, both kinds, and the inverse-free implicit forms) this file has

* a reference: the formula written out here in NumPy from docs/derivations, compared with the code;
* near-boundary controls: models placed a small, known distance outside the inequality (the
  check must fail) and the same distance inside (it must hold), so loosening a tolerance or a
  bound by 10x or more is caught;
* pins of the tolerances and bounds ``certify`` uses, and of where the explicit forms stop
  counting (``cond(H) > 1e8``), with a model beyond that limit that only the implicit form can
  reject.

How a model is placed at a known distance. The explicit forms are balanced
(``T = blkdiag(L_M^-T, I, ...)``); the weights scaled below enter them only through Gram terms
(``[A B1 ..]^T M [A B1 ..]``, ``N^T N``), so the balanced largest eigenvalue is nondecreasing in
a common scale factor ``s`` of those weights, and a root finder on the reference value sets it
to the target to about 1e-15. The implicit form is perturbed through what it is built from
(the cache's ``E`` and ``F``; the R2DN's direct parameters and feedthrough; the REN's blocks of
``H`` and Lipschitz terms), never through the explicit weights: shifting ``E`` by ``-t/2 I``
lowers its smallest eigenvalue monotonically in ``t``; scaling one input by ``s >= 1`` moves it
continuously; a root finder on the reference sets ``lambda_min / max|H|`` to the target.
"""

import inspect
import math

import numpy as np
import pytest
import scipy.linalg
from scipy.optimize import brentq

from r2dn_np.checks import certificates
from r2dn_np import r2dn, ren
from r2dn_np.core import tree
from r2dn_np.core.backend import to_backend

from helpers import host

TOL = 1e-10  # certify's default bound on the balanced largest eigenvalue (cond(H) <= 1e6)
IMPLICIT_BOUND = -1e-12  # certify's bound on lambda_min(implicit form) / max|H|


# --- models -------------------------------------------------------------------------------------

# name: (module, Config keyword arguments, sizes (nu, nx, nv, ny), seed)
MODELS = {
    "r2dn-contracting": (r2dn, dict(kind="contracting", hidden=(3,), activation="tanh"), (2, 3, 4, 2), 0),
    "r2dn-lipschitz-free": (r2dn, dict(kind="lipschitz", gamma=0.1, d22="free", hidden=(3,),
                                       activation="tanh"), (2, 3, 4, 2), 1),
    "r2dn-lipschitz-zero": (r2dn, dict(kind="lipschitz", gamma=10.0, d22="zero", hidden=(3,),
                                       activation="tanh"), (3, 2, 3, 1), 2),
    "ren-contracting": (ren, dict(kind="contracting", abar=0.9, activation="tanh"), (2, 3, 4, 2), 3),
    "ren-lipschitz-wide": (ren, dict(kind="lipschitz", gamma=0.1, abar=1.0, d22="free",
                                     activation="tanh"), (3, 2, 3, 1), 4),
    "ren-lipschitz-tall": (ren, dict(kind="lipschitz", gamma=10.0, abar=0.9, d22="free",
                                     activation="tanh"), (1, 3, 4, 3), 5),
}

# free parameters that enter H only through Gram terms: scaling them and p by c scales H - eps I
# by c^2, which sets cond(H) exactly once H has a null direction
_GRAM_PARAMS = {"r2dn": ("C1", "C2", "B1", "B2"), "ren": ("D12", "C2", "D21", "B2")}


def _cfg(name):
    module, kwargs, sizes, _ = MODELS[name]
    return module.Config(*sizes, **kwargs)


def _direct(name):
    module, _, _, seed = MODELS[name]
    cfg = _cfg(name)
    rng = np.random.default_rng(seed)
    d = tree.map(lambda a: np.asarray(rng.standard_normal(a.shape)), module.init(cfg, seed))
    return cfg, d._replace(p=np.asarray(math.sqrt(float(np.sum(host(d.X) ** 2)))))


def build(name, cond=None, xp=None):
    """``(cfg, explicit, cache)`` of a valid model; with ``cond``, one whose ``H`` has exactly
    that condition number (its smallest eigenvalue is eps, on the last coordinate of x+).
    NumPy arrays, or arrays of namespace ``xp``."""
    cfg, d = _direct(name)
    module = MODELS[name][0]
    if cond is not None:
        nx = cfg.nx
        X = host(d.X).copy()
        X[:, -1] = 0.0  # polar(X, p) then has the last coordinate of x+ in its null space
        zero_rows = {"X": X}
        for field in ("B1", "B2") if cfg.model == "r2dn" else ("B2",):
            B = host(getattr(d, field)).copy()
            B[nx - 1] = 0.0  # ... and so does every Gram term that enters H
            zero_rows[field] = B
        d = d._replace(**zero_rows)
        _, cache = module.direct_to_explicit(cfg, d)
        H = host(cache.H)
        top = np.linalg.eigvalsh(H - cfg.eps * np.eye(H.shape[0])).max()
        c = math.sqrt(cfg.eps * (cond - 1.0) / top)
        d = d._replace(p=c * d.p, **{k: c * getattr(d, k) for k in _GRAM_PARAMS[cfg.model]})
    if xp is not None:
        d = to_backend(d, xp)
    explicit, cache = module.direct_to_explicit(cfg, d)
    return cfg, explicit, cache


# --- references: the formulas of docs/derivations written out here -----------------------------


def ref_metric(cache):
    E, P = host(cache.E), host(cache.P)
    M = E.T @ np.linalg.inv(P) @ E
    return 0.5 * (M + M.T)


def ref_balanced_max_eig(Q, M):
    """Largest eigenvalue of the pencil ``(Q, blkdiag(M, I))``: the eigenvalues of ``T^T Q T``
    with ``T T^T = blkdiag(M^-1, I)``, computed by LAPACK's generalised solver."""
    n, nx = Q.shape[0], M.shape[0]
    return float(scipy.linalg.eigh(Q, scipy.linalg.block_diag(M, np.eye(n - nx)), eigvals_only=True).max())


def _lam(cache):
    """The REN multiplier ``Lambda = diag(H22) / 2`` ((N1) of ren.md), read off ``H``."""
    nx, nv = host(cache.F).shape[1], host(cache.B1t).shape[1]
    return np.diag(np.diag(host(cache.H))[nx:nx + nv] / 2.0)


def ref_explicit(cfg, e, cache, which):
    """The explicit form ``which`` ("contraction" or "lipschitz") (C1), (C2) of r2dn.md, (Q1), (Q2) of ren.md."""
    A, B1, B2, C1, C2, D12, D21, D22 = (host(getattr(e, k)) for k in
                                        ("A", "B1", "B2", "C1", "C2", "D12", "D21", "D22"))
    M = ref_metric(cache)
    nx, nv, nu = A.shape[0], B1.shape[1], B2.shape[1]
    g = cfg.gamma
    if cfg.model == "r2dn":
        if which == "contraction":
            AB = np.hstack([A, B1])
            C = np.hstack([C1, np.zeros((nv, nv))])
            return AB.T @ M @ AB - scipy.linalg.block_diag(M, np.eye(nv)) + C.T @ C
        ABB = np.hstack([A, B1, B2])
        N1 = np.hstack([C1, np.zeros((nv, nv)), D12])
        N2 = np.hstack([C2, D21, D22])
        return (ABB.T @ M @ ABB - scipy.linalg.block_diag(M, np.eye(nv), g * np.eye(nu))
                + N1.T @ N1 + N2.T @ N2 / g)
    a2, Lam, D11 = cfg.abar**2, _lam(cache), host(e.D11)
    Qww = Lam @ D11 + D11.T @ Lam - 2.0 * Lam
    if which == "contraction":
        AB = np.hstack([A, B1])
        return AB.T @ M @ AB + np.block([[-a2 * M, C1.T @ Lam], [Lam @ C1, Qww]])
    ABB = np.hstack([A, B1, B2])
    N2 = np.hstack([C2, D21, D22])
    QL = np.block([
        [-a2 * M, C1.T @ Lam, np.zeros((nx, nu))],
        [Lam @ C1, Qww, Lam @ D12],
        [np.zeros((nu, nx)), D12.T @ Lam, -g * np.eye(nu)],
    ])
    return ABB.T @ M @ ABB + QL + N2.T @ N2 / g


def ref_implicit(cfg, cache):
    """The inverse-free form: (C4) (Lipschitz R2DN) and (C3) (contracting R2DN) of r2dn.md,
    (Q3) of ren.md (REN)."""
    E, P, F = host(cache.E), host(cache.P), host(cache.F)
    Q = E + E.T - P
    nx = E.shape[0]
    if cfg.model == "r2dn":
        d = cache.direct
        C1, B1t, B2t = host(d.C1), host(d.B1), host(d.B2)
        nv, nu = B1t.shape[1], B2t.shape[1]
        if cfg.kind == "contracting":
            return np.block([
                [Q - C1.T @ C1, np.zeros((nx, nv)), F.T],
                [np.zeros((nv, nx)), np.eye(nv), B1t.T],
                [F, B1t, P],
            ])
        g = cfg.gamma
        C2, D12, D21, D22 = host(d.C2), host(cache.lip.D12), host(cache.lip.D21), host(cache.lip.D22)
        N = np.block([[C1, np.zeros((nv, nv)), D12], [C2 / np.sqrt(g), D21 / np.sqrt(g), D22 / np.sqrt(g)]])
        FB = np.hstack([F, B1t, B2t])
        top = scipy.linalg.block_diag(Q, np.eye(nv), g * np.eye(nu)) - N.T @ N
        return np.block([[top, FB.T], [FB, P]])
    B1t, C1t, D11t = host(cache.B1t), host(cache.C1t), host(cache.D11t)
    Lam = np.diag(1.0 / host(cache.lam_inv))
    Hc = np.block([
        [E + E.T - P / cfg.abar**2, -C1t.T, F.T],
        [-C1t, 2.0 * Lam - D11t - D11t.T, B1t.T],
        [F, B1t, P],
    ])
    if cfg.kind == "contracting":
        return Hc
    mQ, mR, Rg = host(cache.lip.mQ), host(cache.lip.mR), host(cache.lip.Rg)
    return np.block([[Hc - mQ.T @ mQ / cfg.gamma, mR.T], [mR, Rg]])


def ref_implicit_value(cfg, cache):
    Phi = ref_implicit(cfg, cache)
    return float(np.linalg.eigvalsh(0.5 * (Phi + Phi.T)).min() / np.abs(host(cache.H)).max())


# --- placing a model at a known distance from the boundary --------------------------------------

# the explicit weights scaled together: each enters its form only through Gram terms
_SCALED = {
    ("r2dn", "contraction"): ("A", "B1", "C1"),
    ("r2dn", "lipschitz"): ("A", "B1", "B2", "C1", "C2", "D12", "D21", "D22"),
    ("ren", "contraction"): ("A", "B1"),
    ("ren", "lipschitz"): ("A", "B1", "B2", "C2", "D21", "D22"),
}
_NAMES = {"contraction": "contraction LMI", "lipschitz": "gamma-Lipschitz LMI", "implicit": "implicit LMI"}


def explicit_checks(cfg):
    return ("contraction", "lipschitz") if cfg.kind == "lipschitz" else ("contraction",)


def check_of(report, which):
    (c,) = [c for c in report.checks if _NAMES[which] in c.name]
    return c


def _root(f, target, lo, hi):
    """``x`` in ``[lo, inf)`` with ``f(x) = target``, ``f(lo)`` on the other side of the target
    from ``f`` at some ``hi * 2^k``."""
    below = f(lo) < target
    while (f(hi) < target) == below:
        lo, hi = hi, 2.0 * hi
        assert hi < 1e12, "no sign change: the perturbation cannot reach the target"
    return brentq(lambda x: f(x) - target, lo, hi, xtol=1e-300, rtol=1e-15, maxiter=500)


def place_explicit(cfg, explicit, cache, which, target):
    """The explicit model with the weights of ``_SCALED`` multiplied by the one factor that puts
    the reference balanced largest eigenvalue of form ``which`` at ``target``."""
    names = _SCALED[(cfg.model, which)]
    M = ref_metric(cache)

    def scaled(s):
        return explicit._replace(**{k: s * getattr(explicit, k) for k in names})

    s = _root(lambda s: ref_balanced_max_eig(ref_explicit(cfg, scaled(s), cache, which), M), target, 0.0, 1.0)
    return scaled(s)


# what the implicit form is built from, per model: the cache's E (shifted), F, and the
# parameters it reads (the R2DN's direct C1, B1, B2, C2 and feedthrough; the REN's blocks of H)
_IMPLICIT_PARTS = {
    ("r2dn", "contracting"): ("E", "F", "C1", "B1"),
    ("r2dn", "lipschitz"): ("E", "F", "C1", "B1", "B2", "C2", "D12", "D21"),
    ("ren", "contracting"): ("E", "F", "C1t", "B1t"),
    ("ren", "lipschitz"): ("E", "F", "C1t", "B1t", "mQ", "mR", "Rg"),
}


def tampered(cache, part, s):
    """The cache with one input of the implicit form perturbed by ``s`` (``s = 0`` for ``E`` and
    ``s = 1`` otherwise leave it as it is)."""
    if part == "E":
        E = host(cache.E)
        return cache._replace(E=E - 0.5 * s * np.eye(E.shape[0]))
    if part in ("C1", "B1", "B2", "C2"):
        d = cache.direct
        return cache._replace(direct=d._replace(**{part: s * host(getattr(d, part))}))
    if part in ("D12", "D21", "mQ", "mR"):
        return cache._replace(lip=cache.lip._replace(**{part: s * host(getattr(cache.lip, part))}))
    if part == "Rg":
        return cache._replace(lip=cache.lip._replace(Rg=host(cache.lip.Rg) / s))
    return cache._replace(**{part: s * host(getattr(cache, part))})


def place_implicit(cfg, cache, part, target):
    """The cache with ``part`` perturbed so that the reference ``lambda_min / max|H|`` of the
    implicit form is ``target``."""
    lo = 0.0 if part == "E" else 1.0
    hi = 1e-3 * float(np.abs(host(cache.H)).max()) if part == "E" else 2.0
    s = _root(lambda s: ref_implicit_value(cfg, tampered(cache, part, s)), target, lo, hi)
    return tampered(cache, part, s)


# --- references against the code ----------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_forms_match_reference_formulas(xp, name):
    cfg, explicit, cache = build(name, xp=xp)
    Mx = certificates.metric(cache)
    M = host(Mx)
    np.testing.assert_allclose(M, ref_metric(cache), rtol=1e-11, atol=1e-13 * np.abs(M).max())
    lmi = {
        ("r2dn", "contraction"): lambda: certificates.contracting_lmi(explicit, Mx),
        ("r2dn", "lipschitz"): lambda: certificates.lipschitz_lmi(explicit, Mx, cfg.gamma),
        ("ren", "contraction"): lambda: certificates.ren_contracting_lmi(
            explicit, Mx, 1.0 / cache.lam_inv, cfg.abar),
        ("ren", "lipschitz"): lambda: certificates.ren_lipschitz_lmi(
            explicit, Mx, 1.0 / cache.lam_inv, cfg.gamma, cfg.abar),
    }
    report = certificates.certify(cfg, explicit, cache)
    for which in explicit_checks(cfg):
        Q = ref_explicit(cfg, explicit, cache, which)
        got = host(lmi[(cfg.model, which)]())
        np.testing.assert_allclose(got, Q, rtol=1e-11, atol=1e-12 * np.abs(Q).max(), err_msg=which)
        assert check_of(report, which).value == pytest.approx(ref_balanced_max_eig(Q, M), abs=1e-12)
    implicit = certificates.ren_implicit_lmi if cfg.model == "ren" else certificates.implicit_lmi
    Phi = ref_implicit(cfg, cache)
    np.testing.assert_allclose(host(implicit(cfg, cache)), Phi, rtol=1e-12, atol=1e-13 * np.abs(Phi).max())
    assert check_of(report, "implicit").value == pytest.approx(ref_implicit_value(cfg, cache), abs=1e-15)
    assert report.cond_H == pytest.approx(np.linalg.cond(host(cache.H)), rel=1e-8)


def test_balanced_max_eig_value():
    """The balanced eigenvalue itself (not only its sign) against the generalised eigenproblem,
    on a full metric M (not diagonal, not near the identity)."""
    rng = np.random.default_rng(0)
    for nx, n in ((1, 3), (3, 3), (4, 9)):
        R = rng.standard_normal((nx, nx))
        M = R @ R.T + 0.1 * np.eye(nx)
        S = rng.standard_normal((n, n))
        Q = S + S.T
        got = certificates.balanced_max_eig(Q, M)
        assert got == pytest.approx(ref_balanced_max_eig(Q, M), rel=1e-10, abs=1e-12)
        # the balancing makes the state block scale-free: blkdiag(-M, -I) balances to -I
        minus = -scipy.linalg.block_diag(M, np.eye(n - nx))
        assert certificates.balanced_max_eig(minus, M) == pytest.approx(-1.0, rel=1e-12)
        assert certificates.balanced_max_eig(minus + 0.25 * np.eye(n), M) == pytest.approx(
            ref_balanced_max_eig(minus + 0.25 * np.eye(n), M), rel=1e-10)


@pytest.mark.parametrize("name", ["r2dn-contracting", "r2dn-lipschitz-free"])
def test_balanced_contraction_form_is_a_norm(name):
    """Balanced, C_contr is ``J^T J - I`` with ``J = [[La^T A La^-T, La^T B1], [C1 La^-T, 0]]``
    (``M = La La^T``), so its largest eigenvalue is ``||J||^2 - 1``: a value, not only a sign."""
    cfg, e, cache = build(name)
    M = ref_metric(cache)
    La = np.linalg.cholesky(M)
    Li = np.linalg.inv(La)
    A, B1, C1 = host(e.A), host(e.B1), host(e.C1)
    J = np.block([[La.T @ A @ Li.T, La.T @ B1], [C1 @ Li.T, np.zeros((cfg.nv, cfg.nv))]])
    want = np.linalg.norm(J, 2) ** 2 - 1.0
    got = certificates.balanced_max_eig(certificates.contracting_lmi(e, certificates.metric(cache)), M)
    assert got == pytest.approx(want, rel=1e-10)
    assert got < 0  # a valid model


# --- explicit forms: near the boundary, the tolerance and where it stops counting ----------------

EXPLICIT_CASES = [(n, w) for n in MODELS for w in explicit_checks(_cfg(n))]


@pytest.mark.parametrize("name, which", EXPLICIT_CASES)
@pytest.mark.parametrize("side", ["outside", "inside"])
def test_explicit_check_near_the_boundary(name, which, side):
    """Balanced largest eigenvalue placed at +-10 tol: outside fails, inside holds."""
    cfg, explicit, cache = build(name)
    target = 10 * TOL if side == "outside" else -10 * TOL
    report = certificates.certify(cfg, place_explicit(cfg, explicit, cache, which, target), cache)
    check = check_of(report, which)
    assert report.cond_H <= 1e6
    assert check.value == pytest.approx(target, abs=1e-12), report.table()
    assert check.holds is (side == "inside"), report.table()
    if side == "outside":
        assert not report.holds and report.margin <= TOL - target + 1e-12, report.table()
    elif which == explicit_checks(cfg)[-1]:  # the strongest form implies the others
        assert report.holds, report.table()


@pytest.mark.parametrize("name", MODELS)
def test_explicit_tolerance_is_pinned(name):
    """certify's default tolerance is 1e-10 for cond(H) <= 1e6: a model 0.5 tol outside the
    inequality passes (rounding room), one 2 tol outside fails; ``tol=`` is the one used."""
    assert inspect.signature(certificates.certify).parameters["tol"].default == TOL
    cfg, explicit, cache = build(name)
    report = certificates.certify(cfg, explicit, cache)
    assert report.holds and report.cond_H <= 1e6
    for c in report.checks:
        implicit = _NAMES["implicit"] in c.name
        assert (c.bound, c.sense) == ((IMPLICIT_BOUND, ">=") if implicit else (TOL, "<=")), c
    for which in explicit_checks(cfg):
        for factor, holds in ((0.5, True), (2.0, False)):
            placed = place_explicit(cfg, explicit, cache, which, factor * TOL)
            assert check_of(certificates.certify(cfg, placed, cache), which).holds is holds, (which, factor)
        placed = place_explicit(cfg, explicit, cache, which, 10 * TOL)
        loose = certificates.certify(cfg, placed, cache, tol=20 * TOL)
        assert check_of(loose, which).holds and check_of(loose, which).bound == 20 * TOL


@pytest.mark.parametrize("name", ["r2dn-contracting", "r2dn-lipschitz-free", "ren-lipschitz-tall"])
@pytest.mark.parametrize("cond", [1e7, 5e7])
def test_explicit_tolerance_grows_as_cond_squared(name, cond):
    """For cond(H) in (1e6, 1e8] the bound is tol (cond / 1e6)^2 ((C5) of r2dn.md): 0.5 bound outside
    holds, 2 bound outside fails."""
    cfg, explicit, cache = build(name, cond=cond)
    report = certificates.certify(cfg, explicit, cache)
    assert report.holds and report.cond_H == pytest.approx(cond, rel=1e-6)
    bound = TOL * (report.cond_H / 1e6) ** 2
    for which in explicit_checks(cfg):
        assert check_of(report, which).bound == pytest.approx(bound, rel=1e-12)
        for factor, holds in ((0.5, True), (2.0, False)):
            placed = certificates.certify(cfg, place_explicit(cfg, explicit, cache, which, factor * bound), cache)
            assert check_of(placed, which).value == pytest.approx(factor * bound, rel=0.1), placed.table()
            assert check_of(placed, which).holds is holds, placed.table()


@pytest.mark.parametrize("name", ["r2dn-contracting", "r2dn-lipschitz-zero", "ren-contracting", "ren-lipschitz-wide"])
def test_explicit_forms_stop_counting_beyond_cond_1e8(name):
    """Above cond(H) = 1e8 the explicit forms are reported, not counted: the verdict rests on
    the implicit form. Just below the limit the same violation counts."""
    assert certificates.EXPLICIT_COND_LIMIT == 1e8
    for cond, counted in ((5e7, True), (1e10, False)):
        cfg, explicit, cache = build(name, cond=cond)
        assert certificates.certify(cfg, explicit, cache).holds
        which = explicit_checks(cfg)[-1]
        bound = TOL * (cond / 1e6) ** 2
        report = certificates.certify(cfg, place_explicit(cfg, explicit, cache, which, 10 * bound), cache)
        check = check_of(report, which)
        assert check.value > check.bound and check.bound == pytest.approx(bound, rel=1e-3)
        assert check.verdict == ("fails" if counted else "not decisive"), report.table()
        assert not check.holds and report.holds is not counted, report.table()


# --- the implicit form: near the boundary, and alone beyond the explicit range -------------------

IMPLICIT_CASES = [(n, part) for n in MODELS for part in _IMPLICIT_PARTS[(_cfg(n).model, _cfg(n).kind)]]


@pytest.mark.parametrize("name, part", IMPLICIT_CASES)
@pytest.mark.parametrize("target, holds", [(10 * IMPLICIT_BOUND, False), (0.1 * IMPLICIT_BOUND, True)])
def test_implicit_check_near_the_boundary(name, part, target, holds):
    """One input of the implicit form perturbed until lambda_min / max|H| is 10x beyond its
    bound (must fail) or 0.1x of it (must hold). The explicit weights are untouched."""
    cfg, explicit, cache = build(name)
    bad = place_implicit(cfg, cache, part, target)
    report = certificates.certify(cfg, explicit, bad)
    check = check_of(report, "implicit")
    assert check.value == pytest.approx(target, abs=2e-14), report.table()
    assert check.holds is holds and report.holds is holds, report.table()


@pytest.mark.parametrize("name", ["r2dn-contracting", "r2dn-lipschitz-free", "ren-contracting", "ren-lipschitz-tall"])
def test_implicit_check_alone_rejects_beyond_cond_1e8(name):
    """At cond(H) = 1e10 the explicit forms no longer count; a model whose implicit form is 10x
    beyond its bound is still rejected, by the implicit check alone."""
    cfg, explicit, cache = build(name, cond=1e10)
    report = certificates.certify(cfg, explicit, cache)
    assert report.holds and report.cond_H > certificates.EXPLICIT_COND_LIMIT, report.table()
    for part in _IMPLICIT_PARTS[(cfg.model, cfg.kind)][::2]:
        report = certificates.certify(cfg, explicit, place_implicit(cfg, cache, part, 10 * IMPLICIT_BOUND))
        assert [c.name for c in report.checks if c.verdict == "fails"] == [check_of(report, "implicit").name], report.table()
        assert not report.holds
        report = certificates.certify(cfg, explicit, place_implicit(cfg, cache, part, 0.1 * IMPLICIT_BOUND))
        assert report.holds, report.table()
