"""REN (math.md section 6): the equilibrium layer, the map and its VJP, the rollout, BPTT."""

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from r2dn_np import activations, equilibrium
from r2dn_np.testing import FiniteDifferenceUnreliable, check_vjp

from helpers import examples_for, host, put

ACTIVATIONS = ["tanh", "sigmoid", "identity", "relu"]


def _layer_inputs(xp, rng, nv, B, scale):
    D11 = put(xp, np.tril(scale * rng.standard_normal((nv, nv)), -1))
    return D11, put(xp, scale * rng.standard_normal((B, nv)))


# --- the equilibrium layer (math.md 6.5) ---------------------------------------------------------


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
