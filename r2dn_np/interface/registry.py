"""The model registry: one entry per model, and the only place in the package that lists them.

Each entry holds the facts about a model that code outside its module needs: the name it is saved
under (``Config.model``, which :mod:`~r2dn_np.interface.io` writes into every file), the module
that defines it, the protocol it follows (:mod:`~r2dn_np.interface.protocol`), whether it is a
feedback model (an LTI system in feedback with a static map, which ``train.fit``, ``r2dn sysid``,
``r2dn verify`` and the sweep train and check), its kinds (``Config.kind``), the certificate tables
that certify it (``checks.certificates.TABLES``) and whether ``flax_interop`` exchanges its parameters with the
R2DN authors' Flax models. Adding a model is its module, its line here, its derivation and its
tests (``docs/contributing.md``).

Modules are imported by name, when first asked for (:func:`module`), so reading the registry
imports no model.

Examples
--------
>>> from r2dn_np.interface import registry
>>> registry.names(feedback=True)
('r2dn', 'ren')
>>> registry.module("ren").__name__
'r2dn_np.ren'
>>> registry.get("r2dn").kinds
('contracting', 'lipschitz', 'qsr')
"""

from __future__ import annotations

import importlib
from typing import NamedTuple, Optional

from ..core import _validate

__all__ = ["SEQUENCE_MODEL", "EQUILIBRIUM_LAYER", "STATIC_MAP", "Model", "MODELS", "names", "get", "module"]

# the protocols (protocol.SPECS names the conformance spec of each)
SEQUENCE_MODEL, EQUILIBRIUM_LAYER, STATIC_MAP = "sequence model", "equilibrium layer", "static map"


class Model(NamedTuple):
    """What the rest of the package knows about one model."""

    name: str  # Config.model: the name files are saved under; never rename (saved files name it)
    module: str  # the module that defines Config, init and the protocol's functions
    protocol: str  # SEQUENCE_MODEL, EQUILIBRIUM_LAYER or STATIC_MAP
    feedback: bool = False  # an LTI system in feedback with a static map: train, sysid, verify, sweep
    kinds: tuple = ()  # the values of Config.kind
    certificate: Optional[str] = None  # its tables in checks.certificates.TABLES: (certificate, kind)
    flax: bool = False  # flax_interop reads and writes the authors' parameter trees


_FEEDBACK_KINDS = ("contracting", "lipschitz", "qsr")

MODELS = {m.name: m for m in (
    Model("lbdn", "r2dn_np.lbdn", STATIC_MAP),
    Model("r2dn", "r2dn_np.r2dn", SEQUENCE_MODEL, feedback=True, kinds=_FEEDBACK_KINDS, certificate="r2dn",
          flax=True),
    Model("ren", "r2dn_np.ren", SEQUENCE_MODEL, feedback=True, kinds=_FEEDBACK_KINDS, certificate="ren",
          flax=True),
    Model("lipschitz_rnn", "r2dn_np.lipschitz_rnn", SEQUENCE_MODEL),
    Model("tanh_rnn", "r2dn_np.tanh_rnn", SEQUENCE_MODEL),
    Model("deq", "r2dn_np.deq", EQUILIBRIUM_LAYER),
    Model("mondeq", "r2dn_np.mondeq", EQUILIBRIUM_LAYER),
)}


def names(**facts):
    """The names of the models whose entries have every given fact, in registry order:
    ``names(feedback=True)``, ``names(protocol=SEQUENCE_MODEL)``, ``names(flax=True)``."""
    unknown = sorted(set(facts) - set(Model._fields))
    if unknown:
        raise TypeError(f"names() takes facts of a registry entry {Model._fields}; got {unknown[0]!r}")
    return tuple(n for n, m in MODELS.items() if all(getattr(m, k) == v for k, v in facts.items()))


def get(name, **facts):
    """The entry of model ``name``; with ``facts``, one of the models that have them.

    Raises
    ------
    ValueError
        No such model (among those with ``facts``); the message names the ones there are.
    """
    return MODELS[_validate.one_of("model", name, names(**facts))]


def module(name, **facts):
    """The module of model ``name`` (imported by name); ``facts`` as in :func:`get`."""
    return importlib.import_module(get(name, **facts).module)
