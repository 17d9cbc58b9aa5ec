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
>>> hT, Y, cache = tanh_rnn.forward(cfg, explicit, None, np.ones((20, 4, 1)))
>>> hT.shape, Y.shape
((4, 8), (1, 4, 3))
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from .core import _validate, allocator, kernels
from .core._config import JSONConfig
from .loop._rnn import (
    Cache,
    check_cotangent_container,
    check_cotangents,
    check_sequence,
    check_sizes,
    check_step,
    decode,
    decode_backward,
    input_projection,
)
from .core.backend import asarray, namespace

__all__ = [
    "Config",
    "Direct",
    "Explicit",
    "Grads",
    "init",
    "direct_to_explicit",
    "direct_to_explicit_vjp",
    "forward",
    "backward",
    "step",
    "value_and_grad",
]

mm = kernels.matmul  # a @ b, and cuBLAS directly while a CUDA graph is recorded (core/kernels.py)


@dataclasses.dataclass(frozen=True)
class Config(JSONConfig):
    """Sizes and options of a tanh RNN ``R^n_in -> R^n_out`` with ``n_units`` hidden units;
    ``decoder`` as in ``lipschitz_rnn.Config``."""

    n_in: int
    n_units: int
    n_out: int
    decoder: str = "last"
    init_std: float = 6.0

    model: ClassVar[str] = "tanh_rnn"

    def __post_init__(self):
        check_sizes(self)

    # the protocol's sizes, so generic code can size any model
    nu = property(lambda self: self.n_in, doc="Input size (``n_in``).")
    nx = property(lambda self: self.n_units, doc="State size (``n_units``).")
    ny = property(lambda self: self.n_out, doc="Output size (``n_out``).")


class Direct(NamedTuple):
    W: object  # (N, N)
    U: object  # (N, n_in)
    b: object  # (N,)
    D: object  # (n_out, N)
    by: object  # (n_out,)


Explicit = Direct  # no constraint: the free parameters are the weights


class Grads(NamedTuple):
    direct: Direct
    x0: object
    U: object


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


@functools.lru_cache(maxsize=32)
def _template(cfg):
    """This config's parameters on the host: the shapes a user's container must have."""
    return init(cfg, 0, backend="numpy")


def direct_to_explicit(cfg, direct):
    """The identity map; validates ``direct`` (every field of its exact shape, one floating
    dtype, finite). Returns ``(explicit, cache)``, the cache being ``direct`` itself (the VJP's
    template for ``None`` cotangents)."""
    _validate.container("direct", direct, _template(cfg))
    return direct, direct


def direct_to_explicit_vjp(cfg, cache, d_explicit):
    """The identity; ``None`` entries of ``d_explicit`` count as zero."""
    check_cotangent_container("d_explicit", d_explicit, _template(cfg), cache.W)
    return Direct(*(
        array_namespace(ref).zeros_like(ref) if d is None else d for d, ref in zip(d_explicit, cache)
    ))


def forward(cfg, explicit, x0, U):
    """Run the recurrence and the decoder.

    Parameters
    ----------
    x0 : (B, n_units) array, the initial hidden state h_0, or None for zeros
    U : (T, B, n_in) array, time-major inputs

    Returns
    -------
    xT : (B, n_units) array, h_T
    Y : (1, B, n_out) for ``decoder="last"``, (T, B, n_out) for ``"sequence"``
    cache : what ``backward`` needs (``S`` is None: the tanh outputs are the states ``H[1:]``)

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md`` section 6.
    """
    _validate.container("explicit", explicit, _template(cfg))
    return _forward(cfg, explicit, x0, U)


def _forward(cfg, explicit, x0, U):
    x0 = check_sequence(cfg, x0, U, explicit.W)
    with kernels.single_blas(U):
        H = _rollout(cfg, explicit, x0, U)
        return H[-1, ...], decode(cfg, explicit, H), Cache(U, H, None)


def _rollout(cfg, explicit, h0, X):
    """The recurrence, in the time-loop conventions of ``loop/feedback.py``: the input
    projection hoisted out of the loop, products by ``mm``, each step written in place into a
    buffer from the allocator. ``_reference_step`` is the same step in plain array code."""
    xp = array_namespace(X)
    T, B, _ = (int(s) for s in X.shape)
    m = kernels.native(X)
    UX = input_projection(explicit, X)
    H = allocator.empty(xp, (T + 1, B, cfg.n_units), X.dtype)
    H[0, ...] = h0
    Wt = explicit.W.mT
    for t in range(T):
        kernels.bias_act(m, "tanh", mm(H[t, ...], Wt), UX[t, ...], out=H[t + 1, ...])
    return H


# The reference: one step of the recurrence and its VJP in the plainest array code, one chain-rule
# fact per line, on trusted inputs. The fast loops above and below are tested against a Python
# loop over these (tests/test_reference_steps.py); read these first.


def _reference_step(cfg, explicit, h, x):
    """``h_next = tanh(W h + U x + b)``; rows are batch entries."""
    z = h @ explicit.W.mT + x @ explicit.U.mT + explicit.b
    return array_namespace(h).tanh(z)


def _reference_step_vjp(cfg, explicit, h, x, dh_next):
    """Back through :func:`_reference_step`: ``(d_explicit, dh, dx)`` given ``dh_next``
    (``d_explicit``'s decoder fields None: the step does not use them)."""
    xp = array_namespace(h)
    h_next = _reference_step(cfg, explicit, h, x)
    dz = dh_next * (1.0 - h_next * h_next)  # h_next = tanh(z), tanh' = 1 - tanh^2
    dW = dz.mT @ h  # z = h W^T + ...
    dU = dz.mT @ x  # z = ... + x U^T + ...
    db = xp.sum(dz, axis=0)  # z = ... + b, on every row
    dh = dz @ explicit.W  # z = h W^T + ...
    dx = dz @ explicit.U  # z = ... + x U^T + ...
    return Explicit(dW, dU, db, None, None), dh, dx


def step(cfg, explicit, x, u):
    """One time-step: ``x : (B, n_units)``, ``u : (B, n_in)`` -> ``(x_next, y)``, ``y = D x_next + by``."""
    _validate.container("explicit", explicit, _template(cfg))
    check_step(cfg, x, u, explicit.W)
    x_next = array_namespace(x).tanh(x @ explicit.W.mT + u @ explicit.U.mT + explicit.b)
    return x_next, x_next @ explicit.D.mT + explicit.by


def backward(cfg, explicit, cache, dY, dxT=None):
    """Back-propagation through time. ``dY`` of exactly ``Y``'s shape, ``dxT : (B, n_units)`` or None.

    Returns
    -------
    d_explicit : Explicit
    dx0 : (B, n_units) array
    dU : (T, B, n_in) array
    """
    _validate.container("explicit", explicit, _template(cfg))
    check_cotangents(cfg, cache, dY, dxT)
    return _backward(cfg, explicit, cache, dY, dxT)


def _backward(cfg, explicit, cache, dY, dxT):
    with kernels.single_blas(dY):
        return _bptt(cfg, explicit, cache, dY, dxT)


def _bptt(cfg, explicit, cache, dY, dxT):
    """The reverse loop propagates only the state adjoint; every weight gradient is one product
    over all T*B rows after it. ``_reference_step_vjp`` is one step of it in plain array code."""
    X, H = cache.X, cache.H
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = cfg.n_units
    m = kernels.native(X)
    dD, dby, a, dH_out = decode_backward(cfg, explicit, H, dY, dxT)
    dZ = allocator.empty(xp, (T, B, N), X.dtype)
    W = explicit.W
    for t in range(T - 1, -1, -1):
        kernels.times_slope(m, "tanh", a, H[t + 1, ...], out=dZ[t, ...])
        a = mm(dZ[t, ...], W)
        if dH_out is not None and t > 0:
            a += dH_out[t - 1, ...]
    dZ_rows = xp.reshape(dZ, (T * B, N))
    dW = mm(dZ_rows.mT, xp.reshape(H[:T, ...], (T * B, N)))
    dU = mm(dZ_rows.mT, xp.reshape(X, (T * B, n_in)))
    db = xp.sum(dZ_rows, axis=0)
    dX = xp.reshape(mm(dZ_rows, explicit.U), (T, B, n_in))
    return Explicit(dW, dU, db, dD, dby), a, dX


def value_and_grad(cfg, direct, x0, U, loss):
    """Roll out and backpropagate through time.

    ``loss`` is a callable ``Y -> (value, dY)`` returning a finite scalar and a finite ``dY`` of
    exactly ``Y``'s shape and dtype. Returns ``(value, Grads(direct, x0, U))``.
    """
    if not callable(loss):
        raise TypeError(f"loss must be a callable Y -> (value, dY); got {type(loss).__name__}")
    explicit, _ = direct_to_explicit(cfg, direct)
    _, Y, cache = _forward(cfg, explicit, x0, U)
    value, dY = _validate.loss_output(loss(Y), Y)
    d_explicit, dx0, dU = _backward(cfg, explicit, cache, dY, None)
    return value, Grads(d_explicit, dx0, dU)
