"""Our R2DN against numbers produced by the authors' JAX/Flax ``ContractingR2DN``.

``tests/data/flax_contracting_r2dn.npz`` holds, for a relu and a tanh model, the authors'
parameter tree (moved off its initial values), an initial state, an input sequence, their
outputs and their gradients (``jax.value_and_grad``) of ``sum(Y * Wy) + sum(xT * Wx)``. It
was written by ``scripts/make_flax_fixture.py`` in an environment with jax, flax and the
authors' ``robustnn`` package; this test needs none of them.
"""

import json
import pathlib

import numpy as np
import pytest

from r2dn_np import r2dn, tree

from helpers import host, put

FIXTURE = pathlib.Path(__file__).parent / "data" / "flax_contracting_r2dn.npz"


def _load():
    with np.load(FIXTURE, allow_pickle=False) as f:
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


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_outputs_and_gradients_equal_the_authors(xp, activation):
    meta, arrays = _load()
    a = {k[len(activation) + 1:]: v for k, v in arrays.items() if k.startswith(activation + "/")}
    cfg = r2dn.Config(nu=meta["nu"], nx=meta["nx"], nv=meta["nv"], ny=meta["ny"], hidden=tuple(meta["hidden"]),
                      activation=activation, output_layer="sandwich", kind="contracting", eps=meta["eps"])
    direct = r2dn.from_flax(cfg, {"params": _nested(a, "params/")}, backend=xp)
    explicit, map_cache = r2dn.direct_to_explicit(cfg, direct)
    xT, Y, cache = r2dn.forward(cfg, explicit, put(xp, a["x0"]), put(xp, a["U"]))
    np.testing.assert_allclose(host(Y), a["Y"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(xT), a["xT"], rtol=1e-12, atol=1e-12)

    d_explicit, dx0, dU = r2dn.backward(cfg, explicit, cache, put(xp, a["Wy"]), put(xp, a["Wx"]))
    ours = r2dn.to_flax(cfg, r2dn.direct_to_explicit_vjp(cfg, map_cache, d_explicit))["params"]
    theirs = _nested(a, "grad/")
    paths = [p for p, _ in tree.paths(theirs)]
    assert sorted(paths) == sorted(p for p, _ in tree.paths(ours))
    for (path, mine), (_, ref) in zip(sorted(tree.paths(ours)), sorted(tree.paths(theirs))):
        np.testing.assert_allclose(mine, ref, rtol=1e-10, atol=1e-12, err_msg=str(path))
    np.testing.assert_allclose(host(dx0), a["grad_x0"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(dU), a["grad_U"], rtol=1e-10, atol=1e-12)
