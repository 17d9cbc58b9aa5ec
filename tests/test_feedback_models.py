"""The R2DN and the REN, the two models closed by ``feedback.py``, checked the same way: the
rollout against the model equations written out one step at a time (docs/derivations/r2dn.md
section 1, docs/derivations/ren.md section 1), ``step`` against the rollout, and the gradient of
every free parameter, x0 and U through the map, the rollout and BPTT against finite differences
(r2dn.md sections 2-4, ren.md section 3), on every backend. ``tests/test_protocol.py`` checks the
protocol itself on numpy for every sequence model; the model-specific checks stay in
``tests/test_r2dn.py`` and ``tests/test_ren.py``."""

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from r2dn_np.core import activations, tree
from r2dn_np import lbdn, r2dn, ren
from r2dn_np.training import losses
from r2dn_np.checks.testing import FiniteDifferenceUnreliable, check_vjp

from helpers import examples_for, host, put

MODULES = {"r2dn": r2dn, "ren": ren}
ACTIVATIONS = ["tanh", "sigmoid", "identity", "relu"]


def xput(like, a):
    from array_api_compat import array_namespace

    return put(array_namespace(like), a)


def perturbed(direct, rng, scale=1.0):
    """Move every free parameter off its initial value (biases, D22, Y3, Z3 start at zero)."""
    return tree.map(lambda a: a + xput(a, 0.3 * scale * rng.standard_normal(a.shape)), direct)


@st.composite
def r2dn_configs(draw, activation=st.sampled_from(ACTIVATIONS)):
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


@st.composite
def ren_configs(draw, activation=st.sampled_from(ACTIVATIONS)):
    return ren.Config(
        nu=draw(st.integers(1, 5)), nx=draw(st.integers(1, 5)), nv=draw(st.integers(1, 6)),
        ny=draw(st.integers(1, 5)), activation=draw(activation),
        kind=draw(st.sampled_from(["contracting", "lipschitz"])),
        gamma=draw(st.sampled_from([0.1, 1.0, 10.0])), abar=draw(st.sampled_from([1.0, 0.9])),
        d22=draw(st.sampled_from(["zero", "free"])), polar=draw(st.booleans()),
        init=draw(st.sampled_from(["random", "long_memory"])),
    )


CONFIGS = {"r2dn": r2dn_configs, "ren": ren_configs}
# longest sequence drawn, rollout examples and the rollout's tolerance (rtol, atol)
ROLLOUT = {"r2dn": (6, 25, 1e-10, 1e-12), "ren": (5, 20, 1e-9, 1e-11)}


def _phi_reference(cfg, explicit, v):
    """w = phi(v): the R2DN's LBDN, or the REN's equilibrium w = sigma(D11 w + v) found by
    fixed-point iteration (exact after nv sweeps, D11 being strictly lower triangular)."""
    if cfg.model == "r2dn":
        return host(lbdn.forward(cfg.lbdn, explicit.phi, xput(explicit.A, v))[0])
    D11 = host(explicit.D11)
    w = np.zeros_like(v)
    for _ in range(cfg.nv):
        w = host(activations.apply(cfg.activation, w @ D11.T + v))
    return w


def naive_rollout(cfg, explicit, x0, U):
    """The state-space equations one step at a time, no hoisting (section 1 of r2dn.md, ren.md)."""
    e = {k: host(v) for k, v in explicit._asdict().items() if k not in ("phi", "A_lowrank")}  # the dense A: the naive loop
    x = host(x0)
    ys = []
    for u in host(U):
        w = _phi_reference(cfg, explicit, x @ e["C1"].T + u @ e["D12"].T + e["bv"])
        ys.append(x @ e["C2"].T + w @ e["D21"].T + u @ e["D22"].T + e["by"])
        x = x @ e["A"].T + w @ e["B1"].T + u @ e["B2"].T + e["bx"]
    return x, np.stack(ys)


@pytest.mark.parametrize("name", ["r2dn", "ren"])
def test_rollout_matches_naive_reference(xp, name):
    module = MODULES[name]
    T_max, examples, rtol, atol = ROLLOUT[name]

    @settings(max_examples=examples_for(xp, examples))
    @given(cfg=CONFIGS[name](), seed=st.integers(0, 2**31 - 1), T=st.integers(1, T_max), B=st.integers(1, 3))
    def check(cfg, seed, T, B):
        rng = np.random.default_rng(seed)
        direct = perturbed(module.init(cfg, seed, backend=xp), rng)
        explicit, _ = module.direct_to_explicit(cfg, direct)
        x0, U = put(xp, rng.standard_normal((B, cfg.nx))), put(xp, rng.standard_normal((T, B, cfg.nu)))
        xT, Y, _ = module.forward(cfg, explicit, x0, U)
        xT_ref, Y_ref = naive_rollout(cfg, explicit, x0, U)
        np.testing.assert_allclose(host(Y), Y_ref, rtol=rtol, atol=atol)
        np.testing.assert_allclose(host(xT), xT_ref, rtol=rtol, atol=atol)

    check()


STEP_CONFIGS = {
    "r2dn": r2dn.Config(2, 3, 4, 2, hidden=(5,), kind="lipschitz", d22="free"),
    "ren": ren.Config(2, 3, 4, 3, activation="tanh", kind="lipschitz"),
}


@pytest.mark.parametrize("name", ["r2dn", "ren"])
def test_step_matches_rollout(xp, name):
    module, cfg = MODULES[name], STEP_CONFIGS[name]
    explicit, _ = module.direct_to_explicit(cfg, perturbed(module.init(cfg, 0, backend=xp), np.random.default_rng(0)))
    rng = np.random.default_rng(0)
    x, U = put(xp, rng.standard_normal((2, 3))), put(xp, rng.standard_normal((4, 2, 2)))
    _, Y, _ = module.forward(cfg, explicit, x, U)
    for t in range(4):
        x, y = module.step(cfg, explicit, x, U[t, ...])
        np.testing.assert_allclose(host(y), host(Y)[t], rtol=1e-13, atol=1e-14)


def model_fd_check(module, cfg, direct, x0, U):
    """The hand-written gradient of (Y, xT) with respect to (direct, x0, U) against finite
    differences: the map's VJP after BPTT."""
    def f(args):
        explicit, _ = module.direct_to_explicit(cfg, args[0])
        xT, Y, _ = module.forward(cfg, explicit, args[1], args[2])
        return Y, xT

    def vjp(args, cot):
        dY, dxT = cot
        explicit, map_cache = module.direct_to_explicit(cfg, args[0])
        _, _, cache = module.forward(cfg, explicit, args[1], args[2])
        d_explicit, dx0, dU = module.backward(cfg, explicit, cache, dY, dxT)
        return module.direct_to_explicit_vjp(cfg, map_cache, d_explicit), dx0, dU

    return check_vjp(f, vjp, (direct, x0, U))


@pytest.mark.parametrize("name", ["r2dn", "ren"])
def test_gradients_against_finite_differences(xp, name):
    """Every free parameter, x0 and U, through the map, the rollout and BPTT (and dxT)."""
    module = MODULES[name]

    @settings(max_examples=examples_for(xp, 40))
    @given(cfg=CONFIGS[name](), seed=st.integers(0, 2**31 - 1), T=st.integers(1, ROLLOUT[name][0]),
           scale=st.sampled_from([0.3, 1.0, 3.0]))
    def check(cfg, seed, T, scale):
        rng = np.random.default_rng(seed)
        direct = perturbed(module.init(cfg, seed, backend=xp), rng, scale)
        x0 = put(xp, rng.standard_normal((2, cfg.nx)))
        U = put(xp, rng.standard_normal((T, 2, cfg.nu)))
        try:
            model_fd_check(module, cfg, direct, x0, U)
        except FiniteDifferenceUnreliable:
            reject()  # a ReLU kink within the finite-difference step

    check()


VALUE_AND_GRAD_CONFIGS = {
    "r2dn": r2dn.Config(2, 3, 4, 2, hidden=(3,), activation="tanh", kind="lipschitz", gamma=2.0),
    "ren": ren.Config(2, 3, 4, 2, activation="tanh", kind="lipschitz", gamma=2.0),
}


@pytest.mark.parametrize("name", ["r2dn", "ren"])
def test_value_and_grad_matches_backward(xp, name):
    module, cfg = MODULES[name], VALUE_AND_GRAD_CONFIGS[name]
    rng = np.random.default_rng(0)
    direct = perturbed(module.init(cfg, 0, backend=xp), rng)
    x0, U = put(xp, rng.standard_normal((3, 3))), put(xp, rng.standard_normal((5, 3, 2)))
    target = put(xp, rng.standard_normal((5, 3, 2)))
    value, grads = module.value_and_grad(cfg, direct, x0, U, lambda Y: losses.mse(Y, target))

    def f(args):
        explicit, _ = module.direct_to_explicit(cfg, args[0])
        return losses.mse(module.forward(cfg, explicit, args[1], args[2])[1], target)[0]

    check_vjp(f, lambda args, d: tree.map(lambda g: d * g, tuple(grads)), (direct, x0, U))
    assert float(value) == pytest.approx(float(f((direct, x0, U))), rel=1e-14)
