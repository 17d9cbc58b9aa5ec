"""Sandwich layers and the 1-Lipschitz deep network (LBDN): Wang & Manchester,
"Direct Parameterization of Lipschitz-Bounded Deep Networks".

Three stages, each a pure function over plain containers:

1. ``direct_to_explicit(cfg, direct)``: free parameters (``XY, a, d, b`` per layer)
   through the Cayley transform to weights, with ``direct_to_explicit_vjp``.
2. ``forward(cfg, explicit, h)``: the network on a batch of rows.
3. ``backward(cfg, explicit, cache, dout)``: input and weight cotangents.

The explicit network is a plain MLP. A Sandwich layer maps
``h -> sqrt2 A_T Psi sigma(sqrt2 Psi^-1 B h + b)``; its output matrix ``sqrt2 A_T Psi`` and
the next layer's input matrix ``sqrt2 Psi^-1 B`` act back to back with nothing between
them, so ``direct_to_explicit`` multiplies them once and the forward pass costs one
matrix product per activation layer instead of two. ``Explicit.W[k]`` is the weight
into activation layer ``k`` (``W[0]`` acts on the input, ``W[-1]`` gives the output).
Derivations: ``docs/derivations/lbdn.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, NamedTuple, Optional

import numpy as np
from array_api_compat import array_namespace, device

from .core import _validate, activations, kernels, linalg
from .core._config import JSONConfig
from .core.backend import asarray, namespace
from .core._random import lecun_normal
from .core.static_map import Phi

mm = kernels.matmul  # a @ b, and cuBLAS directly while a CUDA graph is recorded (kernels.py)

__all__ = [
    "Config",
    "Layer",
    "Direct",
    "Explicit",
    "Cache",
    "init",
    "direct_to_explicit",
    "direct_to_explicit_vjp",
    "forward",
    "backward",
    "as_phi",
]

_SQRT2 = math.sqrt(2.0)
_D_CLIP = 20.0


@dataclasses.dataclass(frozen=True)
class Config(JSONConfig):
    """Sizes and options of an LBDN ``R^n_in -> R^n_out`` with Lipschitz bound ``gamma``.

    ``output_layer="linear"`` ends with the paper's linear Cayley layer
    ``y = sqrt(gamma) B h + b``; ``"sandwich"`` makes every layer a full Sandwich layer and
    ends with ``y = sqrt(gamma) h``, as the authors' JAX code builds it. With
    ``hidden=()`` and ``"sandwich"`` the network is a single Sandwich layer.
    ``learn_gamma=True`` adds a trainable ``log_gamma`` initialised at ``log(gamma)``.
    """

    n_in: int
    n_out: int
    hidden: tuple = ()
    activation: str = "relu"
    output_layer: str = "linear"
    gamma: float = 1.0
    learn_gamma: bool = False
    eps_n: float = 2.0**-23

    model: ClassVar[str] = "lbdn"

    def __post_init__(self):
        _validate.dimension("n_in", self.n_in)
        _validate.dimension("n_out", self.n_out)
        object.__setattr__(self, "hidden", _validate.dimensions("hidden", self.hidden))
        _validate.one_of("activation", self.activation, activations.NAMES)
        _validate.one_of("output_layer", self.output_layer, ("linear", "sandwich"))
        object.__setattr__(self, "gamma", _validate.positive_float("gamma", self.gamma))
        if not isinstance(self.learn_gamma, bool):
            raise TypeError(f"learn_gamma must be a bool; got {self.learn_gamma!r}")
        object.__setattr__(self, "eps_n", _validate.positive_float("eps_n", self.eps_n))

    @property
    def layer_sizes(self):
        """``(n_in, n_out)`` of every Cayley layer, the output layer last."""
        ins = (self.n_in,) + self.hidden
        outs = self.hidden + (self.n_out,)
        return tuple(zip(ins, outs))


class Layer(NamedTuple):
    """Free parameters of one Cayley layer; ``d`` is None for the linear output layer."""

    XY: object  # (n_in + n_out, n_out)
    a: object  # ()
    d: Optional[object]  # (n_out,)
    b: object  # (n_out,)


class Direct(NamedTuple):
    layers: tuple
    log_gamma: Optional[object] = None  # () when cfg.learn_gamma, else None


class Explicit(NamedTuple):
    """MLP weights: ``z_0 = h W[0]^T + b[0]``, ``z_k = sigma(z_{k-1}) W[k]^T + b[k]``."""

    W: tuple
    b: tuple  # b[-1] is None for output_layer="sandwich" (no output bias)


class Cache(NamedTuple):
    """What the backward pass needs: the input and each activation's output."""

    h: object
    S: tuple


class MapCache(NamedTuple):
    direct: Direct
    W_bar: tuple
    A_T: tuple
    B_T: tuple
    psi: tuple
    W_in: tuple
    W_out: tuple
    chain: tuple  # explicit weights before the sqrt(gamma) scalings
    sqrt_gamma: object


def _is_sandwich(cfg, k):
    return cfg.output_layer == "sandwich" or k < len(cfg.hidden)


def init(cfg, seed=0, backend=None, dtype="float64"):
    """Seeded initialisation, as the authors: lecun-normal ``XY``, ``a = ||XY||``, ``d = b = 0``."""
    _validate.seed("seed", seed)
    return _init(cfg, np.random.default_rng(seed), namespace(backend), dtype)


def _init(cfg, rng, xp, dtype):
    """Initialise from an existing generator (models that embed an LBDN share theirs)."""
    def put(a):
        return asarray(np.asarray(a, dtype=np.float64), xp, dtype)

    layers = []
    for k, (n_in, n_out) in enumerate(cfg.layer_sizes):
        XY = lecun_normal(rng, (n_in + n_out, n_out))
        a = np.sqrt(np.sum(XY * XY) + cfg.eps_n)
        d = np.zeros(n_out) if _is_sandwich(cfg, k) else None
        layers.append(Layer(put(XY), put(a), None if d is None else put(d), put(np.zeros(n_out))))
    log_gamma = put(np.log(cfg.gamma)) if cfg.learn_gamma else None
    return Direct(tuple(layers), log_gamma)


# --- stage 1: free parameters -> MLP weights -----------------------------------------------------


@functools.lru_cache(maxsize=32)
def _templates(cfg):
    """``(direct, explicit)`` of this config on the host: the shapes a user's containers must have."""
    direct = _init(cfg, np.random.default_rng(0), namespace("numpy"), "float64")
    return direct, _direct_to_explicit(cfg, direct)[0]


def _check_direct(cfg, direct, name="direct"):
    """Refuse a ``Direct`` that does not fit ``cfg`` (type, fields, shapes, dtype, finiteness)."""
    _validate.container(name, direct, _templates(cfg)[0])


def _check_explicit(cfg, explicit, name="explicit"):
    """Refuse an ``Explicit`` that does not fit ``cfg`` (type, fields, shapes, dtype, finiteness)."""
    _validate.container(name, explicit, _templates(cfg)[1])


def direct_to_explicit(cfg, direct):
    """Map free parameters to MLP weights. Returns ``(explicit, cache)``.

    Notes
    -----
    ``docs/derivations/lbdn.md``, equations (L1)-(L5).
    """
    _check_direct(cfg, direct)
    return _direct_to_explicit(cfg, direct)


def _direct_to_explicit(cfg, direct):
    """:func:`direct_to_explicit` without the checks (for models that embed an LBDN)."""
    xp = array_namespace(direct.layers[0].XY)
    dtype = direct.layers[0].XY.dtype
    if cfg.learn_gamma:
        sqrt_gamma = xp.exp(0.5 * direct.log_gamma)
    else:
        # filled on the device, not copied from the host: a CUDA graph (graph.py) may record this
        sqrt_gamma = xp.full((), math.sqrt(cfg.gamma), dtype=dtype, device=device(direct.layers[0].XY))

    W_bar, A_Ts, B_Ts, psis, W_ins, W_outs = [], [], [], [], [], []
    for k, ((n_in, n_out), layer) in enumerate(zip(cfg.layer_sizes, direct.layers)):
        Wb = linalg.normalize(layer.XY, layer.a, cfg.eps_n)
        A_T, B_T = linalg.cayley(Wb, n_out)
        W_bar.append(Wb)
        A_Ts.append(A_T)
        B_Ts.append(B_T)
        if _is_sandwich(cfg, k):
            psi = xp.exp(xp.clip(layer.d, -_D_CLIP, _D_CLIP))
            psis.append(psi)
            W_ins.append(_SQRT2 * (B_T / psi).mT)  # sqrt2 Psi^-1 B
            W_outs.append(_SQRT2 * (A_T * psi))  # sqrt2 A_T Psi
        else:
            psis.append(None)
            W_ins.append(B_T.mT)  # linear output layer: B
            W_outs.append(None)

    # W[k] = W_in[k] W_out[k-1]; for "sandwich" one more matrix, the last W_out, closes it
    chain = [W_ins[0]] + [W_ins[k] @ W_outs[k - 1] for k in range(1, len(W_ins))]
    if cfg.output_layer == "sandwich":
        chain.append(W_outs[-1])
    W = list(chain)
    W[0] = sqrt_gamma * W[0]
    W[-1] = sqrt_gamma * W[-1]
    b = [layer.b for layer in direct.layers]
    if cfg.output_layer == "sandwich":
        b.append(None)
    cache = MapCache(
        direct, tuple(W_bar), tuple(A_Ts), tuple(B_Ts), tuple(psis), tuple(W_ins),
        tuple(W_outs), tuple(chain), sqrt_gamma,
    )
    return Explicit(tuple(W), tuple(b)), cache


def direct_to_explicit_vjp(cfg, cache, d_explicit):
    """Cotangent of the free parameters given that of the explicit weights.

    ``None`` entries in ``d_explicit`` count as zero. Returns a ``Direct``.
    """
    direct = cache.direct
    xp = array_namespace(direct.layers[0].XY)
    n_w = len(cache.chain)
    dW = [_zero_if_none(d, w) for d, w in zip(d_explicit.W, cache.chain)]

    # undo the sqrt(gamma) scalings of the first and last matrix
    d_sqrt_gamma = xp.sum(dW[0] * cache.chain[0])
    d_chain = list(dW)
    d_chain[0] = cache.sqrt_gamma * dW[0]
    if n_w > 1:
        d_sqrt_gamma = d_sqrt_gamma + xp.sum(dW[-1] * cache.chain[-1])
        d_chain[-1] = cache.sqrt_gamma * dW[-1]
    else:
        # one matrix scaled twice: W = gamma * chain
        d_sqrt_gamma = 2.0 * cache.sqrt_gamma * d_sqrt_gamma
        d_chain[0] = cache.sqrt_gamma * d_chain[0]

    n_layers = len(cache.W_in)
    d_in = [None] * n_layers
    d_out = [None] * n_layers
    if cfg.output_layer == "sandwich":
        d_out[-1] = d_chain[-1]
    d_in[0] = d_chain[0]
    for k in range(1, n_layers):
        d_in[k] = d_chain[k] @ cache.W_out[k - 1].mT
        dWo = cache.W_in[k].mT @ d_chain[k]
        d_out[k - 1] = dWo if d_out[k - 1] is None else d_out[k - 1] + dWo

    layers = []
    for k, ((n_in, n_out), layer) in enumerate(zip(cfg.layer_sizes, direct.layers)):
        psi = cache.psi[k]
        if psi is not None:
            dB_T = _SQRT2 * (d_in[k].mT / psi)
            dA_T = _SQRT2 * (d_out[k] * psi)
            dpsi = -xp.sum(d_in[k] * cache.W_in[k], axis=1) / psi + _SQRT2 * xp.sum(
                d_out[k] * cache.A_T[k], axis=0
            )
            inside = xp.astype((layer.d > -_D_CLIP) & (layer.d < _D_CLIP), psi.dtype)
            dd = dpsi * psi * inside
        else:
            dB_T, dA_T, dd = d_in[k].mT, None, None
        dWb = linalg.cayley_vjp(cache.W_bar[k], n_out, cache.A_T[k], dA_T, dB_T)
        dXY, da = linalg.normalize_vjp(layer.XY, layer.a, cfg.eps_n, dWb)
        db = _zero_if_none(d_explicit.b[k], layer.b)
        layers.append(Layer(dXY, da, dd, db))

    d_log_gamma = 0.5 * cache.sqrt_gamma * d_sqrt_gamma if cfg.learn_gamma else None
    return Direct(tuple(layers), d_log_gamma)


def _zero_if_none(d, like):
    if d is not None:
        return d
    return array_namespace(like).zeros_like(like)


# --- stage 2 and 3: the MLP and its backward ---------------------------------------------------


def forward(cfg, explicit, h):
    """Evaluate the network on a batch of rows.

    Parameters
    ----------
    cfg : Config
    explicit : Explicit
    h : (N, n_in) array

    Returns
    -------
    out : (N, n_out) array
    cache : Cache
    """
    _check_explicit(cfg, explicit)
    _validate.array("h", h, [("N", None), ("n_in", cfg.n_in)], like=explicit.W[0])
    return _forward(cfg.activation, explicit, h)


def backward(cfg, explicit, cache, dout):
    """Cotangents of the input and of the explicit weights.

    Parameters
    ----------
    dout : (N, n_out) array, the cotangent of ``out``.

    Returns
    -------
    dh : (N, n_in) array
    d_explicit : Explicit
    """
    _check_explicit(cfg, explicit)
    _validate.array(
        "dout", dout, [("N", int(cache.h.shape[0])), ("n_out", cfg.n_out)], like=explicit.W[0]
    )
    dh, dZ = _backward_input(cfg.activation, explicit, cache, dout)
    return dh, _weight_grads(explicit, cache, dZ)


def _forward(activation, explicit, h):
    xp = array_namespace(h)
    W, b = explicit.W, explicit.b
    z = mm(h, W[0].mT)
    z += b[0]
    S = []
    for k in range(1, len(W)):
        s = activations.apply(activation, z, xp)
        S.append(s)
        z = mm(s, W[k].mT)
        if b[k] is not None:
            z += b[k]
    return z, Cache(h, tuple(S))


def _backward_input(activation, explicit, cache, dout):
    """Propagate ``dout`` to the input. Also returns each layer's pre-activation cotangent
    ``dZ[k]`` (aligned with ``W[k]``), from which ``_weight_grads`` forms the weight gradients."""
    xp = array_namespace(dout)
    W = explicit.W
    dZ = [None] * len(W)
    dZ[-1] = dout
    for k in range(len(W) - 1, 0, -1):
        dz = mm(dZ[k], W[k])
        dz *= activations.slope_from_output(activation, cache.S[k - 1], xp)
        dZ[k - 1] = dz
    return mm(dZ[0], W[0]), tuple(dZ)


def _weight_grads(explicit, cache, dZ):
    """Weight gradients as one matrix product per layer over all rows of the batch."""
    xp = array_namespace(cache.h)
    inputs = (cache.h,) + tuple(cache.S)
    dW = tuple(mm(dz.mT, x) for dz, x in zip(dZ, inputs))
    db = tuple(
        None if b is None else xp.sum(dz, axis=0) for dz, b in zip(dZ, explicit.b)
    )
    return Explicit(dW, db)


def _forward_into(m, activation, Wt, b, h, out):
    """:func:`_forward` writing the cache into ``out`` (a ``Cache`` of buffers, e.g. one time-step
    of the time loop's stacks) with in-place kernels (``m = kernels.native(h)``); ``Wt`` are the
    transposed weights."""
    out.h[...] = h
    s = h
    for k in range(len(Wt) - 1):
        s = kernels.bias_act(m, activation, mm(s, Wt[k]), b[k], out.S[k])
    z = mm(s, Wt[-1])
    if b[-1] is not None:
        z += b[-1]
    return z


def _backward_into(m, activation, W, cache, dout, out):
    """:func:`_backward_input` writing ``dZ`` into the buffers ``out``; returns ``dh``."""
    out[-1][...] = dout
    for k in range(len(W) - 1, 0, -1):
        kernels.times_slope(m, activation, mm(out[k], W[k]), cache.S[k - 1], out[k - 1])
    return mm(out[0], W[0])


def as_phi(cfg):
    """The network as the static map ``phi`` of a feedback model (``r2dn_np.core.static_map.Phi``).

    Its ``forward`` and ``backward`` also take ``out=``: the caches of one time-step as buffers to
    write into, which spares the time loop a copy of every activation per step.
    """
    act = cfg.activation
    memo = {}  # the time loop calls phi with the same weights at every step: look up once

    def prepared(explicit):
        """``(native module, transposed weights)`` of these weights."""
        hit = memo.get("W")
        if hit is None or hit[0] is not explicit.W:
            W = explicit.W
            hit = memo["W"] = (W, kernels.native(W[0]), tuple(w.mT for w in W))
        return hit[1:]

    def forward(explicit, v, out=None):
        if out is None:
            return _forward(act, explicit, v)
        m, Wt = prepared(explicit)
        return _forward_into(m, act, Wt, explicit.b, v, out), out

    def backward(explicit, cache, dw, out=None):
        if out is None:
            return _backward_input(act, explicit, cache, dw)
        return _backward_into(prepared(explicit)[0], act, explicit.W, cache, dw, out), out

    return Phi(forward=forward, backward=backward, weight_grads=_weight_grads, compiled=("lbdn", act))
