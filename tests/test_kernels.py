"""The in-place kernels and the LBDN's write-into-buffers step equal the plain array-API forms."""

import numpy as np
import pytest

from r2dn_np.core import activations, kernels
from r2dn_np.loop import feedback
from r2dn_np import r2dn
from r2dn_np.core.static_map import Phi

from helpers import host, put


@pytest.mark.parametrize("activation", activations.NAMES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kernels_are_bitwise_the_plain_expressions(xp, activation, dtype):
    rng = np.random.default_rng(0)
    cast = lambda a: xp.astype(put(xp, a), getattr(xp, dtype))  # noqa: E731
    z, bias, d = (cast(3 * rng.standard_normal(s)) for s in [(7, 5), (5,), (7, 5)])
    z = z * cast(rng.random((7, 5)) > 0.2)  # exact zeros: ReLU's slope there is 0
    want = activations.apply(activation, z + bias, xp)
    got = kernels.bias_act(kernels.native(z), activation, xp.asarray(z, copy=True), bias,
                           xp.empty_like(z))
    assert np.array_equal(host(got), host(want))
    s = want
    want_d = d * activations.slope_from_output(activation, s, xp)
    got_d = kernels.times_slope(kernels.native(d), activation, d, s, xp.empty_like(d))
    assert np.array_equal(host(got_d), host(want_d))
    # the generic form on NumPy too, and in place (out is d)
    fallback = kernels.times_slope(None, activation, xp.asarray(d, copy=True), s, xp.empty_like(d))
    assert np.array_equal(host(fallback), host(want_d))
    assert np.array_equal(host(kernels.times_slope(kernels.native(d), activation, d, s, d)), host(want_d))


def test_native_only_for_libraries_with_out(xp):
    a = xp.zeros((2, 2))
    assert (kernels.native(a) is np) == ("numpy" in xp.__name__)
    if "array_api_strict" in xp.__name__:
        assert kernels.native(a) is None


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("k", [None, 3])
def test_writing_into_the_stacks_is_bitwise_the_plain_step(xp, activation, k):
    """The LBDN's ``out=`` path in the array-API time loop against the same phi hidden behind plain
    calls (the compiled loop has its own comparison, tests/test_compiled.py)."""
    cfg = r2dn.Config(2, 3, 4, 2, hidden=(5, 6), activation=activation)
    rng = np.random.default_rng(1)
    direct = r2dn.init(cfg, 1, backend=xp)
    explicit, _ = r2dn.direct_to_explicit(cfg, direct)
    x0, U, dY = (put(xp, rng.standard_normal(s)) for s in [(4, 3), (7, 4, 2), (7, 4, 2)])
    fast = r2dn.phi(cfg)
    plain = Phi(lambda p, v: fast.forward(p, v), lambda p, c, g: fast.backward(p, c, g), fast.weight_grads)
    assert feedback._writes_into(fast.forward) and not feedback._writes_into(plain.forward)
    out = []
    for phi in (fast, plain):
        xT, Y, cache = feedback.forward(explicit, phi, x0, U, k, jit=False)
        d, dx0, dU = feedback.backward(explicit, phi, cache, dY, jit=False)
        out.append([xT, Y, dx0, dU] + list(d.phi.W) + [d.A, d.C1])
    for a, b in zip(*out):
        assert np.array_equal(host(a), host(b))


def test_a_pass_runs_blas_on_one_thread_and_restores_the_user_setting(monkeypatch):
    """``kernels.single_blas``: inside a rollout BLAS has one thread (the map and BPTT likewise);
    afterwards the user's setting is back."""
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    real = feedback._forward_loop

    def spy(*args):
        seen.append({lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})
        return real(*args)

    monkeypatch.setattr(feedback, "_forward_loop", spy)
    cfg = r2dn.Config(1, 2, 3, 1, hidden=(3,))
    direct = r2dn.init(cfg, seed=0)
    with threadpool_limits(2, user_api="blas"):
        before = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
        r2dn.value_and_grad(cfg, direct, None, np.ones((3, 2, 1)), lambda Y: (float(np.sum(Y)), np.ones_like(Y)),
                            jit=False, workers=1)
        after = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}
    assert seen and all(n == 1 for n in seen[0].values())
    assert all(after[k] == n for k, n in before.items()) and any(n == 2 for n in before.values())
