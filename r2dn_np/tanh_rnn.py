"""The plain tanh RNN, the unconstrained baseline of the Lipschitz RNN experiments:

    h_{t+1} = tanh(W h_t + U x_t + b),        y = D h + by.

Same names and stages as every model module (``docs/overview.md``); the map from free to explicit
parameters is the identity. Initialisation as the ``simpleRNN`` of the Lipschitz RNN authors' code:
``W ~ N(0, (init_std / N)^2)``, ``U`` and ``D`` Xavier-normal, biases zero.
Derivations: ``docs/derivations/lipschitz_rnn.md`` section 6.

Examples
--------
>>> import numpy as np
>>> from r2dn_np import tanh_rnn
>>> cfg = tanh_rnn.Config(n_in=1, n_units=8, n_out=3)
>>> explicit, _ = tanh_rnn.direct_to_explicit(cfg, tanh_rnn.init(cfg, seed=0))
>>> y, cache = tanh_rnn.forward(cfg, explicit, None, np.ones((20, 4, 1)))
>>> y.shape
(4, 3)
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple

import numpy as np
from array_api_compat import array_namespace, device

from . import _validate, losses
from ._config import JSONConfig
from .backend import asarray, namespace
from .lipschitz_rnn import (
    DECODERS,
    Cache,
    _check_d_outputs,
    _check_h0,
    _check_labels,
    _check_sequence,
    _decode,
    _decode_backward,
    _input_projection,
)

__all__ = [
    "Config",
    "Direct",
    "Explicit",
    "Cache",
    "init",
    "direct_to_explicit",
    "direct_to_explicit_vjp",
    "forward",
    "backward",
    "value_and_grad",
    "predict",
]


@dataclasses.dataclass(frozen=True)
class Config(JSONConfig):
    """Sizes and options of a tanh RNN ``R^n_in -> R^n_out`` with ``n_units`` hidden units."""

    n_in: int
    n_units: int
    n_out: int
    decoder: str = "last"
    init_std: float = 6.0

    model: ClassVar[str] = "tanh_rnn"

    def __post_init__(self):
        _validate.positive_int("n_in", self.n_in)
        _validate.positive_int("n_units", self.n_units)
        _validate.positive_int("n_out", self.n_out)
        _validate.one_of("decoder", self.decoder, DECODERS)
        object.__setattr__(self, "init_std", _validate.positive_float("init_std", self.init_std))


class Direct(NamedTuple):
    W: object  # (N, N)
    U: object  # (N, n_in)
    b: object  # (N,)
    D: object  # (n_out, N)
    by: object  # (n_out,)


Explicit = Direct  # no constraint: the free parameters are the weights


def init(cfg, seed=0, backend=None, dtype="float64"):
    """Seeded initialisation; draws in the order W, U, D."""
    rng = np.random.default_rng(_validate.seed("seed", seed))
    xp = namespace(backend)
    N = cfg.n_units

    def put(a):
        return asarray(np.asarray(a, dtype=np.float64), xp, dtype)

    W = rng.normal(0.0, cfg.init_std / N, (N, N))
    U = rng.normal(0.0, math.sqrt(2.0 / (cfg.n_in + N)), (N, cfg.n_in))
    D = rng.normal(0.0, math.sqrt(2.0 / (N + cfg.n_out)), (cfg.n_out, N))
    return Direct(put(W), put(U), put(np.zeros(N)), put(D), put(np.zeros(cfg.n_out)))


def direct_to_explicit(cfg, direct):
    """The identity map (validates ``direct``). Returns ``(explicit, cache)``, the cache being
    ``direct`` itself (the VJP's template for ``None`` cotangents)."""
    if not isinstance(direct, Direct):
        raise TypeError(f"direct must be a tanh_rnn.Direct; got {type(direct).__name__}")
    N = cfg.n_units
    shapes = dict(W=(N, N), U=(N, cfg.n_in), b=(N,), D=(cfg.n_out, N), by=(cfg.n_out,))
    like = direct.W if hasattr(direct.W, "dtype") else None
    for name, shape in shapes.items():
        _validate.array(f"direct.{name}", getattr(direct, name), list(shape), like=like)
    return direct, direct


def direct_to_explicit_vjp(cfg, cache, d_explicit):
    """The identity; ``None`` entries of ``d_explicit`` count as zero."""
    return Direct(*(
        array_namespace(ref).zeros_like(ref) if d is None else d for d, ref in zip(d_explicit, cache)
    ))


def forward(cfg, explicit, h0, X):
    """Run the recurrence and the decoder.

    Parameters
    ----------
    h0 : (B, N) array, or None for zeros
    X : (T, B, n_in) array, time-major

    Returns
    -------
    outputs : (B, n_out) for ``decoder="last"``, (T, B, n_out) for ``"sequence"``
    cache : lipschitz_rnn.Cache (``S`` is ``H[1:]``, the tanh outputs being the states)
    """
    _check_sequence("X", X, cfg.n_in, explicit.W)
    h0 = _check_h0(cfg, h0, X)
    H = _rollout(cfg, explicit, h0, X)
    return _decode(cfg, explicit, H), Cache(X, H, None)


def _rollout(cfg, explicit, h0, X):
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = cfg.n_units
    UX = _input_projection(explicit, X)
    H = xp.empty((T + 1, B, N), dtype=X.dtype, device=device(X))
    H[0, ...] = h0
    h = h0
    Wt = explicit.W.mT
    for t in range(T):
        h = xp.tanh(h @ Wt + UX[t, ...])
        H[t + 1, ...] = h
    return H


def backward(cfg, explicit, cache, d_outputs):
    """Cotangents of the initial state, the inputs and the weights.

    Returns
    -------
    dh0 : (B, N) array
    dX : (T, B, n_in) array
    d_explicit : Explicit
    """
    _check_d_outputs(cfg, cache, d_outputs)
    return _backward(cfg, explicit, cache, d_outputs)


def _backward(cfg, explicit, cache, dY):
    X, H = cache.X, cache.H
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = cfg.n_units
    dD, dby, a, dH_out = _decode_backward(cfg, explicit, H, dY)
    dZ = xp.empty((T, B, N), dtype=X.dtype, device=device(X))
    W = explicit.W
    for t in range(T - 1, -1, -1):
        h = H[t + 1, ...]
        dz = a * (1.0 - h * h)
        dZ[t, ...] = dz
        a = dz @ W
        if dH_out is not None and t > 0:
            a = a + dH_out[t - 1, ...]
    dZ_rows = xp.reshape(dZ, (T * B, N))
    dW = dZ_rows.mT @ xp.reshape(H[:T, ...], (T * B, N))
    dU = dZ_rows.mT @ xp.reshape(X, (T * B, n_in))
    db = xp.sum(dZ_rows, axis=0)
    dX = xp.reshape(dZ_rows @ explicit.U, (T, B, n_in))
    return a, dX, Explicit(dW, dU, db, dD, dby)


def predict(cfg, direct, X, h0=None):
    """Outputs (logits for classification) of the model."""
    explicit, _ = direct_to_explicit(cfg, direct)
    return forward(cfg, explicit, h0, X)[0]


def value_and_grad(cfg, direct, X, labels, h0=None):
    """Mean softmax cross-entropy of ``D h_T + by`` against ``labels`` (B,) and its gradient.
    Needs ``decoder="last"``. Returns ``(loss, d_direct)``."""
    if cfg.decoder != "last":
        raise ValueError(f"value_and_grad classifies from the final state: cfg.decoder must be 'last'; got {cfg.decoder!r}")
    explicit, _ = direct_to_explicit(cfg, direct)
    _check_sequence("X", X, cfg.n_in, explicit.W)
    _check_labels(labels, int(X.shape[1]))
    h0 = _check_h0(cfg, h0, X)
    H = _rollout(cfg, explicit, h0, X)
    loss, d_logits = losses.softmax_cross_entropy(_decode(cfg, explicit, H), labels)
    _, _, d_explicit = _backward(cfg, explicit, Cache(X, H, None), d_logits)
    return loss, d_explicit
