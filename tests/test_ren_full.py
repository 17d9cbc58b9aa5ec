"""The REN with a full (cyclic) equilibrium layer, ``ren.Config(layer="full")``:
section 7 of docs/derivations/ren.md. The protocol checks (shapes, step, value_and_grad, finite
differences, save/load, verify) are in tests/test_protocol.py (configs "ren-full*")."""

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from r2dn_np.core import activations, fixed_point, tree
from r2dn_np.checks import certificates
from r2dn_np.layers import equilibrium_full
from r2dn_np.interface import flax_interop, io
from r2dn_np import ren
from r2dn_np.checks.testing import FiniteDifferenceUnreliable, check_vjp

from helpers import examples_for, host, put

ACTIVATIONS = ["tanh", "sigmoid", "identity", "relu"]


def _full_D11(rng, nv, skew):
    """A D11 of the REN's map (F2): Lambda D11 = -strict_lower(H22) + S - S^T, H22 > 0,
    Lambda = diag(H22)/2. Returns (D11, lam, H22)."""
    G = rng.standard_normal((nv, nv + 2)) / np.sqrt(nv + 2)
    H22 = G @ G.T + 0.05 * np.eye(nv)
    lam = np.diag(H22) / 2
    S = skew * rng.standard_normal((nv, nv)) / np.sqrt(nv)
    return (-np.tril(H22, -1) + S - S.T) / lam[:, None], lam, H22


def _model(seed=0, skew=1.0, **kw):
    cfg = ren.Config(**{**dict(nu=2, nx=3, nv=5, ny=2, activation="tanh", layer="full", layer_tol=1e-14), **kw})
    direct = ren.init(cfg, seed=seed)
    return cfg, direct._replace(Y2=direct.Y2 * (skew / 0.1))


# --- the layer (F1)-(F5) ---------------------------------------------------------------------------


def test_equilibrium_is_reached(xp):
    """Both solvers return w with w = sigma(D11 w + b) to the tolerance, for every activation and
    for strongly cyclic D11."""
    @settings(max_examples=examples_for(xp, 25), deadline=None)
    @given(nv=st.integers(1, 10), B=st.integers(1, 4), act=st.sampled_from(ACTIVATIONS),
           skew=st.sampled_from([0.0, 0.5, 2.0]), solver=st.sampled_from(equilibrium_full.SOLVERS),
           seed=st.integers(0, 2**31 - 1))
    def check(nv, B, act, skew, solver, seed):
        rng = np.random.default_rng(seed)
        D11, _, _ = _full_D11(rng, nv, skew)
        b = rng.standard_normal((B, nv))
        w, result = equilibrium_full.solve(act, put(xp, D11), put(xp, b), tol=1e-13, solver=solver)
        assert result.converged and tuple(w.shape) == (B, nv)
        w = host(w)
        residual = w - host(activations.apply(act, put(xp, w @ D11.T + b)))
        assert np.abs(residual).max() <= 1e-9 * max(1.0, np.abs(b).max())

    check()


def test_splitting_contracts_at_the_stated_rate():
    """(F4): every Peaceman-Rachford iterate is closer to the fixed point in the Lambda-norm by
    at least the factor delta = rate_bound(D11, lam) < 1."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        D11, lam, _ = _full_D11(rng, 6, 2.0)
        delta = equilibrium_full.rate_bound(D11, lam)
        assert delta < 1.0
        b = rng.standard_normal((3, 6))
        V = equilibrium_full.resolvent(D11)
        u_star = equilibrium_full.solve("tanh", D11, b, tol=1e-15)[1].fz
        u = 5.0 * rng.standard_normal((3, 6))
        err = lambda u: np.sqrt(np.sum(lam * (u - u_star) ** 2))  # noqa: E731
        for _ in range(20):
            h = 2.0 * np.tanh(u) - u
            u_next = 2.0 * (h + b) @ V.T - h
            assert err(u_next) <= delta * err(u) + 1e-12
            u = u_next


def test_rate_bound_is_no_guarantee_without_well_posedness():
    """A D11 whose Lambda-weighted symmetric part of I - D11 is indefinite gets delta >= 1."""
    lam = np.ones(2)
    assert equilibrium_full.rate_bound(np.array([[0.0, 3.0], [3.0, 0.0]]), lam) >= 1.0


def test_backward_is_the_implicit_function_theorem(xp):
    """dz = J (I - D11^T J)^-1 dw row by row (a dense solve), and against finite differences of w(b)."""
    rng = np.random.default_rng(4)
    D11, _, _ = _full_D11(rng, 5, 1.5)
    b = rng.standard_normal((3, 5))
    dw = rng.standard_normal((3, 5))
    w, _ = equilibrium_full.solve("tanh", put(xp, D11), put(xp, b), tol=1e-15)
    dz = host(equilibrium_full.solve_vjp("tanh", put(xp, D11), w, put(xp, dw), tol=1e-15))
    w = host(w)
    for i in range(3):
        J = np.diag(1.0 - w[i] ** 2)
        ref = J @ np.linalg.solve(np.eye(5) - D11.T @ J, dw[i])
        np.testing.assert_allclose(dz[i], ref, rtol=1e-10, atol=1e-12)


def test_layer_gradients_against_finite_differences():
    @settings(max_examples=15, deadline=None)
    @given(nv=st.integers(1, 7), B=st.integers(1, 3), act=st.sampled_from(ACTIVATIONS),
           seed=st.integers(0, 2**31 - 1))
    def check(nv, B, act, seed):
        rng = np.random.default_rng(seed)
        D11, _, _ = _full_D11(rng, nv, 1.0)
        b = rng.standard_normal((B, nv))

        def f(args):
            return equilibrium_full.solve(act, args[0], args[1], tol=1e-15)[0]

        def vjp(args, dw):
            D, bb = args
            w = f(args)
            dz = equilibrium_full.solve_vjp(act, D, w, dw, tol=1e-15)
            return equilibrium_full.weight_grads(dz, w), dz

        try:
            # a perturbed D11 stays well-posed (the set is open), so f is defined around it
            report = check_vjp(f, vjp, (D11, b), rtol=1e-6)
        except FiniteDifferenceUnreliable:
            reject()
        assert report.worst_error < 1e-6, report.table()

    check()


def test_phi_follows_a_changed_D11():
    """phi keeps the resolvent of the last D11; a new D11 must not reuse it."""
    rng = np.random.default_rng(5)
    phi = equilibrium_full.as_phi("tanh", tol=1e-14)
    for _ in range(3):
        D11 = equilibrium_full.Params(_full_D11(rng, 4, 1.0)[0])
        b = rng.standard_normal((2, 4))
        w, cache = phi.forward(D11, b)
        np.testing.assert_allclose(w, equilibrium_full.solve("tanh", D11.D11, b, tol=1e-14)[0], rtol=0, atol=1e-13)


def test_not_converged_is_raised_not_returned():
    rng = np.random.default_rng(6)
    D11, _, _ = _full_D11(rng, 6, 2.0)
    with pytest.raises(fixed_point.NotConverged, match="full equilibrium layer"):
        equilibrium_full.solve("tanh", D11, rng.standard_normal((2, 6)), tol=1e-14, max_iter=2)


# --- the model -------------------------------------------------------------------------------------


def test_acyclic_is_the_special_case_Y2_zero():
    """layer="full" with Y2 = 0 is the acyclic REN of the same parameters: the same explicit model
    and, through the iterative solve, the same outputs and gradients."""
    for kind, extra in (("contracting", {}), ("lipschitz", dict(gamma=2.0))):
        cfg_a = ren.Config(nu=2, nx=3, nv=5, ny=2, activation="tanh", kind=kind, **extra)
        cfg_f = ren.Config(**{**cfg_a.to_dict(), "layer": "full", "layer_tol": 1e-15})
        direct_a = ren.init(cfg_a, seed=1)
        direct_f = ren.init(cfg_f, seed=1)
        for (p, a), (q, b) in zip(tree.paths(direct_a), tree.paths(direct_f._replace(Y2=None))):
            np.testing.assert_array_equal(a, b, err_msg=p)  # Y2 is drawn last
        direct_f = direct_f._replace(Y2=np.zeros((5, 5)))
        e_a, _ = ren.direct_to_explicit(cfg_a, direct_a)
        e_f, _ = ren.direct_to_explicit(cfg_f, direct_f)
        for (p, a), (_, b) in zip(tree.paths(e_a), tree.paths(e_f)):
            np.testing.assert_array_equal(a, b, err_msg=p)
        rng = np.random.default_rng(0)
        U, x0 = rng.standard_normal((8, 3, 2)), rng.standard_normal((3, 3))

        def loss(Y):
            return float(np.sum(Y * Y)), 2 * Y

        va, ga = ren.value_and_grad(cfg_a, direct_a, x0, U, loss)
        vf, gf = ren.value_and_grad(cfg_f, direct_f, x0, U, loss)
        assert vf == pytest.approx(va, rel=1e-12)
        for (p, a), (_, b) in zip(tree.paths(ga.direct), tree.paths(gf.direct._replace(Y2=None))):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-11, err_msg=p)


def test_D11_is_cyclic_and_well_posed():
    """The map's D11 has a nonzero upper triangle, a zero diagonal, and
    2 Lambda - Lambda D11 - D11^T Lambda = H22 > 0 (F1)."""
    cfg, direct = _model(skew=2.0)
    explicit, cache = ren.direct_to_explicit(cfg, direct)
    D11, lam = explicit.D11, 1.0 / cache.lam_inv
    assert np.abs(np.triu(D11, 1)).max() > 0.1
    np.testing.assert_array_equal(np.diag(D11), 0.0)
    W = 2 * np.diag(lam) - lam[:, None] * D11 - (lam[:, None] * D11).T
    H22 = cache.H[3:8, 3:8]
    np.testing.assert_allclose(W, H22, rtol=1e-12, atol=1e-12)
    assert np.linalg.eigvalsh(W).min() > 0


@pytest.mark.parametrize("kind", ["contracting", "lipschitz", "qsr"])
def test_map_gradients_against_finite_differences(kind):
    """Through the whole model, with a strongly cyclic layer, sigmoid, each kind."""
    extra = dict(contracting={}, lipschitz=dict(gamma=1.5, d22="free"),
                 qsr=dict(Q=[[-1.0, 0.0], [0.0, -2.0]], S=[[0.2, 0.0], [0.0, 0.1]], R=[[1.0, 0.0], [0.0, 2.0]]))[kind]
    cfg, direct = _model(seed=2, skew=1.5, kind=kind, activation="sigmoid", **extra)
    rng = np.random.default_rng(1)
    U, x0 = rng.standard_normal((5, 2, 2)), 0.3 * rng.standard_normal((2, 3))
    target = rng.standard_normal((5, 2, 2))

    def loss(Y):
        return float(np.sum(Y * target) + 0.5 * np.sum(Y * Y)), target + Y

    def f(args):
        return np.asarray(ren.value_and_grad(cfg, args[0], args[1], args[2], loss)[0])

    def vjp(args, dv):
        g = ren.value_and_grad(cfg, args[0], args[1], args[2], loss)[1]
        return tree.map(lambda a: float(dv) * a, (g.direct, g.x0, g.U))

    report = check_vjp(f, vjp, (direct, x0, U), rtol=1e-6)
    assert report.worst_error < 1e-6, report.table()


@pytest.mark.parametrize("kind", ["contracting", "lipschitz"])
def test_certificate_holds_with_full_D11_and_fails_for_a_tampered_one(kind):
    """(Q1)-(Q3) hold for every Y2; the same certificate fails when D11 is scaled past
    well-posedness (the control: the check can fail)."""
    extra = dict(gamma=2.0) if kind == "lipschitz" else dict(abar=0.95)
    for seed in range(4):
        cfg, direct = _model(seed=seed, skew=3.0, kind=kind, **extra)
        explicit, cache = ren.direct_to_explicit(cfg, direct)
        assert certificates.certify(cfg, explicit, cache).holds
        tampered = explicit._replace(phi=explicit.phi._replace(D11=4.0 * explicit.D11 + 1.5 * np.eye(5)))
        assert not certificates.certify(cfg, tampered, cache).holds


def test_sampled_contraction_in_the_certificate_metric():
    """Two trajectories under the same inputs approach each other in M = E^T P^-1 E at rate abar."""
    cfg, direct = _model(seed=3, skew=3.0, abar=0.9, activation="relu", layer_solver="anderson")
    explicit, cache = ren.direct_to_explicit(cfg, direct)
    M = certificates.metric(cache)
    rng = np.random.default_rng(7)
    U = rng.standard_normal((15, 4, 2))
    xa, xb = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    for t in range(15):
        d0 = np.einsum("bi,ij,bj->b", xa - xb, M, xa - xb)
        xa, _ = ren.step(cfg, explicit, xa, U[t])
        xb, _ = ren.step(cfg, explicit, xb, U[t])
        d1 = np.einsum("bi,ij,bj->b", xa - xb, M, xa - xb)
        assert np.all(d1 <= 0.81 * d0 * (1 + 1e-9) + 1e-20)


def test_config_fields_and_old_configs(tmp_path):
    base = dict(nu=1, nx=2, nv=3, ny=1)
    with pytest.raises(ValueError, match="layer"):
        ren.Config(**base, layer="cyclic")
    with pytest.raises(ValueError, match="layer_solver"):
        ren.Config(**base, layer="full", layer_solver="broyden")
    with pytest.raises(ValueError, match="layer_tol"):
        ren.Config(**base, layer="full", layer_tol=2.0)
    with pytest.raises((ValueError, TypeError), match="layer_max_iter"):
        ren.Config(**base, layer="full", layer_max_iter=0)
    old = {k: v for k, v in ren.Config(**base).to_dict().items() if not k.startswith("layer")}
    assert ren.Config.from_dict(old).layer == "acyclic"
    cfg = ren.Config(**base, layer="full")
    io.save(tmp_path / "m.npz", cfg, ren.init(cfg, seed=0))
    loaded = io.load(tmp_path / "m.npz")
    assert loaded.config.layer == "full" and loaded.params.Y2.shape == (3, 3)
    with pytest.raises(ValueError, match="layer"):
        flax_interop.to_flax(cfg, ren.init(cfg, seed=0))


def test_anderson_that_stalls_falls_back_to_the_guaranteed_iteration(monkeypatch):
    """When Anderson does not reach tol, the plain splitting continues from its last iterate and
    converges (the guarantee is kept)."""
    rng = np.random.default_rng(8)
    D11, _, _ = _full_D11(rng, 5, 1.0)
    b = rng.standard_normal((2, 5))
    inner = fixed_point.solve

    def stalls(F, z0, **kw):
        r = inner(F, z0, **{**kw, "max_iter": 2})
        return r._replace(converged=False)

    monkeypatch.setattr(fixed_point, "solve", stalls)
    w, result = equilibrium_full.solve("tanh", D11, b, tol=1e-13, solver="anderson")
    assert result.converged and result.method == "anderson"
    np.testing.assert_allclose(w, equilibrium_full.solve("tanh", D11, b, tol=1e-13, solver="pr")[0], atol=1e-10)
