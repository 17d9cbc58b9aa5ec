"""(Q, S, R)-dissipative R2DNs and RENs, and the learnable gain bound (``r2dn_np.core.supply``).

Every map against finite differences over random sizes and random valid supply rates; the
certificates hold on random draws and fail when a weight is inflated by 1.3; the incremental supply
``sum_t s(dy_t, du_t)`` stays >= 0 on sampled and searched input pairs (and the search does find a
negative supply for a model checked against a supply it does not satisfy); ``(-I/gamma, 0, gamma I)``
gives the gamma-Lipschitz guarantee; a learned gamma is what the certificate is checked against.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from r2dn_np.checks import certificates, verify
from r2dn_np.interface import io
from r2dn_np import r2dn, ren
from r2dn_np.core import supply, tree
from r2dn_np.checks.testing import check_vjp


@st.composite
def supply_rates(draw, nu, ny):
    """A valid (Q, S, R) built from random factors: Q = -(A A^T + a I), any S, and
    R = B B^T + b I + S Q^-1 S^T so that R - S Q^-1 S^T = B B^T + b I > 0."""
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((ny, ny)) * draw(st.sampled_from([0.3, 1.0, 3.0]))
    Q = -(A @ A.T + draw(st.sampled_from([0.1, 1.0])) * np.eye(ny))
    S = rng.standard_normal((nu, ny)) * draw(st.sampled_from([0.0, 0.5, 2.0]))
    B = rng.standard_normal((nu, nu)) * draw(st.sampled_from([0.3, 1.0, 3.0]))
    R = B @ B.T + draw(st.sampled_from([0.1, 1.0])) * np.eye(nu) + S @ np.linalg.solve(Q, S.T)
    return Q.tolist(), S.tolist(), (0.5 * (R + R.T)).tolist()


@st.composite
def models(draw, learned=True):
    nu, ny = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sizes = dict(nu=nu, nx=draw(st.integers(1, 4)), nv=draw(st.integers(1, 4)), ny=ny, activation="tanh")
    model = draw(st.sampled_from(["r2dn", "ren"]))
    module = r2dn if model == "r2dn" else ren
    if model == "r2dn":
        sizes["hidden"] = (3,)
    d22 = draw(st.sampled_from(["zero", "free"]))
    if model == "r2dn":
        sizes["learn_multiplier"] = draw(st.booleans())
    if learned and draw(st.booleans()):
        cfg = module.Config(**sizes, kind="lipschitz", learn_gamma=True, d22=d22,
                            gamma=draw(st.sampled_from([0.2, 1.0, 5.0])))
    else:
        Q, S, R = draw(supply_rates(nu, ny))
        cfg = module.Config(**sizes, kind="qsr", Q=Q, S=S, R=R, d22=d22)
    return module, cfg, draw(st.integers(0, 1000))


def _direct(module, cfg, seed, tiny=False):
    """``verify.perturbed``; a learned multiplier drawn in [1/4, 4]."""
    d = verify.perturbed(module, cfg, seed, tiny=tiny)
    if getattr(cfg, "learn_multiplier", False):
        d = d._replace(log_lambda=np.asarray(np.random.default_rng(seed).uniform(-1.4, 1.4)))
    return d


@given(models())
def test_map_vjp_against_finite_differences(model):
    module, cfg, seed = model
    direct = _direct(module, cfg, seed)

    def f(d):
        return module.direct_to_explicit(cfg, d)[0]

    def vjp(d, de):
        return module.direct_to_explicit_vjp(cfg, module.direct_to_explicit(cfg, d)[1], de)

    report = check_vjp(f, vjp, direct, rtol=1e-6)
    assert report.worst_error < 1e-6, report.table()


@given(models())
def test_certificate_holds_on_random_draws(model):
    module, cfg, seed = model
    for tiny in (False, True):
        explicit, cache = module.direct_to_explicit(cfg, _direct(module, cfg, seed, tiny))
        report = certificates.certify(cfg, explicit, cache)
        assert report.holds, report.table()
        names = [c.name for c in report.checks]
        assert any(("(Q,S,R) LMI" if cfg.kind == "qsr" else "learned gamma") in n for n in names), names


@pytest.mark.parametrize("module", [r2dn, ren])
@pytest.mark.parametrize("weight", ["B2", "C2", "D21", "D12"])
def test_inflating_a_weight_by_1_3_breaks_the_certificate(module, weight):
    """A nearly tight model (tiny polar scale p) whose weight is inflated by 1.3 no longer
    satisfies its (Q, S, R) inequality; the explicit form sees it."""
    extra = dict(hidden=(4,)) if module is r2dn else {}
    Q, S, R = supply.example(2, 2, seed=3)
    cfg = module.Config(nu=2, nx=3, nv=4, ny=2, activation="tanh", kind="qsr", Q=Q, S=S, R=R, d22="free", **extra)
    explicit, cache = module.direct_to_explicit(cfg, _direct(module, cfg, 5, tiny=True))
    assert certificates.certify(cfg, explicit, cache).holds
    bad = explicit._replace(**{weight: 1.3 * getattr(explicit, weight)})
    report = certificates.certify(cfg, bad, cache)
    assert not report.holds, f"inflating {weight} went unnoticed\n{report.table()}"


@given(models())
def test_incremental_supply_is_nonnegative_on_sampled_and_searched_pairs(model):
    module, cfg, seed = model
    direct = _direct(module, cfg, seed)
    explicit, _ = module.direct_to_explicit(cfg, direct)
    Q, S, R = supply.matrices(cfg, direct)
    worst = verify.supply_search(module, cfg, explicit, Q, S, R, np.random.default_rng(seed), steps=15)
    assert worst >= -1e-9 * max(np.abs(Q).max(), np.abs(R).max())


@pytest.mark.parametrize("module", [r2dn, ren])
def test_the_supply_search_finds_a_violated_supply(module):
    """Negative control: the search must be able to fail. Check a model against the l2-gain supply
    of half the gain it has been seen to reach; the supply must come out negative."""
    extra = dict(hidden=(4,)) if module is r2dn else {}
    cfg = module.Config(nu=2, nx=3, nv=4, ny=2, activation="tanh", kind="lipschitz", gamma=3.0, **extra)
    explicit, _ = module.direct_to_explicit(cfg, _direct(module, cfg, 2))
    gain = verify.lipschitz_search(module, cfg, explicit, np.random.default_rng(0))
    g = 0.5 * gain
    worst = verify.supply_search(module, cfg, explicit, -np.eye(2) / g, np.zeros((2, 2)), g * np.eye(2),
                                 np.random.default_rng(1))
    assert worst < 0


@pytest.mark.parametrize("module", [r2dn, ren])
@pytest.mark.parametrize("gamma", [0.3, 4.0])
def test_the_gain_supply_gives_the_gamma_lipschitz_guarantee(module, gamma):
    """(Q, S, R) = (-I/gamma, 0, gamma I): the gamma-Lipschitz certificate of the explicit model
    holds, and no searched input pair exceeds gain gamma."""
    extra = dict(hidden=(4,)) if module is r2dn else {}
    nu, ny = 2, 3
    cfg = module.Config(nu=nu, nx=3, nv=4, ny=ny, activation="tanh", kind="qsr", d22="free",
                        Q=(-np.eye(ny) / gamma).tolist(), S=np.zeros((nu, ny)).tolist(),
                        R=(gamma * np.eye(nu)).tolist(), **extra)
    explicit, cache = module.direct_to_explicit(cfg, _direct(module, cfg, 7))
    M = certificates.metric(cache)
    if module is r2dn:
        lmi = certificates.lipschitz_lmi(explicit, M, gamma)
    else:
        lmi = certificates.ren_lipschitz_lmi(explicit, M, 1.0 / cache.lam_inv, gamma, cfg.abar)
    assert certificates.balanced_max_eig(lmi, M) < 0
    gain = verify.lipschitz_search(module, cfg, explicit, np.random.default_rng(3), steps=20)
    assert gain <= gamma * (1 + 1e-9)


@pytest.mark.parametrize("module", [r2dn, ren])
def test_a_learned_gamma_is_what_the_certificate_checks(module):
    extra = dict(hidden=(4,)) if module is r2dn else {}
    cfg = module.Config(nu=2, nx=3, nv=4, ny=2, activation="tanh", kind="lipschitz", learn_gamma=True,
                        gamma=1.0, **extra)
    direct = _direct(module, cfg, 4, tiny=True)._replace(log_gamma=np.asarray(math.log(2.5)))
    explicit, cache = module.direct_to_explicit(cfg, direct)
    report = certificates.certify(cfg, explicit, cache)
    assert report.holds and any("learned gamma = 2.5" in c.name for c in report.checks), report.table()
    M = certificates.metric(cache)
    lam = () if module is r2dn else (1.0 / cache.lam_inv,)
    lmi = certificates.lipschitz_lmi if module is r2dn else certificates.ren_lipschitz_lmi
    assert certificates.balanced_max_eig(lmi(explicit, M, *lam, 2.5), M) < 0
    # the same weights are not certified for a much smaller gamma
    assert certificates.balanced_max_eig(lmi(explicit, M, *lam, 0.25), M) > 0
    # gamma = exp(log_gamma): one step of the learned bound moves the explicit feedthrough
    bigger = module.direct_to_explicit(cfg, direct._replace(log_gamma=np.asarray(math.log(5.0))))[0]
    np.testing.assert_allclose(bigger.D22, 2.0 * explicit.D22, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("module", [r2dn, ren])
def test_save_and_load_keep_the_supply_and_the_learned_gamma(module, tmp_path):
    extra = dict(hidden=(4,)) if module is r2dn else {}
    Q, S, R = supply.example(2, 1, seed=1)
    for cfg in (module.Config(nu=2, nx=3, nv=4, ny=1, kind="qsr", Q=Q, S=S, R=R, **extra),
                module.Config(nu=2, nx=3, nv=4, ny=1, kind="lipschitz", learn_gamma=True, gamma=0.5, **extra)):
        direct = _direct(module, cfg, 1)
        io.save(tmp_path / "m.npz", cfg, direct)
        loaded = io.load(tmp_path / "m.npz")
        assert loaded.config == cfg
        for (p, a), (_, b) in zip(tree.paths(loaded.params), tree.paths(direct)):
            np.testing.assert_array_equal(a, b, err_msg=p)


def test_check_factors_the_supply():
    Q, S, R = supply.check(1, 1, [[-1.0]], [[0.5]], [[1.0]])
    f = supply.host_factors(Q, S, R)
    # s(y, u) = |L_R u|^2 - |L_Q (y - (-Q)^-1 S^T u)|^2 for every (y, u)
    rng = np.random.default_rng(0)
    for _ in range(5):
        y, u = rng.standard_normal(1), rng.standard_normal(1)
        s = y @ np.array(Q) @ y + 2 * u @ np.array(S) @ y + u @ np.array(R) @ u
        yt = np.linalg.solve(f.LQinv, y - f.shift @ u)
        assert s == pytest.approx(float(np.sum((f.LR @ u) ** 2) - np.sum(yt**2)), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("kw, exc, word", [
    (dict(kind="qsr"), ValueError, "Q"),
    (dict(kind="qsr", Q=[[1.0]], S=[[0.0, 0.0]], R=[[1.0]]), ValueError, "S"),
    (dict(kind="qsr", Q=[[1.0]], S=[[0.0]], R=[[1.0]]), ValueError, "negative definite"),
    (dict(kind="qsr", Q=[[-1.0]], S=[[1.0]], R=[[-5.0]]), ValueError, "R - S Q^-1 S^T"),
    (dict(kind="qsr", Q=[[-1.0]], S=[[0.0]], R=[["1"]]), TypeError, "R[0][0]"),
    (dict(kind="qsr", Q="-1", S=[[0.0]], R=[[1.0]]), TypeError, "Q"),
    (dict(kind="qsr", Q=[[-1.0]], S=[[0.0]], R=[[float("nan")]]), ValueError, "R[0][0]"),
    (dict(kind="lipschitz", Q=[[-1.0]]), ValueError, "Q"),
    (dict(kind="contracting", learn_gamma=True), ValueError, "learn_gamma"),
    (dict(kind="lipschitz", learn_gamma=1), TypeError, "learn_gamma"),
])
@pytest.mark.parametrize("module", [r2dn, ren])
def test_bad_supply_configs_are_refused_by_name(module, kw, exc, word):
    with pytest.raises(exc) as info:
        module.Config(nu=1, nx=2, nv=3, ny=1, **kw)
    assert word in str(info.value)


@pytest.mark.parametrize("kw, exc", [(dict(kind="contracting", learn_multiplier=True), ValueError),
                                     (dict(kind="lipschitz", learn_multiplier="yes"), TypeError)])
def test_bad_multiplier_configs_are_refused_by_name(kw, exc):
    with pytest.raises(exc, match="learn_multiplier"):
        r2dn.Config(nu=1, nx=2, nv=3, ny=1, **kw)


def test_asymmetric_Q_is_refused():
    with pytest.raises(ValueError, match="Q must be symmetric"):
        supply.check(1, 2, [[-1.0, 0.5], [0.0, -1.0]], [[0.0, 0.0]], [[1.0]])


def test_the_worked_examples_script_runs_and_every_example_holds():
    import pathlib
    import runpy

    script = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "supply_examples.py"
    rows = runpy.run_path(str(script), run_name="supply_examples")["run"](seed=1, steps=3)
    assert len(rows) == 6
    for name, model, report, worst in rows:
        assert report.holds and worst >= 0, (name, model, report.table())


@pytest.mark.parametrize("module", [r2dn, ren])
@pytest.mark.parametrize("kind", ["qsr", "learned"])
def test_every_backend_gives_the_numpy_numbers(xp, module, kind):
    """The (Q, S, R) and learned-gamma maps, their VJPs and a gradient pass use only the array API:
    on array_api_strict (and CuPy where a GPU exists) they give NumPy's numbers."""
    from helpers import host, put

    extra = dict(hidden=(4,)) if module is r2dn else {}
    if kind == "qsr":
        Q, S, R = supply.example(2, 3, seed=2)
        cfg = module.Config(nu=2, nx=3, nv=4, ny=3, activation="tanh", kind="qsr", Q=Q, S=S, R=R, d22="free",
                            **extra)
    else:
        cfg = module.Config(nu=2, nx=3, nv=4, ny=3, activation="tanh", kind="lipschitz", learn_gamma=True,
                            gamma=0.4, **extra)
    direct = _direct(module, cfg, 6)
    U = np.random.default_rng(0).standard_normal((5, 2, 2))

    def loss(Y):
        return float(host(Y * Y).sum()), 2 * Y

    ref_value, ref = module.value_and_grad(cfg, direct, None, U, loss)
    value, grads = module.value_and_grad(cfg, tree.map(lambda a: put(xp, a), direct), None, put(xp, U), loss)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for (path, a), (_, b) in zip(tree.paths(grads), tree.paths(ref)):
        np.testing.assert_allclose(host(a), b, rtol=1e-10, atol=1e-13, err_msg=path)


@pytest.mark.parametrize("kind", ["lipschitz", "qsr"])
def test_a_learned_multiplier_is_what_the_certificate_weights(kind):
    """lambda = 3 on a nearly tight R2DN: the explicit forms hold with lambda and fail with 1, and
    lambda moves gain from D12 to D21 (D12 / sqrt(lambda), D21 sqrt(lambda))."""
    extra = dict(Q=[[-1.0, 0.0], [0.0, -2.0]], S=[[0.2, 0.0], [0.0, 0.1]], R=[[1.0, 0.0], [0.0, 3.0]]) \
        if kind == "qsr" else dict(gamma=2.0)
    cfg = r2dn.Config(nu=2, nx=3, nv=4, ny=2, hidden=(4,), activation="tanh", kind=kind, learn_multiplier=True,
                      **extra)
    base = verify.perturbed(r2dn, cfg, 3, tiny=True)
    one = r2dn.direct_to_explicit(cfg, base._replace(log_lambda=np.asarray(0.0)))[0]
    direct = base._replace(log_lambda=np.asarray(math.log(3.0)))
    explicit, cache = r2dn.direct_to_explicit(cfg, direct)
    np.testing.assert_allclose(explicit.D12, one.D12 / math.sqrt(3.0), rtol=1e-12)
    np.testing.assert_allclose(explicit.D21, one.D21 * math.sqrt(3.0), rtol=1e-12)
    report = certificates.certify(cfg, explicit, cache)
    assert report.holds and all("lambda = 3" in c.name for c in report.checks[:2]), report.table()
    M = certificates.metric(cache)
    assert certificates.balanced_max_eig(certificates.contracting_lmi(explicit, M, 3.0), M) < 0
    assert certificates.balanced_max_eig(certificates.contracting_lmi(explicit, M, 1.0), M) > 0


@pytest.mark.parametrize("module", [r2dn, ren])
def test_a_learned_gamma_started_at_5_is_certified_and_searched(module):
    """Away from the default gamma = 1: a model whose learned gamma starts at 5 (init) and is
    moved to 4. The core is built at gamma = 1 and scaled by the learned gamma, so the certificate
    holds for the learned value and the searched gain stays below it; a core built at the initial
    gamma instead (``supply.core_config`` keeping ``cfg.gamma``) gives a model of gain up to 5 x 4."""
    extra = dict(hidden=(4,)) if module is r2dn else {}
    cfg = module.Config(nu=2, nx=3, nv=4, ny=2, activation="tanh", kind="lipschitz", learn_gamma=True,
                        gamma=5.0, d22="free", **extra)
    assert float(module.init(cfg, seed=0).log_gamma) == pytest.approx(math.log(5.0))
    assert supply.core_config(cfg).gamma == 1.0 and not supply.core_config(cfg).learn_gamma
    for gamma in (5.0, 4.0):
        direct = _direct(module, cfg, 6, tiny=True)._replace(log_gamma=np.asarray(math.log(gamma)))
        explicit, cache = module.direct_to_explicit(cfg, direct)
        report = certificates.certify(cfg, explicit, cache)
        assert report.holds and any(f"learned gamma = {gamma:g}" in c.name for c in report.checks), report.table()
        gain = verify.lipschitz_search(module, cfg, explicit, np.random.default_rng(1), steps=15)
        assert 0.3 * gamma < gain <= gamma * (1 + 1e-9), gain
        # the explicit weights scale with the learned gamma alone: D22 = gamma * (the unit core's D22)
        core = module.direct_to_explicit(supply.core_config(cfg), direct._replace(log_gamma=None))[0]
        np.testing.assert_allclose(explicit.D22, gamma * core.D22, rtol=1e-12, atol=1e-15)
