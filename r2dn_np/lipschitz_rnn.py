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
     and ``G = eps S^-1``. ``S`` is inverted here, once per rollout, never per step.

2. ``forward(cfg, explicit, h0, X)`` on time-major ``X`` (T, B, n_in); the decoder reads the final
   state (``decoder="last"``, classification) or every state (``"sequence"``, regression).
3. ``backward(cfg, explicit, cache, d_outputs)``: back-propagation through time.

The rows are column vectors of the maths stored as rows: the code computes ``h @ A.mT``. (The
authors' PyTorch code computes ``h @ A``, i.e. uses ``A^T``; ``A^T`` has the same symmetric part and
the opposite skew part, so the two parameterise the same class of models.)

The stability tools at the end (:func:`eigenvalue_bounds`, :func:`max_stable_step`,
:func:`lyapunov_certificate`) are analysis utilities, not part of training: they copy their input
to host NumPy and use NumPy/SciPy eigen- and Lyapunov solvers, which the array API does not have.

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
    "LyapunovCertificate",
    "lyapunov_certificate",
]

SCHEMES = ("euler", "imex")
DECODERS = ("last", "sequence")


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


class Direct(NamedTuple):
    """Free parameters: every value gives a model whose spectra obey Proposition 2."""

    M: object  # (N, N), gives A
    C: object  # (N, N), gives W
    U: object  # (N, n_in)
    b: object  # (N,)
    D: object  # (n_out, N)
    by: object  # (n_out,)


class Explicit(NamedTuple):
    """Model weights. The time loop uses ``F, G, W, U, b``; ``A`` is kept for inspection and the
    stability tools (``backward`` returns ``None`` for it: F and G carry its influence)."""

    A: object  # (N, N)
    W: object  # (N, N)
    U: object  # (N, n_in)
    b: object  # (N,)
    D: object  # (n_out, N)
    by: object  # (n_out,)
    F: object  # (N, N): h_{t+1} = F h_t + G s_t
    G: Optional[object]  # (N, N) for "imex"; None for "euler", where G = eps I


class MapCache(NamedTuple):
    direct: Direct
    A: object
    R: Optional[object]  # (I - eps rho alpha A)^-1 for "imex"
    P: Optional[object]  # I + eps (1 - rho) alpha A for "imex"


class Cache(NamedTuple):
    """What BPTT needs: the inputs, the states ``h_0..h_T`` and the tanh outputs ``s_0..s_{T-1}``."""

    X: object  # (T, B, n_in)
    H: object  # (T + 1, B, N)
    S: object  # (T, B, N)


def init(cfg, seed=0, backend=None, dtype="float64"):
    """Seeded initialisation as in the authors' code.

    ``M, C ~ N(0, (init_std / N)^2)``; ``U`` and ``D`` Xavier-normal
    (``std = sqrt(2 / (fan_in + fan_out))``); biases zero. Draws in the order M, C, U, D.
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
    return Direct(put(M), put(C), put(U), put(np.zeros(N)), put(D), put(np.zeros(cfg.n_out)))


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
    like = direct.M if hasattr(direct.M, "dtype") else None
    for name, shape in shapes.items():
        _validate.array(f"direct.{name}", getattr(direct, name), list(shape), like=like)


def direct_to_explicit(cfg, direct):
    """Map free parameters to model weights. Returns ``(explicit, cache)``.

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md``, equations (D1)-(D4).
    """
    _check_direct(cfg, direct)
    A = symmetric_skew(direct.M, cfg.beta, cfg.gamma)
    W = symmetric_skew(direct.C, cfg.beta, cfg.gamma)
    I = linalg.eye_like(cfg.n_units, A)
    if cfg.scheme == "euler":
        F = I + (cfg.eps * cfg.alpha) * A
        G = R = P = None
    else:
        R = linalg.solve(I - (cfg.eps * cfg.rho * cfg.alpha) * A, I)
        P = I + (cfg.eps * (1.0 - cfg.rho) * cfg.alpha) * A
        F = R @ P
        G = cfg.eps * R
    explicit = Explicit(A, W, direct.U, direct.b, direct.D, direct.by, F, G)
    return explicit, MapCache(direct, A, R, P)


def direct_to_explicit_vjp(cfg, cache, d_explicit):
    """Cotangent of the free parameters given that of the explicit weights.

    ``None`` entries of ``d_explicit`` count as zero. Returns a ``Direct``.

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md``, equations (V1)-(V4).
    """
    direct = cache.direct
    xp = array_namespace(direct.M)
    dA = _zero_if_none(d_explicit.A, cache.A)
    dF = d_explicit.F
    if cfg.scheme == "euler":
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
    dC = _symmetric_skew_vjp(cfg.beta, _zero_if_none(d_explicit.W, direct.C))
    return Direct(
        dM, dC,
        _zero_if_none(d_explicit.U, direct.U), _zero_if_none(d_explicit.b, direct.b),
        _zero_if_none(d_explicit.D, direct.D), _zero_if_none(d_explicit.by, direct.by),
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
    ``docs/derivations/lipschitz_rnn.md``, equations (R1)-(R3).
    """
    _check_sequence("X", X, cfg.n_in, explicit.W)
    h0 = _check_h0(cfg, h0, X)
    H, S = _rollout(cfg, explicit, h0, X)
    return _decode(cfg, explicit, H), Cache(X, H, S)


def _input_projection(explicit, X):
    """``U x_t + b`` for all T*B rows at once, outside the time loop: ``(T, B, N)``."""
    xp = array_namespace(X)
    T, B, n_in = (int(s) for s in X.shape)
    return xp.reshape(xp.reshape(X, (T * B, n_in)) @ explicit.U.mT + explicit.b, (T, B, -1))


def _rollout(cfg, explicit, h0, X):
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
    d_explicit : Explicit (``A`` is None: the loop depends on A only through F and G; ``G`` is
        None for ``"euler"``)

    Notes
    -----
    ``docs/derivations/lipschitz_rnn.md``, equations (B1)-(B4).
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
    X, H, S = cache
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
    H, S = _rollout(cfg, explicit, h0, X)
    cache = Cache(X, H, S)
    logits = _decode(cfg, explicit, H)
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


def max_stable_step(A, alpha=1.0, rho=0.0):
    """Largest ``eps`` below which the linear part of the scheme is stable: ``sup{e : the update
    matrix F of every eps in (0, e) has spectral radius < 1}``.

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
    """
    a = _host_square("A", A)
    alpha = _float_in("alpha", alpha, 0.0, math.inf)
    rho = _float_in("rho", rho, 0.0, 1.0)
    if alpha == 0.0:
        return math.inf
    lam = np.linalg.eigvals(a)
    mod2 = np.abs(lam) ** 2
    re = np.where(np.abs(lam.real) <= 1e-12 * np.sqrt(np.max(mod2)), 0.0, lam.real)
    q = (1.0 - 2.0 * rho) * mod2
    bound = np.full(lam.shape, math.inf)
    bound[(re > 0.0) | (mod2 == 0.0) | ((re == 0.0) & (q >= 0.0))] = 0.0
    damped = (re < 0.0) & (q > 0.0)
    bound[damped] = -2.0 * re[damped] / q[damped]
    return float(np.min(bound)) / alpha


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
