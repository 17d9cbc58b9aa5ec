"""Conformance: every sequence model speaks the one protocol of ``r2dn_np.interface.protocol``
(``docs/protocol.md``); that every registered module exports its protocol's names is checked in
``tests/test_registry.py``.

One parametrised set of checks runs each model through the protocol: shapes and dtypes of every
result, ``forward`` = repeated ``step``, ``value_and_grad`` = ``forward`` + ``backward`` +
``direct_to_explicit_vjp``, the gradient of the same small loss against finite differences
(float64), save/load round trip, and ``r2dn verify``'s checks where the model has a certificate.
"""

import numpy as np
import pytest

from r2dn_np.interface import io, protocol, registry
from r2dn_np.core import tree
from r2dn_np.checks import verify
from r2dn_np.checks.testing import check_vjp

# name -> (module name, config keyword arguments); small sizes so that finite differences are cheap
MODELS = {
    "r2dn-contracting": ("r2dn", dict(nu=2, nx=3, nv=4, ny=2, hidden=(5,), activation="tanh")),
    "r2dn-lipschitz-zero": ("r2dn", dict(nu=2, nx=3, nv=4, ny=2, hidden=(5,), activation="tanh",
                                         kind="lipschitz", gamma=2.0)),
    "r2dn-lipschitz-free": ("r2dn", dict(nu=2, nx=3, nv=4, ny=3, hidden=(5,), activation="tanh",
                                         kind="lipschitz", gamma=0.5, d22="free")),
    "ren-contracting": ("ren", dict(nu=2, nx=3, nv=4, ny=2, activation="tanh", abar=0.9)),
    "ren-lipschitz": ("ren", dict(nu=2, nx=3, nv=4, ny=3, activation="tanh", kind="lipschitz", gamma=2.0)),
    "r2dn-qsr": ("r2dn", dict(nu=2, nx=3, nv=4, ny=3, hidden=(5,), activation="tanh", kind="qsr", d22="free",
                              Q=[[-1.0, 0.2, 0.0], [0.2, -2.0, 0.0], [0.0, 0.0, -0.5]],
                              S=[[0.3, 0.0, 0.1], [0.0, -0.2, 0.0]], R=[[2.0, 0.1], [0.1, 1.0]])),
    "r2dn-learned-gamma": ("r2dn", dict(nu=2, nx=3, nv=4, ny=2, hidden=(5,), activation="tanh", kind="lipschitz",
                                        learn_gamma=True, gamma=0.7, learn_multiplier=True)),
    "ren-qsr": ("ren", dict(nu=2, nx=3, nv=4, ny=2, activation="tanh", kind="qsr",
                            Q=[[-1.0, 0.0], [0.0, -3.0]], S=[[0.5, 0.0], [0.0, 0.5]], R=[[1.0, 0.0], [0.0, 1.0]])),
    "ren-learned-gamma": ("ren", dict(nu=2, nx=3, nv=4, ny=3, activation="tanh", kind="lipschitz",
                                      learn_gamma=True, gamma=2.0)),
    "r2dn-identity-output": ("r2dn", dict(nu=2, nx=3, nv=4, ny=3, hidden=(5,), activation="tanh",
                                          identity_output=True, eps=1e-3)),
    "ren-identity-output": ("ren", dict(nu=2, nx=3, nv=4, ny=3, activation="tanh", abar=0.9,
                                        identity_output=True, eps=1e-3)),
    "r2dn-diagonal": ("r2dn", dict(nu=2, nx=3, nv=4, ny=2, hidden=(5,), activation="tanh", lti="diagonal")),
    "r2dn-lowrank-lipschitz": ("r2dn", dict(nu=2, nx=4, nv=3, ny=3, hidden=(5,), activation="tanh", kind="lipschitz",
                                            gamma=0.7, lti="diagonal_plus_lowrank", rank=2)),
    "ren-full": ("ren", dict(nu=2, nx=3, nv=4, ny=2, activation="tanh", abar=0.9, layer="full", layer_tol=1e-14)),
    "ren-full-lipschitz": ("ren", dict(nu=2, nx=3, nv=4, ny=3, activation="tanh", kind="lipschitz", gamma=2.0,
                                       layer="full", layer_solver="anderson", layer_tol=1e-14)),
    "lipschitz_rnn-euler": ("lipschitz_rnn", dict(n_in=2, n_units=4, n_out=2, decoder="sequence")),
    "lipschitz_rnn-imex": ("lipschitz_rnn", dict(n_in=2, n_units=4, n_out=2, decoder="sequence",
                                                 scheme="imex", rho=0.5)),
    "lipschitz_rnn-midpoint": ("lipschitz_rnn", dict(n_in=2, n_units=4, n_out=2, decoder="sequence",
                                                     scheme="midpoint")),
    "lipschitz_rnn-rk4": ("lipschitz_rnn", dict(n_in=2, n_units=4, n_out=2, decoder="sequence", scheme="rk4")),
    "lipschitz_rnn-gated": ("lipschitz_rnn", dict(n_in=2, n_units=4, n_out=2, decoder="sequence", gated=True)),
    "lipschitz_rnn-stable": ("lipschitz_rnn", dict(n_in=2, n_units=4, n_out=2, decoder="sequence",
                                                   stable_margin=0.1)),
    "lipschitz_rnn-last": ("lipschitz_rnn", dict(n_in=2, n_units=4, n_out=3, decoder="last")),
    "tanh_rnn": ("tanh_rnn", dict(n_in=2, n_units=4, n_out=2, decoder="sequence")),
}
FEEDBACK = registry.names(feedback=True)
T, B = 6, 3
# the feedback models run on both time loops (compiled where Numba imports, and the array-API
# reference); the RNNs have one
PATHS = [pytest.param(name, loop, id=f"{name}-{loop}") for name in MODELS
         for loop in (("compiled", "array-api") if MODELS[name][0] in FEEDBACK else ("array-api",))]


@pytest.fixture
def on_path(monkeypatch):
    def choose(loop):
        monkeypatch.setenv("R2DN_JIT", "1" if loop == "compiled" else "0")
    return choose


def build(name, dtype="float64", seed=0):
    module = registry.module(MODELS[name][0])
    cfg = module.Config(**MODELS[name][1])
    return module, cfg, module.init(cfg, seed=seed, dtype=dtype)


def problem(cfg, dtype="float64", seed=1):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((T, B, cfg.nu)).astype(dtype)
    x0 = (0.3 * rng.standard_normal((B, cfg.nx))).astype(dtype)
    return x0, U


def quadratic_loss(target):
    """``sum(Y * target) + sum(Y^2)/2``: the same small loss for every model."""
    def loss(Y):
        return float(np.sum(Y * target) + 0.5 * np.sum(Y * Y)), target + Y
    return loss


def target_for(Y, seed=2):
    return np.random.default_rng(seed).standard_normal(Y.shape).astype(Y.dtype)


def test_every_registered_sequence_model_is_run_here():
    """A model added to the registry as a sequence model gets these checks only once it has a
    case above."""
    assert {module for module, _ in MODELS.values()} == set(registry.names(protocol=registry.SEQUENCE_MODEL))


def test_missing_names_a_departure():
    class Fake:
        Config = Direct = Explicit = Grads = type

        @staticmethod
        def forward(cfg, explicit, h0, X):  # the old Lipschitz RNN names
            return None

    gaps = protocol.missing(Fake, protocol.SEQUENCE_MODEL)
    assert "init: not exported" in gaps
    assert any(g.startswith("forward: parameters ('cfg', 'explicit', 'h0', 'X')") for g in gaps)


@pytest.mark.parametrize("name, loop", PATHS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shapes_and_dtypes(name, loop, on_path, dtype):
    on_path(loop)
    module, cfg, direct = build(name, dtype)
    x0, U = problem(cfg, dtype)
    explicit, map_cache = module.direct_to_explicit(cfg, direct)
    xT, Y, cache = module.forward(cfg, explicit, x0, U)
    assert xT.shape == (B, cfg.nx) and xT.dtype == U.dtype
    assert Y.ndim == 3 and Y.shape[1:] == (B, cfg.ny) and Y.dtype == U.dtype
    assert Y.shape[0] in (T, 1)
    d_explicit, dx0, dU = module.backward(cfg, explicit, cache, np.ones_like(Y))
    assert dx0.shape == x0.shape and dU.shape == U.shape and dU.dtype == U.dtype
    assert type(d_explicit) is type(explicit)
    d_direct = module.direct_to_explicit_vjp(cfg, map_cache, d_explicit)
    assert type(d_direct) is type(direct)
    for (path, g), (_, p) in zip(tree.paths(d_direct), tree.paths(direct)):
        assert g.shape == p.shape and g.dtype == p.dtype, path
    # x0 = None means zeros
    _, Y0, _ = module.forward(cfg, explicit, None, U)
    _, Yz, _ = module.forward(cfg, explicit, np.zeros_like(x0), U)
    np.testing.assert_array_equal(Y0, Yz)


@pytest.mark.parametrize("name, loop", PATHS)
def test_forward_is_repeated_step(name, loop, on_path):
    on_path(loop)
    module, cfg, direct = build(name)
    x0, U = problem(cfg)
    explicit, _ = module.direct_to_explicit(cfg, direct)
    xT, Y, _ = module.forward(cfg, explicit, x0, U)
    x, ys = x0, []
    for t in range(T):
        x, y = module.step(cfg, explicit, x, U[t])
        ys.append(y)
    np.testing.assert_allclose(x, xT, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.stack(ys)[-Y.shape[0]:], Y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, loop", PATHS)
def test_value_and_grad_is_forward_backward_and_map_vjp(name, loop, on_path):
    on_path(loop)
    module, cfg, direct = build(name)
    x0, U = problem(cfg)
    explicit, map_cache = module.direct_to_explicit(cfg, direct)
    _, Y, cache = module.forward(cfg, explicit, x0, U)
    loss = quadratic_loss(target_for(Y))
    value, grads = module.value_and_grad(cfg, direct, x0, U, loss)
    assert isinstance(grads, module.Grads) and grads._fields == ("direct", "x0", "U")
    ref_value, dY = loss(Y)
    d_explicit, dx0, dU = module.backward(cfg, explicit, cache, dY)
    assert value == pytest.approx(ref_value, rel=1e-14)
    np.testing.assert_allclose(grads.x0, dx0, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grads.U, dU, rtol=1e-13, atol=1e-15)
    d_direct = module.direct_to_explicit_vjp(cfg, map_cache, d_explicit)
    for (path, a), (_, b) in zip(tree.paths(grads.direct), tree.paths(d_direct)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15, err_msg=path)


@pytest.mark.parametrize("name, loop", PATHS)
def test_gradient_of_the_same_small_loss_against_finite_differences(name, loop, on_path):
    on_path(loop)
    module, cfg, direct = build(name)
    x0, U = problem(cfg)
    explicit, _ = module.direct_to_explicit(cfg, direct)
    target = target_for(module.forward(cfg, explicit, x0, U)[1])
    loss = quadratic_loss(target)

    def f(args):
        d, x, u = args
        return np.asarray(module.value_and_grad(cfg, d, x, u, loss)[0])

    def vjp(args, dv):
        d, x, u = args
        g = module.value_and_grad(cfg, d, x, u, loss)[1]
        return tree.map(lambda a: float(dv) * a, (g.direct, g.x0, g.U))

    # every model here is smooth (tanh), so finite differences are reliable at any draw
    report = check_vjp(f, vjp, (direct, x0, U), rtol=1e-6)
    assert report.worst_error < 1e-6, report.table()


@pytest.mark.parametrize("name", MODELS)
def test_save_and_load_round_trip_exactly(name, tmp_path):
    module, cfg, direct = build(name, seed=3)
    path = tmp_path / "model.npz"
    io.save(path, cfg, direct)
    loaded = io.load(path)
    assert loaded.config == cfg
    for (p, a), (q, b) in zip(tree.paths(loaded.params), tree.paths(direct)):
        assert p == q and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", [n for n in MODELS if MODELS[n][0] in FEEDBACK])
def test_verify_checks_hold_where_a_certificate_exists(name):
    module, cfg, direct = build(name)
    rows = verify.check_model(module, cfg, direct, seed=0, quick=True)
    assert rows and all(r.verdict in ("holds", "not decisive") for r in rows), verify.table([(name, r) for r in rows])
    assert any(r.holds for r in rows if "LMI" in r.name)


@pytest.mark.parametrize("name", MODELS)
def test_every_backend_gives_the_numpy_numbers(xp, name):
    """The protocol's value_and_grad uses only the array API: array_api_strict (and CuPy where a GPU
    exists) give NumPy's loss and gradients."""
    from helpers import host, put

    module, cfg, direct = build(name)
    x0, U = problem(cfg)

    def loss(Y):
        return float(host(Y * Y).sum()), 2 * Y

    ref_value, ref = module.value_and_grad(cfg, direct, x0, U, loss)
    value, grads = module.value_and_grad(cfg, tree.map(lambda a: put(xp, a), direct), put(xp, x0), put(xp, U), loss)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for (path, a), (_, b) in zip(tree.paths(grads), tree.paths(ref)):
        np.testing.assert_allclose(host(a), b, rtol=1e-10, atol=1e-13, err_msg=path)
