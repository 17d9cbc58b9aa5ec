"""R2DN (docs/derivations/r2dn.md): what is particular to it. The rollout, step and gradient
checks it shares with the REN are in tests/test_feedback_models.py, the certificates in
tests/test_certificates.py, the protocol in tests/test_protocol.py."""

import math

import numpy as np
import pytest

from r2dn_np.checks import certificates
from r2dn_np.interface import flax_interop
from r2dn_np import r2dn
from r2dn_np.core import tree

from helpers import host, put
from test_feedback_models import model_fd_check, perturbed


def xput(like, a):
    from array_api_compat import array_namespace

    return put(array_namespace(like), a)


@pytest.mark.parametrize("kind, d22", [("contracting", "zero"), ("lipschitz", "zero"), ("lipschitz", "free")])
@pytest.mark.parametrize("sizes", [(1, 1, 1, 1), (3, 2, 1, 1), (1, 2, 3, 4), (4, 3, 2, 1)])
def test_gradients_edge_sizes(xp, kind, d22, sizes):
    """nv = 1 and nu != ny both ways, with a tiny polar scale (a nearly tight model)."""
    nu, nx, nv, ny = sizes
    cfg = r2dn.Config(nu, nx, nv, ny, hidden=(2,), activation="tanh", kind=kind, d22=d22, gamma=0.1)
    rng = np.random.default_rng(sum(sizes))
    direct = perturbed(r2dn.init(cfg, 1, backend=xp), rng)
    direct = direct._replace(p=direct.p * 1e-4)
    model_fd_check(r2dn, cfg, direct, put(xp, rng.standard_normal((2, nx))), put(xp, rng.standard_normal((3, 2, nu))))


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


@pytest.mark.parametrize("init", ["random", "long_memory"])
def test_init_and_map_use_eps_and_eps_n_where_each_belongs(init):
    """Away from the default eps == eps_n: ``p`` starts at sqrt(|X|^2 + eps), and the map uses
    eps_n inside the polar normalisation and eps on the diagonal, (R1) of docs/derivations/r2dn.md."""
    eps, eps_n = 0.25, 1e-3
    cfg = r2dn.Config(nu=1, nx=2, nv=3, ny=1, hidden=(4,), eps=eps, eps_n=eps_n, init=init)
    d = r2dn.init(cfg, seed=0)
    X = np.asarray(d.X)
    assert float(d.p) == pytest.approx(np.sqrt(np.sum(X * X) + eps), rel=1e-14)
    assert abs(float(d.p) - np.sqrt(np.sum(X * X) + eps_n)) > 1e-2  # the two are told apart
    d = d._replace(p=np.asarray(1.7), C1=np.full((3, 2), 0.3), B1=np.full((2, 3), -0.2))
    _, cache = r2dn.direct_to_explicit(cfg, d)
    H = 1.7**2 * X.T @ X / (np.sum(X * X) + eps_n) + eps * np.eye(4)
    Y = np.asarray(d.Y)
    E = 0.5 * (H[:2, :2] + d.C1.T @ d.C1 + H[2:, 2:] + d.B1 @ d.B1.T + Y - Y.T)
    np.testing.assert_allclose(np.asarray(cache.E), E, rtol=1e-13, atol=1e-14)
