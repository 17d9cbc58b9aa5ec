"""Parameters to and from the R2DN authors' JAX/Flax models.

``to_flax(cfg, direct)`` writes the parameter tree of their ``ContractingR2DN`` (for an
``r2dn.Config``) or their ``ContractingREN`` / ``LipschitzREN`` (for a ``ren.Config``);
``from_flax(cfg, tree)`` reads one back into this library's ``Direct``. With matching options
(``eps``, ``identity_output``, ...; their polar norm always adds ``2^-23``, this library's
``eps_n`` default) the models compute what theirs compute: ``tests/test_flax_equality.py`` compares outputs and gradients
with a fixture made by their code (``scripts/make_flax_fixture.py``).

Examples
--------
>>> from r2dn_np.interface import flax_interop
>>> from r2dn_np import r2dn
>>> cfg = r2dn.Config(nu=1, nx=2, nv=3, ny=1, hidden=(4,), output_layer="sandwich")
>>> tree = flax_interop.to_flax(cfg, r2dn.init(cfg, seed=0))
>>> sorted(tree["params"]["network"])
['layers_0', 'layers_1']
>>> back = flax_interop.from_flax(cfg, tree)
>>> bool((back.X == r2dn.init(cfg, seed=0).X).all())
True
"""

from __future__ import annotations

import numpy as np

from .. import lbdn, r2dn, ren
from ..core.backend import asarray, namespace, to_numpy
from . import registry

__all__ = ["to_flax", "from_flax"]


def _module(cfg):
    models = registry.names(flax=True)
    model = getattr(cfg, "model", None)
    if model not in models or not isinstance(cfg, registry.module(model).Config):
        raise TypeError(f"cfg must be the Config of one of the models the authors' Flax code has {models}; "
                        f"got {type(cfg).__name__}")
    if isinstance(cfg, r2dn.Config) and cfg.learn_multiplier:
        raise ValueError("the authors' models have no learned multiplier: cfg.learn_multiplier must be False")
    if cfg.kind == "qsr" or cfg.learn_gamma:
        raise ValueError("the authors' models have no (Q, S, R) kind and no learned gamma: cfg.kind must be "
                         f"'contracting' or 'lipschitz' with learn_gamma=False; got kind={cfg.kind!r}, "
                         f"learn_gamma={cfg.learn_gamma}")
    if isinstance(cfg, r2dn.Config):
        _check_r2dn_config(cfg)
        return r2dn
    # the registry's other Flax model, the REN (a third needs its own tree reader and writer here)
    if cfg.layer != "acyclic":
        raise ValueError(f"the authors' Flax RENs have the acyclic layer: cfg.layer must be 'acyclic'; "
                         f"got {cfg.layer!r}")
    return ren


def to_flax(cfg, direct):
    """The authors' Flax parameter tree of ``direct`` (host NumPy arrays under ``"params"``)."""
    module = _module(cfg)
    module.direct_to_explicit(cfg, direct)  # checks the container before anything is written
    return _r2dn_to_flax(cfg, direct) if module is r2dn else _ren_to_flax(cfg, direct)


def from_flax(cfg, tree, backend=None, dtype=None):
    """``Direct`` parameters of ``cfg``'s model from the authors' Flax parameter tree.

    ``tree`` is a nested dict of arrays, optionally under a top-level ``"params"`` key.
    ``dtype`` defaults to that of ``tree["X"]``. Every array must have its exact shape and be
    finite (errors name the entry).
    """
    module = _module(cfg)
    params = tree.get("params", tree) if isinstance(tree, dict) else tree
    if not isinstance(params, dict):
        raise TypeError(f"tree must be a dict of arrays; got {type(tree).__name__}")
    read = _r2dn_from_flax if module is r2dn else _ren_from_flax
    xp = namespace(backend)
    return read(cfg, params, lambda name, value, like: _take(name, value, like, xp, dtype or _dtype(params)))


def _dtype(params):
    return str(np.asarray(to_numpy(params["X"])).dtype) if "X" in params else "float64"


def _take(name, value, like, xp, dtype):
    a = np.asarray(to_numpy(value), dtype=np.float64)
    if like.ndim == 0:
        if a.size != 1:
            raise ValueError(f"tree[{name!r}] must hold one number; got shape {a.shape}")
        a = a.reshape(())
    if a.shape != like.shape:
        raise ValueError(f"tree[{name!r}] has shape {a.shape}, expected {like.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"tree[{name!r}] contains NaN or Inf")
    return asarray(a, xp, dtype)


def _host(a):
    return np.array(to_numpy(a))


# --- R2DN: the authors' ContractingR2DN ----------------------------------------------------------

_R2DN_NAMES = ("X", "p", "Y", "B1", "B2", "C1", "C2", "D12", "D21", "D22", "bx", "bv", "by")
# with identity_output the authors create no output-map parameters (y = x is built, not learned)
_OUTPUT_NAMES = ("C2", "D21", "D22", "by")


def _r2dn_names(cfg):
    return tuple(n for n in _R2DN_NAMES if not (cfg.identity_output and n in _OUTPUT_NAMES))


def _check_r2dn_config(cfg):
    if cfg.lti != "dense":
        raise ValueError(f"cfg.lti must be 'dense': the authors' R2DN has a dense LTI part; got {cfg.lti!r}")
    if cfg.kind != "contracting":
        raise ValueError("cfg.kind must be 'contracting': the authors' code has only the contracting R2DN")
    if cfg.output_layer != "sandwich":
        raise ValueError(
            "cfg.output_layer must be 'sandwich': the authors' LBDN makes every layer, the last "
            "included, a Sandwich layer"
        )


def _r2dn_to_flax(cfg, direct):
    # scalars p and a become shape-(1,) arrays; the LBDN goes under "network" as layers_0..layers_L
    params = {name: _host(getattr(direct, name)) for name in _r2dn_names(cfg)}
    params["p"] = params["p"].reshape(1)
    params["network"] = {
        f"layers_{k}": {"XY": _host(L.XY), "a": _host(L.a).reshape(1), "d": _host(L.d), "b": _host(L.b)}
        for k, L in enumerate(direct.phi.layers)
    }
    return {"params": params}


def _r2dn_from_flax(cfg, params, take):
    missing = [n for n in _r2dn_names(cfg) + ("network",) if n not in params]
    if missing:
        raise KeyError(f"tree is missing {missing[0]!r} (expected a ContractingR2DN parameter tree)")
    ref = r2dn.init(cfg, 0, backend="numpy")
    fields = {n: take(n, params[n], getattr(ref, n)) for n in _r2dn_names(cfg)}
    net = params["network"]
    layers = []
    for k, L in enumerate(ref.phi.layers):
        key = f"layers_{k}"
        if key not in net:
            raise KeyError(f"tree['network'] is missing {key!r} (LBDN hidden sizes {cfg.hidden})")
        layers.append(lbdn.Layer(*(take(f"network.{key}.{f}", net[key][f], getattr(L, f))
                                   for f in lbdn.Layer._fields)))
    if f"layers_{len(layers)}" in net:
        raise ValueError(f"tree['network'] has more layers than cfg.hidden={cfg.hidden} allows")
    return ref._replace(**fields, phi=lbdn.Direct(tuple(layers), None))


# --- REN: the authors' ContractingREN / LipschitzREN ---------------------------------------------

# every REN the authors build has all fourteen parameters; each kind reads only some of them
_REN_COMMON = ("X", "p", "Y1", "B2", "D12", "C2", "D21", "bx", "bv", "by")


def _ren_names(cfg):
    if cfg.kind == "contracting":
        names = _REN_COMMON + ("D22",)
        return tuple(n for n in names if not (cfg.identity_output and n in _OUTPUT_NAMES))
    return _REN_COMMON + (("X3", "Y3", "Z3") if cfg.d22 == "free" else ())


def _ren_to_flax(cfg, direct):
    # Their modules always create all fourteen parameters; the ones this kind never reads (X3, Y3,
    # Z3 of the contracting kind, D22 of the Lipschitz kind, all four with d22="zero") are zeros:
    # any value gives the same model, and zeros make the tree of a gradient read right. Build
    # theirs with abar, gamma, eps, do_polar_param=cfg.polar, d22_zero=(cfg.d22 == "zero") and
    # identity_output (their tree then has no C2, D21, D22, by).
    d = cfg.d
    dtype = np.asarray(to_numpy(direct.X)).dtype
    shapes = dict(X3=(d, d), Y3=(d, d), Z3=(abs(cfg.ny - cfg.nu), d))
    if not cfg.identity_output:
        shapes["D22"] = (cfg.ny, cfg.nu)
    params = {name: np.zeros(shape, dtype) for name, shape in shapes.items()}
    for name in _ren_names(cfg):
        params[name] = _host(getattr(direct, name))
    params["p"] = params["p"].reshape(1)
    return {"params": params}


def _ren_from_flax(cfg, params, take):
    # the polar scale may be named "p", as their code creates it, or "polar", as their docs list it
    if "p" not in params and "polar" in params:
        params = dict(params, p=params["polar"])
    kind = "ContractingREN" if cfg.kind == "contracting" else "LipschitzREN"
    missing = [n for n in _ren_names(cfg) if n not in params]
    if missing:
        raise KeyError(f"tree is missing {missing[0]!r} (expected a {kind} parameter tree)")
    ref = ren.init(cfg, 0, backend="numpy")
    return ref._replace(**{n: take(n, params[n], getattr(ref, n)) for n in _ren_names(cfg)})
