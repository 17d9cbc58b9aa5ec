"""The R2DN with a structured LTI part, ``r2dn.Config(lti="diagonal" | "diagonal_plus_lowrank")``:
section 7 of docs/derivations/r2dn.md, (T0)-(T6). The protocol checks (shapes, step, value_and_grad,
finite differences, save/load, verify) are in tests/test_protocol.py (configs "r2dn-diagonal*",
"r2dn-lowrank*")."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r2dn_np.checks import certificates, empirical, verify
from r2dn_np.interface import flax_interop
from r2dn_np.core import linalg, tree
from r2dn_np import r2dn
from r2dn_np.checks.testing import check_vjp

from helpers import host, put

KINDS = {"contracting": {}, "lipschitz": dict(gamma=1.7)}


def _config(kind="contracting", lti="diagonal_plus_lowrank", rank=2, **kw):
    extra = KINDS[kind]
    base = dict(nu=2, nx=5, nv=3, ny=2, hidden=(4,), activation="tanh", kind=kind, lti=lti, rank=rank)
    return r2dn.Config(**{**base, **extra, **kw})


def _perturbed(cfg, seed, scale):
    """init plus N(0, scale^2) noise on every free parameter: far from init for scale ~ 3."""
    rng = np.random.default_rng(seed)
    return tree.map(lambda a: a + scale * rng.standard_normal(a.shape), r2dn.init(cfg, seed=seed))


def _N(cfg, e, tau):
    """The matrix of (T0) in the coordinates T x (T = diag(tau), (T7)): ||N|| < 1 is (C1)
    (contracting) or (C2) (Lipschitz) with M = T^2."""
    z = np.zeros((cfg.nv, cfg.nv))
    A, B1, C1 = tau[:, None] * e.A / tau[None, :], tau[:, None] * e.B1, e.C1 / tau[None, :]
    if cfg.kind == "contracting":
        return np.block([[A, B1], [C1, z]])
    g, sg = cfg.gamma, np.sqrt(cfg.gamma)
    B2, C2 = tau[:, None] * e.B2, e.C2 / tau[None, :]
    return np.block([[A, B1, B2 / sg], [C1, z, e.D12 / sg], [C2 / sg, e.D21 / sg, e.D22 / g]])


sizes = dict(nx=st.integers(1, 7), nv=st.integers(1, 4), nu=st.integers(1, 3), ny=st.integers(1, 3),
             rank=st.integers(0, 3), kind=st.sampled_from(["contracting", "lipschitz"]),
             seed=st.integers(0, 2**31 - 1))


def _cfg_from(nx, nv, nu, ny, rank, kind, gamma=1.3):
    lti = "diagonal" if rank == 0 else "diagonal_plus_lowrank"
    extra = dict(gamma=gamma) if kind == "lipschitz" else {}
    return r2dn.Config(nu=nu, nx=nx, nv=nv, ny=ny, hidden=(3,), activation="tanh", kind=kind, lti=lti,
                       rank=rank, **extra)


# --- (T0): every parameter value --------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(**sizes, scale=st.sampled_from([0.1, 1.0, 3.0, 10.0]))
def test_every_parameter_value_satisfies_the_certificate(nx, nv, nu, ny, rank, kind, seed, scale):
    """||N|| < 1 (the dense (C1)/(C2) with M = diag(tau^2)) for parameters far from init, and the
    structured certificate holds; A is diagonal plus rank <= r."""
    cfg = _cfg_from(nx, nv, nu, ny, rank, kind)
    e, cache = r2dn.direct_to_explicit(cfg, _perturbed(cfg, seed, scale))
    assert np.linalg.norm(_N(cfg, e, cache.tau), 2) < 1.0 + 1e-12
    assert certificates.certify(cfg, e, cache).holds
    offdiag = e.A - np.diag(np.diag(e.A))
    if rank == 0:
        assert np.all(offdiag == 0.0)
    elif nx > rank:
        sv = np.linalg.svd(e.A - np.diag(cache.a), compute_uv=False)
        assert np.all(sv[rank:] <= 1e-12 * max(1.0, sv[0]))


@settings(max_examples=20, deadline=None)
@given(**sizes)
def test_sampled_contraction_and_gain_are_never_violated(nx, nv, nu, ny, rank, kind, seed):
    """Pairs of trajectories: the state distance in M = diag(tau^2) shrinks at every step under equal
    inputs, and for the Lipschitz kind sum |dy|^2 <= gamma^2 sum |du|^2 + gamma |dx0|_M^2 ((T0), (T7))."""
    cfg = _cfg_from(nx, nv, nu, ny, rank, kind)
    e, cache = r2dn.direct_to_explicit(cfg, _perturbed(cfg, seed, 2.0))
    tau = cache.tau
    rng = np.random.default_rng(seed)
    T, B = 12, 4
    U = 3.0 * rng.standard_normal((T, B, nu))
    xa, xb = 5.0 * rng.standard_normal((2, B, nx))
    Xa = r2dn.forward(cfg, e, xa, U, workers=1)[2].X
    Xb = r2dn.forward(cfg, e, xb, U, workers=1)[2].X
    d = np.sum((tau * (Xa - Xb)) ** 2, axis=2)  # |dx|_M^2, M = T^2
    assert np.all(d[1:] <= d[:-1] * (1 + 1e-12) + 1e-24)
    if kind == "lipschitz":
        U2 = U + rng.standard_normal(U.shape) * rng.choice([1e-3, 1.0, 10.0])
        x0b = xa + 0.1 * rng.standard_normal(xa.shape)
        Ya, Yb = r2dn.forward(cfg, e, xa, U, workers=1)[1], r2dn.forward(cfg, e, x0b, U2, workers=1)[1]
        lhs = np.sum((Ya - Yb) ** 2, axis=(0, 2))
        rhs = cfg.gamma**2 * np.sum((U - U2) ** 2, axis=(0, 2)) + cfg.gamma * np.sum((tau * (xa - x0b)) ** 2, axis=1)
        assert np.all(lhs <= rhs * (1 + 1e-10))


@settings(max_examples=15, deadline=None)
@given(**sizes)
def test_differential_contraction_at_searched_points(nx, nv, nu, ny, rank, kind, seed):
    """At points v spread over scales 0.01..100 (where phi's slope changes most), the step's Jacobian
    J = A + B1 J_phi(v) C1 contracts in M = diag(tau^2): ||T J T^-1|| < 1."""
    cfg = _cfg_from(nx, nv, nu, ny, rank, kind)
    e, cache = r2dn.direct_to_explicit(cfg, _perturbed(cfg, seed, 2.0))
    phi = r2dn.phi(cfg)
    tau = cache.tau
    rng = np.random.default_rng(seed)
    h = 1e-6
    worst = 0.0
    for scale in (0.01, 0.3, 1.0, 3.0, 100.0):
        v = scale * rng.standard_normal((1, nv))
        P = np.concatenate([v + h * np.eye(nv), v - h * np.eye(nv)])
        w = phi.forward(e.phi, P)[0]
        Jphi = ((w[:nv] - w[nv:]) / (2 * h)).T  # column j: d phi / d v_j
        J = e.A + e.B1 @ Jphi @ e.C1
        worst = max(worst, np.linalg.norm(tau[:, None] * J / tau[None, :], 2))
    assert worst < 1.0 + 1e-6


@pytest.mark.parametrize("rank", [0, 2])
def test_searched_gain_stays_below_gamma(rank):
    """Random pairs, Jacobian power iteration and gradient ascent on the pair ratio (verify's search)
    find no gain above gamma, for a model far from init."""
    cfg = _cfg_from(6, 3, 2, 2, rank, "lipschitz", gamma=0.8)
    e, _ = r2dn.direct_to_explicit(cfg, _perturbed(cfg, 4, 3.0))
    gain = verify.lipschitz_search(r2dn, cfg, e, np.random.default_rng(0), steps=30)
    assert gain <= cfg.gamma * (1 + 1e-9)
    assert gain > 0.05 * cfg.gamma  # the search did find something: it is not vacuous


# --- controls: just past the boundary must fail --------------------------------------------------------


def _near_boundary(kind):
    """A model with ||N|| close to 1: large Wa, Wb (contractions near norm 1), A's diagonal near +-1."""
    cfg = _config(kind, rank=2, nx=6)
    d = r2dn.init(cfg, seed=1)
    d = d._replace(Wa=30.0 * d.Wa, Wb=30.0 * d.Wb, s_logit=d.s_logit + 3.0, a_atanh=3.0 * np.sign(d.a_atanh))
    e, cache = r2dn.direct_to_explicit(cfg, d)
    return cfg, e, cache


@pytest.mark.parametrize("kind", ["contracting", "lipschitz"])
def test_near_boundary_control_must_fail(kind):
    cfg, e, cache = _near_boundary(kind)
    norm = np.linalg.norm(_N(cfg, e, cache.tau), 2)
    assert 0.9 < norm < 1.0  # it is near the boundary, and inside
    assert certificates.certify(cfg, e, cache).holds
    # scale the explicit model just past the boundary: ||N'|| > 1
    f = 1.0 + 2.0 * (1.0 - norm)
    past = e._replace(A=f * e.A, B1=f * e.B1, C1=f * e.C1, B2=f * e.B2, C2=f * e.C2, D12=f * e.D12,
                      D21=f * e.D21, D22=f * e.D22)
    assert np.linalg.norm(_N(cfg, past, cache.tau), 2) > 1.0
    rep = certificates.certify(cfg, past, cache)
    assert not rep.holds
    failed = {c.name for c in rep.checks if c.verdict == "fails"}
    assert any("probes" in n for n in failed) and any("M = diag" in n for n in failed), rep.table()
    # factors tampered past norm 1: the norm check itself fails
    Oa = cache.Oa * (1.001 / np.linalg.norm(cache.Oa, 2))
    rep = certificates.certify(cfg, e, cache._replace(Oa=Oa))
    assert any(c.verdict == "fails" and "Omega_a" in c.name for c in rep.checks), rep.table()
    # the factors the time loop steps with, tampered alone (the dense A the inequalities read is
    # untouched): the probes see it
    lr = e.A_lowrank
    for bad in (lr._replace(a=1.001 * lr.a), lr._replace(U=1.001 * lr.U) if cfg.rank else None):
        if bad is None:
            continue
        rep = certificates.certify(cfg, e._replace(A_lowrank=bad), cache)
        assert not rep.holds and any(c.verdict == "fails" and "probes" in c.name for c in rep.checks), rep.table()


def test_sampled_contraction_control_must_fail():
    """A just past the boundary (spectral radius 1.05, B1 = 0) is caught by the sampled check that the
    structured models pass."""
    cfg, e, cache = _near_boundary("contracting")
    rng = np.random.default_rng(0)
    assert verify.contraction_step(r2dn, cfg, e, certificates.metric(cache), rng) <= 1e-9
    k = 1.05 / np.abs(np.linalg.eigvals(e.A)).max()
    lr = e.A_lowrank  # the time loop steps with the factors (T8): scale A in both forms
    bad = e._replace(A=k * e.A, A_lowrank=lr._replace(a=k * lr.a, U=k * lr.U), B1=0.0 * e.B1)
    assert verify.contraction_step(r2dn, cfg, bad, certificates.metric(cache), rng) > 0.0


# --- gradients ---------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(**sizes)
def test_map_vjp_against_finite_differences(nx, nv, nu, ny, rank, kind, seed):
    cfg = _cfg_from(nx, nv, nu, ny, rank, kind)
    direct = _perturbed(cfg, seed, 1.0)

    fixed_phi = direct.phi  # the LBDN is not part of the structured map: hold it, differentiate the rest

    def f2(d):
        e, _ = r2dn.direct_to_explicit(cfg, d._replace(phi=fixed_phi))
        return e._replace(phi=None)

    def vjp2(d, de):
        d = d._replace(phi=fixed_phi)
        e, cache = r2dn.direct_to_explicit(cfg, d)
        de = de._replace(phi=tree.map(np.zeros_like, e.phi))
        return r2dn.direct_to_explicit_vjp(cfg, cache, de)._replace(phi=None)

    report = check_vjp(f2, vjp2, direct._replace(phi=None), rtol=1e-6)
    assert report.worst_error < 1e-6, report.table()


@pytest.mark.parametrize("kind", ["contracting", "lipschitz"])
@pytest.mark.parametrize("rank", [0, 3])
def test_gradient_through_the_whole_model_against_finite_differences(kind, rank):
    cfg = _cfg_from(5, 3, 2, 2, rank, kind)
    direct = _perturbed(cfg, 7, 0.5)
    rng = np.random.default_rng(1)
    U, x0, target = rng.standard_normal((5, 2, 2)), rng.standard_normal((2, 5)), rng.standard_normal((5, 2, 2))

    def loss(Y):
        return float(np.sum(Y * target) + 0.5 * np.sum(Y * Y)), target + Y

    def f(args):
        return np.asarray(r2dn.value_and_grad(cfg, args[0], args[1], args[2], loss, workers=1)[0])

    def vjp(args, dv):
        g = r2dn.value_and_grad(cfg, args[0], args[1], args[2], loss, workers=1)[1]
        return tree.map(lambda a: float(dv) * a, (g.direct, g.x0, g.U))

    report = check_vjp(f, vjp, (direct, x0, U), rtol=1e-6)
    assert report.worst_error < 1e-6, report.table()


# --- cost, backends, config ----------------------------------------------------------------------------


def test_map_factorises_nothing_of_size_nx(monkeypatch):
    """(T4): the map's solves and Choleskys are of the small side (width), never nx x nx."""
    seen = []
    for name in ("solve", "cholesky"):
        inner = getattr(linalg, name)

        def spy(M, *args, _inner=inner, **kw):
            seen.append(int(M.shape[0]))
            return _inner(M, *args, **kw)

        monkeypatch.setattr(linalg, name, spy)
    for kind in ("contracting", "lipschitz"):
        cfg = _cfg_from(64, 4, 2, 3, 3, kind)
        direct = r2dn.init(cfg, seed=0)
        e, cache = r2dn.direct_to_explicit(cfg, direct)
        r2dn.direct_to_explicit_vjp(cfg, cache, tree.map(np.ones_like, e))
    assert seen and max(seen) < 64, seen


def test_every_backend_gives_the_numpy_numbers(xp):
    from r2dn_np.training import losses

    for kind in ("contracting", "lipschitz"):
        cfg = _cfg_from(5, 3, 2, 2, 2, kind)
        direct = _perturbed(cfg, 3, 0.5)
        U = np.random.default_rng(0).standard_normal((4, 2, 2))

        def loss(Y):
            return losses.mse(Y, 0 * Y)

        ref_v, ref_g = r2dn.value_and_grad(cfg, direct, None, U, loss, workers=1)
        v, g = r2dn.value_and_grad(cfg, tree.map(lambda a: put(xp, a), direct), None, put(xp, U), loss)
        assert float(host(v)) == pytest.approx(float(ref_v), rel=1e-12)
        for (p, a), (_, b) in zip(tree.paths(g), tree.paths(ref_g)):
            np.testing.assert_allclose(host(a), b, rtol=1e-10, atol=1e-13, err_msg=p)


def test_config_errors_name_the_field():
    base = dict(nu=1, nx=3, nv=2, ny=1)
    with pytest.raises(ValueError, match="lti"):
        r2dn.Config(**base, lti="banded")
    with pytest.raises((ValueError, TypeError), match="rank"):
        r2dn.Config(**base, lti="diagonal_plus_lowrank", rank=-1)
    with pytest.raises(ValueError, match="rank"):
        r2dn.Config(**base, lti="diagonal_plus_lowrank", rank=0)
    with pytest.raises(ValueError, match="rank"):
        r2dn.Config(**base, lti="diagonal", rank=2)
    with pytest.raises(ValueError, match="rank"):
        r2dn.Config(**base, rank=2)
    with pytest.raises(ValueError, match="lti"):
        r2dn.Config(**base, lti="diagonal", kind="lipschitz", learn_gamma=True)
    with pytest.raises(ValueError, match="init"):
        r2dn.Config(**base, lti="diagonal", init="long_memory")
    old = {k: v for k, v in r2dn.Config(**base).to_dict().items() if k not in ("lti", "rank")}
    assert r2dn.Config.from_dict(old).lti == "dense"
    cfg = r2dn.Config(**base, lti="diagonal", output_layer="sandwich")
    with pytest.raises(ValueError, match="lti"):
        flax_interop.to_flax(cfg, r2dn.init(cfg, seed=0))


def test_flops_refuses_a_structured_model():
    from r2dn_np.checks import flops

    with pytest.raises(ValueError, match="lti"):
        flops.r2dn_counts(_config(), T=2, B=2)


def test_verify_perturbed_draws_a_structured_model():
    cfg = _config("lipschitz", rank=1)
    d = verify.perturbed(r2dn, cfg, seed=0)
    assert d.X is None and d.Wa.shape == r2dn.init(cfg, seed=0).Wa.shape


def test_empirical_gain_of_a_diagonal_model_is_finite():
    """The diagonal model runs through empirical.feedback_map like any R2DN (a smoke test of the
    explicit container it produces)."""
    cfg = _cfg_from(4, 2, 1, 1, 0, "lipschitz", gamma=0.5)
    e, _ = r2dn.direct_to_explicit(cfg, r2dn.init(cfg, seed=0))
    f = empirical.feedback_map(e, r2dn.phi(cfg), np.zeros((3, 4)))
    U1, U2 = np.random.default_rng(0).standard_normal((2, 6, 3, 1))
    assert np.all(empirical.pair_ratios(f, U1, U2) <= 0.5 * (1 + 1e-9))
