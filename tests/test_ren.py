"""REN (docs/derivations/ren.md): the equilibrium layer, the map against its formulas, and the
gradients at edge sizes. The rollout, step and gradient checks it shares with the R2DN are in
tests/test_feedback_models.py, the certificates in tests/test_certificates.py."""

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from r2dn_np.core import activations
from r2dn_np.layers import equilibrium
from r2dn_np.checks.testing import FiniteDifferenceUnreliable, check_vjp

from helpers import examples_for, host, put

ACTIVATIONS = ["tanh", "sigmoid", "identity", "relu"]


def _layer_inputs(xp, rng, nv, B, scale):
    D11 = put(xp, np.tril(scale * rng.standard_normal((nv, nv)), -1))
    return D11, put(xp, scale * rng.standard_normal((B, nv)))


# --- the equilibrium layer (docs/derivations/ren.md section 4) ------------------------------------


def test_equilibrium_residual(xp):
    @settings(max_examples=examples_for(xp, 25))
    @given(nv=st.integers(1, 12), B=st.integers(1, 4), act=st.sampled_from(ACTIVATIONS),
           scale=st.sampled_from([0.3, 1.0, 3.0]), seed=st.integers(0, 2**31 - 1))
    def check(nv, B, act, scale, seed):
        rng = np.random.default_rng(seed)
        D11, b = _layer_inputs(xp, rng, nv, B, scale)
        w = equilibrium.solve(act, D11, b)
        assert tuple(w.shape) == (B, nv)
        residual = host(w) - host(activations.apply(act, w @ D11.mT + b))
        assert np.abs(residual).max() <= 1e-12 * max(1.0, np.abs(host(w)).max())

    check()


def test_equilibrium_reads_only_the_strict_lower_triangle(xp):
    rng = np.random.default_rng(0)
    D11, b = _layer_inputs(xp, rng, 5, 3, 1.0)
    noisy = D11 + put(xp, np.triu(rng.standard_normal((5, 5))))
    np.testing.assert_array_equal(host(equilibrium.solve("tanh", noisy, b)), host(equilibrium.solve("tanh", D11, b)))


def test_phi_follows_a_changed_D11(xp):
    """The phi caches matrices built from D11 across time-steps; a new D11 must not reuse them."""
    rng = np.random.default_rng(2)
    phi = equilibrium.as_phi("tanh")
    for _ in range(3):
        D11, b = _layer_inputs(xp, rng, 6, 2, 1.0)
        w, cache = phi.forward(equilibrium.Params(D11), b)
        np.testing.assert_array_equal(host(w), host(equilibrium.solve("tanh", D11, b)))
        dw = put(xp, rng.standard_normal((2, 6)))
        dz, _ = phi.backward(equilibrium.Params(D11), cache, dw)
        np.testing.assert_array_equal(host(dz), host(equilibrium.solve_vjp("tanh", D11, w, dw)))


def _layer_f(act):
    def f(args):
        D11, b = args
        return equilibrium.solve(act, D11, b)
    return f


def _layer_vjp(act):
    def vjp(args, dw):
        D11, b = args
        w = equilibrium.solve(act, D11, b)
        dz = equilibrium.solve_vjp(act, D11, w, dw)
        return equilibrium.weight_grads(dz, w), dz
    return vjp


def test_equilibrium_vjp_against_finite_differences(xp):
    @settings(max_examples=examples_for(xp, 30))
    @given(nv=st.integers(1, 10), B=st.integers(1, 4), act=st.sampled_from(ACTIVATIONS),
           scale=st.sampled_from([0.3, 1.0, 2.0]), seed=st.integers(0, 2**31 - 1))
    def check(nv, B, act, scale, seed):
        rng = np.random.default_rng(seed)
        D11, b = _layer_inputs(xp, rng, nv, B, scale)
        # the FD direction perturbs the whole of D11; the map only sees its strict lower part
        f = lambda args: _layer_f(act)((put(xp, np.tril(host(args[0]), -1)), args[1]))  # noqa: E731
        try:
            check_vjp(f, _layer_vjp(act), (D11, b))
        except FiniteDifferenceUnreliable:
            reject()

    check()


def _unrolled(act, D11, b, iters):
    """Fixed-point iteration w <- sigma(D11 w + b) from w = 0 (exact after nv sweeps, since D11
    is nilpotent), with reverse-mode backpropagation through every sweep."""
    w = np.zeros_like(b)
    trace = []
    for _ in range(iters):
        z = w @ D11.T + b
        w = host(activations.apply(act, z))
        trace.append((z, w))

    def backward(dw):
        dD11, db = np.zeros_like(D11), np.zeros_like(b)
        for k in range(iters - 1, -1, -1):
            z, wk = trace[k]
            dz = dw * host(activations.slope_from_output(act, wk))
            prev = trace[k - 1][1] if k else np.zeros_like(b)
            dD11 += dz.T @ prev
            db += dz
            dw = dz @ D11
        return np.tril(dD11, -1), db

    return w, backward


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_equilibrium_vjp_equals_backprop_through_unrolled_iteration(xp, act):
    rng = np.random.default_rng(1)
    nv, B = 7, 3
    D11, b = _layer_inputs(xp, rng, nv, B, 1.0)
    dw = rng.standard_normal((B, nv))
    w_ref, backward = _unrolled(act, host(D11), host(b), iters=nv + 3)
    w = equilibrium.solve(act, D11, b)
    np.testing.assert_allclose(host(w), w_ref, rtol=1e-13, atol=1e-14)
    dz = equilibrium.solve_vjp(act, D11, w, put(xp, dw))
    dD11_ref, db_ref = backward(dw)
    np.testing.assert_allclose(host(dz), db_ref, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(host(equilibrium.weight_grads(dz, w)), dD11_ref, rtol=1e-11, atol=1e-13)


# --- the model: map, rollout, BPTT ---------------------------------------------------------------

from r2dn_np.interface import flax_interop  # noqa: E402
from r2dn_np import ren  # noqa: E402
from r2dn_np.core import tree  # noqa: E402

from test_feedback_models import model_fd_check, perturbed  # noqa: E402
from test_feedback_models import ren_configs as configs  # noqa: E402


def xput(like, a):
    from array_api_compat import array_namespace

    return put(array_namespace(like), a)


def reference_map(cfg, direct):
    """(N1)-(N8) of docs/derivations/ren.md written out in NumPy, following the paper's formulas literally."""
    d = {k: host(v) for k, v in direct._asdict().items() if v is not None}
    nu, nx, nv, ny, g, eps = cfg.nu, cfg.nx, cfg.nv, cfg.ny, cfg.gamma, cfg.eps
    X = d["X"]
    G = X.T @ X * (d["p"] ** 2 / (np.sum(X * X) + eps) if cfg.polar else 1.0)
    H = G + eps * np.eye(cfg.n)
    D22 = d.get("D22")
    if cfg.kind == "lipschitz":
        if cfg.d22 == "free":
            I = np.eye(cfg.d)
            M = d["X3"].T @ d["X3"] + d["Y3"] - d["Y3"].T + d["Z3"].T @ d["Z3"] + eps * I
            if ny >= nu:
                N = np.vstack([(I - M) @ np.linalg.inv(I + M), -2 * d["Z3"] @ np.linalg.inv(I + M)])
            else:
                N = np.hstack([np.linalg.inv(I + M) @ (I - M), -2 * np.linalg.inv(I + M) @ d["Z3"].T])
            D22 = g * N
        else:
            D22 = np.zeros((ny, nu))
        C2t = -D22.T @ d["C2"] / g
        D21t = -D22.T @ d["D21"] / g - d["D12"].T
        R = g * np.eye(nu) - D22.T @ D22 / g
        mQ = np.hstack([d["C2"], d["D21"], np.zeros((ny, nx))])
        mR = np.hstack([C2t, D21t, d["B2"].T])
        H = H + mQ.T @ mQ / g + mR.T @ np.linalg.inv(R) @ mR
    H11, H22, H33 = H[:nx, :nx], H[nx:nx + nv, nx:nx + nv], H[nx + nv:, nx + nv:]
    E = (H11 + H33 / cfg.abar**2 + d["Y1"] - d["Y1"].T) / 2
    Lam = np.diag(np.diag(H22) / 2)
    Ei, Li = np.linalg.inv(E), np.linalg.inv(Lam)
    return dict(A=Ei @ H[nx + nv:, :nx], B1=Ei @ H[nx + nv:, nx:nx + nv], B2=Ei @ d["B2"],
                C1=-Li @ H[nx:nx + nv, :nx], D11=-Li @ np.tril(H22, -1), D12=Li @ d["D12"],
                D22=D22, C2=d["C2"], D21=d["D21"])


def test_map_matches_reference_formulas(xp):
    @settings(max_examples=examples_for(xp, 25))
    @given(cfg=configs(), seed=st.integers(0, 2**31 - 1))
    def check(cfg, seed):
        rng = np.random.default_rng(seed)
        direct = perturbed(ren.init(cfg, seed, backend=xp), rng)
        explicit, _ = ren.direct_to_explicit(cfg, direct)
        for name, ref in reference_map(cfg, direct).items():
            np.testing.assert_allclose(host(getattr(explicit, name)), ref, rtol=1e-9, atol=1e-11, err_msg=name)

    check()


# (1, 1, 2, 1) pins a counterexample Hypothesis found: with nu = nx = 1 < nv the row-scaling
# cotangents (nv, nx), (nv, nv), (nv, nu) broadcast silently if summed before the row sums
EDGE_SIZES = [(1, 1, 1, 1), (3, 2, 1, 1), (1, 2, 3, 4), (4, 3, 2, 1), (2, 2, 3, 2), (1, 1, 2, 1)]


@pytest.mark.parametrize("kind, d22", [("contracting", "free"), ("lipschitz", "zero"), ("lipschitz", "free")])
@pytest.mark.parametrize("case", range(len(EDGE_SIZES)))
def test_gradients_edge_sizes(xp, kind, d22, case):
    """nv = 1, ny > nu, ny < nu and ny = nu, every gamma and abar, with a small polar scale."""
    nu, nx, nv, ny = EDGE_SIZES[case]
    gamma, abar = [(0.1, 0.9), (10.0, 1.0), (1.0, 0.9)][case % 3]
    cfg = ren.Config(nu, nx, nv, ny, activation="tanh", kind=kind, d22=d22, gamma=gamma, abar=abar)
    rng = np.random.default_rng(case)
    direct = perturbed(ren.init(cfg, 1, backend=xp), rng)
    direct = direct._replace(p=direct.p * 0.1)
    model_fd_check(ren, cfg, direct, put(xp, rng.standard_normal((2, nx))), put(xp, rng.standard_normal((3, 2, nu))))


@pytest.mark.parametrize("nu, ny", [(1, 4), (4, 1), (3, 3), (2, 5), (5, 2)])
def test_d22_map_works_for_every_nu_ny(nu, ny):
    """The authors' JAX code breaks for ny > nu (identity(ny) in M3); ours must not, and
    ||D22|| < gamma ((N6) of docs/derivations/ren.md)."""
    cfg = ren.Config(nu, 2, 3, ny, kind="lipschitz", d22="free", gamma=3.0)
    rng = np.random.default_rng(nu * 10 + ny)
    direct = ren.init(cfg, 0)
    assert direct.X3.shape == (min(nu, ny),) * 2 and direct.Z3.shape == (abs(ny - nu), min(nu, ny))
    # the authors' init: D22 = gamma (I - M3)(I + M3)^-1 with M3 = I + eps I, about -gamma eps / 2
    assert np.abs(host(ren.direct_to_explicit(cfg, direct)[0].D22)).max() <= 3.0 * cfg.eps
    for _ in range(5):
        direct = perturbed(direct, rng, 3.0)
        D22 = host(ren.direct_to_explicit(cfg, direct)[0].D22)
        assert D22.shape == (ny, nu)
        assert np.linalg.norm(D22, 2) < 3.0
        assert np.linalg.norm(D22, 2) > 0.0


def test_d22_zero_is_exactly_zero(xp):
    cfg = ren.Config(3, 2, 4, 2, kind="lipschitz", d22="zero", gamma=3.0)
    direct = perturbed(ren.init(cfg, 0, backend=xp), np.random.default_rng(0))
    assert direct.D22 is None and direct.X3 is None
    assert np.all(host(ren.direct_to_explicit(cfg, direct)[0].D22) == 0.0)


@pytest.mark.parametrize("kind", ["contracting", "lipschitz"])
def test_long_memory_init(kind):
    cfg = ren.Config(1, 5, 3, 1, kind=kind, init="long_memory", gamma=10.0)
    explicit, _ = ren.direct_to_explicit(cfg, ren.init(cfg, 0))
    A = host(explicit.A)
    eig = np.abs(np.linalg.eigvals(A))
    assert eig.max() < 1.0
    if kind == "contracting":  # E = P = I up to eps: A is the drawn diagonal, B1 = C1 = 0
        np.testing.assert_allclose(A, np.diag(np.diag(A)), atol=1e-6)
        assert np.all(np.diag(A) >= 0.95 - 1e-6)
        assert np.abs(host(explicit.B1)).max() < 1e-6 and np.abs(host(explicit.C1)).max() < 1e-6
    else:
        assert eig.min() > 0.5


def test_parameter_names_follow_the_authors():
    c = ren.init(ren.Config(1, 2, 3, 1, kind="contracting"), 0)
    assert {n for n, _ in tree.paths(c)} == {
        "X", "p", "Y1", "B2", "D12", "C2", "D21", "D22", "bx", "bv", "by"}
    lf = ren.init(ren.Config(1, 2, 3, 2, kind="lipschitz", d22="free"), 0)
    assert {n for n, _ in tree.paths(lf)} == {
        "X", "p", "Y1", "B2", "D12", "C2", "D21", "X3", "Y3", "Z3", "bx", "bv", "by"}
    assert lf.X.shape == (7, 7) and lf.Z3.shape == (1, 1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(nx=0), "nx"), (dict(nv=-1), "nv"), (dict(nu=1.5), "nu"), (dict(kind="passive"), "kind"),
        (dict(gamma=0.0), "gamma"), (dict(gamma=-2.0), "gamma"), (dict(gamma=float("inf")), "gamma"),
        (dict(abar=0.0), "abar"), (dict(abar=1.1), "abar"), (dict(abar="x"), "abar"),
        (dict(d22="full"), "d22"), (dict(init="zeros"), "init"), (dict(eps=0.0), "eps"),
        (dict(activation="elu"), "activation"), (dict(polar=1), "polar"),
    ],
)
def test_bad_config(kwargs, match):
    base = dict(nu=1, nx=2, nv=3, ny=1)
    base.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        ren.Config(**base)


def test_bad_sequences(xp):
    cfg = ren.Config(2, 3, 4, 1)
    explicit, _ = ren.direct_to_explicit(cfg, ren.init(cfg, 0, backend=xp))
    x0, U = put(xp, np.zeros((2, 3))), put(xp, np.zeros((5, 2, 2)))
    with pytest.raises(ValueError, match=r"U must have shape \(T, B, nu=2\)"):
        ren.forward(cfg, explicit, x0, put(xp, np.zeros((5, 2, 3))))
    with pytest.raises(ValueError, match=r"x0 must have shape \(B=2, nx=3\)"):
        ren.forward(cfg, explicit, put(xp, np.zeros((3, 3))), U)
    with pytest.raises(ValueError, match="U contains NaN"):
        ren.forward(cfg, explicit, x0, put(xp, np.full((5, 2, 2), np.nan)))
    with pytest.raises(TypeError, match="dtype"):
        ren.forward(cfg, explicit, x0, xp.astype(U, xp.float32))
    with pytest.raises(ValueError, match="T >= 1"):
        ren.forward(cfg, explicit, x0, put(xp, np.zeros((0, 2, 2))))
    _, _, cache = ren.forward(cfg, explicit, x0, U)
    with pytest.raises(ValueError, match=r"dY must have shape \(T=5, B=2, ny=1\)"):
        ren.backward(cfg, explicit, cache, put(xp, np.zeros((5, 2, 2))))
    with pytest.raises(ValueError, match=r"u must have shape \(B=2, nu=2\)"):
        ren.step(cfg, explicit, x0, put(xp, np.zeros((2, 1))))


def test_float32_rollout_runs_and_agrees():
    cfg = ren.Config(2, 3, 5, 2, activation="tanh", kind="lipschitz")
    d64 = perturbed(ren.init(cfg, 0), np.random.default_rng(0))
    d32 = tree.map(lambda a: a.astype(np.float32), d64)
    U = np.random.default_rng(1).standard_normal((10, 2, 2))
    Y64 = ren.forward(cfg, ren.direct_to_explicit(cfg, d64)[0], np.zeros((2, 3)), U)[1]
    Y32 = ren.forward(cfg, ren.direct_to_explicit(cfg, d32)[0], np.zeros((2, 3), np.float32), U.astype(np.float32))[1]
    assert Y32.dtype == np.float32
    np.testing.assert_allclose(Y32, Y64, rtol=1e-3, atol=1e-4)


# --- interop with the authors' Flax ContractingREN / LipschitzREN ------------------------------
# (outputs and gradients against theirs: tests/test_flax_equality.py)


def test_flax_round_trip_and_errors():
    for cfg in (ren.Config(2, 3, 4, 3), ren.Config(3, 2, 4, 1, kind="lipschitz"),
                ren.Config(1, 2, 3, 4, kind="lipschitz", d22="zero")):
        direct = perturbed(ren.init(cfg, 0), np.random.default_rng(0))
        flax_tree = flax_interop.to_flax(cfg, direct)
        assert set(flax_tree["params"]) == {"X", "p", "Y1", "B2", "D12", "C2", "D21", "D22", "X3", "Y3", "Z3",
                                            "bx", "bv", "by"}  # all fourteen, as their modules create them
        assert flax_tree["params"]["p"].shape == (1,)
        back = flax_interop.from_flax(cfg, flax_tree)
        for (n, a), (m, b) in zip(tree.paths(direct), tree.paths(back)):
            assert n == m
            np.testing.assert_array_equal(host(a), host(b))
    cfg = ren.Config(2, 3, 4, 2)
    good = flax_interop.to_flax(cfg, ren.init(cfg, 0))
    renamed = {"params": {("polar" if k == "p" else k): v for k, v in good["params"].items()}}
    np.testing.assert_array_equal(flax_interop.from_flax(cfg, renamed).p, ren.init(cfg, 0).p)
    with pytest.raises(KeyError, match="'D22'"):
        flax_interop.from_flax(cfg, {"params": {k: v for k, v in good["params"].items() if k != "D22"}})
    with pytest.raises(ValueError, match=r"tree\['X'\] has shape"):
        flax_interop.from_flax(cfg, {"params": dict(good["params"], X=np.zeros((3, 3)))})
    with pytest.raises(TypeError, match="dict"):
        flax_interop.from_flax(cfg, [1, 2])
