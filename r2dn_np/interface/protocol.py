"""The model protocols, in code: what every sequence model and every equilibrium layer exports.

Every sequence model module (``r2dn``, ``ren``, ``lipschitz_rnn``, ``tanh_rnn``) exports the names
of :data:`SEQUENCE_MODEL` with these parameters, in this order, so any of them can be swapped for
another (``docs/protocol.md``). Shapes are time-major: ``U : (T, B, nu)``, ``x0 : (B, nx)`` (None
means zeros), ``Y : (T_out, B, ny)``; ``cfg.nu``, ``cfg.nx``, ``cfg.ny`` give the sizes. The
equilibrium layers (``deq``, ``mondeq``) export :data:`EQUILIBRIUM_LAYER`.

:func:`missing` lists where a module departs from a protocol; the conformance test
(``tests/test_protocol.py``) runs it on every model.

Examples
--------
>>> from r2dn_np.interface import protocol
>>> from r2dn_np import r2dn
>>> protocol.missing(r2dn, protocol.SEQUENCE_MODEL)
[]
"""

from __future__ import annotations

import importlib
import inspect

__all__ = ["SEQUENCE_MODEL", "SEQUENCE_MODELS", "EQUILIBRIUM_LAYER", "EQUILIBRIUM_LAYERS", "missing", "load"]

# name -> the leading parameters it must take, in order (None: a type, not a function)
SEQUENCE_MODEL = {
    "Config": None,
    "Direct": None,
    "Explicit": None,
    "Grads": None,
    "init": ("cfg", "seed", "backend", "dtype"),
    "direct_to_explicit": ("cfg", "direct"),
    "direct_to_explicit_vjp": ("cfg", "cache", "d_explicit"),
    "forward": ("cfg", "explicit", "x0", "U"),
    "backward": ("cfg", "explicit", "cache", "dY", "dxT"),
    "step": ("cfg", "explicit", "x", "u"),
    "value_and_grad": ("cfg", "direct", "x0", "U", "loss"),
}

SEQUENCE_MODELS = ("r2dn", "ren", "lipschitz_rnn", "tanh_rnn")

EQUILIBRIUM_LAYER = {
    "Config": None,
    "Direct": None,
    "Explicit": None,
    "Grads": None,
    "init": ("cfg", "seed", "backend", "dtype"),
    "direct_to_explicit": ("cfg", "direct"),
    "direct_to_explicit_vjp": ("cfg", "cache", "d_explicit"),
    "forward": ("cfg", "explicit", "x", "z0"),
    "backward": ("cfg", "explicit", "cache", "dout"),
    "value_and_grad": ("cfg", "direct", "x", "loss"),
    "residual": ("cfg", "explicit", "x", "z"),
}

EQUILIBRIUM_LAYERS = ("deq", "mondeq")


def load(name):
    """The module ``r2dn_np.<name>``."""
    return importlib.import_module(f"r2dn_np.{name}")


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
