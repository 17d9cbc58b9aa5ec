"""Our models against numbers produced by the authors' JAX/Flax code.

Each fixture in ``tests/data`` holds, for a few small models, the authors' parameter tree
(moved off its initial values), an initial state, an input sequence, their outputs and their
gradients (``jax.value_and_grad``) of ``sum(Y * Wy) + sum(xT * Wx)``. They were written by
``scripts/make_flax_fixture.py`` in an environment with jax, flax and the authors'
``robustnn`` package; these tests need none of them.
"""

import json
import pathlib

import numpy as np
import pytest

from r2dn_np.interface import flax_interop
from r2dn_np import r2dn, ren
from r2dn_np.core import tree

from helpers import host, put

DATA = pathlib.Path(__file__).parent / "data"


def _load(name):
    with np.load(DATA / name, allow_pickle=False) as f:
        meta = json.loads(str(f["__meta__"]))
        return meta, {k: f[k] for k in f.files if k != "__meta__"}


def _nested(flat, prefix):
    """``{"a/b/c": x}`` -> ``{"a": {"b": {"c": x}}}`` for the keys under ``prefix``."""
    out = {}
    for key, value in flat.items():
        if key.startswith(prefix):
            *parents, leaf = key[len(prefix):].split("/")
            node = out
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
    return out


def _r2dn_config(c, eps):
    return r2dn.Config(nu=c["nu"], nx=c["nx"], nv=c["nv"], ny=c["ny"], hidden=tuple(c["hidden"]),
                       activation=c["activation"], output_layer="sandwich", kind="contracting", eps=eps,
                       identity_output=c.get("identity_output", False))


def _ren_config(c, eps):
    return ren.Config(nu=c["nu"], nx=c["nx"], nv=c["nv"], ny=c["ny"], activation=c["activation"],
                      kind=c["kind"], abar=c["abar"], gamma=c.get("gamma", 1.0), d22=c.get("d22", "free"),
                      eps=eps, identity_output=c.get("identity_output", False))


def _check_case(xp, module, cfg, a):
    direct = flax_interop.from_flax(cfg, {"params": _nested(a, "params/")}, backend=xp)
    explicit, map_cache = module.direct_to_explicit(cfg, direct)
    xT, Y, cache = module.forward(cfg, explicit, put(xp, a["x0"]), put(xp, a["U"]))
    np.testing.assert_allclose(host(Y), a["Y"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(xT), a["xT"], rtol=1e-12, atol=1e-12)

    d_explicit, dx0, dU = module.backward(cfg, explicit, cache, put(xp, a["Wy"]), put(xp, a["Wx"]))
    ours = dict(tree.paths(flax_interop.to_flax(cfg, module.direct_to_explicit_vjp(cfg, map_cache, d_explicit))["params"]))
    theirs = dict(tree.paths(_nested(a, "grad/")))
    for path, ref in theirs.items():
        # a parameter the authors' tree holds but their model never uses has a zero gradient
        mine = ours.get(path, np.zeros_like(ref))
        np.testing.assert_allclose(mine, ref, rtol=1e-10, atol=1e-12, err_msg=path)
    assert set(ours) <= set(theirs)
    np.testing.assert_allclose(host(dx0), a["grad_x0"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(dU), a["grad_U"], rtol=1e-10, atol=1e-12)


def _case(meta, arrays, name):
    return meta["cases"][name], {k[len(name) + 1:]: v for k, v in arrays.items() if k.startswith(name + "/")}


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_r2dn_outputs_and_gradients_equal_the_authors(xp, name):
    meta, arrays = _load("flax_contracting_r2dn.npz")
    c, a = _case(meta, arrays, name)
    _check_case(xp, r2dn, _r2dn_config(c, meta["eps"]), a)


@pytest.mark.parametrize("name", ["contracting_relu", "lipschitz_tanh", "lipschitz_relu_d22zero"])
def test_ren_outputs_and_gradients_equal_the_authors(xp, name):
    meta, arrays = _load("flax_ren.npz")
    c, a = _case(meta, arrays, name)
    _check_case(xp, ren, _ren_config(c, meta["eps"]), a)


@pytest.mark.parametrize("name", ["r2dn_eps", "r2dn_identity", "ren_contracting_identity", "ren_lipschitz_eps"])
def test_non_default_eps_and_identity_output_equal_the_authors(xp, name):
    """Their ``eps`` sits only in ``eps I`` (and ``p``'s initial value) while their polar norm adds
    2^-23 whatever ``eps`` is: with ``eps_n`` at its default these agree to rounding."""
    meta, arrays = _load("flax_eps_identity.npz")
    c, a = _case(meta, arrays, name)
    assert c["eps"] != meta["eps"]
    module, make = (r2dn, _r2dn_config) if c["model"] == "r2dn" else (ren, _ren_config)
    _check_case(xp, module, make(c, c["eps"]), a)


def test_a_wrong_eps_n_is_visible():
    """The fixture can tell the norm constant apart: eps_n = eps (the old single constant) misses
    the authors' outputs by far more than rounding."""
    meta, arrays = _load("flax_eps_identity.npz")
    c, a = _case(meta, arrays, "r2dn_eps")
    cfg = _r2dn_config(c, c["eps"])
    cfg = r2dn.Config(**{**cfg.to_dict(), "hidden": cfg.hidden, "eps_n": c["eps"]})
    direct = flax_interop.from_flax(cfg, {"params": _nested(a, "params/")})
    _, Y, _ = r2dn.forward(cfg, r2dn.direct_to_explicit(cfg, direct)[0], a["x0"], a["U"])
    assert np.max(np.abs(Y - a["Y"])) > 1e-9 * np.max(np.abs(a["Y"]))
