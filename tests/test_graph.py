"""CUDA-graph replay (``r2dn_np.loop.graph``): off CuPy the wrapper is the function itself; on a GPU a
replayed pass gives the uncaptured numbers for new inputs, never aliases memory used elsewhere,
reports bad input as the uncaptured pass does, and training uses it."""

import warnings

import numpy as np
import pytest

from r2dn_np.core import _validate, tree
from r2dn_np.loop import graph
from r2dn_np.training import losses, train
from r2dn_np import r2dn, ren
from r2dn_np.data import pendulum

from helpers import cupy_or_skip, host

MODELS = [
    ("r2dn contracting", r2dn, r2dn.Config(2, 3, 4, 2, hidden=(5, 6), kind="contracting")),
    ("r2dn lipschitz", r2dn, r2dn.Config(2, 3, 4, 2, hidden=(5,), kind="lipschitz", gamma=2.0, d22="free")),
    ("ren contracting", ren, ren.Config(2, 3, 5, 2)),
    ("ren lipschitz", ren, ren.Config(2, 3, 5, 2, kind="lipschitz", gamma=1.5)),
]


def _loop(explicit, x0, U, target, *, mod, cfg):
    """Rollout, loss and BPTT: what training records as a graph (the map stays outside)."""
    _, Y, cache = mod.forward(cfg, explicit, x0, U)
    value, dY = losses.mse(Y, target)
    d_explicit, dx0, dU = mod.backward(cfg, explicit, cache, dY)
    return value, d_explicit, dx0, dU


def _problem(xp, mod, cfg, B=4, T=7, seed=0, dtype="float64"):
    """``(explicit, x0, U, target)`` on ``xp`` and the free parameters they came from."""
    rng = np.random.default_rng(seed)
    direct = tree.map(lambda a: a + 0.3 * rng.standard_normal(a.shape), mod.init(cfg, seed))
    direct = tree.map(lambda a: xp.asarray(np.asarray(a, dtype=dtype)), direct)
    explicit, _ = mod.direct_to_explicit(cfg, direct)
    rest = tuple(xp.asarray(rng.standard_normal(s).astype(dtype)) for s in [(B, cfg.nx), (T, B, cfg.nu), (T, B, cfg.ny)])
    return (explicit,) + rest, direct


def _assert_same(a, b, rtol):
    la, lb = tree.leaves(a), tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        x, y = host(x), host(y)
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(y)))))


@pytest.fixture
def cp():
    return cupy_or_skip()


# -- everywhere: off CuPy the wrapper is a pass-through ---------------------------------------------


@pytest.mark.parametrize("name, mod, cfg", MODELS[:1] + MODELS[2:3], ids=["r2dn", "ren"])
def test_off_cupy_the_wrapper_is_the_function(xp, name, mod, cfg):
    if xp.__name__.startswith("array_api_compat.cupy"):
        pytest.skip("this test is about the non-CuPy namespaces; the CuPy tests are below")
    args, _ = _problem(xp, mod, cfg)
    step = graph.captured(_loop)
    for _ in range(2):
        got = step(*args, mod=mod, cfg=cfg)
    _assert_same(got, _loop(*args, mod=mod, cfg=cfg), rtol=0)
    assert step.stats["eager"] == 2 and step.stats["captures"] == 0


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="fn must be callable"):
        graph.captured(3)
    with pytest.raises(TypeError, match="enabled"):
        graph.captured(_loop, enabled="yes")
    with pytest.raises(ValueError, match="max_graphs"):
        graph.captured(_loop, max_graphs=0)
    assert graph.captured(max_graphs=2)(_loop).max_graphs == 2


def test_values_unchecked_skips_only_value_checks():
    bad = np.array([[1.0, np.nan]])
    with pytest.raises(ValueError, match="x contains NaN"):
        _validate.array("x", bad, (1, 2))
    with _validate.values_unchecked():
        _validate.array("x", bad, (1, 2))
        with pytest.raises(ValueError, match="x must have shape"):
            _validate.array("x", bad, (2, 2))
    with pytest.raises(ValueError, match="x contains NaN"):
        _validate.array("x", bad, (1, 2))


def test_environment_variable_turns_capture_off(monkeypatch):
    monkeypatch.setenv("R2DN_CUDA_GRAPHS", "0")
    assert not graph.captured(_loop).enabled
    monkeypatch.setenv("R2DN_CUDA_GRAPHS", "1")
    assert graph.captured(_loop).enabled


# -- on a GPU ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layout", ["C", "F", "strided", "vector"])
def test_direct_cublas_products_are_cupy_products(cp, dtype, layout):
    import cupy

    from r2dn_np.core import _cublas

    rng = np.random.default_rng(0)
    a = cupy.asarray(rng.standard_normal((5, 7)).astype(dtype))
    b = cupy.asarray(rng.standard_normal((7, 3)).astype(dtype))
    if layout == "F":
        a, b = cupy.asfortranarray(a), cupy.asfortranarray(b)
    elif layout == "strided":
        a = cupy.asarray(rng.standard_normal((5, 14)).astype(dtype))[:, ::2]
    elif layout == "vector":
        a = a[2]
    want = host(a @ b)
    got = _cublas.matmul(a, b)
    assert got.shape == want.shape and got.dtype == a.dtype
    np.testing.assert_allclose(host(got), want, rtol=1e-12 if dtype == "float64" else 1e-5, atol=1e-12)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 2e-4)])
@pytest.mark.parametrize("name, mod, cfg", MODELS, ids=[m[0] for m in MODELS])
def test_replay_gives_the_uncaptured_pass_for_new_inputs(cp, name, mod, cfg, dtype, rtol):
    step = graph.captured(_loop)
    step(*_problem(cp, mod, cfg, seed=0, dtype=dtype)[0], mod=mod, cfg=cfg)  # records
    for seed in (1, 2):  # new weights, state, inputs and targets each time
        args, _ = _problem(cp, mod, cfg, seed=seed, dtype=dtype)
        _assert_same(step(*args, mod=mod, cfg=cfg), _loop(*args, mod=mod, cfg=cfg), rtol)
    assert step.stats == {"captures": 1, "replays": 2, "eager": 1, "failed": 0, "fallbacks": 0}


def test_replay_after_unrelated_work_is_unchanged(cp):
    """Memory the graph writes is never handed to anyone else, and nothing is read from host
    buffers that later transfers reuse."""
    _, mod, cfg = MODELS[0]
    step = graph.captured(_loop)
    args, _ = _problem(cp, mod, cfg, seed=3)
    first = step(*args, mod=mod, cfg=cfg)
    keep = [cp.asarray(np.full((1000,), float(i))) for i in range(50)]  # host -> device, pool reuse
    again = step(*args, mod=mod, cfg=cfg)
    _assert_same(again, first, rtol=1e-12)
    for i, k in enumerate(keep):
        assert float(cp.max(cp.abs(k - float(i)))) == 0.0
    other, _ = _problem(cp, mod, cfg, seed=4)
    held = step(*other, mod=mod, cfg=cfg)  # a result the caller holds ...
    step(*args, mod=mod, cfg=cfg)  # ... is not overwritten by the next replay
    _assert_same(held, _loop(*other, mod=mod, cfg=cfg), rtol=1e-10)


def test_bad_values_on_replay_are_reported_as_without_graph(cp):
    _, mod, cfg = MODELS[0]
    step = graph.captured(_loop)
    (explicit, x0, U, target), _ = _problem(cp, mod, cfg)
    step(explicit, x0, U, target, mod=mod, cfg=cfg)
    bad = explicit._replace(B2=explicit.B2 * float("nan"))
    with pytest.raises(ValueError, match="B2 contains NaN"):
        step(bad, x0, U, target, mod=mod, cfg=cfg)
    with pytest.raises(ValueError, match="U contains NaN or Inf"):
        step(explicit, x0, U * float("inf"), target, mod=mod, cfg=cfg)
    assert step.stats["fallbacks"] == 2


def test_new_shapes_or_settings_capture_anew(cp):
    _, mod, cfg = MODELS[0]
    step = graph.captured(_loop, max_graphs=2)
    for B, T in [(4, 7), (3, 7), (4, 7), (4, 5)]:
        args, _ = _problem(cp, mod, cfg, B=B, T=T)
        _assert_same(step(*args, mod=mod, cfg=cfg), _loop(*args, mod=mod, cfg=cfg), rtol=1e-10)
    assert step.stats["captures"] == 3 and step.stats["replays"] == 1
    assert len(step._graphs) == 2  # least recently used dropped


def test_a_function_that_synchronises_runs_uncaptured_with_a_warning(cp):
    def syncs(x):
        return x * float(cp.sum(x))  # a host sync: cannot be recorded

    step = graph.captured(syncs)
    x = cp.asarray(np.arange(3.0))
    with pytest.warns(RuntimeWarning, match="capture of syncs failed"):
        assert host(step(x)).tolist() == [0.0, 3.0, 6.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert host(step(x + 1)).tolist() == [6.0, 12.0, 18.0]  # uncaptured from now on, no new warning
    assert step.stats["failed"] == 1 and step.stats["replays"] == 0


@pytest.mark.parametrize("name, mod, cfg", MODELS[1:3], ids=[m[0] for m in MODELS[1:3]])
def test_gradient_through_a_replayed_graph_matches_finite_differences_in_float64(cp, name, mod, cfg):
    step = graph.captured(_loop)
    (_, x0, U, target), direct = _problem(cp, mod, cfg, seed=5)

    def loss(d):
        return float(_loop(mod.direct_to_explicit(cfg, d)[0], x0, U, target, mod=mod, cfg=cfg)[0])

    explicit, map_cache = mod.direct_to_explicit(cfg, direct)
    step(explicit, x0, U, target, mod=mod, cfg=cfg)
    _, d_explicit, _, _ = step(explicit, x0, U, target, mod=mod, cfg=cfg)
    assert step.stats["replays"] == 1
    g = mod.direct_to_explicit_vjp(cfg, map_cache, d_explicit)
    rng = np.random.default_rng(0)
    v = tree.map(lambda a: cp.asarray(rng.standard_normal(a.shape)), direct)
    h = 1e-6
    fd = (loss(tree.map(lambda a, b: a + h * b, direct, v)) - loss(tree.map(lambda a, b: a - h * b, direct, v))) / (2 * h)
    analytic = sum(float(cp.sum(a * b)) for a, b in zip(tree.leaves(g), tree.leaves(v)))
    assert abs(fd - analytic) <= 1e-6 * max(1.0, abs(fd))


def test_training_replays_graphs_and_matches_uncaptured_training(cp, monkeypatch):
    data = pendulum.load(pendulum.Settings(period=256, n_train=2, transient=100), cache_dir=False)
    cfg = r2dn.Config(nu=1, nx=3, nv=4, ny=1, hidden=(6,), kind="contracting")
    opts = train.Options(epochs=2, chunk=64, window=32, batch=3, lr=1e-2, washout=8, decay_epochs=2, seed=3)
    calls = []
    real = graph.Captured._replay

    def counting(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(graph.Captured, "_replay", counting)
    with_graphs = train.fit(r2dn, cfg, data, opts, backend="cupy")
    assert calls, "training on CuPy did not replay a CUDA graph"
    monkeypatch.setenv("R2DN_CUDA_GRAPHS", "0")
    calls.clear()
    without = train.fit(r2dn, cfg, data, opts, backend="cupy")
    assert not calls
    np.testing.assert_allclose(with_graphs.history["loss"], without.history["loss"], rtol=1e-9)
    _assert_same(with_graphs.params, without.params, rtol=1e-8)
