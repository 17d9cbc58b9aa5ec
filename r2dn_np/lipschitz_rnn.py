"""The Lipschitz recurrent unit of Erichson, Azencot, Queiruga & Mahoney, "Lipschitz Recurrent
Neural Networks": the continuous-time unit

    h' = A h + tanh(W h + U x + b),        y = D h + by,

whose hidden-to-hidden matrices come from a symmetric-skew decomposition of free matrices
``M`` and ``C``,

    A = (1 - beta)(M + M^T) + beta (M - M^T) - gamma I,
    W = (1 - beta)(C + C^T) + beta (C - C^T) - gamma I,

so the real parts of A's eigenvalues lie in ``[(1 - beta) lmin(M + M^T) - gamma,
(1 - beta) lmax(M + M^T) - gamma]`` (the paper's Proposition 2, :func:`eigenvalue_bounds`).

Three stages, as every model of the library (``docs/overview.md``):

1. ``direct_to_explicit(cfg, direct)``: ``M, C`` to ``A, W``, and ``A`` to the update matrices
   ``F, G`` of the discrete recurrence ``h_{t+1} = F h_t + G tanh(W h_t + U x_t + b)``:

   - ``scheme="euler"`` (the paper's experiments): ``F = I + eps alpha A``, ``G = eps I``
     (stored as ``None``: the loop multiplies by the scalar ``eps``);
   - ``scheme="imex"``: ``h_{t+1} = h_t + eps tanh(z_t) + eps alpha ((1 - rho) A h_t +
     rho A h_{t+1})``, so with ``S = I - eps rho alpha A``: ``F = S^-1 (I + eps (1 - rho) alpha A)``
     and ``G = eps S^-1``. ``S`` is inverted here, once per rollout, never per step;
   - ``scheme="midpoint"``, ``"rk4"``: the ODE form ``h' = alpha A h + tanh(W h + U x + b)``,
     one explicit Runge-Kutta step of length ``eps`` per input (the authors' ``LipschitzRNN_ODE``
     with torchdiffeq's fixed-grid ``midpoint`` and ``rk4``, the latter Kutta's 3/8 rule); the loop
     uses ``A`` and ``W`` (``F = G = None``);
   - ``gated=True``: the authors' ``LipschitzRNN_gated``, ``h_{t+1} = h_t + eps (alpha A h_t +
     tanh(W h_t + U x_t + b)) * sigmoid(W h_t + U_g x_t + b_g)`` (forward Euler only);
   - ``stable_margin=delta``: gamma for A is ``max(gamma, (1 - beta) lmax(M + M^T) + delta)``,
     chosen (and differentiated through) at every call, so A is Hurwitz for every ``M``.

2. ``forward(cfg, explicit, h0, X)`` on time-major ``X`` (T, B, n_in); the decoder reads the final
   state (``decoder="last"``, classification) or every state (``"sequence"``, regression).
3. ``backward(cfg, explicit, cache, d_outputs)``: back-propagation through time.

The rows are column vectors of the maths stored as rows: the code computes ``h @ A.mT``. (The
authors' PyTorch code computes ``h @ A``, i.e. uses ``A^T``; ``A^T`` has the same symmetric part and
the opposite skew part, so the two parameterise the same class of models.)

The stability tools at the end (:func:`eigenvalue_bounds`, :func:`max_stable_step`,
:func:`linear_update_matrix`, :func:`lyapunov_certificate`) are analysis utilities, not part of
training: they copy their input to host NumPy and use NumPy/SciPy eigen- and Lyapunov solvers,
which the array API does not have.

Derivations: ``docs/derivations/lipschitz_rnn.md``.

Examples
--------
>>> import numpy as np
>>> from r2dn_np import lipschitz_rnn as lrnn
>>> cfg = lrnn.Config(n_in=1, n_units=16, n_out=10, scheme="imex", rho=0.5)
>>> direct = lrnn.init(cfg, seed=0)
>>> explicit, map_cache = lrnn.direct_to_explicit(cfg, direct)
>>> X = np.random.default_rng(0).standard_normal((64, 5, 1))       # (T, B, n_in)
>>> logits, cache = lrnn.forward(cfg, explicit, None, X)
>>> logits.shape
(5, 10)
>>> dh0, dX, d_explicit = lrnn.backward(cfg, explicit, cache, np.ones((5, 10)))
>>> d_direct = lrnn.direct_to_explicit_vjp(cfg, map_cache, d_explicit)
>>> d_direct.M.shape
(16, 16)
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple, Optional

import numpy as np
from array_api_compat import array_namespace, device

from . import _validate, linalg, losses
from ._config import JSONConfig
from .backend import asarray, namespace, to_numpy

__all__ = [
    "Config",
    "Direct",
    "Explicit",
    "Cache",
    "MapCache",
    "init",
    "direct_to_explicit",
    "direct_to_explicit_vjp",
    "forward",
    "backward",
    "value_and_grad",
    "predict",
    "symmetric_skew",
    "eigenvalue_bounds",
    "max_stable_step",
    "linear_update_matrix",
    "LyapunovCertificate",
    "lyapunov_certificate",
]

SCHEMES = ("euler", "imex", "midpoint", "rk4")
DECODERS = ("last", "sequence")

# Butcher tableaux (strictly lower a, weights b) of the explicit Runge-Kutta steps of the ODE form,
# as torchdiffeq's fixed-grid "midpoint" and "rk4" (Kutta's 3/8 rule) that the authors call
RK_TABLEAUX = {
    "midpoint": (((), (0.5,)), (0.0, 1.0)),
    "rk4": (((), (1.0 / 3.0,), (-1.0 / 3.0, 1.0), (1.0, -1.0, 1.0)), (0.125, 0.375, 0.375, 0.125)),
}
# order p of each method: its stability polynomial is sum_{j <= p} w^j / j! (section 8)
_RK_ORDER = {"euler": 1, "midpoint": 2, "rk4": 4}


def _float_in(name, value, lo, hi, lo_open=False):
    """A finite float in ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``); ``hi`` may be ``inf``."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number; got {value!r}") from None
    left = "(" if lo_open else "["
    right = ")" if math.isinf(hi) else "]"
    ok = math.isfinite(out) and (out > lo if lo_open else out >= lo) and out <= hi
    if not ok:
        raise ValueError(f"{name} must be a finite number in {left}{lo:g}, {hi:g}{right}; got {value!r}")
    return out


@dataclasses.dataclass(frozen=True)
class Config(JSONConfig):
    """Sizes and options of a Lipschitz RNN ``R^n_in -> R^n_out`` with ``n_units`` hidden units.

    ``beta`` in [0.5, 1] weighs the skew part (``beta = 1``: ``A + gamma I`` is skew-symmetric),
    ``gamma >= 0`` shifts both spectra left, ``eps > 0`` is the time step (``dt`` of the IMEX
    formula), ``alpha >= 0`` scales the linear term ``A h`` (the paper's ablation factor),
    ``rho`` in [0, 1] is the implicit weight of the IMEX scheme (ignored by ``"euler"``;
    ``rho >= 1/2`` is stable for every ``eps`` when A is Hurwitz), and ``init_std`` sets the
    initial ``M, C ~ N(0, (init_std / n_units)^2)`` as in the authors' code.

    ``scheme``: ``"euler"`` and ``"imex"`` are the discrete recurrences of the paper;
    ``"midpoint"`` and ``"rk4"`` integrate the ODE form ``h' = alpha A h + tanh(W h + U x + b)``
    over one step ``eps`` per input with the explicit midpoint rule or Kutta's 3/8 rule (the
    authors' ``LipschitzRNN_ODE`` with torchdiffeq's fixed-grid solvers).
    ``gated=True`` is the authors' ``LipschitzRNN_gated`` (forward Euler only): the increment is
    multiplied by a sigmoid gate ``sigma(W h + U_g x + b_g)`` with its own input weights.
    ``stable_margin = delta > 0`` chooses gamma for A at every call as
    ``max(gamma, (1 - beta) lmax(M + M^T) + delta)``, Proposition 2's sufficient condition, so that
    every eigenvalue of A has real part ``<= -delta``; ``None`` keeps gamma fixed.
    """

    n_in: int
    n_units: int
    n_out: int
    beta: float = 0.75
    gamma: float = 0.001
    eps: float = 0.05
    alpha: float = 1.0
    scheme: str = "euler"
    rho: float = 0.5
    decoder: str = "last"
    init_std: float = 6.0
    gated: bool = False
    stable_margin: Optional[float] = None

    model: ClassVar[str] = "lipschitz_rnn"

    def __post_init__(self):
        _validate.positive_int("n_in", self.n_in)
        _validate.positive_int("n_units", self.n_units)
        _validate.positive_int("n_out", self.n_out)
        object.__setattr__(self, "beta", _float_in("beta", self.beta, 0.5, 1.0))
        object.__setattr__(self, "gamma", _float_in("gamma", self.gamma, 0.0, math.inf))
        object.__setattr__(self, "eps", _validate.positive_float("eps", self.eps))
        object.__setattr__(self, "alpha", _float_in("alpha", self.alpha, 0.0, math.inf))
        _validate.one_of("scheme", self.scheme, SCHEMES)
        object.__setattr__(self, "rho", _float_in("rho", self.rho, 0.0, 1.0))
        _validate.one_of("decoder", self.decoder, DECODERS)
        object.__setattr__(self, "init_std", _validate.positive_float("init_std", self.init_std))
        if not isinstance(self.gated, bool):
            raise TypeError(f"gated must be a bool; got {self.gated!r}")
        if self.gated and self.scheme != "euler":
            raise ValueError(
                f"gated=True is the authors' forward-Euler gated cell: scheme must be 'euler'; got {self.scheme!r}"
            )
        if self.stable_margin is not None:
            object.__setattr__(self, "stable_margin", _validate.positive_float("stable_margin", self.stable_margin))


class Direct(NamedTuple):
    """Free parameters: every value gives a model whose spectra obey Proposition 2.
    ``Ug, bg`` are the gate's input weights of a gated unit and ``None`` otherwise."""

    M: object  # (N, N), gives A
    C: object  # (N, N), gives W
    U: object  # (N, n_in)
    b: object  # (N,)
    D: object  # (n_out, N)
    by: object  # (n_out,)
    Ug: Optional[object] = None  # (N, n_in), gated only
    bg: Optional[object] = None  # (N,), gated only


class Explicit(NamedTuple):
    """Model weights. The Euler and IMEX loops use ``F, G, W, U, b``, and ``A`` is kept for
    inspection and the stability tools (``backward`` returns ``None`` for it: F and G carry its
    influence). The gated and ODE forms use ``A, W`` (and the gate's ``Ug, bg``) and have
    ``F = G = None``."""

    A: object  # (N, N)
    W: object  # (N, N)
    U: object  # (N, n_in)
    b: object  # (N,)
    D: object  # (n_out, N)
    by: object  # (n_out,)
    F: Optional[object]  # (N, N): h_{t+1} = F h_t + G s_t; None for the gated and ODE forms
    G: Optional[object]  # (N, N) for "imex"; None otherwise (Euler: G = eps I)
    Ug: Optional[object] = None  # (N, n_in), gated only
    bg: Optional[object] = None  # (N,), gated only


class MapCache(NamedTuple):
    direct: Direct
    A: object
    R: Optional[object]  # (I - eps rho alpha A)^-1 for "imex"
    P: Optional[object]  # I + eps (1 - rho) alpha A for "imex"
    v: Optional[object] = None  # (N,) top eigenvector of M + M^T when the stable mode raised gamma


class Cache(NamedTuple):
    """What BPTT needs: the inputs, the states ``h_0..h_T`` and the tanh outputs ``s_0..s_{T-1}``
    ((T, s, B, N) per stage for the ODE form, with the stage states ``Hs``), and the gate values
    ``Q`` of a gated unit."""

    X: object  # (T, B, n_in)
    H: object  # (T + 1, B, N)
    S: object  # (T, B, N), or (T, s, B, N) for "midpoint"/"rk4"
    Q: Optional[object] = None  # (T, B, N), gated only
    Hs: Optional[object] = None  # (T, s, B, N) stage states, "midpoint"/"rk4" only


def init(cfg, seed=0, backend=None, dtype="float64"):
    """Seeded initialisation as in the authors' code.

    ``M, C ~ N(0, (init_std / N)^2)``; ``U``, ``D`` (and ``Ug``) Xavier-normal
    (``std = sqrt(2 / (fan_in + fan_out))``); biases zero. Draws in the order M, C, U, D, Ug.
    """
    rng = np.random.default_rng(seed)
    xp = namespace(backend)
    N = cfg.n_units
    std = cfg.init_std / N

    def put(a):
        return asarray(np.asarray(a, dtype=np.float64), xp, dtype)

    M = rng.normal(0.0, std, (N, N))
    C = rng.normal(0.0, std, (N, N))
    U = rng.normal(0.0, math.sqrt(2.0 / (cfg.n_in + N)), (N, cfg.n_in))
    D = rng.normal(0.0, math.sqrt(2.0 / (N + cfg.n_out)), (cfg.n_out, N))
    direct = Direct(put(M), put(C), put(U), put(np.zeros(N)), put(D), put(np.zeros(cfg.n_out)))
    if cfg.gated:
        Ug = rng.normal(0.0, math.sqrt(2.0 / (cfg.n_in + N)), (N, cfg.n_in))
        direct = direct._replace(Ug=put(Ug), bg=put(np.zeros(N)))
    return direct


# --- stage 1: free parameters -> A, W and the update matrices F, G -------------------------------


def symmetric_skew(M, beta, gamma):
    """``(1 - beta)(M + M^T) + beta (M - M^T) - gamma I``, computed as
    ``M + (1 - 2 beta) M^T - gamma I`` (equation (D1) of the derivation)."""
    return M + (1.0 - 2.0 * beta) * M.mT - gamma * linalg.eye_like(int(M.shape[0]), M)


def _symmetric_skew_vjp(beta, dA):
    return dA + (1.0 - 2.0 * beta) * dA.mT


def _check_direct(cfg, direct):
    if not isinstance(direct, Direct):
        raise TypeError(f"direct must be a lipschitz_rnn.Direct; got {type(direct).__name__}")
    N = cfg.n_units
    shapes = dict(M=(N, N), C=(N, N), U=(N, cfg.n_in), b=(N,), D=(cfg.n_out, N), by=(cfg.n_out,))
    if cfg.gated:
        shapes.update(Ug=(N, cfg.n_in), bg=(N,))
    else:
        for name in ("Ug", "bg"):
            if getattr(direct, name) is not None:
                raise ValueError(f"direct.{name} must be None for a unit without gate (cfg.gated=False)")
    like = direct.M if hasattr(direct.M, "dtype") else None
    for name, shape in shapes.items():
        _validate.array(f"direct.{name}", getattr(direct, name), list(shape), like=like)


def _stable_gamma(cfg, M):
    """(P3): ``gamma_A = max(gamma, (1 - beta) lmax(M + M^T) + delta)`` and the unit top
    eigenvector of ``M + M^T`` when the second branch is taken (else None)."""
    if cfg.stable_margin is None:
        return cfg.gamma, None
    xp = array_namespace(M)
    lam, V = xp.linalg.eigh(M + M.mT)
    needed = (1.0 - cfg.beta) * lam[-1] + cfg.stable_margin
    # one host scalar per call of the map (never per step): which branch of the max is active
    if float(needed) <= cfg.gamma:
        return cfg.gamma, None
    return needed, V[:, -1]


def direct_to_explicit(cfg, direct):
    """Map free parameters to model weights. Returns ``(explicit, cache)``.

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md``, equations (D1)-(D4), (P3).
    """
    _check_direct(cfg, direct)
    gamma_A, v = _stable_gamma(cfg, direct.M)
    A = symmetric_skew(direct.M, cfg.beta, gamma_A)
    W = symmetric_skew(direct.C, cfg.beta, cfg.gamma)
    I = linalg.eye_like(cfg.n_units, A)
    F = G = R = P = None
    if cfg.gated or cfg.scheme in RK_TABLEAUX:
        pass  # the loop uses A and W themselves (sections 7-8)
    elif cfg.scheme == "euler":
        F = I + (cfg.eps * cfg.alpha) * A
    else:
        R = linalg.solve(I - (cfg.eps * cfg.rho * cfg.alpha) * A, I)
        P = I + (cfg.eps * (1.0 - cfg.rho) * cfg.alpha) * A
        F = R @ P
        G = cfg.eps * R
    explicit = Explicit(A, W, direct.U, direct.b, direct.D, direct.by, F, G, direct.Ug, direct.bg)
    return explicit, MapCache(direct, A, R, P, v)


def direct_to_explicit_vjp(cfg, cache, d_explicit):
    """Cotangent of the free parameters given that of the explicit weights.

    ``None`` entries of ``d_explicit`` count as zero. Returns a ``Direct``.

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md``, equations (V1)-(V5).
    """
    direct = cache.direct
    xp = array_namespace(direct.M)
    dA = _zero_if_none(d_explicit.A, cache.A)
    dF = d_explicit.F
    if cache.R is None:  # Euler (or F unused: gated and ODE forms, where dF is None)
        if dF is not None:
            dA = dA + (cfg.eps * cfg.alpha) * dF
    else:
        R, P = cache.R, cache.P
        dR = xp.zeros_like(R)
        if dF is not None:
            dR = dR + dF @ P.mT
            dA = dA + (cfg.eps * (1.0 - cfg.rho) * cfg.alpha) * (R.mT @ dF)
        if d_explicit.G is not None:
            dR = dR + cfg.eps * d_explicit.G
        dA = dA + (cfg.eps * cfg.rho * cfg.alpha) * (R.mT @ dR @ R.mT)
    dM = _symmetric_skew_vjp(cfg.beta, dA)
    if cache.v is not None:  # (V5): gamma_A moves with lmax(M + M^T)
        v = cache.v
        dM = dM - (2.0 * (1.0 - cfg.beta)) * xp.linalg.trace(dA) * (v[:, None] * v[None, :])
    dC = _symmetric_skew_vjp(cfg.beta, _zero_if_none(d_explicit.W, direct.C))
    gate = (None, None)
    if cfg.gated:
        gate = (_zero_if_none(d_explicit.Ug, direct.Ug), _zero_if_none(d_explicit.bg, direct.bg))
    return Direct(
        dM, dC,
        _zero_if_none(d_explicit.U, direct.U), _zero_if_none(d_explicit.b, direct.b),
        _zero_if_none(d_explicit.D, direct.D), _zero_if_none(d_explicit.by, direct.by), *gate,
    )


def _zero_if_none(d, like):
    if d is not None:
        return d
    return array_namespace(like).zeros_like(like)


# --- stage 2: the recurrence ---------------------------------------------------------------------


def _check_sequence(name, X, n_in, like):
    _validate.array(name, X, [("T", None), ("B", None), ("n_in", n_in)], like=like)
    if int(X.shape[0]) < 1 or int(X.shape[1]) < 1:
        raise ValueError(f"{name} must have T >= 1 steps and B >= 1 sequences; got shape {tuple(X.shape)}")


def _check_h0(cfg, h0, X):
    if h0 is None:
        xp = array_namespace(X)
        return xp.zeros((int(X.shape[1]), cfg.n_units), dtype=X.dtype, device=device(X))
    _validate.array("h0", h0, [("B", int(X.shape[1])), ("n_units", cfg.n_units)], like=X)
    return h0


def forward(cfg, explicit, h0, X):
    """Run the discrete recurrence and the decoder.

    Parameters
    ----------
    cfg : Config
    explicit : Explicit
    h0 : (B, N) array, or None for zeros
    X : (T, B, n_in) array, time-major

    Returns
    -------
    outputs : (B, n_out) array ``D h_T + by`` for ``decoder="last"``, or (T, B, n_out) array of
        ``D h_t + by``, t = 1..T, for ``"sequence"``
    cache : Cache

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md``, equations (R1)-(R3), (G1), (O1)-(O2).
    """
    _check_sequence("X", X, cfg.n_in, explicit.W)
    h0 = _check_h0(cfg, h0, X)
    cache = _rollout(cfg, explicit, h0, X)
    return _decode(cfg, explicit, cache.H), cache


def _input_projection(explicit, X):
    """``U x_t + b`` for all T*B rows at once, outside the time loop: ``(T, B, N)``."""
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    return xp.reshape(xp.reshape(X, (T * B, n_in)) @ explicit.U.mT + explicit.b, (T, B, -1))


def _rollout(cfg, explicit, h0, X):
    """Dispatch on the form of the unit; returns the ``Cache``."""
    if cfg.gated:
        return _rollout_gated(cfg, explicit, h0, X)
    if cfg.scheme in RK_TABLEAUX:
        return _rollout_rk(cfg, explicit, h0, X)
    H, S = _rollout_linear_update(cfg, explicit, h0, X)
    return Cache(X, H, S)


def _rollout_linear_update(cfg, explicit, h0, X):
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = cfg.n_units
    UX = _input_projection(explicit, X)
    H = xp.empty((T + 1, B, N), dtype=X.dtype, device=device(X))
    S = xp.empty((T, B, N), dtype=X.dtype, device=device(X))
    H[0, ...] = h0
    h = h0
    Wt, Ft = explicit.W.mT, explicit.F.mT
    if explicit.G is None:
        g = cfg.eps
        for t in range(T):
            s = xp.tanh(h @ Wt + UX[t, ...])
            h = h @ Ft + g * s
            S[t, ...] = s
            H[t + 1, ...] = h
    else:
        Gt = explicit.G.mT
        for t in range(T):
            s = xp.tanh(h @ Wt + UX[t, ...])
            h = h @ Ft + s @ Gt
            S[t, ...] = s
            H[t + 1, ...] = h
    return H, S


def _stacked_AW(cfg, explicit):
    """``[alpha A; W]^T`` (N, 2N): one product per step gives both ``alpha A h`` and ``W h``."""
    xp = array_namespace(explicit.A)
    return xp.concat([cfg.alpha * explicit.A, explicit.W], axis=0).mT


def _rollout_rk(cfg, explicit, h0, X):
    """(O1)-(O2): one explicit Runge-Kutta step of length eps per input."""
    xp = array_namespace(X)
    T, B, _ = (int(s) for s in X.shape)
    N = cfg.n_units
    a, b = RK_TABLEAUX[cfg.scheme]
    n_stages = len(b)
    eps = cfg.eps
    UX = _input_projection(explicit, X)
    KT = _stacked_AW(cfg, explicit)
    H = xp.empty((T + 1, B, N), dtype=X.dtype, device=device(X))
    Hs = xp.empty((T, n_stages, B, N), dtype=X.dtype, device=device(X))
    S = xp.empty((T, n_stages, B, N), dtype=X.dtype, device=device(X))
    H[0, ...] = h0
    h = h0
    for t in range(T):
        z = UX[t, ...]
        k = []
        h_next = h
        for i in range(n_stages):
            g = h
            for j, a_ij in enumerate(a[i]):
                g = g + (eps * a_ij) * k[j]
            pw = g @ KT
            s = xp.tanh(pw[:, N:] + z)
            k.append(pw[:, :N] + s)
            Hs[t, i, ...] = g
            S[t, i, ...] = s
            if b[i] != 0.0:
                h_next = h_next + (eps * b[i]) * k[i]
        h = h_next
        H[t + 1, ...] = h
    return Cache(X, H, S, None, Hs)


def _gated_projection(explicit, X):
    """``U x_t + b`` and ``U_g x_t + b_g`` for all T*B rows in one product: two (T, B, N)."""
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = int(explicit.U.shape[0])
    both = xp.reshape(X, (T * B, n_in)) @ xp.concat([explicit.U, explicit.Ug], axis=0).mT
    both = xp.reshape(both + xp.concat([explicit.b, explicit.bg]), (T, B, 2 * N))
    return both[..., :N], both[..., N:]


def _rollout_gated(cfg, explicit, h0, X):
    """(G1): ``h_{t+1} = h_t + eps (alpha A h_t + tanh(W h_t + z_t)) * sigmoid(W h_t + z^g_t)``."""
    xp = array_namespace(X)
    T, B, _ = (int(s) for s in X.shape)
    N = cfg.n_units
    UX, UgX = _gated_projection(explicit, X)
    KT = _stacked_AW(cfg, explicit)
    H = xp.empty((T + 1, B, N), dtype=X.dtype, device=device(X))
    S = xp.empty((T, B, N), dtype=X.dtype, device=device(X))
    Q = xp.empty((T, B, N), dtype=X.dtype, device=device(X))
    H[0, ...] = h0
    h = h0
    for t in range(T):
        pw = h @ KT
        r = pw[:, N:]
        s = xp.tanh(r + UX[t, ...])
        q = _sigmoid(xp, r + UgX[t, ...])
        h = h + cfg.eps * (pw[:, :N] + s) * q
        S[t, ...] = s
        Q[t, ...] = q
        H[t + 1, ...] = h
    return Cache(X, H, S, Q)


def _sigmoid(xp, x):
    # tanh form: no overflow of exp for large |x|
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


def _decode(cfg, explicit, H):
    xp = array_namespace(H)
    T = int(H.shape[0]) - 1
    if cfg.decoder == "last":
        return H[T, ...] @ explicit.D.mT + explicit.by
    B, N = int(H.shape[1]), int(H.shape[2])
    Y = xp.reshape(H[1:, ...], (T * B, N)) @ explicit.D.mT + explicit.by
    return xp.reshape(Y, (T, B, cfg.n_out))


def _decode_backward(cfg, explicit, H, dY):
    """Decoder cotangents as single products over all rows: ``(dD, dby, a, dH_out)`` with ``a``
    the adjoint of ``h_T`` and ``dH_out[t]`` what the outputs send to ``h_{t+1}`` (None for
    ``decoder="last"``)."""
    xp = array_namespace(H)
    T, B, N = int(H.shape[0]) - 1, int(H.shape[1]), int(H.shape[2])
    if cfg.decoder == "last":
        return dY.mT @ H[T, ...], xp.sum(dY, axis=0), dY @ explicit.D, None
    dY_rows = xp.reshape(dY, (T * B, cfg.n_out))
    dD = dY_rows.mT @ xp.reshape(H[1:, ...], (T * B, N))
    dH_out = xp.reshape(dY_rows @ explicit.D, (T, B, N))
    return dD, xp.sum(dY_rows, axis=0), dH_out[T - 1, ...], dH_out


# --- stage 3: back-propagation through time ------------------------------------------------------


def backward(cfg, explicit, cache, d_outputs):
    """Cotangents of the initial state, the inputs and the explicit weights.

    Parameters
    ----------
    d_outputs : (B, n_out) or (T, B, n_out) array, the cotangent of ``outputs``.

    Returns
    -------
    dh0 : (B, N) array
    dX : (T, B, n_in) array
    d_explicit : Explicit (Euler and IMEX: ``A`` is None, the loop depends on A only through F
        and G, and ``G`` is None for ``"euler"``; gated and ODE forms: ``F``, ``G`` are None)

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md``, equations (B1)-(B4), (G2)-(G3), (O3)-(O4).
    """
    _check_d_outputs(cfg, cache, d_outputs)
    return _backward(cfg, explicit, cache, d_outputs)


def _check_d_outputs(cfg, cache, d_outputs):
    T, B = int(cache.X.shape[0]), int(cache.X.shape[1])
    if cfg.decoder == "last":
        shape = [("B", B), ("n_out", cfg.n_out)]
    else:
        shape = [("T", T), ("B", B), ("n_out", cfg.n_out)]
    _validate.array("d_outputs", d_outputs, shape, like=cache.X)


def _backward(cfg, explicit, cache, dY):
    if cfg.gated:
        return _backward_gated(cfg, explicit, cache, dY)
    if cfg.scheme in RK_TABLEAUX:
        return _backward_rk(cfg, explicit, cache, dY)
    X, H, S = cache.X, cache.H, cache.S
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = cfg.n_units
    H_prev = xp.reshape(H[:T, ...], (T * B, N))

    # decoder (B4): one product over all rows
    dD, dby, a, dH_out = _decode_backward(cfg, explicit, H, dY)

    # the reverse loop only propagates the state adjoint (B1)-(B2)
    dZ = xp.empty((T, B, N), dtype=X.dtype, device=device(X))
    A_next = xp.empty((T, B, N), dtype=X.dtype, device=device(X))  # adjoint of h_{t+1}
    W, F, G = explicit.W, explicit.F, explicit.G
    g = cfg.eps
    for t in range(T - 1, -1, -1):
        A_next[t, ...] = a
        ds = g * a if G is None else a @ G
        s = S[t, ...]
        dz = ds * (1.0 - s * s)
        dZ[t, ...] = dz
        a = a @ F + dz @ W
        if dH_out is not None and t > 0:
            a = a + dH_out[t - 1, ...]

    # weight gradients (B3): one product each over all T*B rows
    dZ_rows = xp.reshape(dZ, (T * B, N))
    A_rows = xp.reshape(A_next, (T * B, N))
    dF = A_rows.mT @ H_prev
    dG = None if G is None else A_rows.mT @ xp.reshape(S, (T * B, N))
    dW = dZ_rows.mT @ H_prev
    dU = dZ_rows.mT @ xp.reshape(X, (T * B, n_in))
    db = xp.sum(dZ_rows, axis=0)
    dX = xp.reshape(dZ_rows @ explicit.U, (T, B, n_in))
    return a, dX, Explicit(None, dW, dU, db, dD, dby, dF, dG)


def _backward_rk(cfg, explicit, cache, dY):
    """(O3)-(O4): the stages of each step in reverse; weight gradients over all stage rows after."""
    X, H, S, Hs = cache.X, cache.H, cache.S, cache.Hs
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = cfg.n_units
    a_tab, b_tab = RK_TABLEAUX[cfg.scheme]
    n_stages = len(b_tab)
    eps, alpha = cfg.eps, cfg.alpha
    dD, dby, a, dH_out = _decode_backward(cfg, explicit, H, dY)
    dK = xp.empty((T, n_stages, B, N), dtype=X.dtype, device=device(X))
    dZ = xp.empty((T, n_stages, B, N), dtype=X.dtype, device=device(X))
    # [alpha A; W] as one (2N, N) matrix: [dk, dz] @ it = alpha dk A + dz W
    AW = xp.concat([alpha * explicit.A, explicit.W], axis=0)
    for t in range(T - 1, -1, -1):
        dg = [None] * n_stages
        a_prev = a
        for i in range(n_stages - 1, -1, -1):
            dk = (eps * b_tab[i]) * a
            for j in range(i + 1, n_stages):
                if a_tab[j][i] != 0.0:
                    dk = dk + (eps * a_tab[j][i]) * dg[j]
            s = S[t, i, ...]
            dz = dk * (1.0 - s * s)
            dK[t, i, ...] = dk
            dZ[t, i, ...] = dz
            dg[i] = xp.concat([dk, dz], axis=1) @ AW
            a_prev = a_prev + dg[i]
        a = a_prev
        if dH_out is not None and t > 0:
            a = a + dH_out[t - 1, ...]
    rows = T * n_stages * B
    Hs_rows = xp.reshape(Hs, (rows, N))
    dZ_rows = xp.reshape(dZ, (rows, N))
    dA = alpha * (xp.reshape(dK, (rows, N)).mT @ Hs_rows)
    dW = dZ_rows.mT @ Hs_rows
    dZ_t = xp.reshape(xp.sum(dZ, axis=1), (T * B, N))
    dU = dZ_t.mT @ xp.reshape(X, (T * B, n_in))
    db = xp.sum(dZ_t, axis=0)
    dX = xp.reshape(dZ_t @ explicit.U, (T, B, n_in))
    return a, dX, Explicit(dA, dW, dU, db, dD, dby, None, None)


def _backward_gated(cfg, explicit, cache, dY):
    """(G2)-(G3)."""
    X, H, S, Q = cache.X, cache.H, cache.S, cache.Q
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = cfg.n_units
    eps, alpha = cfg.eps, cfg.alpha
    H_prev = xp.reshape(H[:T, ...], (T * B, N))
    # the drift p_t + s_t, rebuilt in one product rather than stored
    Drift = xp.reshape(H_prev @ (alpha * explicit.A).mT, (T, B, N)) + S
    dD, dby, a, dH_out = _decode_backward(cfg, explicit, H, dY)
    dP = xp.empty((T, B, N), dtype=X.dtype, device=device(X))
    dZ = xp.empty((T, B, N), dtype=X.dtype, device=device(X))
    dZg = xp.empty((T, B, N), dtype=X.dtype, device=device(X))
    AW = xp.concat([alpha * explicit.A, explicit.W], axis=0)
    for t in range(T - 1, -1, -1):
        s, q = S[t, ...], Q[t, ...]
        du = eps * a * q
        dz = du * (1.0 - s * s)
        dzg = (eps * a * Drift[t, ...]) * q * (1.0 - q)
        dP[t, ...] = du
        dZ[t, ...] = dz
        dZg[t, ...] = dzg
        a = a + xp.concat([du, dz + dzg], axis=1) @ AW
        if dH_out is not None and t > 0:
            a = a + dH_out[t - 1, ...]
    dZ_rows = xp.reshape(dZ, (T * B, N))
    dZg_rows = xp.reshape(dZg, (T * B, N))
    X_rows = xp.reshape(X, (T * B, n_in))
    dA = alpha * (xp.reshape(dP, (T * B, N)).mT @ H_prev)
    dW = (dZ_rows + dZg_rows).mT @ H_prev
    dU, db = dZ_rows.mT @ X_rows, xp.sum(dZ_rows, axis=0)
    dUg, dbg = dZg_rows.mT @ X_rows, xp.sum(dZg_rows, axis=0)
    dX = xp.reshape(dZ_rows @ explicit.U + dZg_rows @ explicit.Ug, (T, B, n_in))
    return a, dX, Explicit(dA, dW, dU, db, dD, dby, None, None, dUg, dbg)


# --- classification convenience ------------------------------------------------------------------


def _check_labels(labels, B):
    if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
        raise TypeError(f"labels must be an integer array; got {type(labels).__name__}")
    xp = array_namespace(labels)
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(f"labels must be an integer array; got dtype {labels.dtype}")
    if tuple(int(s) for s in labels.shape) != (B,):
        raise ValueError(f"labels must have shape (B={B},); got {tuple(labels.shape)}")


def predict(cfg, direct, X, h0=None):
    """Outputs (logits for classification) of the model with free parameters ``direct``."""
    explicit, _ = direct_to_explicit(cfg, direct)
    return forward(cfg, explicit, h0, X)[0]


def value_and_grad(cfg, direct, X, labels, h0=None):
    """Mean softmax cross-entropy of ``D h_T + by`` against integer ``labels`` (B,), and its
    gradient with respect to the free parameters. Needs ``decoder="last"``.

    Returns
    -------
    loss : 0-d array
    d_direct : Direct
    """
    if cfg.decoder != "last":
        raise ValueError(f"value_and_grad classifies from the final state: cfg.decoder must be 'last'; got {cfg.decoder!r}")
    explicit, map_cache = direct_to_explicit(cfg, direct)
    _check_sequence("X", X, cfg.n_in, explicit.W)
    _check_labels(labels, int(X.shape[1]))
    h0 = _check_h0(cfg, h0, X)
    cache = _rollout(cfg, explicit, h0, X)
    logits = _decode(cfg, explicit, cache.H)
    loss, d_logits = losses.softmax_cross_entropy(logits, labels)
    _, _, d_explicit = _backward(cfg, explicit, cache, d_logits)
    return loss, direct_to_explicit_vjp(cfg, map_cache, d_explicit)


# --- stability tools (host NumPy / SciPy) --------------------------------------------------------


def _host_square(name, A):
    if not hasattr(A, "shape"):
        raise TypeError(f"{name} must be an array; got {type(A).__name__}")
    a = np.asarray(to_numpy(A), dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"{name} must be a square (N, N) matrix with N >= 1; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def eigenvalue_bounds(M, beta, gamma):
    """Proposition 2: every eigenvalue of ``A = symmetric_skew(M, beta, gamma)`` has real part in
    ``[(1 - beta) lmin(M + M^T) - gamma, (1 - beta) lmax(M + M^T) - gamma]``.

    Runs on host NumPy (``numpy.linalg.eigvalsh``). Returns ``(lower, upper)`` as floats.

    Examples
    --------
    >>> import numpy as np
    >>> lo, hi = eigenvalue_bounds(np.diag([1.0, -2.0]), beta=0.75, gamma=0.1)
    >>> round(lo, 12), round(hi, 12)
    (-1.1, 0.4)
    """
    m = _host_square("M", M)
    beta = _float_in("beta", beta, 0.5, 1.0)
    gamma = _float_in("gamma", gamma, 0.0, math.inf)
    lam = np.linalg.eigvalsh(m + m.T)
    return (1.0 - beta) * float(lam[0]) - gamma, (1.0 - beta) * float(lam[-1]) - gamma


def max_stable_step(A, alpha=1.0, rho=0.0, *, scheme=None):
    """Largest ``eps`` below which the linear part of the scheme is stable: ``sup{e : the update
    matrix F of every eps in (0, e) has spectral radius < 1}``.

    ``scheme`` (keyword): ``None`` or ``"imex"`` read the IMEX weight ``rho``; ``"euler"`` is
    ``rho = 0``; ``"midpoint"`` and ``"rk4"`` are the explicit Runge-Kutta steps of the ODE form,
    whose update matrix is ``R(eps alpha A)`` with ``R(w) = 1 + w + w^2/2`` or
    ``sum_{j <= 4} w^j / j!``: the bound is the first positive ``eps`` with ``|R(eps alpha
    lambda)| = 1`` (section 8 of the derivation). Unlike Euler and midpoint, RK4 is stable on part
    of the imaginary axis, ``eps alpha |lambda| < 2 sqrt 2``.

    ``rho = 0`` (the default) is forward Euler, ``h_{t+1} = (I + eps alpha A) h_t``: stable iff
    ``|1 + eps alpha lambda| < 1`` for every eigenvalue ``lambda`` of A, that is
    ``eps < min_lambda 2 |Re lambda| / (alpha |lambda|^2)``, which needs every ``Re lambda < 0``.
    For the IMEX scheme with weight ``rho`` the eigenvalues of F are
    ``(1 + c (1 - rho) lambda) / (1 - c rho lambda)`` (``c = eps alpha``) and the condition reads
    ``2 Re lambda + c (1 - 2 rho) |lambda|^2 < 0``: the bound is divided by ``1 - 2 rho`` for
    ``rho < 1/2``, and is ``inf`` for ``rho >= 1/2`` when A is Hurwitz (A-stability; for
    ``rho > 1/2`` also when A has eigenvalues on the imaginary axis, other than 0).

    Returns ``0.0`` when no small step is stable (some ``Re lambda > 0``, or a marginal eigenvalue
    the scheme does not damp) and ``inf`` when ``alpha = 0``. An eigenvalue whose real part is
    within ``1e-12 max|lambda|`` of zero counts as marginal. Runs on host NumPy.
    Derivation: ``docs/derivations/lipschitz_rnn.md`` section 5.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[-1.0, 2.0], [-2.0, -1.0]])           # lambda = -1 +- 2i
    >>> round(max_stable_step(A), 12), round(max_stable_step(A, rho=0.25), 12), max_stable_step(A, rho=0.5)
    (0.4, 0.8, inf)
    >>> round(max_stable_step(-np.eye(2), scheme="midpoint"), 12), round(max_stable_step(-np.eye(2), scheme="rk4"), 6)
    (2.0, 2.785294)
    """
    a = _host_square("A", A)
    alpha = _float_in("alpha", alpha, 0.0, math.inf)
    rho = _float_in("rho", rho, 0.0, 1.0)
    if scheme is not None:
        _validate.one_of("scheme", scheme, SCHEMES)
    if alpha == 0.0:
        return math.inf
    lam = np.linalg.eigvals(a)
    mod2 = np.abs(lam) ** 2
    re = np.where(np.abs(lam.real) <= 1e-12 * np.sqrt(np.max(mod2)), 0.0, lam.real)
    if scheme in RK_TABLEAUX:
        return min(_rk_edge(_RK_ORDER[scheme], complex(r, i)) for r, i in zip(re, lam.imag)) / alpha
    if scheme == "euler":
        rho = 0.0
    q = (1.0 - 2.0 * rho) * mod2
    bound = np.full(lam.shape, math.inf)
    bound[(re > 0.0) | (mod2 == 0.0) | ((re == 0.0) & (q >= 0.0))] = 0.0
    damped = (re < 0.0) & (q > 0.0)
    bound[damped] = -2.0 * re[damped] / q[damped]
    return float(np.min(bound)) / alpha


def _rk_edge(p, lam):
    """First positive ``e`` with ``|R_p(e lam)| = 1``, ``R_p(w) = sum_{j <= p} w^j / j!``, if
    ``|R_p(e lam)| < 1`` just right of 0; else 0 (section 8)."""
    r = abs(lam)
    if r == 0.0:
        return 0.0
    u = lam / r
    # R(x u) = sum_j c_j x^j; |R|^2 - 1 = sum_{n >= 1} d_n x^n with d_n = sum_{j + k = n} c_j conj(c_k)
    c = [1.0 + 0.0j]
    for j in range(1, p + 1):
        c.append(c[-1] * u / j)
    d = np.zeros(2 * p + 1)
    for j in range(p + 1):
        for k in range(p + 1):
            d[j + k] += (c[j] * np.conj(c[k])).real
    d = d[1:]
    # cancellations of exactly-zero coefficients (marginal lam) leave rounding noise: drop it
    d[np.abs(d) < 1e-12 * np.max(np.abs(d))] = 0.0
    low = int(np.flatnonzero(d)[0])
    if d[low] > 0.0:  # |R| > 1 for every small step
        return 0.0
    d = d[low:]
    roots = np.roots(d[::-1])
    real = roots[(np.abs(roots.imag) <= 1e-9 * (1.0 + np.abs(roots))) & (roots.real > 0.0)].real
    return float(np.min(real)) / r if real.size else math.inf


def linear_update_matrix(A, eps, alpha=1.0, scheme="euler", rho=0.5):
    """The matrix ``F`` of one step of the linear part ``h' = alpha A h`` under ``scheme``:
    ``I + eps alpha A`` (Euler), ``(I - eps rho alpha A)^-1 (I + eps (1 - rho) alpha A)`` (IMEX),
    ``R(eps alpha A)`` (midpoint, rk4; section 8). For the discrete forms it equals
    ``direct_to_explicit``'s ``F``; ``lyapunov_certificate(F, discrete=True)`` certifies it.
    Host NumPy; returns an ``(N, N)`` float64 array.
    """
    a = _host_square("A", A)
    eps = _validate.positive_float("eps", eps)
    alpha = _float_in("alpha", alpha, 0.0, math.inf)
    rho = _float_in("rho", rho, 0.0, 1.0)
    _validate.one_of("scheme", scheme, SCHEMES)
    I = np.eye(a.shape[0])
    w = eps * alpha * a
    if scheme == "imex":
        return np.linalg.solve(I - rho * w, I + (1.0 - rho) * w)
    F, term = I.copy(), I
    for j in range(1, _RK_ORDER[scheme] + 1):
        term = term @ w / j
        F = F + term
    return F


class LyapunovCertificate(NamedTuple):
    """``P`` solving the Lyapunov equation for ``Q``; ``V(h) = h^T P h`` then decays along the
    linear dynamics. ``certified`` is True when ``P`` is positive definite (``eig_min_P > 0``) and
    the relative residual is below ``1e-8``; ``decay_rate`` is ``lmin(Q) / lmax(P)``, so that
    ``dV/dt <= -decay_rate V`` (continuous) or ``V_{t+1} <= (1 - decay_rate) V_t`` (discrete)."""

    P: np.ndarray
    Q: np.ndarray
    eig_min_P: float
    eig_max_P: float
    residual: float
    decay_rate: float
    certified: bool


def lyapunov_certificate(A, Q=None, *, discrete=False):
    """A Lyapunov certificate for ``h' = A h`` (or ``h_{t+1} = A h_t`` with ``discrete=True``).

    Solves ``P A + A^T P = -Q`` with SciPy's ``solve_continuous_lyapunov`` (or
    ``A^T P A - P = -Q`` with ``solve_discrete_lyapunov``; pass the update matrix ``F`` of
    ``direct_to_explicit`` to certify the linear part of either discretisation). Runs on host
    NumPy: device arrays are copied to the host.

    Parameters
    ----------
    A : (N, N) array with eigenvalues of negative real part (inside the unit circle if discrete)
    Q : (N, N) symmetric positive-definite array; identity by default

    Returns
    -------
    LyapunovCertificate

    Raises
    ------
    ValueError
        ``A`` is not Hurwitz (not Schur when ``discrete``), or ``Q`` is not symmetric positive
        definite.
    """
    from scipy import linalg as sla

    a = _host_square("A", A)
    n = a.shape[0]
    q = np.eye(n) if Q is None else _host_square("Q", Q)
    if q.shape != a.shape:
        raise ValueError(f"Q must have the shape of A {a.shape}; got {q.shape}")
    if not np.allclose(q, q.T, rtol=1e-12, atol=1e-14 * np.max(np.abs(q))):
        raise ValueError("Q must be symmetric")
    q = 0.5 * (q + q.T)
    q_eigs = np.linalg.eigvalsh(q)
    if q_eigs[0] <= 0.0:
        raise ValueError(f"Q must be positive definite; its smallest eigenvalue is {q_eigs[0]:.3e}")
    lam = np.linalg.eigvals(a)
    if discrete:
        radius = float(np.max(np.abs(lam)))
        if radius >= 1.0:
            raise ValueError(f"A must have spectral radius < 1 for a discrete certificate; got {radius:.6g}")
        P = sla.solve_discrete_lyapunov(a.T, q)
        res = a.T @ P @ a - P + q
    else:
        abscissa = float(np.max(lam.real))
        if abscissa >= 0.0:
            raise ValueError(
                f"A must have eigenvalues of negative real part; its largest real part is {abscissa:.6g}"
            )
        P = sla.solve_continuous_lyapunov(a.T, -q)
        res = P @ a + a.T @ P + q
    P = 0.5 * (P + P.T)
    p_eigs = np.linalg.eigvalsh(P)
    residual = float(np.linalg.norm(res) / max(np.linalg.norm(q), 1e-300))
    return LyapunovCertificate(
        P=P, Q=q, eig_min_P=float(p_eigs[0]), eig_max_P=float(p_eigs[-1]), residual=residual,
        decay_rate=float(q_eigs[0] / p_eigs[-1]),
        certified=bool(p_eigs[0] > 0.0 and residual < 1e-8),
    )
