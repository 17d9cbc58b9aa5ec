"""``identity_output`` (y = x) of the R2DN and REN, and the split of ``eps`` from the polar
map's norm constant ``eps_n`` (``docs/derivations/r2dn.md`` section 6, ``ren.md`` section 6).

Maps (the fixed output fields), VJPs against finite differences, certificates, io round trip
and the authors' Flax tree; then the eps split checked by exact algebra (the Flax fixtures of
``tests/test_flax_equality.py`` check it against the authors' code).
"""

import numpy as np
import pytest
from array_api_compat import array_namespace
from hypothesis import given, settings
from hypothesis import strategies as st

from r2dn_np.checks import certificates
from r2dn_np.interface import flax_interop, io
from r2dn_np.core import linalg, tree
from r2dn_np import r2dn, ren
from r2dn_np.checks.testing import check_vjp

from helpers import examples_for, host, put

MODULES = {"r2dn": r2dn, "ren": ren}


def _config(model, nu=2, nx=3, nv=4, **kw):
    if model == "r2dn":
        return r2dn.Config(nu=nu, nx=nx, nv=nv, ny=nx, hidden=(5,), activation="tanh", identity_output=True, **kw)
    return ren.Config(nu=nu, nx=nx, nv=nv, ny=nx, activation="tanh", identity_output=True, abar=0.9, **kw)


def _perturbed(direct, rng, scale=0.3):
    """Every array off its initial value (biases start at zero); ``p`` is kept."""
    def move(a):
        return a + put(array_namespace(a), scale * rng.standard_normal(tuple(a.shape))) if a.ndim else a
    return tree.map(move, direct)


@pytest.mark.parametrize("model", MODULES)
def test_output_fields_are_fixed_and_absent_from_direct(xp, model):
    module = MODULES[model]
    cfg = _config(model)
    direct = module.init(cfg, seed=0, backend=xp)
    assert direct.C2 is None and direct.D21 is None and direct.D22 is None and direct.by is None
    explicit, _ = module.direct_to_explicit(cfg, direct)
    np.testing.assert_array_equal(host(explicit.C2), np.eye(cfg.nx))
    for name in ("D21", "D22", "by"):
        assert not np.any(host(getattr(explicit, name))), name
    # the other fields are those of the same seed without identity_output
    plain = module.init(type(cfg)(**{**cfg.to_dict(), "identity_output": False}), seed=0, backend=xp)
    for name in direct._fields:
        if getattr(direct, name) is not None and name != "phi":
            np.testing.assert_array_equal(host(getattr(direct, name)), host(getattr(plain, name)), err_msg=name)


@pytest.mark.parametrize("model", MODULES)
def test_outputs_are_the_states(xp, model):
    module = MODULES[model]
    cfg = _config(model)
    rng = np.random.default_rng(1)
    direct = _perturbed(module.init(cfg, seed=1, backend=xp), rng)
    explicit, _ = module.direct_to_explicit(cfg, direct)
    x0, U = put(xp, rng.standard_normal((2, cfg.nx))), put(xp, rng.standard_normal((5, 2, cfg.nu)))
    xT, Y, cache = module.forward(cfg, explicit, x0, U)
    np.testing.assert_array_equal(host(Y), host(cache.X)[:5])  # y_t = x_t exactly, not to rounding
    x, states = x0, []
    for t in range(5):
        x, y = module.step(cfg, explicit, x, U[t, ...])
        states.append(host(y))
    np.testing.assert_allclose(host(Y), np.stack(states), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("model", MODULES)
def test_gradients_against_finite_differences(xp, model):
    module = MODULES[model]

    @settings(max_examples=examples_for(xp, 15))
    @given(nu=st.integers(1, 3), nx=st.integers(1, 3), nv=st.integers(1, 4), T=st.integers(1, 5),
           seed=st.integers(0, 2**31 - 1), eps=st.sampled_from([2.0**-23, 1e-3, 0.1]))
    def check(nu, nx, nv, T, seed, eps):
        cfg = _config(model, nu, nx, nv, eps=eps)
        rng = np.random.default_rng(seed)
        direct = _perturbed(module.init(cfg, seed, backend=xp), rng)
        x0, U = put(xp, rng.standard_normal((2, nx))), put(xp, rng.standard_normal((T, 2, nu)))

        def f(args):
            explicit, _ = module.direct_to_explicit(cfg, args[0])
            xT, Y, _ = module.forward(cfg, explicit, args[1], args[2])
            return Y, xT

        def vjp(args, cot):
            explicit, map_cache = module.direct_to_explicit(cfg, args[0])
            _, _, cache = module.forward(cfg, explicit, args[1], args[2])
            d_explicit, dx0, dU = module.backward(cfg, explicit, cache, *cot)
            d_direct = module.direct_to_explicit_vjp(cfg, map_cache, d_explicit)
            assert d_direct.C2 is None and d_direct.by is None
            return d_direct, dx0, dU

        check_vjp(f, vjp, (direct, x0, U))

    check()


@pytest.mark.parametrize("model", MODULES)
def test_certificates_hold(model):
    module = MODULES[model]
    cfg = _config(model, nx=4, nv=5)
    direct = _perturbed(module.init(cfg, seed=2), np.random.default_rng(2), 1.0)
    explicit, cache = module.direct_to_explicit(cfg, direct)
    report = certificates.certify(cfg, explicit, cache)
    assert report.holds, report.table()


@pytest.mark.parametrize("model", MODULES)
def test_io_round_trip(model, tmp_path):
    module = MODULES[model]
    cfg = _config(model, eps=1e-3)
    direct = _perturbed(module.init(cfg, seed=3), np.random.default_rng(3))
    io.save(tmp_path / "m.npz", cfg, direct)
    loaded = io.load(tmp_path / "m.npz")
    assert loaded.config == cfg and loaded.params.C2 is None
    for (p, a), (q, b) in zip(tree.paths(loaded.params), tree.paths(direct)):
        assert p == q
        np.testing.assert_array_equal(a, b)


def test_flax_trees_have_no_output_parameters():
    r2 = r2dn.Config(nu=1, nx=2, nv=3, ny=2, hidden=(4,), output_layer="sandwich", identity_output=True)
    params = flax_interop.to_flax(r2, r2dn.init(r2, seed=0))["params"]
    assert not {"C2", "D21", "D22", "by"} & set(params)
    back = flax_interop.from_flax(r2, {"params": params})
    assert back.C2 is None and back.by is None
    rn = _config("ren")
    params = flax_interop.to_flax(rn, ren.init(rn, seed=0))["params"]
    assert not {"C2", "D21", "D22", "by"} & set(params) and {"X3", "Y3", "Z3"} <= set(params)
    assert flax_interop.from_flax(rn, {"params": params}).D21 is None


@pytest.mark.parametrize("model", MODULES)
@pytest.mark.parametrize("kwargs, error, match", [
    (dict(identity_output="yes"), TypeError, "identity_output"),
    (dict(identity_output=True, ny=2), ValueError, "ny == nx"),
    (dict(identity_output=True, kind="lipschitz"), ValueError, "kind='contracting'"),
    (dict(eps_n=0.0), ValueError, "eps_n"),
    (dict(eps_n=float("nan")), ValueError, "eps_n"),
])
def test_bad_config(model, kwargs, error, match):
    base = dict(nu=1, nx=3, nv=2, ny=3)
    with pytest.raises(error, match=match):
        MODULES[model].Config(**{**base, **kwargs})


# --- the eps split: eps in eps I, eps_n in the polar norm ----------------------------------------


@pytest.mark.parametrize("model", MODULES)
@pytest.mark.parametrize("kind", ["contracting", "lipschitz"])
def test_eps_and_eps_n_enter_where_the_authors_put_them(model, kind):
    """``H = p^2 X^T X / (||X||_F^2 + eps_n) + eps I + (terms without X, p)``, by exact algebra:
    two configs that differ only in ``eps`` differ in ``H`` by exactly ``(eps - eps') I``, and two
    that differ only in ``eps_n`` differ only by the scalar factor of the Gram term."""
    module = MODULES[model]
    # the REN's free D22 map also holds eps I, (N6): with d22="zero" H has eps only in eps I
    kw = dict(nu=2, nx=3, nv=4, ny=2, kind=kind, gamma=2.0, d22="free" if model == "r2dn" else "zero")
    if model == "r2dn":
        kw["hidden"] = (5,)
    cfg = module.Config(**kw)
    direct = _perturbed(module.init(cfg, seed=4), np.random.default_rng(4))
    H0 = module.direct_to_explicit(cfg, direct)[1].H
    eps2 = 0.25
    H1 = module.direct_to_explicit(module.Config(**kw, eps=eps2), direct)[1].H
    n = H0.shape[0]
    np.testing.assert_allclose(H1 - H0, (eps2 - cfg.eps) * np.eye(n), rtol=0, atol=1e-13)
    # eps_n: only the Gram term's scale changes
    G = direct.X.T @ direct.X * direct.p**2
    n2 = np.sum(direct.X**2)
    H2 = module.direct_to_explicit(module.Config(**kw, eps_n=0.5), direct)[1].H
    np.testing.assert_allclose(H2 - H0, G / (n2 + 0.5) - G / (n2 + 2.0**-23), rtol=0, atol=1e-12)
    np.testing.assert_allclose(linalg.polar(direct.X, direct.p, 0.5), G / (n2 + 0.5), rtol=1e-14)


@pytest.mark.parametrize("model", MODULES)
def test_defaults_reproduce_the_single_eps(model):
    """The defaults keep every number of the one-constant map: eps = eps_n = 2^-23."""
    module = MODULES[model]
    cfg = module.Config(nu=1, nx=2, nv=3, ny=1)
    assert cfg.eps == cfg.eps_n == 2.0**-23
    d = module.Config.from_dict({k: v for k, v in cfg.to_dict().items() if k not in ("eps_n", "identity_output")})
    assert d == cfg  # configs saved before the split load unchanged
