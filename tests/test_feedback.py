"""The time-loop driver: checkpointed BPTT against plain BPTT, float32 end to end, buffer reuse."""

import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r2dn_np.core import allocator, tree
from r2dn_np.loop import compiled, feedback
from r2dn_np.training import losses
from r2dn_np import r2dn
from r2dn_np.core.static_map import Phi
from r2dn_np.checks.testing import check_vjp

from helpers import examples_for, host, put


def _problem(xp, cfg, T, B, seed, dtype="float64"):
    rng = np.random.default_rng(seed)
    direct = r2dn.init(cfg, seed, backend=xp, dtype=dtype)
    direct = tree.map(lambda a: a + xp.astype(put(xp, 0.3 * rng.standard_normal(a.shape)), a.dtype), direct)
    cast = lambda a: xp.astype(put(xp, a), direct.X.dtype)  # noqa: E731
    x0 = cast(rng.standard_normal((B, cfg.nx)))
    U = cast(rng.standard_normal((T, B, cfg.nu)))
    dY = cast(rng.standard_normal((T, B, cfg.ny)))
    dxT = cast(rng.standard_normal((B, cfg.nx)))
    return direct, x0, U, dY, dxT


def _passes(cfg, direct, x0, U, dY, dxT, k):
    explicit, _ = r2dn.direct_to_explicit(cfg, direct)
    xT, Y, cache = r2dn.forward(cfg, explicit, x0, U, checkpoint_every=k)
    d_explicit, dx0, dU = r2dn.backward(cfg, explicit, cache, dY, dxT)
    return xT, Y, cache, (d_explicit, dx0, dU)


def test_checkpointed_bptt_equals_plain(xp):
    """Rollouts agree bitwise; gradients agree to the rounding of a sum split into segments."""

    @settings(max_examples=examples_for(xp, 20))
    @given(seed=st.integers(0, 2**31 - 1), T=st.integers(1, 9), k=st.integers(1, 10),
           hidden=st.lists(st.integers(1, 5), max_size=2),
           kind=st.sampled_from(["contracting", "lipschitz"]),
           activation=st.sampled_from(["relu", "tanh"]))
    def check(seed, T, k, hidden, kind, activation):
        cfg = r2dn.Config(2, 3, 4, 2, hidden=tuple(hidden), kind=kind, activation=activation)
        args = _problem(xp, cfg, T, 3, seed)
        xT, Y, _, plain = _passes(cfg, *args, None)
        xT_c, Y_c, cache_c, ckpt = _passes(cfg, *args, k)
        assert np.array_equal(host(Y), host(Y_c)) and np.array_equal(host(xT), host(xT_c))
        assert cache_c.W is None and cache_c.phi_cache is None
        assert cache_c.X.shape[0] == -(-T // k)  # one state per segment
        for (name, a), (_, b) in zip(tree.paths(plain), tree.paths(ckpt)):
            a, b = host(a), host(b)
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(a).max()), err_msg=name)

    check()


def test_checkpoint_of_one_segment_is_bitwise_plain(xp):
    cfg = r2dn.Config(1, 2, 3, 1, hidden=(4,))
    args = _problem(xp, cfg, 5, 2, 0)
    plain = _passes(cfg, *args, None)[3]
    one = _passes(cfg, *args, 5)[3]
    for (name, a), (_, b) in zip(tree.paths(plain), tree.paths(one)):
        assert np.array_equal(host(a), host(b)), name


def test_value_and_grad_checkpointed():
    cfg = r2dn.Config(1, 2, 3, 1, hidden=(4,), kind="lipschitz")
    direct, x0, U, target, _ = _problem(np, cfg, 7, 2, 1)
    loss = lambda Y: losses.mse(Y, target)  # noqa: E731
    v, g = r2dn.value_and_grad(cfg, direct, x0, U, loss)
    v_c, g_c = r2dn.value_and_grad(cfg, direct, x0, U, loss, checkpoint_every=3)
    assert float(v) == float(v_c)
    for (name, a), (_, b) in zip(tree.paths(g), tree.paths(g_c)):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14, err_msg=name)
    with pytest.raises(ValueError, match="checkpoint_every must be an integer >= 1"):
        r2dn.value_and_grad(cfg, direct, x0, U, loss, checkpoint_every=0)


def _dtype_checking_phi(inner, dtype, seen):
    """Wraps a phi and records the dtype of every array crossing it at every step."""
    def fwd(params, v):
        w, c = inner.forward(params, v)
        seen.extend(a.dtype for a in [v, w] + tree.leaves(c))
        return w, c

    def bwd(params, cache, dw):
        dv, g = inner.backward(params, cache, dw)
        seen.extend(a.dtype for a in [dw, dv] + tree.leaves(g) + tree.leaves(cache))
        return dv, g

    def wg(params, cache, g):
        out = inner.weight_grads(params, cache, g)
        seen.extend(a.dtype for a in tree.leaves(out) + tree.leaves(cache) + tree.leaves(g))
        return out

    return Phi(fwd, bwd, wg)


@pytest.mark.parametrize("k", [None, 2])
@pytest.mark.parametrize("kind", ["contracting", "lipschitz"])
def test_float32_end_to_end(xp, kind, k):
    """No silent upcasting: every array of the map, rollout, BPTT and map VJP stays float32."""
    cfg = r2dn.Config(2, 3, 4, 2, hidden=(5, 3), kind=kind, activation="tanh", d22="free")
    direct, x0, U, dY, dxT = _problem(xp, cfg, 5, 2, 0, dtype="float32")
    explicit, map_cache = r2dn.direct_to_explicit(cfg, direct)
    seen = []
    phi = _dtype_checking_phi(r2dn.phi(cfg), xp.float32, seen)
    xT, Y, cache = feedback.forward(explicit, phi, x0, U, k)
    d_explicit, dx0, dU = feedback.backward(explicit, phi, cache, dY, dxT)
    d_direct = r2dn.direct_to_explicit_vjp(cfg, map_cache, d_explicit)
    value, _ = losses.mse(Y, Y * 0.5)
    arrays = [xT, Y, dx0, dU, value] + [
        a for a in tree.leaves((explicit, map_cache, cache, d_explicit, d_direct)) if hasattr(a, "dtype")]
    assert len(seen) > 0
    bad = [str(a.dtype) for a in arrays if a.dtype != xp.float32] + [str(d) for d in seen if d != xp.float32]
    assert not bad, bad


@pytest.mark.parametrize("jit", [False, True])
def test_buffer_pool_never_overwrites_a_held_cache(jit):
    """Large NumPy buffers are reused between passes, but only once the caller let go. (The
    compiled loop keeps the hidden layers' caches as views of one pooled buffer.)"""
    if jit and not compiled.available():
        pytest.skip("Numba is not installed: pip install 'r2dn_np[fast]'")
    cfg = r2dn.Config(1, 2, 16, 1, hidden=(16,))
    direct, x0, U, dY, _ = _problem(np, cfg, 64, 64, 0)
    explicit, _ = r2dn.direct_to_explicit(cfg, direct)
    _, Y1, cache1 = r2dn.forward(cfg, explicit, x0, U, jit=jit)
    held = [host(a).copy() for a in tree.leaves(cache1.phi_cache)] + [host(cache1.W).copy()]
    _, Y2, cache2 = r2dn.forward(cfg, explicit, x0, 2.0 * U, jit=jit)  # different values, same shapes
    assert not any(np.shares_memory(a, b) for a, b in zip(tree.leaves(cache1), tree.leaves(cache2)))
    for before, now in zip(held, tree.leaves(cache1.phi_cache) + [cache1.W]):
        assert np.array_equal(before, now)
    g1 = r2dn.backward(cfg, explicit, cache1, dY, jit=jit)

    def owners(cache):
        pooled = [cache.W] + (list(cache.phi_cache.S) if jit else tree.leaves(cache.phi_cache))
        return [a if a.base is None else a.base for a in pooled]

    released = [weakref.ref(a) for a in owners(cache2)]
    del cache2
    _, _, cache3 = r2dn.forward(cfg, explicit, x0, U, jit=jit)
    for a in owners(cache3):  # reused rather than allocated again
        assert any(a is r() for r in released)
    g3 = r2dn.backward(cfg, explicit, cache3, dY, jit=jit)
    for (name, a), (_, b) in zip(tree.paths(g1), tree.paths(g3)):
        assert np.array_equal(host(a), host(b)), name


def test_release_buffers_allocates_afresh():
    cfg = r2dn.Config(1, 2, 16, 1, hidden=(16,))
    direct, x0, U, _, _ = _problem(np, cfg, 64, 64, 0)
    explicit, _ = r2dn.direct_to_explicit(cfg, direct)
    _, _, cache = r2dn.forward(cfg, explicit, x0, U)
    released = weakref.ref(cache.W)
    del cache
    allocator.release_buffers()
    assert released() is None  # the pool no longer holds it, so it was freed
    _, _, again = r2dn.forward(cfg, explicit, x0, U)
    assert again.W is not None


def test_buffer_reuse_can_be_switched_off():
    """With reuse off every pass allocates afresh, and the numbers are the same."""
    cfg = r2dn.Config(1, 2, 16, 1, hidden=(16,))
    direct, x0, U, _, _ = _problem(np, cfg, 64, 64, 0)
    explicit, _ = r2dn.direct_to_explicit(cfg, direct)
    _, Y_on, cache = r2dn.forward(cfg, explicit, x0, U)
    released = weakref.ref(cache.W)
    del cache
    previous = allocator.reuse_buffers(False)
    try:
        assert previous is True and released() is None  # switching off released the pool
        _, Y_off, c1 = r2dn.forward(cfg, explicit, x0, U)
        W1 = weakref.ref(c1.W)
        del c1
        assert W1() is None  # nothing keeps a buffer once the caller drops it
        assert np.array_equal(Y_on, Y_off)
    finally:
        allocator.reuse_buffers(previous)
    with pytest.raises(TypeError, match="enabled"):
        allocator.reuse_buffers("no")


# --- A in factored form: the R2DN's structured LTI part, (T8) of docs/derivations/r2dn.md --------


def _structured(xp, kind, rank, seed, T=6, B=3):
    cfg = r2dn.Config(2, 5, 4, 2, hidden=(3,), activation="tanh", kind=kind, gamma=2.0,
                      lti="diagonal_plus_lowrank" if rank else "diagonal", rank=rank)
    rng = np.random.default_rng(seed)
    direct = r2dn.init(cfg, seed, backend=xp)
    direct = tree.map(lambda a: a + xp.astype(put(xp, 0.3 * rng.standard_normal(a.shape)), a.dtype), direct)
    cast = lambda a: put(xp, a)  # noqa: E731
    x0, U = cast(rng.standard_normal((B, cfg.nx))), cast(rng.standard_normal((T, B, cfg.nu)))
    dY, dxT = cast(rng.standard_normal((T, B, cfg.ny))), cast(rng.standard_normal((B, cfg.nx)))
    return cfg, r2dn.direct_to_explicit(cfg, direct)[0], x0, U, dY, dxT


def _close(a, b, name):
    a, b = host(a), host(b)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(b).max(initial=0.0)), err_msg=name)


def test_factored_A_steps_and_backpropagates_as_the_dense_one(xp):
    """The loop with ``A_lowrank`` is the loop with the dense A it equals; the factors' cotangents are
    (T8c), ``(diag(dA), dA V, dA^T U)`` of the dense loop's ``dA``, which the factored loop never forms."""

    @settings(max_examples=examples_for(xp, 12), deadline=None)
    @given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["contracting", "lipschitz"]),
           rank=st.sampled_from([0, 1, 3]), k=st.sampled_from([None, 1, 4]), jit=st.booleans())
    def check(seed, kind, rank, k, jit):
        cfg, e, x0, U, dY, dxT = _structured(xp, kind, rank, seed)
        dense = e._replace(A_lowrank=None)
        phi = r2dn.phi(cfg)
        xT, Y, cache = feedback.forward(e, phi, x0, U, k, jit)
        xT_d, Y_d, cache_d = feedback.forward(dense, phi, x0, U, k, jit)
        _close(Y, Y_d, "Y")
        _close(xT, xT_d, "xT")
        de, dx0, dU = feedback.backward(e, phi, cache, dY, dxT, jit)
        de_d, dx0_d, dU_d = feedback.backward(dense, phi, cache_d, dY, dxT, jit)
        assert de.A is None and de_d.A_lowrank is None
        lr, dA = e.A_lowrank, host(de_d.A)
        _close(de.A_lowrank.a, np.diag(dA), "a")
        _close(de.A_lowrank.U, dA @ host(lr.V), "U")
        _close(de.A_lowrank.V, dA.T @ host(lr.U), "V")
        for (name, a), (_, b) in zip(tree.paths((de._replace(A_lowrank=None), dx0, dU)),
                                     tree.paths((de_d._replace(A=None), dx0_d, dU_d))):
            _close(a, b, name)
        for a, b in zip(feedback.step(e, phi, x0, U[0, ...], jit), feedback.step(dense, phi, x0, U[0, ...], jit)):
            _close(a, b, "step")

    check()


@pytest.mark.parametrize("jit", [False, True])
def test_factored_A_is_all_the_loop_reads(jit):
    """With ``A_lowrank`` given, the dense A is never read: a NaN one changes nothing."""
    cfg, e, x0, U, dY, dxT = _structured(np, "contracting", 2, 3)
    phi = r2dn.phi(cfg)
    blind = e._replace(A=np.full_like(e.A, np.nan))
    xT, Y, cache = feedback.forward(e, phi, x0, U, None, jit)
    xT_b, Y_b, cache_b = feedback.forward(blind, phi, x0, U, None, jit)
    assert np.array_equal(Y, Y_b) and np.array_equal(xT, xT_b)
    g = feedback.backward(e, phi, cache, dY, dxT, jit)
    g_b = feedback.backward(blind, phi, cache_b, dY, dxT, jit)
    for (name, a), (_, b) in zip(tree.paths(g), tree.paths(g_b)):
        assert np.array_equal(a, b), name
    assert all(np.array_equal(a, b) for a, b in zip(feedback.step(e, phi, x0, U[0], jit),
                                                    feedback.step(blind, phi, x0, U[0], jit)))


@pytest.mark.parametrize("kind, rank, jit, k", [("contracting", 2, True, None), ("lipschitz", 3, False, 2),
                                                 ("contracting", 0, False, None), ("lipschitz", 1, True, 4)])
def test_factored_A_gradient_against_finite_differences(kind, rank, jit, k):
    """BPTT with A factored, (T8b)-(T8c): the cotangents of ``(a, U, V)``, B1, C1, x0 and U against
    finite differences of the rollout's ``(xT, Y)``."""
    cfg, e, x0, U, _, _ = _structured(np, kind, rank, 5, T=7, B=2)
    phi = r2dn.phi(cfg)

    def f(p):
        lr, B1, C1, x, u = p
        xT, Y, _ = feedback.forward(e._replace(A_lowrank=lr, B1=B1, C1=C1), phi, x, u, k, jit)
        return xT, Y

    def vjp(p, c):
        lr, B1, C1, x, u = p
        ep = e._replace(A_lowrank=lr, B1=B1, C1=C1)
        _, _, cache = feedback.forward(ep, phi, x, u, k, jit)
        de, dx0, dU = feedback.backward(ep, phi, cache, c[1], c[0], jit)
        return de.A_lowrank, de.B1, de.C1, dx0, dU

    check_vjp(f, vjp, (e.A_lowrank, e.B1, e.C1, x0, U), rtol=1e-6)
