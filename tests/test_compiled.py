"""The compiled time loops (``r2dn_np/loop/compiled.py``) are the array-API loops of ``feedback.py``:
outputs, final states and every gradient agree to 1e-12 (float64) and 1e-5 (float32) relative, at
Hypothesis-drawn sizes over every kind, activation and option the loops support; and the switch
(``jit=``, ``R2DN_JIT``) picks the path it says. The finite-difference and protocol tests run
with the compiled loops on (the default), ``tests/test_protocol.py`` on both paths."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r2dn_np.loop import compiled, feedback
from r2dn_np import lbdn, r2dn, ren
from r2dn_np.core import tree

from test_feedback_models import perturbed, r2dn_configs, ren_configs

pytestmark = pytest.mark.skipif(not compiled.available(), reason="Numba is not installed: pip install 'r2dn_np[fast]'")

TOL = {"float64": 1e-12, "float32": 1e-5}


def _problem(cfg, T, B, dtype, seed):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((T, B, cfg.nu)).astype(dtype)
    x0 = (0.5 * rng.standard_normal((B, cfg.nx))).astype(dtype)
    dY = rng.standard_normal((T, B, cfg.ny)).astype(dtype)
    dxT = rng.standard_normal((B, cfg.nx)).astype(dtype)
    return x0, U, dY, dxT


def _pass(module, cfg, direct, x0, U, dY, dxT, jit, checkpoint_every=None):
    explicit, _ = module.direct_to_explicit(cfg, direct)
    xT, Y, cache = module.forward(cfg, explicit, x0, U, checkpoint_every=checkpoint_every, workers=1, jit=jit)
    d_explicit, dx0, dU = module.backward(cfg, explicit, cache, dY, dxT, jit=jit)
    return dict(xT=xT, Y=Y, dx0=dx0, dU=dU, d_explicit=d_explicit)


def assert_same(a, b, dtype):
    tol = TOL[dtype]
    for (path, x), (_, y) in zip(tree.paths(a), tree.paths(b)):
        assert x.dtype == y.dtype, path
        scale = max(float(np.max(np.abs(y))), 1.0) if y.size else 1.0
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol * scale, err_msg=str(path))


def _compare(module, cfg, T, B, dtype, seed, checkpoint_every=None):
    direct = perturbed(module.init(cfg, seed=seed, dtype=dtype), np.random.default_rng(seed))
    direct = tree.map(lambda a: a.astype(dtype), direct)
    args = _problem(cfg, T, B, dtype, seed)
    fast = _pass(module, cfg, direct, *args, jit=True, checkpoint_every=checkpoint_every)
    ref = _pass(module, cfg, direct, *args, jit=False, checkpoint_every=checkpoint_every)
    assert_same(fast, ref, dtype)
    return fast


sizes = dict(T=st.integers(1, 12), B=st.integers(1, 5), dtype=st.sampled_from(["float64", "float32"]),
             seed=st.integers(0, 2**16), checkpoint=st.sampled_from([None, 1, 3, 5]))


@settings(max_examples=40)
@given(cfg=r2dn_configs(), **sizes)
def test_r2dn_compiled_equals_array_api(cfg, T, B, dtype, seed, checkpoint):
    _compare(r2dn, cfg, T, B, dtype, seed, checkpoint)


@settings(max_examples=40)
@given(cfg=ren_configs(), **sizes)
def test_ren_compiled_equals_array_api(cfg, T, B, dtype, seed, checkpoint):
    _compare(ren, cfg, T, B, dtype, seed, checkpoint)


@pytest.mark.parametrize("module, cfg", [
    (r2dn, r2dn.Config(2, 5, 6, 3, hidden=(7, 4, 3), activation="relu")),  # deep, kinks exercised
    (r2dn, r2dn.Config(2, 5, 6, 3, hidden=(), output_layer="sandwich", activation="tanh")),  # one layer
    (r2dn, r2dn.Config(2, 5, 6, 2, hidden=(4,), kind="qsr", d22="free", Q=[[-1.0, 0.0], [0.0, -2.0]],
                       S=[[0.2, 0.0], [0.0, 0.1]], R=[[2.0, 0.0], [0.0, 1.0]])),
    (r2dn, r2dn.Config(2, 5, 6, 5, hidden=(4,), identity_output=True)),
    (r2dn, r2dn.Config(2, 5, 6, 3, hidden=(4,), kind="lipschitz", learn_gamma=True, learn_multiplier=True)),
    # A factored (docs/derivations/r2dn.md (T8)): the loops step with a*x + (x V) U^T
    (r2dn, r2dn.Config(2, 6, 5, 3, hidden=(4,), activation="relu", lti="diagonal_plus_lowrank", rank=2)),
    (r2dn, r2dn.Config(2, 6, 5, 3, hidden=(4,), kind="lipschitz", gamma=2.0, lti="diagonal")),
    (ren, ren.Config(2, 5, 9, 3, activation="relu", kind="lipschitz", gamma=3.0, d22="free")),
    (ren, ren.Config(2, 5, 9, 5, activation="sigmoid", identity_output=True)),
], ids=["deep-relu", "one-layer", "qsr", "identity-output", "learned-gamma", "lowrank-A", "diagonal-A", "ren-relu",
        "ren-identity"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_option_on_a_long_sequence(module, cfg, dtype):
    """60 steps and 7 sequences: rounding differences must not grow along the sequence."""
    out = _compare(module, cfg, 60, 7, dtype, seed=4)
    assert np.all(np.isfinite(out["Y"])) and float(np.max(np.abs(out["Y"]))) > 0


def test_the_paths_mix_rollout_and_bptt():
    """The compiled loops fill the caches the array-API loops fill: a rollout on one path
    backpropagates on the other."""
    cfg = r2dn.Config(2, 4, 5, 3, hidden=(6, 3), activation="tanh")
    direct = r2dn.init(cfg, seed=1)
    x0, U, dY, dxT = _problem(cfg, 9, 3, "float64", 1)
    explicit, _ = r2dn.direct_to_explicit(cfg, direct)
    results = {}
    for fwd in (True, False):
        _, _, cache = r2dn.forward(cfg, explicit, x0, U, jit=fwd)
        for bwd in (True, False):
            results[fwd, bwd] = r2dn.backward(cfg, explicit, cache, dY, dxT, jit=bwd)
    for key in results:
        assert_same(results[key], results[False, False], "float64")


def test_relu_at_its_kink_has_slope_zero_on_both_paths():
    """Inputs that put pre-activations exactly at 0: both paths take ReLU's slope there as 0."""
    cfg = r2dn.Config(1, 2, 3, 1, hidden=(4,), activation="relu")
    direct = r2dn.init(cfg, seed=0)
    direct = direct._replace(bv=0 * direct.bv, phi=direct.phi._replace(
        layers=tuple(layer._replace(b=0 * layer.b) for layer in direct.phi.layers)))
    U, x0 = np.zeros((5, 2, 1)), np.zeros((2, 2))
    dY = np.ones((5, 2, 1))
    fast = _pass(r2dn, cfg, direct, x0, U, dY, None, jit=True)
    ref = _pass(r2dn, cfg, direct, x0, U, dY, None, jit=False)
    assert_same(fast, ref, "float64")
    np.testing.assert_array_equal(fast["dU"], ref["dU"])


# --- the switch ----------------------------------------------------------------------------------


@pytest.fixture
def spy(monkeypatch):
    """Counts the compiled loops' calls."""
    calls = []
    for name in ("rollout", "bptt"):
        real = getattr(compiled, name)

        def counted(*a, _real=real, _name=name, **k):
            calls.append(_name)
            return _real(*a, **k)

        monkeypatch.setattr(compiled, name, counted)
    return calls


def _small():
    cfg = r2dn.Config(1, 2, 3, 1, hidden=(3,))
    return cfg, r2dn.init(cfg), np.ones((4, 2, 1))


def _loss(Y):
    return float(np.sum(Y * Y)), 2 * Y


def test_compiled_by_default_for_numpy(spy, monkeypatch):
    monkeypatch.delenv(compiled.ENV, raising=False)
    cfg, direct, U = _small()
    r2dn.value_and_grad(cfg, direct, None, U, _loss)
    assert spy == ["rollout", "bptt"]


@pytest.mark.parametrize("how", ["env", "keyword"])
def test_switched_off(spy, monkeypatch, how):
    cfg, direct, U = _small()
    if how == "env":
        monkeypatch.setenv(compiled.ENV, "0")
        r2dn.value_and_grad(cfg, direct, None, U, _loss)
    else:
        monkeypatch.delenv(compiled.ENV, raising=False)
        r2dn.value_and_grad(cfg, direct, None, U, _loss, jit=False)
    assert spy == []


def test_keyword_wins_over_env(spy, monkeypatch):
    monkeypatch.setenv(compiled.ENV, "0")
    cfg, direct, U = _small()
    r2dn.value_and_grad(cfg, direct, None, U, _loss, jit=True)
    assert spy == ["rollout", "bptt"]


def test_other_namespaces_take_the_array_api_loop(spy):
    import array_api_strict as xps

    cfg, direct, U = _small()
    direct = tree.map(lambda a: xps.asarray(a), direct)
    r2dn.value_and_grad(cfg, direct, None, xps.asarray(U), lambda Y: (float(xps.sum(Y * Y)), 2 * Y), jit=None)
    assert spy == []


def test_sharded_passes_use_it_in_every_process(monkeypatch):
    """Workers run the compiled loops too (they get ``jit``); the result equals the serial pass."""
    from r2dn_np.loop import parallel

    cfg = r2dn.Config(1, 3, 4, 1, hidden=(5,))
    direct = r2dn.init(cfg, seed=2)
    U = np.random.default_rng(0).standard_normal((7, 6, 1))
    try:
        a = r2dn.value_and_grad(cfg, direct, None, U, _loss, workers=2, jit=True)
        b = r2dn.value_and_grad(cfg, direct, None, U, _loss, workers=1, jit=False)
    finally:
        parallel.shutdown()
    assert a[0] == pytest.approx(b[0], rel=1e-12)
    assert_same(a[1], b[1], "float64")


def test_bad_switch_values_are_refused(monkeypatch):
    cfg, direct, U = _small()
    with pytest.raises(TypeError, match="jit must be True, False or None"):
        r2dn.value_and_grad(cfg, direct, None, U, _loss, jit="yes")
    monkeypatch.setenv(compiled.ENV, "fast")
    with pytest.raises(ValueError, match="R2DN_JIT must be 0 or 1"):
        r2dn.value_and_grad(cfg, direct, None, U, _loss)


def test_jit_true_without_numba_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(compiled, "_kernels", False)
    cfg, direct, U = _small()
    with pytest.raises(ValueError, match=r"jit=True needs Numba.*r2dn_np\[fast\]"):
        r2dn.value_and_grad(cfg, direct, None, U, _loss, jit=True)
    # and None falls back to the array-API loop, silently
    value, _ = r2dn.value_and_grad(cfg, direct, None, U, _loss)
    assert np.isfinite(value)


def test_a_read_only_install_warns_once_and_compiles_in_memory(monkeypatch):
    """Where Numba finds no writable cache folder, ``cache=True`` raises at decoration time: the
    kernel module then compiles in memory, warning once."""
    from r2dn_np.loop import _compiled_kernels as k

    real = k.numba.njit

    def njit(*args, **options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x.py'")
        return real(*args, **options)

    monkeypatch.setattr(k.numba, "njit", njit)
    monkeypatch.setattr(k, "_warned", [])

    def f(a):
        return a + 1

    with pytest.warns(RuntimeWarning, match="cannot be cached on disk") as record:
        g = k._jit()(f)
        h = k._jit()(f)
    assert len(record) == 1
    assert g(1) == 2 and h(2.0) == 3.0


def test_lbdn_phi_advertises_its_compiled_form():
    cfg = lbdn.Config(3, 2, hidden=(4,), activation="tanh")
    assert lbdn.as_phi(cfg).compiled == ("lbdn", "tanh")
    phi = r2dn.phi(r2dn.Config(1, 2, 3, 1, hidden=(3,)))
    assert phi.compiled[0] == "lbdn"
    assert ren.phi(ren.Config(1, 2, 3, 1, activation="sigmoid")).compiled == ("equilibrium", "sigmoid")


def test_a_phi_without_a_compiled_form_takes_the_array_api_loop(spy):
    cfg = r2dn.Config(1, 2, 3, 1, hidden=(3,))
    explicit, _ = r2dn.direct_to_explicit(cfg, r2dn.init(cfg))
    phi = r2dn.phi(cfg)._replace(compiled=None)
    xT, Y, cache = feedback.forward(explicit, phi, np.zeros((2, 2)), np.ones((4, 2, 1)), jit=True)
    feedback.backward(explicit, phi, cache, np.ones_like(Y), jit=True)
    assert spy == []


# --- one step ----------------------------------------------------------------------------------


@settings(max_examples=30)
@given(cfg=st.one_of(r2dn_configs(), ren_configs()), B=st.integers(1, 4), dtype=st.sampled_from(["float64", "float32"]),
       seed=st.integers(0, 2**16))
def test_compiled_step_equals_array_api_step(cfg, B, dtype, seed):
    module = r2dn if isinstance(cfg, r2dn.Config) else ren
    direct = tree.map(lambda a: a.astype(dtype),
                      perturbed(module.init(cfg, seed=seed, dtype=dtype), np.random.default_rng(seed)))
    explicit, _ = module.direct_to_explicit(cfg, direct)
    rng = np.random.default_rng(seed)
    x, u = rng.standard_normal((B, cfg.nx)).astype(dtype), rng.standard_normal((B, cfg.nu)).astype(dtype)
    fast = module.step(cfg, explicit, x, u, jit=True)
    ref = module.step(cfg, explicit, x, u, jit=False)
    assert_same(fast, ref, dtype)


@pytest.mark.parametrize("cfg", [
    r2dn.Config(2, 6, 5, 3, hidden=(4,), lti="diagonal_plus_lowrank", rank=3),
    r2dn.Config(2, 6, 5, 3, hidden=(4, 2), activation="relu", kind="lipschitz", gamma=2.0, lti="diagonal_plus_lowrank",
                rank=1),
    r2dn.Config(2, 6, 5, 3, hidden=(4,), lti="diagonal")], ids=["lowrank", "lowrank-lipschitz", "diagonal"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_step_with_A_factored(cfg, dtype):
    """The compiled step widens ``x [V C1^T C2^T]`` to ``x [A^T C1^T C2^T]`` with ``a*x + (x V) U^T``."""
    direct = tree.map(lambda a: a.astype(dtype), perturbed(r2dn.init(cfg, seed=2, dtype=dtype), np.random.default_rng(2)))
    explicit, _ = r2dn.direct_to_explicit(cfg, direct)
    assert explicit.A_lowrank is not None
    rng = np.random.default_rng(2)
    x, u = rng.standard_normal((3, cfg.nx)).astype(dtype), rng.standard_normal((3, cfg.nu)).astype(dtype)
    assert_same(r2dn.step(cfg, explicit, x, u, jit=True), r2dn.step(cfg, explicit, x, u, jit=False), dtype)


def test_step_checks_new_weights_and_every_input(spy):
    """``step`` checks a container of weights once, but a new container (and every x, u) each time;
    the compiled step's packed weights follow the container it is given."""
    cfg = r2dn.Config(1, 2, 3, 1, hidden=(3,))
    explicit, _ = r2dn.direct_to_explicit(cfg, r2dn.init(cfg, seed=0))
    other, _ = r2dn.direct_to_explicit(cfg, r2dn.init(cfg, seed=1))
    x, u = np.ones((1, 2)), np.ones((1, 1))
    ya = r2dn.step(cfg, explicit, x, u, jit=True)[1]
    yb = r2dn.step(cfg, other, x, u, jit=True)[1]
    assert not np.allclose(ya, yb)
    np.testing.assert_allclose(yb, r2dn.step(cfg, other, x, u, jit=False)[1], rtol=1e-13)
    bad = other._replace(A=np.full_like(other.A, np.nan))
    with pytest.raises(ValueError, match="explicit.A contains NaN or Inf"):
        r2dn.step(cfg, bad, x, u)
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        r2dn.step(cfg, explicit, np.full((1, 2), np.inf), u)
    with pytest.raises(ValueError, match=r"u must have shape \(B=1, nu=1\)"):
        r2dn.step(cfg, explicit, x, np.ones((2, 1)))


def test_step_takes_strided_views():
    """A controller may pass rows of a larger array: the compiled step copies them, not warns."""
    cfg = r2dn.Config(2, 3, 4, 2, hidden=(3,))
    explicit, _ = r2dn.direct_to_explicit(cfg, r2dn.init(cfg, seed=0))
    big = np.random.default_rng(0).standard_normal((3, 10))
    x, u = big[:, 0:6:2], big[:, 7:9]  # non-contiguous views
    assert not x.flags.c_contiguous
    assert_same(r2dn.step(cfg, explicit, x, u, jit=True), r2dn.step(cfg, explicit, x, u, jit=False), "float64")
