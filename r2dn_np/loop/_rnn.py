"""What the Lipschitz RNN and the tanh RNN share: option checks, the cache, the input checks, the
hoisted input projection and the decoder with its VJP. Private: the models are the public face.

The RNNs' loops follow the time-loop conventions of ``feedback.py``: products by ``mm`` (which
goes to cuBLAS directly while a CUDA graph is recorded), buffers from ``core/allocator``, each
step written in place, and whole-sequence products (input projection, decoder, weight gradients)
outside the loop, here."""

from __future__ import annotations

from typing import NamedTuple, Optional

from array_api_compat import array_namespace, device

from ..core import _validate, kernels

DECODERS = ("last", "sequence")

mm = kernels.matmul  # a @ b, and cuBLAS directly while a CUDA graph is recorded (core/kernels.py)


def check_sizes(cfg):
    """``n_in, n_units, n_out`` integers >= 1, ``decoder`` known, ``init_std`` positive."""
    for name in ("n_in", "n_units", "n_out"):
        _validate.dimension(name, getattr(cfg, name))
    _validate.one_of("decoder", cfg.decoder, DECODERS)
    object.__setattr__(cfg, "init_std", _validate.positive_float("init_std", cfg.init_std))


class Cache(NamedTuple):
    """What BPTT needs: the inputs, the states ``h_0..h_T`` and the tanh outputs ``s_0..s_{T-1}``
    ((T, s, B, N) per stage for the ODE form, with the stage states ``Hs``), and the gate values
    ``Q`` of a gated unit. (The tanh RNN's ``S`` is None: its tanh outputs are ``H[1:]``.)"""

    X: object  # (T, B, n_in), the input sequence U of forward
    H: object  # (T + 1, B, N)
    S: object  # (T, B, N), or (T, s, B, N) for "midpoint"/"rk4"
    Q: Optional[object] = None  # (T, B, N), gated only
    Hs: Optional[object] = None  # (T, s, B, N) stage states, "midpoint"/"rk4" only


def check_sequence(cfg, x0, U, like):
    """``U : (T, B, n_in)`` with T, B >= 1 and ``x0 : (B, n_units)`` or None; returns ``x0``
    (zeros for None)."""
    _validate.array("U", U, [("T", None), ("B", None), ("n_in", cfg.n_in)], like=like)
    T, B = int(U.shape[0]), int(U.shape[1])
    if T < 1 or B < 1:
        raise ValueError(f"U must have T >= 1 time-steps and B >= 1 sequences; got shape {tuple(U.shape)}")
    if x0 is None:
        return array_namespace(U).zeros((B, cfg.n_units), dtype=U.dtype, device=device(U))
    _validate.array("x0", x0, [("B", B), ("n_units", cfg.n_units)], like=like)
    return x0


def check_step(cfg, x, u, like):
    """``x : (B, n_units)``, ``u : (B, n_in)``."""
    _validate.array("x", x, [("B", None), ("n_units", cfg.n_units)], like=like)
    _validate.array("u", u, [("B", int(x.shape[0])), ("n_in", cfg.n_in)], like=like)


def check_cotangents(cfg, cache, dY, dxT):
    """``dY`` of exactly ``Y``'s shape, ``dxT : (B, n_units)`` or None."""
    T, B = int(cache.X.shape[0]), int(cache.X.shape[1])
    T_out = 1 if cfg.decoder == "last" else T
    _validate.array("dY", dY, [("T_out", T_out), ("B", B), ("n_out", cfg.n_out)], like=cache.X)
    if dxT is not None:
        _validate.array("dxT", dxT, [("B", B), ("n_units", cfg.n_units)], like=cache.X)


def input_projection(explicit, X):
    """``U x_t + b`` for all T*B rows at once, outside the time loop: ``(T, B, N)``."""
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    return xp.reshape(mm(xp.reshape(X, (T * B, n_in)), explicit.U.mT) + explicit.b, (T, B, -1))


def decode(cfg, explicit, H):
    """``Y``: ``D h_t + by`` for t = 1..T (``"sequence"``) or for t = T only (``"last"``, (1, B, n_out))."""
    xp = array_namespace(H)
    T = int(H.shape[0]) - 1
    if cfg.decoder == "last":
        return (mm(H[T, ...], explicit.D.mT) + explicit.by)[None, ...]
    B, N = int(H.shape[1]), int(H.shape[2])
    Y = mm(xp.reshape(H[1:, ...], (T * B, N)), explicit.D.mT) + explicit.by
    return xp.reshape(Y, (T, B, cfg.n_out))


def decode_backward(cfg, explicit, H, dY, dxT):
    """Decoder cotangents as single products over all rows: ``(dD, dby, a, dH_out)`` with ``a``
    the adjoint of ``h_T`` (``dxT`` included) and ``dH_out[t]`` what the outputs send to
    ``h_{t+1}`` (None for ``decoder="last"``)."""
    xp = array_namespace(H)
    T, B, N = int(H.shape[0]) - 1, int(H.shape[1]), int(H.shape[2])
    if cfg.decoder == "last":
        dy = dY[0, ...]
        a = mm(dy, explicit.D)
        dH_out = None
        dD, dby = mm(dy.mT, H[T, ...]), xp.sum(dy, axis=0)
    else:
        dY_rows = xp.reshape(dY, (T * B, cfg.n_out))
        dD = mm(dY_rows.mT, xp.reshape(H[1:, ...], (T * B, N)))
        dH_out = xp.reshape(mm(dY_rows, explicit.D), (T, B, N))
        a, dby = dH_out[T - 1, ...], xp.sum(dY_rows, axis=0)
    if dxT is not None:
        a = a + dxT
    return dD, dby, a, dH_out


def check_cotangent_container(name, d, template, like):
    """A cotangent container: ``template``'s type, and every non-None field of the template's
    shape and of ``like``'s namespace and dtype (None counts as zero)."""
    if not (isinstance(d, tuple) and getattr(d, "_fields", None) == template._fields):
        raise TypeError(f"{name} must be of type {type(template).__module__.rsplit('.', 1)[-1]}."
                        f"{type(template).__qualname__}; got {type(d).__name__}")
    for field, g, t in zip(template._fields, d, template):
        if g is not None:
            if t is None:
                raise ValueError(f"{name}.{field} must be None for this config (the model has no such parameter)")
            _validate.array(f"{name}.{field}", g, tuple(int(s) for s in t.shape), like=like, finite=False)
