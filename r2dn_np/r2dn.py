"""Robust Recurrent Deep Network (R2DN): an LTI system in feedback with a 1-Lipschitz LBDN.

Barbara, Wang & Manchester, "R2DN: Scalable Parameterization of Contracting and Lipschitz
Recurrent Deep Networks". Two kinds, each guaranteed for every value of the free
parameters (``docs/derivations/r2dn.md`` sections 2 and 3, ``docs/guarantees.md``):

- ``kind="contracting"``: the authors' map; contracting in the metric ``M = E^T P^-1 E``.
- ``kind="lipschitz"``: gamma-Lipschitz from input to output (incremental l2 gain <= gamma),
  with ``d22="zero"`` (the paper's assumption) or ``d22="free"``; ``learn_gamma=True`` makes
  ``gamma = exp(log_gamma)`` a free parameter.
- ``kind="qsr"``: incrementally (Q, S, R)-dissipative for a user's ``Q < 0`` and
  ``R - S Q^-1 S^T > 0`` (beyond the paper; ``r2dn_np.core.supply``).

``lti="diagonal"`` / ``"diagonal_plus_lowrank"`` (contracting and fixed-gamma Lipschitz kinds)
replaces the dense LTI part by ``A = diag(a) + U V^T`` from a map with no ``nx x nx``
factorisation, guaranteed in a learned diagonal metric (section 7 of ``docs/derivations/r2dn.md``);
its explicit model carries ``A`` factored as well (``A_lowrank``), so a time step and the gradient
of ``A`` cost O(nx r), (T8) there.

This module holds only the parameterisation: free parameters, ``init`` and the map to explicit
weights with its VJP, one map per kind. The rest of the model protocol (``docs/protocol.md``:
``forward``, ``backward``, ``step``, ``value_and_grad``, the input checks) is shared with the REN
(``feedback_model.py``). Read with ``lbdn.py`` (the network phi) and ``feedback.py`` (the time
loop). Derivations: ``docs/derivations/r2dn.md``; the authors' Flax parameters:
``flax_interop.py``.

Examples
--------
>>> import numpy as np
>>> from r2dn_np import r2dn
>>> from r2dn_np.training import losses
>>> cfg = r2dn.Config(nu=2, nx=4, nv=8, ny=1, hidden=(16,), kind="lipschitz", gamma=2.0)
>>> direct = r2dn.init(cfg, seed=0)
>>> U = np.random.default_rng(0).standard_normal((20, 3, 2))     # (T, B, nu)
>>> x0 = np.zeros((3, 4))
>>> loss, grads = r2dn.value_and_grad(cfg, direct, x0, U, lambda Y: losses.mse(Y, 0 * Y))
>>> grads.direct.X.shape, grads.U.shape
((8, 8), (20, 3, 2))
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple, Optional

import numpy as np
from array_api_compat import array_namespace, device

from .core import _validate, linalg, supply
from .loop import feedback, feedback_model
from . import lbdn
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
    """Sizes and options of an R2DN.

    ``hidden``, ``activation`` and ``output_layer`` describe the LBDN ``R^nv -> R^nv`` in
    the feedback loop; its Lipschitz bound is fixed at 1 (never trainable inside an R2DN).
    ``d22`` applies to the Lipschitz and (Q, S, R) kinds; the contracting kind always has a free
    ``D22``. ``Q`` (ny x ny), ``S`` (nu x ny), ``R`` (nu x nu) are the supply rate of
    ``kind="qsr"`` (nested lists; None otherwise). ``learn_gamma`` (Lipschitz kind only) trains
    gamma, starting from ``gamma``. ``learn_multiplier`` (Lipschitz and (Q, S, R) kinds) trains the
    scalar multiplier ``lambda = exp(log_lambda)`` of ``lambda (|dv|^2 - |dw|^2) >= 0``, starting at 1.
    ``eps`` is used in ``eps I`` and in ``p``'s initial value; ``eps_n`` is the constant inside
    the Frobenius norm of the polar map, fixed at ``2^-23`` in the authors' code (their
    ``l2_norm`` default) whatever their ``eps``. ``init="long_memory"`` starts with ``A`` close
    to the identity. ``identity_output=True`` (contracting kind, ``ny == nx``) fixes the output
    map to ``y = x``: ``C2 = I``, ``D21 = 0``, ``D22 = 0``, ``by = 0``, not trainable (those
    fields of ``Direct`` are None), (R10)-(R11) of ``docs/derivations/r2dn.md``.
    """

    nu: int
    nx: int
    nv: int
    ny: int
    hidden: tuple = ()
    activation: str = "relu"
    output_layer: str = "linear"
    kind: str = "contracting"
    gamma: float = 1.0
    d22: str = "zero"
    eps: float = 2.0**-23
    polar: bool = True
    init: str = "random"
    Q: Optional[tuple] = None
    S: Optional[tuple] = None
    R: Optional[tuple] = None
    learn_gamma: bool = False
    learn_multiplier: bool = False
    identity_output: bool = False
    eps_n: float = 2.0**-23
    lti: str = "dense"
    rank: int = 0

    model: ClassVar[str] = "r2dn"

    def __post_init__(self):
        for name in ("nu", "nx", "nv", "ny"):
            _validate.dimension(name, getattr(self, name))
        object.__setattr__(self, "hidden", _validate.dimensions("hidden", self.hidden))
        _validate.one_of("kind", self.kind, ("contracting", "lipschitz", "qsr"))
        _validate.one_of("d22", self.d22, ("zero", "free"))
        _validate.one_of("init", self.init, ("random", "long_memory"))
        object.__setattr__(self, "gamma", _validate.positive_float("gamma", self.gamma))
        object.__setattr__(self, "eps", _validate.positive_float("eps", self.eps))
        object.__setattr__(self, "eps_n", _validate.positive_float("eps_n", self.eps_n))
        if not isinstance(self.polar, bool):
            raise TypeError(f"polar must be a bool; got {self.polar!r}")
        for name, value in (("Q", self.Q), ("S", self.S), ("R", self.R)):
            object.__setattr__(self, name, supply.config_matrix(name, value, self.kind))
        if self.kind == "qsr":
            qsr = supply.check(self.nu, self.ny, self.Q, self.S, self.R)
            for name, value in zip("QSR", qsr):
                object.__setattr__(self, name, value)
        if not isinstance(self.learn_gamma, bool):
            raise TypeError(f"learn_gamma must be a bool; got {self.learn_gamma!r}")
        if self.learn_gamma and self.kind != "lipschitz":
            raise ValueError(f"learn_gamma needs kind='lipschitz'; got kind={self.kind!r}")
        if not isinstance(self.learn_multiplier, bool):
            raise TypeError(f"learn_multiplier must be a bool; got {self.learn_multiplier!r}")
        if self.learn_multiplier and self.kind == "contracting":
            raise ValueError("learn_multiplier needs kind='lipschitz' or 'qsr' (the contracting map already "
                             "has a free B1 and C1)")
        _check_identity_output(self)
        _check_lti(self)
        _ = self.lbdn  # building the LBDN config validates hidden, activation and output_layer

    @property
    def structured(self):
        """True for the structured LTI parts (``lti`` other than ``"dense"``), section 7 of
        ``docs/derivations/r2dn.md``."""
        return self.lti != "dense"

    @property
    def width(self):
        """Rows of ``Wa`` for a structured LTI part: ``nv + rank`` (contracting) or
        ``nv + ny + rank`` (Lipschitz), (T2) of ``docs/derivations/r2dn.md``."""
        return self.nv + self.rank + (self.ny if self.kind == "lipschitz" else 0)

    @property
    def lbdn(self):
        return lbdn.Config(self.nv, self.nv, self.hidden, self.activation, self.output_layer, 1.0)


def _check_identity_output(cfg):
    """``identity_output`` needs the contracting kind (as in the authors' code) and ``ny == nx``."""
    object.__setattr__(cfg, "identity_output", _validate.flag("identity_output", cfg.identity_output))
    if cfg.identity_output and cfg.kind != "contracting":
        raise ValueError(f"identity_output needs kind='contracting'; got kind={cfg.kind!r}")
    if cfg.identity_output and cfg.ny != cfg.nx:
        raise ValueError(f"identity_output (y = x) needs ny == nx; got ny={cfg.ny}, nx={cfg.nx}")


def _check_lti(cfg):
    """``lti`` and ``rank``: ``rank >= 1`` exactly for ``"diagonal_plus_lowrank"``; the structured
    LTI parts cover the contracting and the fixed-gamma Lipschitz kinds."""
    _validate.one_of("lti", cfg.lti, LTI)
    object.__setattr__(cfg, "rank", _validate.nonnegative_int("rank", cfg.rank))
    if (cfg.lti == "diagonal_plus_lowrank") != (cfg.rank >= 1):
        raise ValueError(f"rank must be >= 1 for lti='diagonal_plus_lowrank' and 0 otherwise; "
                         f"got lti={cfg.lti!r}, rank={cfg.rank}")
    if cfg.lti != "dense":
        if cfg.kind == "qsr" or cfg.learn_gamma or cfg.learn_multiplier:
            raise ValueError(f"lti={cfg.lti!r} supports kind='contracting' and kind='lipschitz' with a fixed "
                             f"gamma and multiplier; got kind={cfg.kind!r}, learn_gamma={cfg.learn_gamma}, "
                             f"learn_multiplier={cfg.learn_multiplier}")
        if cfg.init != "random":
            raise ValueError(f"lti={cfg.lti!r} needs init='random' (its own init draws A's diagonal); "
                             f"got init={cfg.init!r}")


LTI = ("dense", "diagonal", "diagonal_plus_lowrank")


class Direct(NamedTuple):
    """Free parameters. ``B1``/``B2`` are the implicit input matrices (B-tilde in the derivations);
    the contracting kind has ``D12, D21, D22`` and the Lipschitz kind ``U12, V21``
    (and ``Z22`` when ``d22="free"``) in their place; absent fields are None. With
    ``identity_output`` the output map is fixed, and ``C2, D21, D22, by`` are None."""

    X: object  # (2nx, 2nx)
    p: object  # ()
    Y: object  # (nx, nx)
    B1: object  # (nx, nv)
    B2: object  # (nx, nu)
    C1: object  # (nv, nx)
    C2: Optional[object]  # (ny, nx)
    D12: Optional[object]  # (nv, nu)
    D21: Optional[object]  # (ny, nv)
    D22: Optional[object]  # (ny, nu)
    U12: Optional[object]  # (nv, nu)
    V21: Optional[object]  # (ny, nv)
    Z22: Optional[object]  # (ny, nu)
    bx: object
    bv: object
    by: Optional[object]
    phi: lbdn.Direct
    log_gamma: Optional[object] = None  # () with learn_gamma: gamma = exp(log_gamma)
    log_lambda: Optional[object] = None  # () with learn_multiplier: lambda = exp(log_lambda)
    # structured LTI part (lti != "dense"; then X, p, Y, B1, C1 and the Lipschitz kind's B2, C2,
    # U12, V21, Z22 are None), (T1)-(T4) of docs/derivations/r2dn.md
    s_logit: Optional[object] = None  # (nx,) s = sigmoid(s_logit): each state's split of its budget
    a_atanh: Optional[object] = None  # (nx,) a = sqrt(s) tanh(a_atanh): the diagonal of A
    Wa: Optional[object] = None  # (width, nx [+ nu]): the first contraction, from (x, u)
    Wb: Optional[object] = None  # (nx [+ ny], rank + nv [+ nu]): the second, to (x+, y)
    log_t: Optional[object] = None  # (nx,) the diagonal metric M = diag(exp(2 log_t)), (T7)
    split_logit: Optional[object] = None  # (2,) Lipschitz kind: how u and y are shared by the stages (T3)


class Explicit(NamedTuple):
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
    phi: lbdn.Explicit
    # structured LTI part: A = diag(a) + U V^T as factors, which the time loop steps with, (T8) of
    # docs/derivations/r2dn.md; the dense A above is formed for whoever reads the explicit model
    A_lowrank: Optional[feedback.LowRank] = None


class Grads(NamedTuple):
    direct: Direct
    x0: object
    U: object


class MapCache(NamedTuple):
    """Intermediate quantities of the map; certificates read ``H, E, P, F`` from here."""

    direct: Direct
    H: object
    E: object
    P: object
    F: object
    AB: object  # E^-1 [F B1~ (B2~)]
    phi_cache: object
    lip: Optional[object]  # _LipCache for the Lipschitz and (Q, S, R) kinds
    core: Optional[object] = None  # the unit-gain core's Explicit when a supply transform follows
    primed: Optional[object] = None  # the Explicit at lambda = 1 when a learned multiplier follows


class _LipCache(NamedTuple):
    b: object
    Lu: object
    c: object
    Ly: object
    Gam: Optional[object]
    Lz: Optional[object]
    G1: Optional[object]
    R: Optional[object]
    D12: object
    D21: object
    D22: object
    Kw: object
    Ku: object
    Tw: object
    S: object
    Ext: object


def phi(cfg):
    """The LBDN of ``cfg`` as the feedback map (``r2dn_np.core.static_map.Phi``)."""
    return lbdn.as_phi(cfg.lbdn)


# --- initialisation ---------------------------------------------------------------------------


def init(cfg, seed=0, backend=None, dtype="float64"):
    """Seeded free parameters (lecun-normal weights, zero biases, ``p = ||X||``).

    ``init="long_memory"`` sets ``B1 = C1 = 0``, ``Y = I`` and ``X`` the upper Cholesky
    factor of ``[[I, A^T], [A, I]]`` with ``A = I - diag(0.05 U(0, 1))`` (the authors' choice),
    so the contracting kind starts at ``E = P = I`` and that ``A``.
    """
    _validate.seed("seed", seed)
    xp = namespace(backend)
    rng = np.random.default_rng(seed)
    nu, nx, nv, ny = cfg.nu, cfg.nx, cfg.nv, cfg.ny

    def put(a):
        return asarray(np.asarray(a, dtype=np.float64), xp, dtype)

    phi_direct = lbdn._init(cfg.lbdn, rng, xp, dtype)
    if cfg.structured:
        return _init_structured(cfg, rng, put, phi_direct)
    B2 = lecun_normal(rng, (nx, nu))
    C2 = lecun_normal(rng, (ny, nx))
    if cfg.init == "random":
        X = lecun_normal(rng, (2 * nx, 2 * nx))
        Y = lecun_normal(rng, (nx, nx))
        B1 = lecun_normal(rng, (nx, nv))
        C1 = lecun_normal(rng, (nv, nx))
    else:
        A0 = np.eye(nx) - np.diag(0.05 * rng.uniform(size=nx))
        I = np.eye(nx)
        X = np.linalg.cholesky(np.block([[I, A0.T], [A0, I]])).T
        Y, B1, C1 = I, np.zeros((nx, nv)), np.zeros((nv, nx))
    p = np.sqrt(np.sum(X * X) + cfg.eps)
    if cfg.kind == "contracting":
        D12, D21, D22 = lecun_normal(rng, (nv, nu)), lecun_normal(rng, (ny, nv)), np.zeros((ny, nu))
        U12 = V21 = Z22 = None
    else:
        D12 = D21 = D22 = None
        U12, V21 = lecun_normal(rng, (nv, nu)), lecun_normal(rng, (ny, nv))
        Z22 = lecun_normal(rng, (ny, nu)) if cfg.d22 == "free" else None
    by = np.zeros(ny)
    if cfg.identity_output:
        C2 = D21 = D22 = by = None  # C2 was still drawn: the other fields match the seed's model
    opt = [None if a is None else put(a) for a in (C2, D12, D21, D22, U12, V21, Z22, by)]
    log_gamma = put(np.log(cfg.gamma)) if cfg.learn_gamma else None
    log_lambda = put(0.0) if cfg.learn_multiplier else None
    return Direct(
        put(X), put(p), put(Y), put(B1), put(B2), put(C1), *opt[:-1],
        put(np.zeros(nx)), put(np.zeros(nv)), opt[-1], phi_direct, log_gamma, log_lambda,
    )


def _init_structured(cfg, rng, put, phi_direct):
    """The structured LTI part's free parameters: ``s = 1/2``, ``a_atanh ~ N(0, 1)``, lecun-normal
    ``Wa, Wb``, ``log_t = 0`` (M = I); the contracting kind's ``B2, C2, D12, D21`` as for the dense
    one, ``D22 = 0``."""
    nu, nx, nv, ny, r = cfg.nu, cfg.nx, cfg.nv, cfg.ny, cfg.rank
    lip = cfg.kind == "lipschitz"
    s_logit, a_atanh = np.zeros(nx), rng.standard_normal(nx)
    Wa = lecun_normal(rng, (cfg.width, nx + (nu if lip else 0)))
    Wb = lecun_normal(rng, (nx + (ny if lip else 0), r + nv + (nu if lip else 0)))
    none = dict(X=None, p=None, Y=None, B1=None, B2=None, C1=None, C2=None, D12=None, D21=None, D22=None,
                U12=None, V21=None, Z22=None)
    if not lip:
        none.update(B2=put(lecun_normal(rng, (nx, nu))), C2=put(lecun_normal(rng, (ny, nx))),
                    D12=put(lecun_normal(rng, (nv, nu))), D21=put(lecun_normal(rng, (ny, nv))),
                    D22=put(np.zeros((ny, nu))))
    by = put(np.zeros(ny))
    if cfg.identity_output:
        none.update(C2=None, D21=None, D22=None)
        by = None
    return Direct(**none, bx=put(np.zeros(nx)), bv=put(np.zeros(nv)), by=by, phi=phi_direct,
                  s_logit=put(s_logit), a_atanh=put(a_atanh), Wa=put(Wa), Wb=put(Wb), log_t=put(np.zeros(nx)),
                  split_logit=put(np.zeros(2)) if lip else None)


# --- stage 1: free parameters -> explicit model -------------------------------------------------


def _direct_to_explicit(cfg, direct):
    """The map on trusted inputs; ``direct_to_explicit`` checks them first."""
    phi_explicit, phi_cache = lbdn._direct_to_explicit(cfg.lbdn, direct.phi)
    if cfg.structured:
        explicit, cache = _structured_map(cfg, direct)
        return explicit._replace(phi=phi_explicit), cache._replace(phi_cache=phi_cache)
    explicit, cache = _kind(cfg)[0](cfg, direct)
    if cfg.learn_multiplier:
        explicit, cache = _with_multiplier(direct.log_lambda, explicit), cache._replace(primed=explicit)
    return explicit._replace(phi=phi_explicit), cache._replace(phi_cache=phi_cache)


def _direct_to_explicit_vjp(cfg, cache, d_explicit):
    if cfg.structured:
        d_direct = _structured_map_vjp(cfg, cache, d_explicit)
        return d_direct._replace(phi=lbdn.direct_to_explicit_vjp(cfg.lbdn, cache.phi_cache, d_explicit.phi))
    d_log_lambda = None
    if cfg.learn_multiplier:
        d_explicit, d_log_lambda = _with_multiplier_vjp(cache.direct.log_lambda, cache.primed, d_explicit)
    d_direct = _kind(cfg)[1](cfg, cache, d_explicit)
    return d_direct._replace(phi=lbdn.direct_to_explicit_vjp(cfg.lbdn, cache.phi_cache, d_explicit.phi),
                             log_lambda=d_log_lambda)


def _with_multiplier(log_lambda, primed):
    """The model whose IQC multiplier is ``lambda = exp(log_lambda)``, from the one built at
    ``lambda = 1``: ``C1 = C1'/sqrt(lambda)``, ``D12 = D12'/sqrt(lambda)``, ``B1 = sqrt(lambda) B1'``,
    ``D21 = sqrt(lambda) D21'``, (Q6) of ``docs/derivations/qsr.md``."""
    a = array_namespace(log_lambda).exp(0.5 * log_lambda)
    return primed._replace(C1=primed.C1 / a, D12=primed.D12 / a, B1=a * primed.B1, D21=a * primed.D21)


def _with_multiplier_vjp(log_lambda, primed, de):
    """``(d_primed, d_log_lambda)`` given the cotangent ``de`` of the model (None fields are zero)."""
    xp = array_namespace(log_lambda)
    a = xp.exp(0.5 * log_lambda)
    da = xp.zeros_like(log_lambda)
    out = {}
    for name in ("C1", "D12"):  # x = x' / a
        g = getattr(de, name)
        if g is not None:
            out[name] = g / a
            da = da - xp.sum(g * getattr(primed, name)) / (a * a)
    for name in ("B1", "D21"):  # x = a x'
        g = getattr(de, name)
        if g is not None:
            out[name] = a * g
            da = da + xp.sum(g * getattr(primed, name))
    return de._replace(**out), 0.5 * a * da


def _kind(cfg):
    """``(map, map_vjp)`` of ``cfg``'s kind."""
    if cfg.kind == "contracting":
        return _contracting_map, _contracting_map_vjp
    if cfg.kind == "qsr" or cfg.learn_gamma:
        return _supply_map, _supply_map_vjp
    return _lipschitz_map, _lipschitz_map_vjp


def _zero_if_none(g, like):
    return array_namespace(like).zeros_like(like) if g is None else g


def _assemble(H11, F, H22):
    """``[[H11, F^T], [F, H22]]``: the matrix whose blocks define the implicit model."""
    xp = array_namespace(H11)
    return xp.concat([xp.concat([H11, F.mT], axis=1), xp.concat([F, H22], axis=1)], axis=0)


def _solve_vjp(cfg, cache, dAB):
    """Back through ``[A B1 ...] = E^-1 rhs`` and ``E = (H11 + H22 + Y - Y^T)/2``, (R2)-(R3):
    returns the cotangents of ``H`` (``[[dE/2, 0], [dF, dE/2]]``), of ``Y`` and of the rest of
    ``rhs`` (the columns after ``F``)."""
    xp = array_namespace(dAB)
    dE, drhs = linalg.solve_vjp(cache.E, cache.AB, dAB)
    nx = cfg.nx
    half = 0.5 * dE
    dH = xp.concat([xp.concat([half, xp.zeros_like(half)], axis=1),
                    xp.concat([drhs[:, :nx], half], axis=1)], axis=0)
    return dH, 0.5 * (dE - dE.mT), drhs[:, nx:]


# The authors' contracting map, (R1)-(R3) of docs/derivations/r2dn.md.


def _contracting_map(cfg, d):
    xp = array_namespace(d.X)
    nx = cfg.nx
    H = linalg.polar(d.X, d.p, cfg.eps_n, cfg.polar) + cfg.eps * linalg.eye_like(2 * nx, d.X)
    H11 = H[:nx, :nx] + d.C1.mT @ d.C1
    H22 = H[nx:, nx:] + d.B1 @ d.B1.mT
    F = H[nx:, :nx]
    E = 0.5 * (H11 + H22 + d.Y - d.Y.mT)
    AB = linalg.solve(E, xp.concat([F, d.B1], axis=1))
    A, B1 = AB[:, :nx], AB[:, nx:]
    C2, D21, D22, by = _output_map(cfg, d) if cfg.identity_output else (d.C2, d.D21, d.D22, d.by)
    explicit = Explicit(A, B1, d.B2, d.C1, C2, d.D12, D21, D22, d.bx, d.bv, by, None)
    return explicit, MapCache(d, _assemble(H11, F, H22), E, H22, F, AB, None, None)


def _output_map(cfg, d):
    """The fixed output map ``y = x`` of ``identity_output``, (R10) of ``docs/derivations/r2dn.md``."""
    xp = array_namespace(d.X)
    zeros = lambda *shape: xp.zeros(shape, dtype=d.X.dtype, device=device(d.X))  # noqa: E731
    return linalg.eye_like(cfg.nx, d.X), zeros(cfg.ny, cfg.nv), zeros(cfg.ny, cfg.nu), zeros(cfg.ny)


def _contracting_map_vjp(cfg, cache, de):
    d = cache.direct
    z = _zero_if_none
    nx = cfg.nx
    xp = array_namespace(d.X)
    dH, dY, dB1 = _solve_vjp(cfg, cache, xp.concat([z(de.A, cache.F), z(de.B1, d.B1)], axis=1))
    dX, dp = linalg.polar_vjp(d.X, d.p, cfg.eps_n, dH, cfg.polar)
    out = dict(C2=None, D21=None, D22=None, by=None) if cfg.identity_output else dict(
        C2=z(de.C2, d.C2), D21=z(de.D21, d.D21), D22=z(de.D22, d.D22), by=z(de.by, d.by))
    return d._replace(
        X=dX, p=dp, Y=dY,
        B1=dB1 + linalg.gram_vjp(d.B1.mT, dH[nx:, nx:]).mT,
        C1=z(de.C1, d.C1) + linalg.gram_vjp(d.C1, dH[:nx, :nx]),
        B2=z(de.B2, d.B2), D12=z(de.D12, d.D12), bx=z(de.bx, d.bx), bv=z(de.bv, d.bv), **out,
    )


# The gamma-Lipschitz map, (R4)-(R9) of docs/derivations/r2dn.md.


def _lipschitz_map(cfg, d):
    xp = array_namespace(d.X)
    nx, nv = cfg.nx, cfg.nv
    lip = _lipschitz_terms(cfg, d)
    H = linalg.polar(d.X, d.p, cfg.eps_n, cfg.polar) + cfg.eps * linalg.eye_like(2 * nx, d.X)
    H = H + lip.Ext @ lip.Ext.mT
    H11 = H[:nx, :nx] + d.C1.mT @ d.C1 + (d.C2.mT @ d.C2) / cfg.gamma
    H22 = H[nx:, nx:]
    F = H[nx:, :nx]
    E = 0.5 * (H11 + H22 + d.Y - d.Y.mT)
    AB = linalg.solve(E, xp.concat([F, d.B1, d.B2], axis=1))
    A, B1, B2 = AB[:, :nx], AB[:, nx:nx + nv], AB[:, nx + nv:]
    explicit = Explicit(A, B1, B2, d.C1, d.C2, lip.D12, lip.D21, lip.D22, d.bx, d.bv, d.by, None)
    return explicit, MapCache(d, _assemble(H11, F, H22), E, H22, F, AB, None, lip)


def _strict_contraction(U):
    """``b = U L^-T`` with ``L = chol(I + U^T U)``: onto the matrices of spectral norm < 1."""
    L = linalg.cholesky(linalg.eye_like(int(U.shape[1]), U) + U.mT @ U)
    return linalg.solve(L, U.mT).mT, L


def _strict_contraction_vjp(U, b, L, db, dL):
    """Cotangent of ``U`` given those of ``b`` and of the factor ``L`` (either may be None)."""
    xp = array_namespace(U)
    dU = xp.zeros_like(U)
    if db is not None:
        dL_s, dUT = linalg.solve_vjp(L, b.mT, db.mT)
        dU = dU + dUT.mT
        dL = dL_s if dL is None else dL + dL_s
    if dL is not None:
        dU = dU + linalg.gram_vjp(U, linalg.cholesky_vjp(L, dL))
    return dU


def _lipschitz_terms(cfg, d):
    """Feedthrough and coupling terms, (R4)-(R8) of ``docs/derivations/r2dn.md``."""
    xp = array_namespace(d.X)
    g = cfg.gamma
    sg = math.sqrt(g)
    b, Lu = _strict_contraction(d.U12)
    ct, Ly = _strict_contraction(d.V21.mT)
    c = ct.mT
    D12, D21 = sg * b, sg * c
    if cfg.d22 == "free":
        Gam, Lz = _strict_contraction(d.Z22)
        G1 = linalg.solve(Ly, Gam)
        R = linalg.solve(Lu, G1.mT)
        D22 = g * R.mT
    else:
        Gam = Lz = G1 = R = None
        D22 = xp.zeros((cfg.ny, cfg.nu), dtype=d.X.dtype)
    Kw = xp.concat([-(d.C2.mT @ D21) / g, d.B1], axis=0)
    Ku = xp.concat([-(d.C1.mT @ D12 + (d.C2.mT @ D22) / g), d.B2], axis=0)
    Tw = Kw @ d.V21.mT
    S = Ku @ Lu.mT
    if Gam is not None:
        S = S + sg * (Tw @ Gam)
        Tu = (S @ Lz.mT) / sg
    else:
        Tu = S / sg
    Ext = xp.concat([Kw, Tw, Tu], axis=1)
    return _LipCache(b, Lu, c, Ly, Gam, Lz, G1, R, D12, D21, D22, Kw, Ku, Tw, S, Ext)


def _lipschitz_map_vjp(cfg, cache, de):
    d = cache.direct
    xp = array_namespace(d.X)
    z = _zero_if_none
    nx, nv = cfg.nx, cfg.nv
    dAB = xp.concat([z(de.A, cache.F), z(de.B1, d.B1), z(de.B2, d.B2)], axis=1)
    dH, dY, drhs = _solve_vjp(cfg, cache, dAB)
    dH11 = dH[:nx, :nx]
    dX, dp = linalg.polar_vjp(d.X, d.p, cfg.eps_n, dH, cfg.polar)
    dC1 = z(de.C1, d.C1) + linalg.gram_vjp(d.C1, dH11)
    dC2 = z(de.C2, d.C2)
    dB1t, dB2t = drhs[:, :nv], drhs[:, nv:]
    out = dict(X=dX, p=dp, Y=dY, bx=z(de.bx, d.bx), bv=z(de.bv, d.bv), by=z(de.by, d.by))

    # back through H = ... + Ext Ext^T + blkdiag(C2^T C2 / gamma, 0)
    lip = cache.lip
    g, sg = cfg.gamma, math.sqrt(cfg.gamma)
    dC2 = dC2 + linalg.gram_vjp(d.C2, dH11) / g
    dExt = (dH + dH.mT) @ lip.Ext
    dKw = dExt[:, :nv]
    dTw = dExt[:, nv:nv + cfg.ny]
    dTu = dExt[:, nv + cfg.ny:]
    dD12, dD21, dD22 = z(de.D12, lip.D12), z(de.D21, lip.D21), z(de.D22, lip.D22)
    dLz = None
    if lip.Lz is not None:
        dS = (dTu @ lip.Lz) / sg
        dLz = (dTu.mT @ lip.S) / sg
        dTw = dTw + sg * (dS @ lip.Gam.mT)
        dGam = sg * (lip.Tw.mT @ dS)
    else:
        dS = dTu / sg
    dKu = dS @ lip.Lu
    dLu = dS.mT @ lip.Ku
    dKw = dKw + dTw @ d.V21
    dV21 = dTw.mT @ lip.Kw
    # Kw = [-C2^T D21 / g; B1~],  Ku = [-(C1^T D12 + C2^T D22 / g); B2~]
    dKw_top, dKu_top = dKw[:nx, :], dKu[:nx, :]
    dC2 = dC2 - (lip.D21 @ dKw_top.mT) / g - (lip.D22 @ dKu_top.mT) / g
    dD21 = dD21 - (d.C2 @ dKw_top) / g
    dC1 = dC1 - lip.D12 @ dKu_top.mT
    dD12 = dD12 - d.C1 @ dKu_top
    dD22 = dD22 - (d.C2 @ dKu_top) / g
    dB1t = dB1t + dKw[nx:, :]
    dB2t = dB2t + dKu[nx:, :]
    dLy = None
    dZ22 = None
    if lip.Lz is not None:
        # D22 = g R^T, R = Lu^-1 G1^T, G1 = Ly^-1 Gam
        dLu_s, dG1T = linalg.solve_vjp(lip.Lu, lip.R, g * dD22.mT)
        dLu = dLu + dLu_s
        dLy, dGam_s = linalg.solve_vjp(lip.Ly, lip.G1, dG1T.mT)
        dZ22 = _strict_contraction_vjp(d.Z22, lip.Gam, lip.Lz, dGam + dGam_s, dLz)
    dU12 = _strict_contraction_vjp(d.U12, lip.b, lip.Lu, sg * dD12, dLu)
    dV21 = dV21 + _strict_contraction_vjp(d.V21.mT, lip.c.mT, lip.Ly, sg * dD21.mT, dLy).mT
    out.update(B1=dB1t, B2=dB2t, C1=dC1, C2=dC2, U12=dU12, V21=dV21, Z22=dZ22)
    return d._replace(**out)


# The structured LTI part (lti="diagonal" / "diagonal_plus_lowrank"), (T1)-(T6) of
# docs/derivations/r2dn.md: two strict contractions and a per-state split of the unit budget.

def _splits(d):
    """``(c_u, s_u, c_y, s_y)`` of (T3): ``c^2 = sigmoid(split_logit)``, ``s^2 = 1 - c^2``; 1/sqrt(2)
    each at ``split_logit = 0``."""
    xp = array_namespace(d.split_logit)
    t = xp.tanh(0.5 * d.split_logit)
    c, s = xp.sqrt(0.5 + 0.5 * t), xp.sqrt(0.5 - 0.5 * t)
    return c[0], s[0], c[1], s[1]


class StructuredCache(NamedTuple):
    """What the structured map's VJP and certificate read. ``Oa, Ob`` are the two contractions
    of (T2), ``a, rho, kappa`` the per-state scalings of (T1)."""

    direct: Direct
    s: object  # (nx,) sigmoid(s_logit)
    th: object  # (nx,) tanh(a_atanh)
    a: object  # (nx,) diagonal of A
    rho: object  # (nx,)
    kappa: object  # (nx,)
    Oa: object  # (width, nx [+ nu])
    La: object
    Ob: object  # (nx [+ ny], rank + nv [+ nu])
    Lb: object
    U: object  # (nx, rank) = diag(rho) Ob[:nx, :rank]: A0 = diag(a) + U V^T
    V: object  # (nx, rank) = (Oa[m rows, :nx] diag(kappa))^T
    tau: object  # (nx,) exp(log_t): A = T^-1 A0 T, M = T^2, (T7)
    base: object  # the Explicit before the change of coordinates (T7), without A0
    splits: Optional[tuple] = None  # (c_u, s_u, c_y, s_y) of (T3), Lipschitz kind
    phi_cache: object = None
    lip: Optional[object] = None


def _scalings(d):
    """(T1): ``s = sigmoid(s_logit)``, ``a = sqrt(s) tanh(a_atanh)``, ``rho = sech(a_atanh)``,
    ``kappa = sqrt(1 - s)``; every ``a_i^2 / s_i + rho_i^2 = 1`` and ``s_i + kappa_i^2 = 1``."""
    xp = array_namespace(d.s_logit)
    t = xp.tanh(0.5 * d.s_logit)
    s, one_minus_s = 0.5 + 0.5 * t, 0.5 - 0.5 * t
    th = xp.tanh(d.a_atanh)
    return s, th, xp.sqrt(s) * th, 1.0 / xp.cosh(d.a_atanh), xp.sqrt(one_minus_s)


def _structured_blocks(cfg, Oa, Ob, rho, kappa):
    """The blocks of (T3), keyed ``"a_" + row + col`` for ``Oa`` (rows v, y, m; columns x scaled
    by kappa, and u) and ``"b_" + row + col`` for ``Ob`` (rows p scaled by rho, and y; columns m,
    w, u). Absent channels (the contracting kind's u and y) are None."""
    nx, nv, r = cfg.nx, cfg.nv, cfg.rank
    lip = cfg.kind == "lipschitz"
    ny = cfg.ny if lip else 0
    xp = array_namespace(Oa)
    k = xp.reshape(kappa, (1, nx))
    rc = xp.reshape(rho, (nx, 1))
    blocks = {}
    for name, sl in (("v", slice(0, nv)), ("y", slice(nv, nv + ny)), ("m", slice(nv + ny, nv + ny + r))):
        blocks["a_" + name + "x"] = Oa[sl, :nx] * k
        blocks["a_" + name + "u"] = Oa[sl, nx:] if lip else None
    for name, sl in (("m", slice(0, r)), ("w", slice(r, r + nv)), ("u", slice(r + nv, None))):
        blocks["b_p" + name] = rc * Ob[:nx, sl]
        blocks["b_y" + name] = Ob[nx:, sl] if lip else None
    return blocks


def _structured_map(cfg, d):
    nx = cfg.nx
    xp = array_namespace(d.Wa)
    s, th, a, rho, kappa = _scalings(d)
    Oat, La = _strict_contraction(d.Wa.mT)  # Cholesky on the small side: width x width
    Oa = Oat.mT
    Ob, Lb = _strict_contraction(d.Wb)  # (rank + nv [+ nu]) square
    b = _structured_blocks(cfg, Oa, Ob, rho, kappa)
    U, V = b["b_pm"], b["a_mx"].mT
    B1, C1 = b["b_pw"], b["a_vx"]
    splits = None
    if cfg.kind == "lipschitz":  # (T4)
        g, sg = cfg.gamma, math.sqrt(cfg.gamma)
        splits = cu, su, cy, sy = _splits(d)
        B2 = sg * (cu * (U @ b["a_mu"]) + su * b["b_pu"])
        C2 = sg * (cy * b["a_yx"] + sy * (b["b_ym"] @ b["a_mx"]))
        D12 = (sg * cu) * b["a_vu"]
        D21 = (sg * sy) * b["b_yw"]
        D22 = g * (cy * cu * b["a_yu"] + sy * cu * (b["b_ym"] @ b["a_mu"]) + sy * su * b["b_yu"])
        by = d.by
    else:
        B2, D12 = d.B2, d.D12
        C2, D21, D22, by = _output_map(cfg, d) if cfg.identity_output else (d.C2, d.D21, d.D22, d.by)
    base = Explicit(None, B1, B2, C1, C2, D12, D21, D22, d.bx, d.bv, by, None)  # A0 is never formed
    tau = xp.exp(d.log_t)
    col, row = xp.reshape(tau, (nx, 1)), xp.reshape(tau, (1, nx))
    # (T7): A = T^-1 (diag(a) + U V^T) T = diag(a) + (T^-1 U)(T V)^T, no solve; the time loop steps
    # with the factors (T8), the dense A (O(nx^2 rank)) is for whoever reads the explicit model
    Ut, Vt = U / col, V * col
    A = linalg.eye_like(nx, d.Wa)
    A *= a  # in place: one nx x nx buffer fewer at large nx
    A += Ut @ Vt.mT
    out = dict(A=A, A_lowrank=feedback.LowRank(a, Ut, Vt), B1=B1 / col, C1=C1 * row)
    if cfg.kind == "lipschitz":
        out.update(B2=B2 / col, C2=C2 * row)
    cache = StructuredCache(d, s, th, a, rho, kappa, Oa, La, Ob, Lb, U, V, tau, base, splits)
    return base._replace(**out), cache


def _lowrank_cotangent(cfg, de, Ut, Vt):
    """The cotangents of the factors ``(a, Ut, Vt)`` of ``A = diag(a) + Ut Vt^T``: those the time
    loop returns (``de.A_lowrank``, (T8c)) plus those of the dense ``A`` where a caller gives one
    (``diag(dA)``, ``dA Vt``, ``dA^T Ut``, O(nx^2 rank)); zeros where neither is given."""
    xp = array_namespace(Ut)
    lr = de.A_lowrank
    da, dUt, dVt = (xp.zeros((cfg.nx,), dtype=Ut.dtype), xp.zeros_like(Ut), xp.zeros_like(Vt)) if lr is None else lr
    if de.A is not None:
        da, dUt, dVt = da + xp.linalg.diagonal(de.A), dUt + de.A @ Vt, dVt + de.A.mT @ Ut
    return da, dUt, dVt


def _in_metric_vjp(cfg, cache, de):
    """Back through (T7): the base model's cotangents, with ``A`` given as ``(da, dU, dV)`` (the
    cotangents of ``diag(a) + U V^T``'s factors, from the factored cotangent of (T8) and products
    with a dense ``dA`` where one is given), and that of ``log_t``."""
    xp = array_namespace(cache.tau)
    nx = cfg.nx
    tau, base, U, V = cache.tau, cache.base, cache.U, cache.V
    col, row = xp.reshape(tau, (nx, 1)), xp.reshape(tau, (1, nx))
    Ut, Vt = U / col, V * col
    # A = diag(a) + Ut Vt^T, Ut = T^-1 U, Vt = T V
    da, dUt, dVt = _lowrank_cotangent(cfg, de, Ut, Vt)
    # d log_t_k = sum_i dA_ik A_ik - sum_j dA_kj A_kj; the diagonal cancels
    dlog = xp.sum(Vt * dVt, axis=1) - xp.sum(Ut * dUt, axis=1)
    factors = (da, dUt / col, dVt * col)
    out = {"A": None, "A_lowrank": None}
    for name, side in (("B1", "rows"), ("C1", "cols")) + (
            (("B2", "rows"), ("C2", "cols")) if cfg.kind == "lipschitz" else ()):
        g = getattr(de, name)
        if g is None:
            continue
        g0 = g / col if side == "rows" else g * row
        prod = g0 * getattr(base, name)  # the tau's cancel: equals g * (the model's matrix)
        dlog = dlog + (xp.sum(prod, axis=0) if side == "cols" else -xp.sum(prod, axis=1))
        out[name] = g0
    return de._replace(**out), dlog, factors


def _structured_map_vjp(cfg, cache, de):
    """The VJP of (T1)-(T4) and (T7), (T5) of ``docs/derivations/r2dn.md``."""
    de, dlog_t, factors = _in_metric_vjp(cfg, cache, de)
    return _structured_base_vjp(cfg, cache, de, factors)._replace(log_t=dlog_t)


def _structured_base_vjp(cfg, cache, de, factors):
    d = cache.direct
    xp = array_namespace(d.Wa)
    z = _zero_if_none
    nx, nv, r = cfg.nx, cfg.nv, cfg.rank
    lip = cfg.kind == "lipschitz"
    b = _structured_blocks(cfg, cache.Oa, cache.Ob, cache.rho, cache.kappa)
    da, dU, dV = factors  # of A0 = diag(a) + U V^T, U = b_pm, V = a_mx^T
    g_ = {}  # cotangents of the blocks
    g_["b_pm"] = dU
    g_["a_mx"] = dV.mT
    g_["b_pw"] = z(de.B1, b["b_pw"])
    g_["a_vx"] = z(de.C1, b["a_vx"])
    out = dict(bx=z(de.bx, d.bx), bv=z(de.bv, d.bv))
    if lip:
        g, sg = cfg.gamma, math.sqrt(cfg.gamma)
        cu, su, cy, sy = cache.splits
        GB2, GC2 = z(de.B2, b["b_pu"]), z(de.C2, b["a_yx"])
        GD12, GD21, GD22 = z(de.D12, b["a_vu"]), z(de.D21, b["b_yw"]), z(de.D22, b["a_yu"])
        Umu, ymx, ymu = cache.U @ b["a_mu"], b["b_ym"] @ b["a_mx"], b["b_ym"] @ b["a_mu"]
        g_["b_pm"] = g_["b_pm"] + (sg * cu) * (GB2 @ b["a_mu"].mT)
        g_["a_mu"] = (sg * cu) * (b["b_pm"].mT @ GB2) + (g * sy * cu) * (b["b_ym"].mT @ GD22)
        g_["b_pu"] = (sg * su) * GB2
        g_["a_yx"] = (sg * cy) * GC2
        g_["b_ym"] = (sg * sy) * (GC2 @ b["a_mx"].mT) + (g * sy * cu) * (GD22 @ b["a_mu"].mT)
        g_["a_mx"] = g_["a_mx"] + (sg * sy) * (b["b_ym"].mT @ GC2)
        g_["a_vu"] = (sg * cu) * GD12
        g_["b_yw"] = (sg * sy) * GD21
        g_["a_yu"] = (g * cy * cu) * GD22
        g_["b_yu"] = (g * sy * su) * GD22
        dot = lambda p, q: xp.sum(p * q)  # noqa: E731
        dcu = sg * (dot(GB2, Umu) + dot(GD12, b["a_vu"])) + g * dot(GD22, cy * b["a_yu"] + sy * ymu)
        dsu = sg * dot(GB2, b["b_pu"]) + g * sy * dot(GD22, b["b_yu"])
        dcy = sg * dot(GC2, b["a_yx"]) + g * cu * dot(GD22, b["a_yu"])
        dsy = sg * (dot(GC2, ymx) + dot(GD21, b["b_yw"])) + g * dot(GD22, cu * ymu + su * b["b_yu"])
        out["split_logit"] = xp.stack([0.5 * cu * su * (dcu * su - dsu * cu),
                                       0.5 * cy * sy * (dcy * sy - dsy * cy)])
        out["by"] = z(de.by, d.by)
    else:
        out.update(B2=z(de.B2, d.B2), D12=z(de.D12, d.D12))
        if not cfg.identity_output:
            out.update(C2=z(de.C2, d.C2), D21=z(de.D21, d.D21), D22=z(de.D22, d.D22), by=z(de.by, d.by))
    # back through the scalings of (T3): Oa's x columns by kappa, Ob's p rows by rho
    ny = cfg.ny if lip else 0
    zeros = lambda like: xp.zeros_like(like)  # noqa: E731
    k = xp.reshape(cache.kappa, (1, nx))
    rc = xp.reshape(cache.rho, (nx, 1))
    dk = xp.zeros_like(cache.kappa)
    drho = xp.zeros_like(cache.rho)
    rows_a = []
    for name, sl in (("v", slice(0, nv)), ("y", slice(nv, nv + ny)), ("m", slice(nv + ny, nv + ny + r))):
        gx = g_.get("a_" + name + "x")
        Ox = cache.Oa[sl, :nx]
        gx = zeros(Ox) if gx is None else gx
        dk = dk + xp.sum(gx * Ox, axis=0)
        row = [gx * k]
        if lip:
            gu = g_.get("a_" + name + "u")
            row.append(zeros(cache.Oa[sl, nx:]) if gu is None else gu)
        rows_a.append(xp.concat(row, axis=1) if len(row) > 1 else row[0])
    dOa = xp.concat(rows_a, axis=0)
    cols_p, cols_y = [], []
    for name, sl in (("m", slice(0, r)), ("w", slice(r, r + nv)), ("u", slice(r + nv, None))):
        Op = cache.Ob[:nx, sl]
        gp = g_.get("b_p" + name)
        gp = zeros(Op) if gp is None else gp
        drho = drho + xp.sum(gp * Op, axis=1)
        cols_p.append(rc * gp)
        if lip:
            gy = g_.get("b_y" + name)
            cols_y.append(zeros(cache.Ob[nx:, sl]) if gy is None else gy)
    dOb = xp.concat(cols_p, axis=1)
    if lip:
        dOb = xp.concat([dOb, xp.concat(cols_y, axis=1)], axis=0)
    # back through the strict contractions and (T1)
    out["Wa"] = _strict_contraction_vjp(d.Wa.mT, cache.Oa.mT, cache.La, dOa.mT, None).mT
    out["Wb"] = _strict_contraction_vjp(d.Wb, cache.Ob, cache.Lb, dOb, None)
    s, th = cache.s, cache.th
    sq = xp.sqrt(s)
    out["s_logit"] = da * th * sq * (1.0 - s) * 0.5 - dk * s * cache.kappa * 0.5
    out["a_atanh"] = da * sq * (1.0 - th * th) - drho * th * cache.rho
    return d._replace(**out)


# A supply rate other than a fixed gamma: the gamma-Lipschitz map at gamma = 1 (the unit-gain core)
# mapped back by supply.transform, (Q1)-(Q3) of docs/derivations/qsr.md.


def _supply_map(cfg, d):
    return supply.supply_map(cfg, d, _lipschitz_map)


def _supply_map_vjp(cfg, cache, de):
    return supply.supply_map_vjp(cfg, cache, de, _lipschitz_map_vjp)


# --- the rest of the model protocol, shared with every feedback model (feedback_model.py) --------

(direct_to_explicit, direct_to_explicit_vjp, forward, backward, step, value_and_grad,
 _templates) = feedback_model.functions(feedback_model.Spec(
    "r2dn", Grads, init, phi, _direct_to_explicit, _direct_to_explicit_vjp))
