"""The Lipschitz recurrent unit of Erichson, Azencot, Queiruga & Mahoney, "Lipschitz Recurrent
Neural Networks": the continuous-time unit

    h' = A h + tanh(W h + U x + b),        y = D h + by,

whose hidden-to-hidden matrices come from a symmetric-skew decomposition of free matrices
``M`` and ``C``,

    A = (1 - beta)(M + M^T) + beta (M - M^T) - gamma I,
    W = (1 - beta)(C + C^T) + beta (C - C^T) - gamma I,

so the real parts of A's eigenvalues lie in ``[(1 - beta) lmin(M + M^T) - gamma,
(1 - beta) lmax(M + M^T) - gamma]`` (the paper's Proposition 2, ``stability.eigenvalue_bounds``).

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

2. ``forward(cfg, explicit, x0, U) -> (xT, Y, cache)`` on time-major ``U`` (T, B, n_in), the state
   ``x`` being the hidden state ``h``; the decoder reads the final state (``decoder="last"``,
   ``Y`` of shape (1, B, n_out), for classification) or every state (``"sequence"``, (T, B, n_out)).
3. ``backward(cfg, explicit, cache, dY, dxT=None) -> (d_explicit, dx0, dU)``: back-propagation
   through time. ``step`` and ``value_and_grad`` complete the protocol every model speaks.

The rows are column vectors of the maths stored as rows: the code computes ``h @ A.mT``. (The
authors' PyTorch code computes ``h @ A``, i.e. uses ``A^T``; ``A^T`` has the same symmetric part and
the opposite skew part, so the two parameterise the same class of models.)

The stability tools (Proposition 2's interval, step bounds, Lyapunov certificates) are in
``r2dn_np.checks.stability``; classification from the last output is ``r2dn_np.training.classify``.

Derivations: ``docs/derivations/lipschitz_rnn.md``.

Examples
--------
>>> import numpy as np
>>> from r2dn_np import lipschitz_rnn as lrnn
>>> cfg = lrnn.Config(n_in=1, n_units=16, n_out=10, scheme="imex", rho=0.5)
>>> direct = lrnn.init(cfg, seed=0)
>>> explicit, map_cache = lrnn.direct_to_explicit(cfg, direct)
>>> U = np.random.default_rng(0).standard_normal((64, 5, 1))       # (T, B, n_in)
>>> hT, Y, cache = lrnn.forward(cfg, explicit, None, U)
>>> hT.shape, Y.shape
((5, 16), (1, 5, 10))
>>> d_explicit, dh0, dU = lrnn.backward(cfg, explicit, cache, np.ones((1, 5, 10)))
>>> d_direct = lrnn.direct_to_explicit_vjp(cfg, map_cache, d_explicit)
>>> d_direct.M.shape
(16, 16)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar, NamedTuple, Optional

import numpy as np
from array_api_compat import array_namespace

from .core import _validate, allocator, kernels, linalg
from .core._config import JSONConfig
from .loop._rnn import (
    DECODERS,
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
    "symmetric_skew",
    "SCHEMES",
    "DECODERS",
]

mm = kernels.matmul  # a @ b, and cuBLAS directly while a CUDA graph is recorded (core/kernels.py)

SCHEMES = ("euler", "imex", "midpoint", "rk4")

# Butcher tableaux (strictly lower a, weights b) of the explicit Runge-Kutta steps of the ODE form,
# as torchdiffeq's fixed-grid "midpoint" and "rk4" (Kutta's 3/8 rule) that the authors call
RK_TABLEAUX = {
    "midpoint": (((), (0.5,)), (0.0, 1.0)),
    "rk4": (((), (1.0 / 3.0,), (-1.0 / 3.0, 1.0), (1.0, -1.0, 1.0)), (0.125, 0.375, 0.375, 0.125)),
}


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
        check_sizes(self)
        object.__setattr__(self, "beta", _validate.real("beta", self.beta, 0.5, 1.0))
        object.__setattr__(self, "gamma", _validate.real("gamma", self.gamma, 0.0, math.inf, high_open=True))
        object.__setattr__(self, "eps", _validate.positive_float("eps", self.eps))
        object.__setattr__(self, "alpha", _validate.real("alpha", self.alpha, 0.0, math.inf, high_open=True))
        _validate.one_of("scheme", self.scheme, SCHEMES)
        object.__setattr__(self, "rho", _validate.real("rho", self.rho, 0.0, 1.0))
        if not isinstance(self.gated, bool):
            raise TypeError(f"gated must be a bool; got {self.gated!r}")
        if self.gated and self.scheme != "euler":
            raise ValueError(
                f"gated=True is the authors' forward-Euler gated cell: scheme must be 'euler'; got {self.scheme!r}"
            )
        if self.stable_margin is not None:
            object.__setattr__(self, "stable_margin", _validate.positive_float("stable_margin", self.stable_margin))

    # the protocol's sizes, so generic code can size any model
    nu = property(lambda self: self.n_in, doc="Input size (``n_in``).")
    nx = property(lambda self: self.n_units, doc="State size (``n_units``).")
    ny = property(lambda self: self.n_out, doc="Output size (``n_out``).")


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


class Grads(NamedTuple):
    direct: Direct
    x0: object
    U: object


def init(cfg, seed=0, backend=None, dtype="float64"):
    """Seeded initialisation as in the authors' code.

    ``M, C ~ N(0, (init_std / N)^2)``; ``U``, ``D`` (and ``Ug``) Xavier-normal
    (``std = sqrt(2 / (fan_in + fan_out))``); biases zero. Draws in the order M, C, U, D, Ug.
    """
    rng = np.random.default_rng(_validate.seed("seed", seed))
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


@functools.lru_cache(maxsize=32)
def _templates(cfg):
    """``(direct, explicit)`` of this config on the host: the shapes a user's containers must have."""
    direct = init(cfg, 0, backend="numpy")
    return direct, _direct_to_explicit(cfg, direct)[0]


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

    ``direct`` must be this config's ``Direct``: every field of its exact shape (``Ug, bg`` None
    unless ``gated``), one floating dtype, finite (``ValueError``/``TypeError`` naming the field).

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md``, equations (D1)-(D4), (P3).
    """
    _validate.container("direct", direct, _templates(cfg)[0])
    return _direct_to_explicit(cfg, direct)


def _direct_to_explicit(cfg, direct):
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

    ``d_explicit`` is an ``Explicit`` whose ``None`` entries count as zero. Returns a ``Direct``.

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md``, equations (V1)-(V5).
    """
    direct = cache.direct
    check_cotangent_container("d_explicit", d_explicit, _templates(cfg)[1], direct.M)
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


def forward(cfg, explicit, x0, U):
    """Run the discrete recurrence and the decoder.

    Parameters
    ----------
    cfg : Config
    explicit : Explicit, as ``direct_to_explicit`` returns it
    x0 : (B, n_units) array, the initial hidden state h_0, or None for zeros
    U : (T, B, n_in) array, time-major inputs

    Returns
    -------
    xT : (B, n_units) array, the final hidden state h_T
    Y : (1, B, n_out) array ``D h_T + by`` for ``decoder="last"``, or (T, B, n_out) array of
        ``D h_t + by``, t = 1..T, for ``"sequence"``
    cache : what ``backward`` needs

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md``, equations (R1)-(R3), (G1), (O1)-(O2).
    """
    _validate.container("explicit", explicit, _templates(cfg)[1])
    return _forward(cfg, explicit, x0, U)


def _forward(cfg, explicit, x0, U):
    """:func:`forward` on a trusted ``explicit``."""
    x0 = check_sequence(cfg, x0, U, explicit.W)
    with kernels.single_blas(U):
        cache = _rollout(cfg, explicit, x0, U)
        return cache.H[-1, ...], decode(cfg, explicit, cache.H), cache


def step(cfg, explicit, x, u):
    """One time-step: ``x : (B, n_units)``, ``u : (B, n_in)`` -> ``(x_next, y)`` with
    ``y = D x_next + by`` (one step of :func:`forward` from ``x``)."""
    _validate.container("explicit", explicit, _templates(cfg)[1])
    check_step(cfg, x, u, explicit.W)
    x_next = _rollout(cfg, explicit, x, u[None, ...]).H[1, ...]
    return x_next, x_next @ explicit.D.mT + explicit.by


def _rollout(cfg, explicit, h0, X):
    """Dispatch on the form of the unit; returns the ``Cache``.

    Every loop follows the time-loop conventions of ``loop/feedback.py``: input projections
    hoisted out of the loop, one product by ``mm`` per step for everything ``h_t`` enters, each
    step written in place into buffers from the allocator. ``reference_step`` is one step of
    each form in plain array code, and the loops are tested against it.
    """
    if cfg.gated:
        return _rollout_gated(cfg, explicit, h0, X)
    if cfg.scheme in RK_TABLEAUX:
        return _rollout_rk(cfg, explicit, h0, X)
    H, S = _rollout_linear_update(cfg, explicit, h0, X)
    return Cache(X, H, S)


def _rollout_linear_update(cfg, explicit, h0, X):
    """(R1)-(R3): ``s_t = tanh(W h_t + U x_t + b)``, ``h_{t+1} = F h_t + G s_t``."""
    xp = array_namespace(X)
    T, B, _ = (int(s) for s in X.shape)
    N = cfg.n_units
    m = kernels.native(X)
    UX = input_projection(explicit, X)
    H = allocator.empty(xp, (T + 1, B, N), X.dtype)
    S = allocator.empty(xp, (T, B, N), X.dtype)
    H[0, ...] = h0
    WF = xp.concat([explicit.W.mT, explicit.F.mT], axis=1)  # h_t enters z_t and h_{t+1}
    Gt = None if explicit.G is None else explicit.G.mT
    for t in range(T):
        hp = mm(H[t, ...], WF)
        kernels.bias_act(m, "tanh", hp[:, :N], UX[t, ...], out=S[t, ...])
        H[t + 1, ...] = hp[:, N:]
        if Gt is None:  # Euler: G = eps I
            H[t + 1, ...] += cfg.eps * S[t, ...]
        else:
            H[t + 1, ...] += mm(S[t, ...], Gt)
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
    m = kernels.native(X)
    a, b = RK_TABLEAUX[cfg.scheme]
    n_stages = len(b)
    eps = cfg.eps
    UX = input_projection(explicit, X)
    KT = _stacked_AW(cfg, explicit)
    H = allocator.empty(xp, (T + 1, B, N), X.dtype)
    Hs = allocator.empty(xp, (T, n_stages, B, N), X.dtype)
    S = allocator.empty(xp, (T, n_stages, B, N), X.dtype)
    H[0, ...] = h0
    for t in range(T):
        k = []
        H[t + 1, ...] = H[t, ...]
        for i in range(n_stages):
            Hs[t, i, ...] = H[t, ...]  # the stage state g_i = h_t + eps sum_j a_ij k_j
            for j, a_ij in enumerate(a[i]):
                Hs[t, i, ...] += (eps * a_ij) * k[j]
            pw = mm(Hs[t, i, ...], KT)
            kernels.bias_act(m, "tanh", pw[:, N:], UX[t, ...], out=S[t, i, ...])
            pw[:, :N] += S[t, i, ...]  # k_i = alpha A g_i + s_i
            k.append(pw[:, :N])
            if b[i] != 0.0:
                H[t + 1, ...] += (eps * b[i]) * k[i]
    return Cache(X, H, S, None, Hs)


def _gated_projection(explicit, X):
    """``U x_t + b`` and ``U_g x_t + b_g`` for all T*B rows in one product: two (T, B, N)."""
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = int(explicit.U.shape[0])
    both = mm(xp.reshape(X, (T * B, n_in)), xp.concat([explicit.U, explicit.Ug], axis=0).mT)
    both = xp.reshape(both + xp.concat([explicit.b, explicit.bg]), (T, B, 2 * N))
    return both[..., :N], both[..., N:]


def _rollout_gated(cfg, explicit, h0, X):
    """(G1): ``h_{t+1} = h_t + eps (alpha A h_t + tanh(W h_t + z_t)) * sigmoid(W h_t + z^g_t)``."""
    xp = array_namespace(X)
    T, B, _ = (int(s) for s in X.shape)
    N = cfg.n_units
    UX, UgX = _gated_projection(explicit, X)
    KT = _stacked_AW(cfg, explicit)
    H = allocator.empty(xp, (T + 1, B, N), X.dtype)
    S = allocator.empty(xp, (T, B, N), X.dtype)
    Q = allocator.empty(xp, (T, B, N), X.dtype)
    H[0, ...] = h0
    for t in range(T):
        pw = mm(H[t, ...], KT)
        r = pw[:, N:]
        S[t, ...] = xp.tanh(r + UX[t, ...])
        Q[t, ...] = _sigmoid(xp, r + UgX[t, ...])
        H[t + 1, ...] = H[t, ...] + cfg.eps * (pw[:, :N] + S[t, ...]) * Q[t, ...]
    return Cache(X, H, S, Q)


# The reference: one step of each form of the unit and its VJP in the plainest array code, one
# chain-rule fact per line, on trusted inputs. The fast loops above and below are tested against a
# Python loop over these (tests/test_reference_steps.py); read these first.


def _reference_step(cfg, e, h, x):
    """``h_next`` from ``h`` and the input ``x``, (R1)-(R3), (G1), (O1)-(O2); rows are batch entries."""
    xp = array_namespace(h)
    c = x @ e.U.mT + e.b  # the input's share of the pre-activation
    if cfg.gated:
        s = xp.tanh(h @ e.W.mT + c)
        q = _sigmoid(xp, h @ e.W.mT + x @ e.Ug.mT + e.bg)
        return h + cfg.eps * (cfg.alpha * (h @ e.A.mT) + s) * q
    if cfg.scheme in RK_TABLEAUX:
        a, b = RK_TABLEAUX[cfg.scheme]
        k = []
        for i in range(len(b)):
            g = h + sum((cfg.eps * a_ij) * k_j for a_ij, k_j in zip(a[i], k))
            k.append(cfg.alpha * (g @ e.A.mT) + xp.tanh(g @ e.W.mT + c))
        return h + sum((cfg.eps * b_i) * k_i for b_i, k_i in zip(b, k))
    s = xp.tanh(h @ e.W.mT + c)
    return h @ e.F.mT + (cfg.eps * s if e.G is None else s @ e.G.mT)


def _reference_step_vjp(cfg, e, h, x, dh_next):
    """Back through :func:`_reference_step`: ``(d_explicit, dh, dx)`` given ``dh_next``, with the
    fields of ``d_explicit`` that the step does not use None (as ``backward`` returns them)."""
    if cfg.gated:
        return _reference_gated_vjp(cfg, e, h, x, dh_next)
    if cfg.scheme in RK_TABLEAUX:
        return _reference_rk_vjp(cfg, e, h, x, dh_next)
    xp = array_namespace(h)
    s = xp.tanh(h @ e.W.mT + x @ e.U.mT + e.b)
    dF = dh_next.mT @ h  # h_next = h F^T + ...
    dG = None if e.G is None else dh_next.mT @ s  # h_next = ... + s G^T (imex)
    ds = cfg.eps * dh_next if e.G is None else dh_next @ e.G  # ... + eps s (Euler: G = eps I)
    dz = ds * (1.0 - s * s)  # s = tanh(z)
    dW = dz.mT @ h  # z = h W^T + x U^T + b
    dU = dz.mT @ x
    db = xp.sum(dz, axis=0)
    dh = dh_next @ e.F + dz @ e.W  # h reaches h_next through F and z
    dx = dz @ e.U
    return Explicit(None, dW, dU, db, None, None, dF, dG), dh, dx


def _reference_gated_vjp(cfg, e, h, x, dh_next):
    xp = array_namespace(h)
    p = cfg.alpha * (h @ e.A.mT)
    s = xp.tanh(h @ e.W.mT + x @ e.U.mT + e.b)
    q = _sigmoid(xp, h @ e.W.mT + x @ e.Ug.mT + e.bg)
    du = cfg.eps * dh_next * q  # h_next = h + eps u q with u = p + s
    dq = cfg.eps * dh_next * (p + s)
    dz = du * (1.0 - s * s)  # s = tanh(z)
    dzg = dq * q * (1.0 - q)  # q = sigmoid(zg)
    dA = cfg.alpha * (du.mT @ h)  # p = alpha h A^T
    dW = (dz + dzg).mT @ h  # z = h W^T + ..., zg = h W^T + ...
    dU, db = dz.mT @ x, xp.sum(dz, axis=0)  # z = ... + x U^T + b
    dUg, dbg = dzg.mT @ x, xp.sum(dzg, axis=0)  # zg = ... + x Ug^T + bg
    dh = dh_next + cfg.alpha * (du @ e.A) + (dz + dzg) @ e.W
    dx = dz @ e.U + dzg @ e.Ug
    return Explicit(dA, dW, dU, db, None, None, None, None, dUg, dbg), dh, dx


def _reference_rk_vjp(cfg, e, h, x, dh_next):
    xp = array_namespace(h)
    a, b = RK_TABLEAUX[cfg.scheme]
    n = len(b)
    c = x @ e.U.mT + e.b
    g, s, k = [], [], []
    for i in range(n):  # the stages again
        g.append(h + sum((cfg.eps * a_ij) * k_j for a_ij, k_j in zip(a[i], k)))
        s.append(xp.tanh(g[i] @ e.W.mT + c))
        k.append(cfg.alpha * (g[i] @ e.A.mT) + s[i])
    dg = [None] * n
    dA = dW = dc = 0.0
    dh = dh_next  # h_next = h + eps sum_i b_i k_i
    for i in range(n - 1, -1, -1):
        dk = (cfg.eps * b[i]) * dh_next + sum((cfg.eps * a[j][i]) * dg[j] for j in range(i + 1, n))  # g_j += eps a_ji k_i
        dz = dk * (1.0 - s[i] * s[i])  # k_i = alpha g_i A^T + tanh(z_i)
        dA = dA + cfg.alpha * (dk.mT @ g[i])
        dW = dW + dz.mT @ g[i]  # z_i = g_i W^T + c
        dc = dc + dz
        dg[i] = cfg.alpha * (dk @ e.A) + dz @ e.W
        dh = dh + dg[i]  # g_i = h + ...
    return Explicit(dA, dW, dc.mT @ x, xp.sum(dc, axis=0), None, None, None, None), dh, dc @ e.U


def _sigmoid(xp, x):
    # tanh form: no overflow of exp for large |x|
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


# --- stage 3: back-propagation through time ------------------------------------------------------


def backward(cfg, explicit, cache, dY, dxT=None):
    """Back-propagation through time.

    Parameters
    ----------
    dY : array of exactly ``Y``'s shape ((1, B, n_out) or (T, B, n_out)), the cotangent of ``Y``
    dxT : (B, n_units) array, the cotangent of ``xT``, or None for zero

    Returns
    -------
    d_explicit : Explicit (Euler and IMEX: ``A`` is None, the loop depends on A only through F
        and G, and ``G`` is None for ``"euler"``; gated and ODE forms: ``F``, ``G`` are None)
    dx0 : (B, n_units) array
    dU : (T, B, n_in) array

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md``, equations (B1)-(B4), (G2)-(G3), (O3)-(O4).
    """
    _validate.container("explicit", explicit, _templates(cfg)[1])
    check_cotangents(cfg, cache, dY, dxT)
    return _backward(cfg, explicit, cache, dY, dxT)


def value_and_grad(cfg, direct, x0, U, loss):
    """Map, roll out, backpropagate through time and through the map.

    Parameters
    ----------
    x0 : (B, n_units) array or None (zeros)
    U : (T, B, n_in) array
    loss : callable ``Y -> (value, dY)``, e.g. ``lambda Y: losses.mse(Y, Y_target)``; it must
        return a finite scalar and a finite ``dY`` of exactly ``Y``'s shape and dtype.
        (``r2dn_np.training.classify.value_and_grad`` is the cross-entropy of the last output.)

    Returns
    -------
    value : the loss value.
    grads : Grads(direct, x0, U).
    """
    if not callable(loss):
        raise TypeError(f"loss must be a callable Y -> (value, dY); got {type(loss).__name__}")
    explicit, map_cache = direct_to_explicit(cfg, direct)
    _, Y, cache = _forward(cfg, explicit, x0, U)
    value, dY = _validate.loss_output(loss(Y), Y)
    d_explicit, dx0, dU = _backward(cfg, explicit, cache, dY, None)
    return value, Grads(direct_to_explicit_vjp(cfg, map_cache, d_explicit), dx0, dU)


def _backward(cfg, explicit, cache, dY, dxT):
    with kernels.single_blas(dY):
        if cfg.gated:
            return _backward_gated(cfg, explicit, cache, dY, dxT)
        if cfg.scheme in RK_TABLEAUX:
            return _backward_rk(cfg, explicit, cache, dY, dxT)
        return _backward_linear_update(cfg, explicit, cache, dY, dxT)


def _backward_linear_update(cfg, explicit, cache, dY, dxT):
    """(B1)-(B4): the reverse loop only propagates the state adjoint; every weight gradient is
    one product over all T*B rows after it."""
    X, H, S = cache.X, cache.H, cache.S
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = cfg.n_units
    m = kernels.native(X)
    H_prev = xp.reshape(H[:T, ...], (T * B, N))

    # decoder (B4): one product over all rows
    dD, dby, a, dH_out = decode_backward(cfg, explicit, H, dY, dxT)

    # AdZ[t] = [a_{t+1}, dz_t] side by side: the adjoint of h_{t+1} reaches h_t through F and the
    # pre-activation's adjoint through W, one product with [F; W] per step
    AdZ = allocator.empty(xp, (T, B, 2 * N), X.dtype)
    FW = xp.concat([explicit.F, explicit.W], axis=0)
    G = explicit.G
    for t in range(T - 1, -1, -1):
        AdZ[t, :, :N] = a
        ds = cfg.eps * a if G is None else mm(a, G)
        kernels.times_slope(m, "tanh", ds, S[t, ...], out=AdZ[t, :, N:])
        a = mm(AdZ[t, ...], FW)
        if dH_out is not None and t > 0:
            a += dH_out[t - 1, ...]

    # weight gradients (B3): one product each over all T*B rows
    AdZ_rows = xp.reshape(AdZ, (T * B, 2 * N))
    dFW = mm(AdZ_rows.mT, H_prev)  # [dF; dW]
    dZ_rows = AdZ_rows[:, N:]
    dG = None if G is None else mm(AdZ_rows[:, :N].mT, xp.reshape(S, (T * B, N)))
    dU = mm(dZ_rows.mT, xp.reshape(X, (T * B, n_in)))
    db = xp.sum(dZ_rows, axis=0)
    dX = xp.reshape(mm(dZ_rows, explicit.U), (T, B, n_in))
    return Explicit(None, dFW[N:, :], dU, db, dD, dby, dFW[:N, :], dG), a, dX


def _backward_rk(cfg, explicit, cache, dY, dxT):
    """(O3)-(O4): the stages of each step in reverse; weight gradients over all stage rows after."""
    X, H, S, Hs = cache.X, cache.H, cache.S, cache.Hs
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = cfg.n_units
    m = kernels.native(X)
    a_tab, b_tab = RK_TABLEAUX[cfg.scheme]
    n_stages = len(b_tab)
    eps, alpha = cfg.eps, cfg.alpha
    dD, dby, a, dH_out = decode_backward(cfg, explicit, H, dY, dxT)
    # dKZ[t, i] = [dk_i, dz_i] side by side: one product with [alpha A; W] gives
    # alpha dk A + dz W, the adjoint of the stage state g_i
    dKZ = allocator.empty(xp, (T, n_stages, B, 2 * N), X.dtype)
    AW = xp.concat([alpha * explicit.A, explicit.W], axis=0)
    for t in range(T - 1, -1, -1):
        dg = [None] * n_stages
        a_prev = a
        for i in range(n_stages - 1, -1, -1):
            dKZ[t, i, :, :N] = (eps * b_tab[i]) * a
            for j in range(i + 1, n_stages):
                if a_tab[j][i] != 0.0:
                    dKZ[t, i, :, :N] += (eps * a_tab[j][i]) * dg[j]
            kernels.times_slope(m, "tanh", dKZ[t, i, :, :N], S[t, i, ...], out=dKZ[t, i, :, N:])
            dg[i] = mm(dKZ[t, i, ...], AW)
            a_prev = a_prev + dg[i]
        a = a_prev
        if dH_out is not None and t > 0:
            a = a + dH_out[t - 1, ...]
    rows = T * n_stages * B
    Hs_rows = xp.reshape(Hs, (rows, N))
    dKZ_rows = xp.reshape(dKZ, (rows, 2 * N))
    dAW = mm(dKZ_rows.mT, Hs_rows)  # [dA / alpha; dW]
    dZ_t = xp.reshape(xp.sum(dKZ[..., N:], axis=1), (T * B, N))
    dU = mm(dZ_t.mT, xp.reshape(X, (T * B, n_in)))
    db = xp.sum(dZ_t, axis=0)
    dX = xp.reshape(mm(dZ_t, explicit.U), (T, B, n_in))
    return Explicit(alpha * dAW[:N, :], dAW[N:, :], dU, db, dD, dby, None, None), a, dX


def _backward_gated(cfg, explicit, cache, dY, dxT):
    """(G2)-(G3)."""
    X, H, S, Q = cache.X, cache.H, cache.S, cache.Q
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    N = cfg.n_units
    eps, alpha = cfg.eps, cfg.alpha
    H_prev = xp.reshape(H[:T, ...], (T * B, N))
    # the drift p_t + s_t, rebuilt in one product rather than stored
    Drift = xp.reshape(mm(H_prev, (alpha * explicit.A).mT), (T, B, N)) + S
    dD, dby, a, dH_out = decode_backward(cfg, explicit, H, dY, dxT)
    # dPZ[t] = [du_t, dz_t + dzg_t] side by side: one product with [alpha A; W] per step
    dPZ = allocator.empty(xp, (T, B, 2 * N), X.dtype)
    dZ = allocator.empty(xp, (T, B, N), X.dtype)
    dZg = allocator.empty(xp, (T, B, N), X.dtype)
    AW = xp.concat([alpha * explicit.A, explicit.W], axis=0)
    for t in range(T - 1, -1, -1):
        s, q = S[t, ...], Q[t, ...]
        dPZ[t, :, :N] = eps * a * q
        dZ[t, ...] = dPZ[t, :, :N] * (1.0 - s * s)
        dZg[t, ...] = (eps * a * Drift[t, ...]) * q * (1.0 - q)
        dPZ[t, :, N:] = dZ[t, ...] + dZg[t, ...]
        a = a + mm(dPZ[t, ...], AW)
        if dH_out is not None and t > 0:
            a = a + dH_out[t - 1, ...]
    dPZ_rows = xp.reshape(dPZ, (T * B, 2 * N))
    dZ_rows = xp.reshape(dZ, (T * B, N))
    dZg_rows = xp.reshape(dZg, (T * B, N))
    X_rows = xp.reshape(X, (T * B, n_in))
    dAW = mm(dPZ_rows.mT, H_prev)  # [dA / alpha; dW]
    dU, db = mm(dZ_rows.mT, X_rows), xp.sum(dZ_rows, axis=0)
    dUg, dbg = mm(dZg_rows.mT, X_rows), xp.sum(dZg_rows, axis=0)
    dX = xp.reshape(mm(dZ_rows, explicit.U) + mm(dZg_rows, explicit.Ug), (T, B, n_in))
    return Explicit(alpha * dAW[:N, :], dAW[N:, :], dU, db, dD, dby, None, None, dUg, dbg), a, dX
