"""A gradient pass shared by worker processes gives the serial numbers; workers are controllable,
used only on NumPy, release their caches and are stopped."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from r2dn_np.loop import feedback, parallel
from r2dn_np.training import losses
from r2dn_np import r2dn, ren
from r2dn_np.core import tree

from helpers import host, put

MODELS = [(r2dn, r2dn.Config(2, 3, 4, 2, hidden=(5, 6), d22="free")), (ren, ren.Config(2, 3, 5, 2))]


@pytest.fixture(autouse=True, scope="module")
def _stop_workers():
    yield
    parallel.shutdown()


def _problem(cfg, mod, B, T=6, seed=0):
    rng = np.random.default_rng(seed)
    direct = tree.map(lambda a: a + 0.3 * rng.standard_normal(a.shape), mod.init(cfg, seed))
    x0, U, target = (rng.standard_normal(s) for s in [(B, cfg.nx), (T, B, cfg.nu), (T, B, cfg.ny)])
    return direct, x0, U, target


def _close(a, b, scale):
    np.testing.assert_allclose(host(a), host(b), rtol=1e-13, atol=1e-13 * scale)


@pytest.mark.parametrize("mod, cfg", MODELS)
@pytest.mark.parametrize("workers, k", [(2, None), (3, None), (2, 4)])
def test_parallel_value_and_grad_is_the_serial_one(mod, cfg, workers, k):
    direct, x0, U, target = _problem(cfg, mod, B=7)
    loss = lambda Y: losses.mse(Y, target)  # noqa: E731
    v1, g1 = mod.value_and_grad(cfg, direct, x0, U, loss, checkpoint_every=k, workers=1)
    v2, g2 = mod.value_and_grad(cfg, direct, x0, U, loss, checkpoint_every=k, workers=workers)
    scale = max(float(np.max(np.abs(a))) for a in tree.leaves(g1))
    assert float(v2) == pytest.approx(float(v1), rel=1e-14)
    for (name, a), b in zip(tree.paths(g1), tree.leaves(g2)):
        _close(b, a, scale)


@pytest.mark.parametrize("mod, cfg", MODELS)
def test_parallel_forward_backward_is_the_serial_one(mod, cfg):
    """Also with a final-state cotangent, a backward run twice on one cache, and new weights."""
    direct, x0, U, dY = _problem(cfg, mod, B=5)
    explicit, _ = mod.direct_to_explicit(cfg, direct)
    other, _ = mod.direct_to_explicit(cfg, tree.map(lambda a: 1.1 * a, direct))
    dxT = np.random.default_rng(3).standard_normal((5, cfg.nx))
    xT1, Y1, c1 = mod.forward(cfg, explicit, x0, U, workers=1)
    xT2, Y2, c2 = mod.forward(cfg, explicit, x0, U, workers=2)
    assert isinstance(c1, feedback.Cache) and isinstance(c2, parallel.Cache)
    assert c2.bounds == ((0, 2), (2, 5))
    _close(Y2, Y1, 1.0)
    _close(xT2, xT1, 1.0)
    for e in (explicit, explicit, other):  # the workers reuse the forward's weights unless told others
        want = mod.backward(cfg, e, c1, dY, dxT)
        got = mod.backward(cfg, e, c2, dY, dxT)
        scale = max(float(np.max(np.abs(a))) for a in tree.leaves(want))
        for a, b in zip(tree.leaves(want), tree.leaves(got)):
            _close(b, a, scale)


def test_workers_are_controllable(monkeypatch):
    cfg = r2dn.Config(1, 2, 3, 1, hidden=(4,))
    explicit, _ = r2dn.direct_to_explicit(cfg, r2dn.init(cfg, 0))
    U = np.zeros((3, 64, 1))
    monkeypatch.delenv(parallel.ENV, raising=False)
    assert parallel.resolve("auto", U, explicit) == 1  # a tiny model: dispatch-bound, serial
    assert parallel.resolve(4, U, explicit) == 4
    assert parallel.resolve(4, U[:, :3], explicit) == 3  # never more shards than sequences
    monkeypatch.setattr(parallel, "AUTO_MIN_WORK", 1)
    monkeypatch.setattr(parallel, "_cores", lambda: 2)
    assert parallel.resolve("auto", U, explicit) == 2
    assert parallel.resolve("auto", U[:, :15], explicit) == 1  # fewer than AUTO_MIN_ROWS per shard
    # a library call starts no process unless asked: the default is serial, even where auto shards
    assert parallel.resolve(None, U, explicit) == 1
    monkeypatch.setenv(parallel.ENV, "auto")
    assert parallel.resolve(None, U, explicit) == 2
    monkeypatch.setenv(parallel.ENV, "1")
    assert parallel.resolve(None, U, explicit) == 1
    _, _, cache = r2dn.forward(cfg, explicit, None, U)
    assert isinstance(cache, feedback.Cache)
    monkeypatch.setenv(parallel.ENV, "3")
    assert parallel.resolve(None, U, explicit) == 3
    assert parallel.resolve(2, U, explicit) == 2  # the argument wins
    monkeypatch.setenv(parallel.ENV, "two")
    with pytest.raises(ValueError, match="R2DN_WORKERS must be a positive integer"):
        parallel.resolve(None, U, explicit)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        r2dn.forward(cfg, explicit, None, U, workers=0)
    with pytest.raises(TypeError, match="workers must be an integer"):
        r2dn.value_and_grad(cfg, r2dn.init(cfg, 0), None, U, lambda Y: losses.mse(Y, Y), workers="2")


def test_other_namespaces_run_serially(xp):
    cfg = r2dn.Config(1, 2, 3, 1, hidden=(4,))
    explicit, _ = r2dn.direct_to_explicit(cfg, r2dn.init(cfg, 0, backend=xp))
    U = put(xp, np.ones((3, 4, 1)))
    _, _, cache = r2dn.forward(cfg, explicit, None, U, workers=2)
    expected = parallel.Cache if "numpy" in xp.__name__ else feedback.Cache
    assert isinstance(cache, expected)


def test_workers_free_caches_and_stop():
    cfg, mod = MODELS[0][1], r2dn
    direct, x0, U, dY = _problem(cfg, mod, B=4)
    explicit, _ = mod.direct_to_explicit(cfg, direct)
    parallel.shutdown()
    caches = [mod.forward(cfg, explicit, x0, U, workers=2)[2] for _ in range(3)]
    worker = caches[0].remote.pairs[0][0]

    def kept():
        return parallel._run([worker], [(parallel._kept_count, ())], lambda: None)[1][0]

    assert kept() == 3
    del caches
    assert kept() == 0  # dropped with the caches, at the next request
    _, _, cache = mod.forward(cfg, explicit, x0, U, workers=2)
    parallel.shutdown()
    assert worker.proc.poll() is not None
    with pytest.raises(RuntimeError, match="were stopped"):
        mod.backward(cfg, explicit, cache, dY)
    _, _, cache = mod.forward(cfg, explicit, x0, U, workers=2)  # they start again
    mod.backward(cfg, explicit, cache, dY)


def test_a_worker_error_is_raised_here_and_the_pool_recovers():
    cfg = MODELS[0][1]
    direct, x0, U, dY = _problem(cfg, r2dn, B=4)
    explicit, _ = r2dn.direct_to_explicit(cfg, direct)
    _, _, cache = r2dn.forward(cfg, explicit, x0, U, workers=2)
    bad = cache._replace(remote=parallel._Remote([(w, -1) for w, _ in cache.remote.pairs]))
    with pytest.raises(RuntimeError, match="in r2dn_np worker process"):
        r2dn.backward(cfg, explicit, bad, dY)
    r2dn.backward(cfg, explicit, cache, dY)


def test_a_script_leaves_no_process_behind(tmp_path):
    """Run from another directory with the library on the parent's path: workers import it, the
    pass completes, and at exit the workers are stopped without a warning."""
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import numpy as np\n"
        "from r2dn_np import r2dn\n"
        "from r2dn_np.training import losses\n"
        "from r2dn_np.loop import parallel\n"
        "cfg = r2dn.Config(1, 2, 3, 1, hidden=(4,))\n"
        "U = np.ones((5, 6, 1))\n"
        "v, g = r2dn.value_and_grad(cfg, r2dn.init(cfg, 0), None, U, lambda Y: losses.mse(Y, 0 * Y), workers=2)\n"
        "print(parallel._POOL.workers[0].proc.pid)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(parallel.__file__))))
    env = dict(os.environ, PYTHONPATH=root, PYTHONWARNINGS="error")
    env.pop(parallel.ENV, None)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    pid = int(out.stdout.split()[-1])
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(pid, 0)


def test_training_with_workers_is_the_serial_training():
    import dataclasses

    from r2dn_np.training import train
    from r2dn_np.data import pendulum

    data = pendulum.load(pendulum.Settings(period=256, n_train=2, transient=100), cache_dir=False)
    cfg = r2dn.Config(nu=1, nx=3, nv=4, ny=1, hidden=(6,))
    opts = train.Options(epochs=2, chunk=64, window=32, batch=5, lr=1e-2, washout=8, seed=3)
    serial = train.fit(r2dn, cfg, data, opts, workers=1)
    shared = train.fit(r2dn, cfg, data, dataclasses.replace(opts), workers=2)
    np.testing.assert_allclose(shared.history["loss"], serial.history["loss"], rtol=1e-9)
    for a, b in zip(tree.leaves(serial.params), tree.leaves(shared.params)):
        np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        train.fit(r2dn, cfg, data, opts, workers=0)


def test_library_training_shards_only_when_asked(monkeypatch):
    """``train.fit`` and ``train.refine`` without ``workers`` (and without ``R2DN_WORKERS``) run
    every pass in this process, even a pass that ``"auto"`` would share; ``"auto"`` shares it."""
    from r2dn_np.training import train
    from r2dn_np.data import pendulum

    data = pendulum.load(pendulum.Settings(period=256, n_train=2, transient=100), cache_dir=False)
    cfg = r2dn.Config(nu=1, nx=3, nv=4, ny=1, hidden=(6,))
    opts = train.Options(epochs=1, chunk=64, window=32, batch=16, lr=1e-2, washout=8, seed=3)
    monkeypatch.delenv(parallel.ENV, raising=False)
    monkeypatch.setattr(parallel, "AUTO_MIN_WORK", 1)  # "auto" would share every pass of this model
    monkeypatch.setattr(parallel, "AUTO_MIN_ROWS", 1)  # (refinement passes the two records at once)
    monkeypatch.setattr(parallel, "_cores", lambda: 2)

    def sharded(*args, **kwargs):
        raise AssertionError("a pass was sharded")

    monkeypatch.setattr(parallel, "forward", sharded)
    result = train.fit(r2dn, cfg, data, opts)
    train.refine(r2dn, cfg, result.params, data, result.scaler, train.RefineOptions(iterations=1, washout=8))
    with pytest.raises(AssertionError, match="a pass was sharded"):
        train.fit(r2dn, cfg, data, opts, workers="auto")
    with pytest.raises(AssertionError, match="a pass was sharded"):
        train.refine(r2dn, cfg, result.params, data, result.scaler, train.RefineOptions(iterations=1, washout=8),
                     workers="auto")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_its_own_workers():
    cfg = MODELS[0][1]
    direct, x0, U, dY = _problem(cfg, r2dn, B=4)
    explicit, _ = r2dn.direct_to_explicit(cfg, direct)
    _, Y, cache = r2dn.forward(cfg, explicit, x0, U, workers=2)
    parent_workers = list(parallel._POOL.workers)
    r, w = os.pipe()
    with warnings.catch_warnings():  # Python >= 3.12 warns about forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its own workers, the parent's untouched
        ok = 0
        try:
            ok = int(parallel._POOL.workers == [] and
                     np.allclose(r2dn.forward(cfg, explicit, x0, U, workers=2)[1], Y, rtol=1e-13))
            parallel.shutdown()
        finally:
            os.write(w, bytes([ok]))
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"\x01"
    os.close(r)
    os.waitpid(pid, 0)
    assert parallel._POOL.workers == parent_workers
    r2dn.backward(cfg, explicit, cache, dY)  # the parent's workers still answer
