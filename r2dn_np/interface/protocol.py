"""The model protocols, in code: what every sequence model and every equilibrium layer exports.

Every sequence model module exports the names of :data:`SEQUENCE_MODEL` with these parameters, in
this order, so any of them can be swapped for another (``docs/protocol.md``). Shapes are
time-major: ``U : (T, B, nu)``, ``x0 : (B, nx)`` (None means zeros), ``Y : (T_out, B, ny)``;
``cfg.nu``, ``cfg.nx``, ``cfg.ny`` give the sizes. The equilibrium layers export
:data:`EQUILIBRIUM_LAYER`, the static maps :data:`STATIC_MAP`. Which model follows which is the
registry's ``protocol`` field (:mod:`~r2dn_np.interface.registry`); :data:`SPECS` maps it to its
spec.

:func:`missing` lists where a module departs from a protocol; the conformance test
(``tests/test_registry.py``) runs it on every registered model.

Examples
--------
>>> from r2dn_np.interface import protocol, registry
>>> protocol.missing(registry.module("r2dn"), protocol.SEQUENCE_MODEL)
[]
"""

from __future__ import annotations

import inspect

from . import registry

__all__ = ["PARAMETERISATION", "SEQUENCE_MODEL", "EQUILIBRIUM_LAYER", "STATIC_MAP", "SPECS", "missing"]

# name -> the leading parameters it must take, in order (None: a type, not a function).
# What every model exports: its containers and the parameterisation, a differentiable stage of its own.
PARAMETERISATION = {
    "Config": None,
    "Direct": None,
    "Explicit": None,
    "init": ("cfg", "seed", "backend", "dtype"),
    "direct_to_explicit": ("cfg", "direct"),
    "direct_to_explicit_vjp": ("cfg", "cache", "d_explicit"),
}

SEQUENCE_MODEL = {
    **PARAMETERISATION,
    "Grads": None,
    "forward": ("cfg", "explicit", "x0", "U"),
    "backward": ("cfg", "explicit", "cache", "dY", "dxT"),
    "step": ("cfg", "explicit", "x", "u"),
    "value_and_grad": ("cfg", "direct", "x0", "U", "loss"),
}

EQUILIBRIUM_LAYER = {
    **PARAMETERISATION,
    "Grads": None,
    "forward": ("cfg", "explicit", "x", "z0"),
    "backward": ("cfg", "explicit", "cache", "dout"),
    "value_and_grad": ("cfg", "direct", "x", "loss"),
    "residual": ("cfg", "explicit", "x", "z"),
}

# a static map w = phi(v) that closes a feedback loop and is saved on its own (the LBDN)
STATIC_MAP = {
    **PARAMETERISATION,
    "forward": ("cfg", "explicit"),
    "backward": ("cfg", "explicit", "cache"),
}

# the registry's protocol field -> its spec
SPECS = {
    registry.SEQUENCE_MODEL: SEQUENCE_MODEL,
    registry.EQUILIBRIUM_LAYER: EQUILIBRIUM_LAYER,
    registry.STATIC_MAP: STATIC_MAP,
}


def missing(module, spec):
    """Where ``module`` departs from ``spec``: a list of ``"name: why"`` (empty if it conforms)."""
    out = []
    for name, params in spec.items():
        obj = getattr(module, name, None)
        if obj is None:
            out.append(f"{name}: not exported")
            continue
        if params is None:
            if not isinstance(obj, type):
                out.append(f"{name}: expected a type, got {type(obj).__name__}")
            continue
        if not callable(obj):
            out.append(f"{name}: not callable")
            continue
        got = tuple(inspect.signature(obj).parameters)[:len(params)]
        if got != params:
            out.append(f"{name}: parameters {got}, expected {params}")
    return out
