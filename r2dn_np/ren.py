"""Recurrent equilibrium network (REN): an LTI system in feedback with an equilibrium layer.

Revay, Wang & Manchester, "Recurrent Equilibrium Networks: Flexible Dynamic Models with
Guaranteed Stability and Robustness" (IEEE TAC 2023). The baseline the
R2DN paper compares against. Two kinds, each guaranteed for every value of the free
parameters:

- ``kind="contracting"``: contracting with rate ``abar`` in the metric ``M = E^T P^-1 E``.
- ``kind="lipschitz"``: gamma-Lipschitz from input to output, with a free ``D22`` of norm
  below gamma (``d22="free"``, the authors' default) or ``D22 = 0`` (``d22="zero"``).

The network in the loop is ``w = sigma(D11 w + C1 x + D12 u + bv)``. With ``layer="acyclic"``
(the default) ``D11`` is strictly lower triangular, solved exactly row by row
(``r2dn_np.layers.equilibrium``); with ``layer="full"`` it is a full matrix (zero diagonal) made
well-posed by the map, and the layer is solved by operator splitting with a convergence
guarantee (``r2dn_np.layers.equilibrium_full``, section 7 of ``docs/derivations/ren.md``). This module holds only
the parameterisation; the rest of the model protocol (``docs/protocol.md``) is shared with the
R2DN (``feedback_model.py``). Read with ``equilibrium.py`` and ``feedback.py``. Derivations:
``docs/derivations/ren.md``; the authors' Flax parameters: ``flax_interop.py``.

Examples
--------
>>> import numpy as np
>>> from r2dn_np import ren
>>> from r2dn_np.training import losses
>>> cfg = ren.Config(nu=2, nx=4, nv=8, ny=3, kind="lipschitz", gamma=2.0, activation="tanh")
>>> direct = ren.init(cfg, seed=0)
>>> U = np.random.default_rng(0).standard_normal((20, 5, 2))     # (T, B, nu)
>>> x0 = np.zeros((5, 4))
>>> loss, grads = ren.value_and_grad(cfg, direct, x0, U, lambda Y: losses.mse(Y, 0 * Y))
>>> grads.direct.X.shape, grads.direct.Z3.shape, grads.U.shape
((16, 16), (1, 2), (20, 5, 2))
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple, Optional

import numpy as np
from array_api_compat import array_namespace

from .core import _validate, activations, linalg, supply
from .layers import equilibrium, equilibrium_full
from .loop import feedback_model
from .core._config import JSONConfig
from .core._random import lecun_normal
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
    "phi",
]


@dataclasses.dataclass(frozen=True)
class Config(JSONConfig):
    """Sizes and options of a REN.

    ``abar`` in (0, 1] bounds the contraction rate. ``d22`` applies to the Lipschitz and
    (Q, S, R) kinds; the contracting kind always has a free ``D22``. ``kind="qsr"`` makes the REN
    incrementally (Q, S, R)-dissipative for the supply ``Q`` (ny x ny), ``S`` (nu x ny), ``R``
    (nu x nu) (``r2dn_np.core.supply``); ``learn_gamma`` (Lipschitz kind) trains gamma. ``eps`` is used
    in ``eps I`` (in ``H`` and in the ``D22`` map) and in ``p``'s initial value; ``eps_n`` is the
    constant inside the Frobenius norm of the polar map, fixed at ``2^-23`` in the authors' code
    (their ``l2_norm`` default) whatever their ``eps``. ``init="long_memory"`` starts with ``A``
    close to the identity. ``identity_output=True`` (contracting kind, ``ny == nx``) fixes the
    output map to ``y = x``: ``C2 = I``, ``D21 = 0``, ``D22 = 0``, ``by = 0``, not trainable (those
    fields of ``Direct`` are None), (N9) of ``docs/derivations/ren.md``.

    ``layer="acyclic"`` (default) makes ``D11`` strictly lower triangular (exact row-by-row solve);
    ``layer="full"`` adds the free skew part ``Y2`` to ``D11`` (section 7 of
    ``docs/derivations/ren.md``), solved to the relative residual ``layer_tol`` in at most
    ``layer_max_iter`` iterations by ``layer_solver`` (``"pr"``, the default: Peaceman-Rachford
    splitting, linear convergence guaranteed; ``"anderson"``: Anderson acceleration of the same
    map, finishing with the plain map if it stalls: fewer but dearer iterations, worth it for a
    strongly cyclic layer). Configs saved without these fields load as acyclic.
    """

    nu: int
    nx: int
    nv: int
    ny: int
    activation: str = "relu"
    kind: str = "contracting"
    gamma: float = 1.0
    abar: float = 1.0
    d22: str = "free"
    eps: float = 2.0**-23
    polar: bool = True
    init: str = "random"
    Q: Optional[tuple] = None
    S: Optional[tuple] = None
    R: Optional[tuple] = None
    learn_gamma: bool = False
    identity_output: bool = False
    eps_n: float = 2.0**-23
    layer: str = "acyclic"
    layer_solver: str = "pr"
    layer_tol: float = 1e-12
    layer_max_iter: int = 2000

    model: ClassVar[str] = "ren"

    def __post_init__(self):
        for name in ("nu", "nx", "nv", "ny"):
            _validate.dimension(name, getattr(self, name))
        _validate.one_of("activation", self.activation, activations.NAMES)
        _validate.one_of("kind", self.kind, ("contracting", "lipschitz", "qsr"))
        _validate.one_of("d22", self.d22, ("zero", "free"))
        _validate.one_of("init", self.init, ("random", "long_memory"))
        object.__setattr__(self, "gamma", _validate.positive_float("gamma", self.gamma))
        abar = _validate.positive_float("abar", self.abar)
        if abar > 1.0:
            raise ValueError(f"abar must lie in (0, 1]; got {self.abar!r}")
        object.__setattr__(self, "abar", abar)
        object.__setattr__(self, "eps", _validate.positive_float("eps", self.eps))
        object.__setattr__(self, "eps_n", _validate.positive_float("eps_n", self.eps_n))
        if not isinstance(self.polar, bool):
            raise TypeError(f"polar must be a bool; got {self.polar!r}")
        for name, value in (("Q", self.Q), ("S", self.S), ("R", self.R)):
            object.__setattr__(self, name, supply.config_matrix(name, value, self.kind))
        if self.kind == "qsr":
            for name, value in zip("QSR", supply.check(self.nu, self.ny, self.Q, self.S, self.R)):
                object.__setattr__(self, name, value)
        if not isinstance(self.learn_gamma, bool):
            raise TypeError(f"learn_gamma must be a bool; got {self.learn_gamma!r}")
        if self.learn_gamma and self.kind != "lipschitz":
            raise ValueError(f"learn_gamma needs kind='lipschitz'; got kind={self.kind!r}")
        object.__setattr__(self, "identity_output", _validate.flag("identity_output", self.identity_output))
        if self.identity_output and self.kind != "contracting":
            raise ValueError(f"identity_output needs kind='contracting'; got kind={self.kind!r}")
        if self.identity_output and self.ny != self.nx:
            raise ValueError(f"identity_output (y = x) needs ny == nx; got ny={self.ny}, nx={self.nx}")
        _validate.one_of("layer", self.layer, ("acyclic", "full"))
        _validate.one_of("layer_solver", self.layer_solver, equilibrium_full.SOLVERS)
        tol = _validate.positive_float("layer_tol", self.layer_tol)
        if tol >= 1.0:
            raise ValueError(f"layer_tol must be in (0, 1) (a relative residual); got {self.layer_tol!r}")
        object.__setattr__(self, "layer_tol", tol)
        object.__setattr__(self, "layer_max_iter", _validate.positive_int("layer_max_iter", self.layer_max_iter))

    @property
    def n(self):
        """Size of ``X`` and ``H``: ``2 nx + nv``."""
        return 2 * self.nx + self.nv

    @property
    def d(self):
        """Size of the square blocks ``X3, Y3`` of the ``D22`` map: ``min(nu, ny)``."""
        return min(self.nu, self.ny)

    @property
    def free_d22_map(self):
        return self.kind in ("lipschitz", "qsr") and self.d22 == "free"


class Direct(NamedTuple):
    """Free parameters, named as in the authors' code. ``B2`` and ``D12`` are the implicit
    matrices (B2-tilde and D12-tilde of ``docs/derivations/ren.md`` section 1). The contracting kind has a free
    ``D22``; the Lipschitz kind has ``X3, Y3, Z3`` with ``d22="free"`` and none of the four
    with ``d22="zero"``. With ``identity_output`` the output map is fixed, and ``C2, D21, D22,
    by`` are None. Absent fields are None."""

    X: object  # (2nx+nv, 2nx+nv)
    p: object  # ()
    Y1: object  # (nx, nx)
    B2: object  # (nx, nu)
    D12: object  # (nv, nu)
    C2: Optional[object]  # (ny, nx)
    D21: Optional[object]  # (ny, nv)
    D22: Optional[object]  # (ny, nu)
    X3: Optional[object]  # (d, d)
    Y3: Optional[object]  # (d, d)
    Z3: Optional[object]  # (|ny - nu|, d)
    bx: object
    bv: object
    by: Optional[object]
    log_gamma: Optional[object] = None  # () with learn_gamma: gamma = exp(log_gamma)
    Y2: Optional[object] = None  # (nv, nv) with layer="full": D11~ = -strict_lower(H22) + Y2 - Y2^T


class Explicit(NamedTuple):
    """Explicit model; the equilibrium layer's weight sits in ``phi.D11`` (``.D11`` reads it)."""

    A: object
    B1: object
    B2: object
    C1: object
    C2: object
    D12: object
    D21: object
    D22: object
    bx: object
    bv: object
    by: object
    phi: equilibrium.Params

    @property
    def D11(self):
        return self.phi.D11


class Grads(NamedTuple):
    direct: Direct
    x0: object
    U: object


class MapCache(NamedTuple):
    """Intermediate quantities of the map; certificates read ``H, E, P, F, B1t, C1t, Lam``."""

    direct: Direct
    H: object  # (n, n), the matrix whose blocks define the implicit model
    E: object
    P: object
    F: object
    B1t: object  # B1-tilde = H32
    C1t: object  # C1-tilde = -H21
    D11t: object  # D11-tilde = -strict_lower(H22) (+ Y2 - Y2^T for the full layer)
    lam_inv: object  # (nv,) 2 / diag(H22) = Lambda^-1
    AB: object  # E^-1 [F B1t B2t]
    lip: Optional[object]  # _LipCache for the Lipschitz and (Q, S, R) kinds
    core: Optional[object] = None  # the unit-gain core's Explicit when a supply transform follows


class _LipCache(NamedTuple):
    D22: object
    N: Optional[object]
    K: Optional[object]  # I + M3 (or its transpose), the matrix the D22 map solves with
    Nw: Optional[object]  # solve(K, ...) before the transpose
    mQ: object  # [C2, D21, 0]
    mR: object  # [C2t, D21t, B2t^T]
    Rg: object  # gamma I - D22^T D22 / gamma
    S: object  # Rg^-1 mR


def phi(cfg):
    """The equilibrium layer of ``cfg`` as the feedback map (``r2dn_np.core.static_map.Phi``)."""
    if cfg.layer == "full":
        return equilibrium_full.as_phi(cfg.activation, cfg.layer_tol, cfg.layer_max_iter, cfg.layer_solver)
    return equilibrium.as_phi(cfg.activation)


# --- initialisation ---------------------------------------------------------------------------


def init(cfg, seed=0, backend=None, dtype="float64"):
    """Seeded free parameters, as the authors initialise them.

    Lecun-normal weights, zero biases and ``D22``, ``X3 = I``, ``Y3 = Z3 = 0`` (so the
    Lipschitz ``D22`` starts at zero), ``p = ||X||``. ``init="long_memory"`` sets ``Y1 = I``
    and ``X`` the upper Cholesky factor of the ``H`` with ``E = P = I``,
    ``F = I - diag(0.05 U(0, 1))``, ``B1~ = C1~ = 0`` and ``H22 = 2 Lambda - D11 - D11^T``
    for a random ``D11`` (the authors' ``RENBase``).
    """
    _validate.seed("seed", seed)
    xp = namespace(backend)
    rng = np.random.default_rng(seed)
    nu, nx, nv, ny, n, d = cfg.nu, cfg.nx, cfg.nv, cfg.ny, cfg.n, cfg.d

    def put(a):
        return None if a is None else asarray(np.asarray(a, dtype=np.float64), xp, dtype)

    B2 = lecun_normal(rng, (nx, nu))
    D12 = lecun_normal(rng, (nv, nu))
    C2 = lecun_normal(rng, (ny, nx))
    D21 = lecun_normal(rng, (ny, nv))
    if cfg.init == "random":
        X = lecun_normal(rng, (n, n))
        Y1 = lecun_normal(rng, (nx, nx))
    else:
        I = np.eye(nx)
        F = I - np.diag(0.05 * rng.uniform(size=nx))
        D11 = lecun_normal(rng, (nv, nv))
        lam = np.linalg.eigvalsh(D11 + D11.T).max() / 2 + 1e-4  # keeps H22 positive definite
        H = np.block([
            [I, np.zeros((nx, nv)), F.T],
            [np.zeros((nv, nx)), 2 * lam * np.eye(nv) - D11 - D11.T, np.zeros((nv, nx))],
            [F, np.zeros((nx, nv)), I],
        ]) + cfg.eps * np.eye(n)
        X = np.linalg.cholesky(H).T
        Y1 = I
    p = np.sqrt(np.sum(X * X) + cfg.eps)
    D22 = np.zeros((ny, nu)) if cfg.kind == "contracting" else None
    X3 = Y3 = Z3 = None
    if cfg.free_d22_map:
        X3, Y3, Z3 = np.eye(d), np.zeros((d, d)), np.zeros((abs(ny - nu), d))
    by = np.zeros(ny)
    if cfg.identity_output:
        C2 = D21 = D22 = by = None  # C2 and D21 were still drawn: the rest matches the seed's model
    Y2 = 0.1 * lecun_normal(rng, (nv, nv)) if cfg.layer == "full" else None
    return Direct(
        put(X), put(p), put(Y1), put(B2), put(D12), put(C2), put(D21), put(D22),
        put(X3), put(Y3), put(Z3), put(np.zeros(nx)), put(np.zeros(nv)), put(by),
        put(np.log(cfg.gamma)) if cfg.learn_gamma else None, put(Y2),
    )


# --- stage 1: free parameters -> explicit model -------------------------------------------------


def _column(v):
    """``(n,) -> (n, 1)`` so that ``_column(s) * M`` scales the rows of ``M``."""
    return array_namespace(v).reshape(v, (int(v.shape[0]), 1))


# One map and one map VJP per kind, as pure functions, chosen by ``_kind``. Every kind builds the
# matrix H and reads the implicit model off its blocks the same way (``_from_H``); the kinds differ
# in how H is built and in which fields of ``Direct`` they own.


def _from_H(cfg, d, H, output, lip):
    """The explicit model read off ``H``'s blocks, (N1)-(N4) of ``docs/derivations/ren.md``;
    ``output`` is ``(C2, D21, D22, by)``, which the kinds supply (fixed, free or mapped)."""
    xp = array_namespace(d.X)
    nx, nv = cfg.nx, cfg.nv
    # block order (x, w, x+) with sizes (nx, nv, nx)
    w_, x1_ = slice(nx, nx + nv), slice(nx + nv, None)
    H22 = H[w_, w_]
    P = H[x1_, x1_]
    F = H[x1_, :nx]
    B1t = H[x1_, w_]
    C1t = -H[w_, :nx]
    D11t = -xp.tril(H22, k=-1)
    if cfg.layer == "full":  # (F2) of docs/derivations/ren.md: a skew part keeps H22 = 2 Lambda - D11~ - D11~^T
        D11t = D11t + d.Y2 - d.Y2.mT
    lam_inv = 2.0 / xp.linalg.diagonal(H22)
    E = 0.5 * (H[:nx, :nx] + P / cfg.abar**2 + d.Y1 - d.Y1.mT)
    AB = linalg.solve(E, xp.concat([F, B1t, d.B2], axis=1))
    s = _column(lam_inv)
    C2, D21, D22, by = output
    explicit = Explicit(
        AB[:, :nx], AB[:, nx:nx + nv], AB[:, nx + nv:], s * C1t, C2, s * d.D12, D21, D22,
        d.bx, d.bv, by, equilibrium.Params(s * D11t),
    )
    return explicit, MapCache(d, H, E, P, F, B1t, C1t, D11t, lam_inv, AB, lip)


class _FromHGrads(NamedTuple):
    """Cotangents from :func:`_from_H_vjp`: of ``H`` and of the fields of ``Direct`` every kind
    passes to :func:`_from_H` (``Y2`` None for the acyclic layer)."""

    H: object
    Y1: object
    B2: object
    D12: object
    bx: object
    bv: object
    Y2: Optional[object]


def _from_H_vjp(cfg, cache, de):
    """Back through :func:`_from_H`, section 3 of ``docs/derivations/ren.md``; None fields of
    ``de`` count as zero."""
    d = cache.direct
    xp = array_namespace(d.X)
    nx, nv = cfg.nx, cfg.nv
    z = _zero_if_none

    # [A B1 B2] = E^-1 [F B1~ B2~]
    dAB = xp.concat([z(de.A, cache.F), z(de.B1, cache.B1t), z(de.B2, d.B2)], axis=1)
    dE, drhs = linalg.solve_vjp(cache.E, cache.AB, dAB)
    dF, dB1t, dB2 = drhs[:, :nx], drhs[:, nx:nx + nv], drhs[:, nx + nv:]
    # row scalings by Lambda^-1 = 2 / diag(H22)
    dC1 = z(de.C1, cache.C1t)
    dD11 = z(None if de.phi is None else de.phi.D11, cache.D11t)
    dD12e = z(de.D12, d.D12)
    s = _column(cache.lam_inv)
    dlam_inv = (xp.sum(dC1 * cache.C1t, axis=1) + xp.sum(dD11 * cache.D11t, axis=1)
                + xp.sum(dD12e * d.D12, axis=1))
    dD12 = s * dD12e
    I_v = linalg.eye_like(nv, d.X)
    dD11t = s * dD11
    dH22 = -xp.tril(dD11t, k=-1) - I_v * (0.5 * cache.lam_inv**2 * dlam_inv)
    dH21 = -(s * dC1)
    dH11 = 0.5 * dE
    dP = (0.5 / cfg.abar**2) * dE
    zeros = lambda m, k: xp.zeros((m, k), dtype=d.X.dtype)  # noqa: E731
    dH = xp.concat([
        xp.concat([dH11, zeros(nx, nv), zeros(nx, nx)], axis=1),
        xp.concat([dH21, dH22, zeros(nv, nx)], axis=1),
        xp.concat([dF, dB1t, dP], axis=1),
    ], axis=0)
    dY2 = dD11t - dD11t.mT if cfg.layer == "full" else None
    return _FromHGrads(dH, 0.5 * (dE - dE.mT), dB2, dD12, z(de.bx, d.bx), z(de.bv, d.bv), dY2)


def _zero_if_none(g, like):
    return array_namespace(like).zeros_like(like) if g is None else g


def _polar_H(cfg, d):
    """``polar(X, p) + eps I``, the part of H every kind shares."""
    return linalg.polar(d.X, d.p, cfg.eps_n, cfg.polar) + cfg.eps * linalg.eye_like(cfg.n, d.X)


# The contracting kind, (N1)-(N4): H = polar(X, p) + eps I, a free output map (or y = x).


def _contracting_map(cfg, d):
    return _from_H(cfg, d, _polar_H(cfg, d), _output_map(cfg, d), None)


def _output_map(cfg, d):
    """``(C2, D21, D22, by)``: free, or the fixed ``y = x`` of ``identity_output``, (N9) of
    ``docs/derivations/ren.md``."""
    if cfg.identity_output:
        return feedback_model.identity_output(cfg, d.X)
    return d.C2, d.D21, d.D22, d.by


def _contracting_map_vjp(cfg, cache, de):
    d = cache.direct
    z = _zero_if_none
    g = _from_H_vjp(cfg, cache, de)
    dX, dp = linalg.polar_vjp(d.X, d.p, cfg.eps_n, g.H, cfg.polar)
    if cfg.identity_output:  # the output map is fixed: nothing to train
        dC2 = dD21 = dD22 = dby = None
    else:
        dC2, dD21, dD22, dby = z(de.C2, d.C2), z(de.D21, d.D21), z(de.D22, d.D22), z(de.by, d.by)
    return d._replace(X=dX, p=dp, Y1=g.Y1, B2=g.B2, D12=g.D12, C2=dC2, D21=dD21, D22=dD22,
                      bx=g.bx, bv=g.bv, by=dby, Y2=g.Y2)


# The gamma-Lipschitz kind, (N5)-(N8): H gains m_Q^T m_Q / gamma + m_R^T R_gamma^-1 m_R.


def _lipschitz_map(cfg, d):
    lip = _lipschitz_terms(cfg, d)
    H = _polar_H(cfg, d)
    H = H + (lip.mQ.mT @ lip.mQ) / cfg.gamma + lip.mR.mT @ lip.S
    return _from_H(cfg, d, H, (d.C2, d.D21, lip.D22, d.by), lip)


def _lipschitz_map_vjp(cfg, cache, de):
    d, lip = cache.direct, cache.lip
    z = _zero_if_none
    g = _from_H_vjp(cfg, cache, de)
    dC2, dD21, dB2, dD12, dX3, dY3, dZ3 = _lipschitz_terms_vjp(
        cfg, d, lip, g.H, z(de.D22, lip.D22), z(de.C2, d.C2), z(de.D21, d.D21), g.B2, g.D12)
    dX, dp = linalg.polar_vjp(d.X, d.p, cfg.eps_n, g.H, cfg.polar)
    return d._replace(X=dX, p=dp, Y1=g.Y1, B2=dB2, D12=dD12, C2=dC2, D21=dD21, X3=dX3, Y3=dY3,
                      Z3=dZ3, bx=g.bx, bv=g.bv, by=z(de.by, d.by), Y2=g.Y2)


def _d22_map(cfg, X3, Y3, Z3):
    """``N`` of (N6) in ``docs/derivations/ren.md`` with ``||N|| < 1``, shape ``(ny, nu)``, and what its VJP needs.

    Both shapes are one solve: ``N = (I + M3)^-1 [I - M3, -2 Z3^T]`` when ``ny < nu``, and
    the transpose of the same expression in ``M3^T`` when ``ny >= nu``.
    """
    xp = array_namespace(X3)
    I = linalg.eye_like(cfg.d, X3)
    M3 = X3.mT @ X3 + Y3 - Y3.mT + Z3.mT @ Z3 + cfg.eps * I
    wide = cfg.ny < cfg.nu
    Mw = M3 if wide else M3.mT
    K = I + Mw
    Nw = linalg.solve(K, xp.concat([I - Mw, -2.0 * Z3.mT], axis=1))
    return (Nw if wide else Nw.mT), K, Nw


def _d22_map_vjp(cfg, d, K, Nw, dN):
    wide = cfg.ny < cfg.nu
    dK, drhs = linalg.solve_vjp(K, Nw, dN if wide else dN.mT)
    dMw = dK - drhs[:, :cfg.d]
    dZ3 = -2.0 * drhs[:, cfg.d:].mT
    dM3 = dMw if wide else dMw.mT
    dM3s = dM3 + dM3.mT
    return d.X3 @ dM3s, dM3 - dM3.mT, dZ3 + d.Z3 @ dM3s


def _lipschitz_terms(cfg, d):
    """``D22``, ``m_Q``, ``m_R`` and ``R_gamma``, (N5)-(N7) of ``docs/derivations/ren.md``."""
    xp = array_namespace(d.X)
    g = cfg.gamma
    if cfg.d22 == "free":
        N, K, Nw = _d22_map(cfg, d.X3, d.Y3, d.Z3)
        D22 = g * N
    else:
        N = K = Nw = None
        D22 = xp.zeros((cfg.ny, cfg.nu), dtype=d.X.dtype)
    C2t = -(D22.mT @ d.C2) / g
    D21t = -(D22.mT @ d.D21) / g - d.D12.mT
    Rg = g * linalg.eye_like(cfg.nu, d.X) - (D22.mT @ D22) / g
    mQ = xp.concat([d.C2, d.D21, xp.zeros((cfg.ny, cfg.nx), dtype=d.X.dtype)], axis=1)
    mR = xp.concat([C2t, D21t, d.B2.mT], axis=1)
    return _LipCache(D22, N, K, Nw, mQ, mR, Rg, linalg.solve(Rg, mR))


def _lipschitz_terms_vjp(cfg, d, lip, dH, dD22, dC2, dD21, dB2, dD12):
    """Back through ``H += m_Q^T m_Q / gamma + m_R^T R_gamma^-1 m_R`` and the ``D22`` map.

    Takes the cotangents ``dC2, dD21, dB2, dD12`` gathered so far and returns them with this
    term's share added, and ``dX3, dY3, dZ3`` (None with ``d22="zero"``).
    """
    g = cfg.gamma
    nx, nv = cfg.nx, cfg.nv
    dmQ = lip.mQ @ (dH + dH.mT) / g
    dRg, dmR = linalg.solve_vjp(lip.Rg, lip.S, lip.mR @ dH)
    dmR = dmR + lip.S @ dH.mT
    dC2t, dD21t = dmR[:, :nx], dmR[:, nx:nx + nv]
    dB2 = dB2 + dmR[:, nx + nv:].mT
    dD12 = dD12 - dD21t.mT
    dC2 = dC2 + dmQ[:, :nx] - (lip.D22 @ dC2t) / g
    dD21 = dD21 + dmQ[:, nx:nx + nv] - (lip.D22 @ dD21t) / g
    dX3 = dY3 = dZ3 = None
    if cfg.d22 == "free":
        dD22 = dD22 - (d.C2 @ dC2t.mT + d.D21 @ dD21t.mT + lip.D22 @ (dRg + dRg.mT)) / g
        dX3, dY3, dZ3 = _d22_map_vjp(cfg, d, lip.K, lip.Nw, g * dD22)
    return dC2, dD21, dB2, dD12, dX3, dY3, dZ3


# A supply rate other than a fixed gamma (kind="qsr", or learn_gamma): the gamma-Lipschitz map at
# gamma = 1 (the unit-gain core) mapped back by supply.transform, (Q1)-(Q3) of docs/derivations/qsr.md.


def _supply_map(cfg, d):
    return supply.supply_map(cfg, d, _lipschitz_map)


def _supply_map_vjp(cfg, cache, de):
    return supply.supply_map_vjp(cfg, cache, de, _lipschitz_map_vjp)


_KINDS = {
    "contracting": (_contracting_map, _contracting_map_vjp),
    "lipschitz": (_lipschitz_map, _lipschitz_map_vjp),
    "qsr": (_supply_map, _supply_map_vjp),
}


def _kind(cfg):
    """``(map, map_vjp)`` of ``cfg``'s kind; a learned gamma goes through the supply map."""
    return _KINDS["qsr"] if cfg.learn_gamma else _KINDS[cfg.kind]


def _map(cfg, direct):
    return _kind(cfg)[0](cfg, direct)


def _map_vjp(cfg, cache, d_explicit):
    return _kind(cfg)[1](cfg, cache, d_explicit)


# --- the rest of the model protocol, shared with every feedback model (feedback_model.py) --------

(direct_to_explicit, direct_to_explicit_vjp, forward, backward, step, value_and_grad,
 _templates) = feedback_model.functions(feedback_model.Spec(
    "ren", Grads, init, phi, _map, _map_vjp))
