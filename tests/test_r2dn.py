import math

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from r2dn_np import certificates, flax_interop, lbdn, losses, r2dn, tree
from r2dn_np.testing import FiniteDifferenceUnreliable, check_vjp

from helpers import examples_for, host, put


def xput(like, a):
    from array_api_compat import array_namespace

    return put(array_namespace(like), a)


def perturbed(direct, rng, scale=1.0):
    """Move every free parameter off its initial value (biases and D22 start at zero)."""
    return tree.map(lambda a: a + xput(a, 0.3 * scale * rng.standard_normal(a.shape)), direct)


@st.composite
def configs(draw, activation=st.sampled_from(["tanh", "sigmoid", "identity", "relu"])):
    nu, ny = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    return r2dn.Config(
        nu=nu, nx=draw(st.integers(1, 6)), nv=draw(st.integers(1, 6)), ny=ny,
        hidden=tuple(draw(st.lists(st.integers(1, 6), max_size=2))),
        activation=draw(activation),
        output_layer=draw(st.sampled_from(["linear", "sandwich"])),
        kind=draw(st.sampled_from(["contracting", "lipschitz"])),
        gamma=draw(st.sampled_from([0.1, 1.0, 10.0])),
        d22=draw(st.sampled_from(["zero", "free"])),
        polar=draw(st.booleans()),
        init=draw(st.sampled_from(["random", "long_memory"])),
    )


def naive_rollout(cfg, explicit, x0, U):
    """The state-space equations one step at a time, no hoisting (docs/derivations/r2dn.md section 1)."""
    e = {k: host(v) for k, v in explicit._asdict().items() if k != "phi"}
    x = host(x0)
    ys = []
    for u in host(U):
        v = x @ e["C1"].T + u @ e["D12"].T + e["bv"]
        w = host(lbdn.forward(cfg.lbdn, explicit.phi, xput(explicit.A, v))[0])
        ys.append(x @ e["C2"].T + w @ e["D21"].T + u @ e["D22"].T + e["by"])
        x = x @ e["A"].T + w @ e["B1"].T + u @ e["B2"].T + e["bx"]
    return x, np.stack(ys)


def test_rollout_matches_naive_reference(xp):
    @settings(max_examples=examples_for(xp, 25))
    @given(cfg=configs(), seed=st.integers(0, 2**31 - 1), T=st.integers(1, 6), B=st.integers(1, 3))
    def check(cfg, seed, T, B):
        _rollout_case(xp, cfg, seed, T, B)

    check()


def _rollout_case(xp, cfg, seed, T, B):
    rng = np.random.default_rng(seed)
    direct = perturbed(r2dn.init(cfg, seed, backend=xp), rng)
    explicit, _ = r2dn.direct_to_explicit(cfg, direct)
    x0, U = put(xp, rng.standard_normal((B, cfg.nx))), put(xp, rng.standard_normal((T, B, cfg.nu)))
    xT, Y, _ = r2dn.forward(cfg, explicit, x0, U)
    xT_ref, Y_ref = naive_rollout(cfg, explicit, x0, U)
    np.testing.assert_allclose(host(Y), Y_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(xT), xT_ref, rtol=1e-10, atol=1e-12)


def test_step_matches_rollout(xp):
    cfg = r2dn.Config(2, 3, 4, 2, hidden=(5,), kind="lipschitz", d22="free")
    explicit, _ = r2dn.direct_to_explicit(cfg, r2dn.init(cfg, 0, backend=xp))
    rng = np.random.default_rng(0)
    x, U = put(xp, rng.standard_normal((2, 3))), put(xp, rng.standard_normal((4, 2, 2)))
    _, Y, _ = r2dn.forward(cfg, explicit, x, U)
    for t in range(4):
        x, y = r2dn.step(cfg, explicit, x, U[t, ...])
        np.testing.assert_allclose(host(y), host(Y)[t], rtol=1e-13, atol=1e-14)


def _model_fd_check(cfg, direct, x0, U):
    def f(args):
        explicit, _ = r2dn.direct_to_explicit(cfg, args[0])
        xT, Y, _ = r2dn.forward(cfg, explicit, args[1], args[2])
        return Y, xT

    def vjp(args, cot):
        dY, dxT = cot
        explicit, map_cache = r2dn.direct_to_explicit(cfg, args[0])
        _, _, cache = r2dn.forward(cfg, explicit, args[1], args[2])
        d_explicit, dx0, dU = r2dn.backward(cfg, explicit, cache, dY, dxT)
        return r2dn.direct_to_explicit_vjp(cfg, map_cache, d_explicit), dx0, dU

    return check_vjp(f, vjp, (direct, x0, U))


def test_gradients_against_finite_differences(xp):
    """Every free parameter, x0 and U, through the map, the rollout and BPTT (and dxT)."""

    @settings(max_examples=examples_for(xp, 40))
    @given(cfg=configs(), seed=st.integers(0, 2**31 - 1), T=st.integers(1, 6),
           scale=st.sampled_from([0.3, 1.0, 3.0]))
    def check(cfg, seed, T, scale):
        _gradient_case(xp, cfg, seed, T, scale)

    check()


def _gradient_case(xp, cfg, seed, T, scale):
    rng = np.random.default_rng(seed)
    direct = perturbed(r2dn.init(cfg, seed, backend=xp), rng, scale)
    x0 = put(xp, rng.standard_normal((2, cfg.nx)))
    U = put(xp, rng.standard_normal((T, 2, cfg.nu)))
    try:
        _model_fd_check(cfg, direct, x0, U)
    except FiniteDifferenceUnreliable:
        reject()  # a ReLU kink within the finite-difference step


@pytest.mark.parametrize("kind, d22", [("contracting", "zero"), ("lipschitz", "zero"), ("lipschitz", "free")])
@pytest.mark.parametrize("sizes", [(1, 1, 1, 1), (3, 2, 1, 1), (1, 2, 3, 4), (4, 3, 2, 1)])
def test_gradients_edge_sizes(xp, kind, d22, sizes):
    """nv = 1 and nu != ny both ways, with a tiny polar scale (a nearly tight model)."""
    nu, nx, nv, ny = sizes
    cfg = r2dn.Config(nu, nx, nv, ny, hidden=(2,), activation="tanh", kind=kind, d22=d22, gamma=0.1)
    rng = np.random.default_rng(sum(sizes))
    direct = perturbed(r2dn.init(cfg, 1, backend=xp), rng)
    direct = direct._replace(p=direct.p * 1e-4)
    _model_fd_check(cfg, direct, put(xp, rng.standard_normal((2, nx))), put(xp, rng.standard_normal((3, 2, nu))))


def test_value_and_grad_matches_backward(xp):
    cfg = r2dn.Config(2, 3, 4, 2, hidden=(3,), activation="tanh", kind="lipschitz", gamma=2.0)
    rng = np.random.default_rng(0)
    direct = perturbed(r2dn.init(cfg, 0, backend=xp), rng)
    x0, U = put(xp, rng.standard_normal((3, 3))), put(xp, rng.standard_normal((5, 3, 2)))
    target = put(xp, rng.standard_normal((5, 3, 2)))
    value, grads = r2dn.value_and_grad(cfg, direct, x0, U, lambda Y: losses.mse(Y, target))

    def f(args):
        explicit, _ = r2dn.direct_to_explicit(cfg, args[0])
        return losses.mse(r2dn.forward(cfg, explicit, args[1], args[2])[1], target)[0]

    check_vjp(f, lambda args, d: tree.map(lambda g: d * g, tuple(grads)), (direct, x0, U))
    assert float(value) == pytest.approx(float(f((direct, x0, U))), rel=1e-14)


@pytest.mark.parametrize("kind", ["contracting", "lipschitz"])
def test_long_memory_init(kind):
    cfg = r2dn.Config(1, 5, 3, 1, kind=kind, init="long_memory", gamma=10.0)
    direct = r2dn.init(cfg, 0)
    explicit, cache = r2dn.direct_to_explicit(cfg, direct)
    A = host(explicit.A)
    assert np.all(host(direct.C1) == 0) and np.all(host(direct.B1) == 0)
    eig = np.abs(np.linalg.eigvals(A))
    assert eig.max() < 1.0
    if kind == "contracting":  # E = P = I exactly up to eps: A is the drawn diagonal
        np.testing.assert_allclose(A, np.diag(np.diag(A)), atol=1e-6)
        assert np.all(np.diag(A) >= 0.95 - 1e-6)
    else:
        assert eig.min() > 0.5  # the Lipschitz coupling terms perturb A, it stays slow
    assert certificates.certify(cfg, explicit, cache).holds


def test_d22_zero_is_exactly_zero(xp):
    cfg = r2dn.Config(3, 2, 4, 2, kind="lipschitz", d22="zero", gamma=3.0)
    explicit, _ = r2dn.direct_to_explicit(cfg, perturbed(r2dn.init(cfg, 0, backend=xp), np.random.default_rng(0)))
    assert np.all(host(explicit.D22) == 0.0)
    cfg_free = r2dn.Config(3, 2, 4, 2, kind="lipschitz", d22="free", gamma=3.0)
    explicit, _ = r2dn.direct_to_explicit(cfg_free, r2dn.init(cfg_free, 0, backend=xp))
    assert np.any(host(explicit.D22) != 0.0)


def _from_feedthrough(D12, D21, D22, gamma):
    """Free (U, V, Z) that give the feedthrough (D12, D21, D22) at this gamma ((D4) of r2dn.md)."""
    def reverse_cholesky(S):
        """Lower-triangular L with L^T L = S (the map has I - b^T b = L_u^-1 L_u^-T)."""
        J = np.eye(S.shape[0])[::-1]
        return J @ np.linalg.cholesky(J @ S @ J).T @ J

    b, c = D12 / math.sqrt(gamma), D21 / math.sqrt(gamma)
    Lu = reverse_cholesky(np.linalg.inv(np.eye(b.shape[1]) - b.T @ b))
    Ly = reverse_cholesky(np.linalg.inv(np.eye(c.shape[0]) - c @ c.T))
    Gam = Ly @ D22 @ Lu.T / gamma
    Lz = reverse_cholesky(np.linalg.inv(np.eye(Gam.shape[1]) - Gam.T @ Gam))
    return b @ Lu.T, Ly @ c, Gam @ Lz.T


def test_large_gamma_approaches_contracting_map():
    """(D7) of docs/derivations/r2dn.md: with D12, D21, D22 held fixed, the Lipschitz map tends to the contracting one."""
    rng = np.random.default_rng(0)
    base = r2dn.Config(2, 3, 4, 2, hidden=(3,), kind="contracting")
    contracting = perturbed(r2dn.init(base, 0), rng)
    A_c = host(r2dn.direct_to_explicit(base, contracting)[0].A)
    B1_c = host(r2dn.direct_to_explicit(base, contracting)[0].B1)
    D12, D21, D22 = (0.5 * rng.standard_normal(s) for s in [(4, 2), (2, 4), (2, 2)])
    errors = []
    for gamma in (1e2, 1e4, 1e6, 1e8):
        cfg = r2dn.Config(2, 3, 4, 2, hidden=(3,), kind="lipschitz", d22="free", gamma=gamma)
        U, V, Z = _from_feedthrough(D12, D21, D22, gamma)
        lip = contracting._replace(D12=None, D21=None, D22=None, U12=U, V21=V, Z22=Z)
        explicit, _ = r2dn.direct_to_explicit(cfg, lip)
        np.testing.assert_allclose(host(explicit.D12), D12, rtol=1e-8)
        np.testing.assert_allclose(host(explicit.D21), D21, rtol=1e-8)
        np.testing.assert_allclose(host(explicit.D22), D22, rtol=1e-6, atol=1e-12)
        errors.append(max(np.abs(host(explicit.A) - A_c).max(), np.abs(host(explicit.B1) - B1_c).max()))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-3, errors


def test_long_rollout_stays_finite():
    cfg = r2dn.Config(1, 4, 4, 1, hidden=(4,), kind="contracting")
    rng = np.random.default_rng(0)
    direct = perturbed(r2dn.init(cfg, 0), rng, scale=3.0)
    explicit, _ = r2dn.direct_to_explicit(cfg, direct)
    U = 10.0 * rng.standard_normal((100_000, 1, 1))
    xT, Y, _ = r2dn.forward(cfg, explicit, np.full((1, 4), 1e3), U)
    assert np.all(np.isfinite(Y)) and np.all(np.isfinite(xT))
    assert np.abs(Y).max() < 1e4


def test_parameter_names_follow_the_authors():
    c = r2dn.init(r2dn.Config(1, 2, 3, 1, kind="contracting"), 0)
    assert {n for n, _ in tree.paths(c) if not n.startswith("phi")} == {
        "X", "p", "Y", "B1", "B2", "C1", "C2", "D12", "D21", "D22", "bx", "bv", "by"}
    lf = r2dn.init(r2dn.Config(1, 2, 3, 1, kind="lipschitz", d22="free"), 0)
    assert {n for n, _ in tree.paths(lf) if not n.startswith("phi")} == {
        "X", "p", "Y", "B1", "B2", "C1", "C2", "U12", "V21", "Z22", "bx", "bv", "by"}
    lz = r2dn.init(r2dn.Config(1, 2, 3, 1, kind="lipschitz", d22="zero"), 0)
    assert lz.Z22 is None and lz.D22 is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(nx=0), "nx"), (dict(nv=-1), "nv"), (dict(kind="passive"), "kind"),
        (dict(gamma=0.0), "gamma"), (dict(gamma=-2.0), "gamma"), (dict(gamma=float("inf")), "gamma"),
        (dict(d22="full"), "d22"), (dict(init="zeros"), "init"), (dict(eps=0.0), "eps"),
        (dict(hidden=(4, 0)), r"hidden\[1\]"), (dict(activation="elu"), "activation"),
    ],
)
def test_bad_config(kwargs, match):
    base = dict(nu=1, nx=2, nv=3, ny=1)
    base.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        r2dn.Config(**base)


def test_bad_sequences(xp):
    cfg = r2dn.Config(2, 3, 4, 1)
    explicit, _ = r2dn.direct_to_explicit(cfg, r2dn.init(cfg, 0, backend=xp))
    x0, U = put(xp, np.zeros((5, 3))), put(xp, np.zeros((7, 5, 2)))
    with pytest.raises(ValueError, match=r"U must have shape \(T, B, nu=2\)"):
        r2dn.forward(cfg, explicit, x0, put(xp, np.zeros((7, 5, 3))))
    with pytest.raises(ValueError, match=r"U must have shape"):
        r2dn.forward(cfg, explicit, x0, put(xp, np.zeros((5, 2))))
    with pytest.raises(ValueError, match=r"x0 must have shape \(B=5, nx=3\)"):
        r2dn.forward(cfg, explicit, put(xp, np.zeros((4, 3))), U)
    with pytest.raises(ValueError, match="U contains NaN or Inf"):
        r2dn.forward(cfg, explicit, x0, put(xp, np.full((7, 5, 2), np.inf)))
    with pytest.raises(ValueError, match="x0 contains NaN"):
        r2dn.forward(cfg, explicit, put(xp, np.full((5, 3), np.nan)), U)
    with pytest.raises(TypeError, match="U has dtype"):
        r2dn.forward(cfg, explicit, x0, xp.asarray(np.zeros((7, 5, 2), dtype=np.float32)))
    with pytest.raises(ValueError, match="T >= 1"):
        r2dn.forward(cfg, explicit, x0, put(xp, np.zeros((0, 5, 2))))
    _, _, cache = r2dn.forward(cfg, explicit, x0, U)
    with pytest.raises(ValueError, match=r"dY must have shape \(T=7, B=5, ny=1\)"):
        r2dn.backward(cfg, explicit, cache, put(xp, np.zeros((7, 5, 2))))
    with pytest.raises(ValueError, match=r"dxT must have shape"):
        r2dn.backward(cfg, explicit, cache, put(xp, np.zeros((7, 5, 1))), put(xp, np.zeros((5, 2))))


def test_mixed_backends_are_refused():
    import array_api_strict

    cfg = r2dn.Config(1, 2, 2, 1)
    explicit, _ = r2dn.direct_to_explicit(cfg, r2dn.init(cfg, 0))
    U = array_api_strict.asarray(np.zeros((3, 1, 1)))
    with pytest.raises(TypeError, match="U lives on a different backend"):
        r2dn.forward(cfg, explicit, np.zeros((1, 2)), U)


def test_flax_tree_round_trip(xp):
    cfg = r2dn.Config(2, 3, 4, 1, hidden=(5, 6), output_layer="sandwich", kind="contracting")
    direct = perturbed(r2dn.init(cfg, 0, backend=xp), np.random.default_rng(1))
    flax = flax_interop.to_flax(cfg, direct)
    assert flax["params"]["p"].shape == (1,)
    assert set(flax["params"]["network"]) == {"layers_0", "layers_1", "layers_2"}
    assert flax["params"]["network"]["layers_2"]["XY"].shape == (6 + 4, 4)
    back = flax_interop.from_flax(cfg, flax, backend=xp)
    for (n, a), (_, b) in zip(tree.paths(direct), tree.paths(back)):
        assert np.array_equal(host(a), host(b)), n
    # also without the "params" wrapper, and float32 kept
    f32 = {k: v for k, v in flax["params"].items()}
    f32["X"] = f32["X"].astype(np.float32)
    assert flax_interop.from_flax(cfg, f32).X.dtype == np.float32


def test_flax_tree_errors():
    cfg = r2dn.Config(1, 2, 3, 1, hidden=(4,), output_layer="sandwich")
    flax = flax_interop.to_flax(cfg, r2dn.init(cfg, 0))
    with pytest.raises(ValueError, match="kind must be 'contracting'"):
        flax_interop.from_flax(r2dn.Config(1, 2, 3, 1, output_layer="sandwich", kind="lipschitz"), flax)
    with pytest.raises(ValueError, match="output_layer must be 'sandwich'"):
        flax_interop.from_flax(r2dn.Config(1, 2, 3, 1, hidden=(4,)), flax)
    bad = {"params": dict(flax["params"])}
    del bad["params"]["Y"]
    with pytest.raises(KeyError, match="missing 'Y'"):
        flax_interop.from_flax(cfg, bad)
    bad = {"params": dict(flax["params"], B1=np.zeros((3, 3)))}
    with pytest.raises(ValueError, match=r"tree\['B1'\] has shape \(3, 3\), expected \(2, 3\)"):
        flax_interop.from_flax(cfg, bad)
    deep = r2dn.Config(1, 2, 3, 1, hidden=(3, 3), output_layer="sandwich")
    with pytest.raises(ValueError, match="more layers"):
        flax_interop.from_flax(r2dn.Config(1, 2, 3, 1, hidden=(3,), output_layer="sandwich"),
                       flax_interop.to_flax(deep, r2dn.init(deep, 0)))
