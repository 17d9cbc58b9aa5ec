"""Youla-parameterised feedback control with a contracting policy (the R2DN paper's control task).

Plant ``T(z) = 0.3 / (z^2 - 1.6 cos(0.2 pi) z + 0.64)`` (realisation ``A, B, C`` below). The Youla
system ``[z; y~] = [T T; -T 0] [w; u~]`` is built from three copies of it: ``x1`` and ``x3`` driven
by the disturbance ``w``, ``x2`` by the clipped policy output ``u = clip(u~, -5, 5)``;
``z = C x1 + C x2`` and ``y~ = -C x3``. The policy is an R2DN or REN from ``y~`` to ``u~``
(``nu = ny = 1``); as it is contracting (and the plant stable), every closed loop is stable.

``y~ = -T w`` does not depend on ``u~``: the policy runs on the disturbance alone, and the loss
``mean_{t,b} |z_t| + 1e-4 u_t^2`` reaches it through the plant's response to ``u``. The
closed-loop gradient is derived in ``docs/derivations/youla.md`` (Y1)-(Y6): the plant's adjoint
runs backwards once, the clip gates it, and the policy's own BPTT (``feedback.py``, through the
model protocol) takes it from there.

Examples
--------
>>> import numpy as np
>>> from r2dn_np import r2dn
>>> from r2dn_np.experiments import youla
>>> cfg = r2dn.Config(nu=1, nx=2, nv=3, ny=1, hidden=(4,), activation="tanh")
>>> w = youla.disturbances(np.random.default_rng(0), T=100, B=2)
>>> value, grads, final = youla.loss_and_grad(cfg, r2dn.init(cfg, seed=0), youla.initial_state(cfg, 2), w)
>>> w.shape, final.x.shape, value > 0
((100, 2, 1), (2, 6), True)
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import NamedTuple

import numpy as np
from array_api_compat import array_namespace

from ..core import _validate
from ._result import NOT_JSON, JSONResult, per_epoch
from ..training import optim
from .. import r2dn, ren
from ..core.backend import asarray, namespace

__all__ = [
    "plant", "Plant", "State", "initial_state", "disturbances", "rollout", "loss_and_grad",
    "Rollout", "FitResult", "fit", "model_config", "tiny_config", "PRESETS", "U_MAX", "U_WEIGHT", "YoulaSettings",
    "YoulaResult", "run",
]

U_MAX = 5.0  # the policy's output is clipped to [-U_MAX, U_MAX]
U_WEIGHT = 1e-4  # weight of u^2 in the loss

PRESETS = {
    "paper": dict(epochs=80, batch=64, T=800, segments=4, lr=5e-3, decay_epochs=60, clip=10.0,
                  ren=dict(nx=10, nv=400), r2dn=dict(nx=10, nv=100, hidden=(140,) * 4)),
    "quick": dict(epochs=6, batch=64, T=800, segments=4, lr=5e-3, decay_epochs=8, clip=10.0,
                  ren=dict(nx=10, nv=400), r2dn=dict(nx=10, nv=100, hidden=(140,) * 4)),
}


class Plant(NamedTuple):
    """One copy of ``T(z)``: ``x+ = A x + B u``, output ``C x`` (relative degree 2: ``C B = 0``)."""

    A: np.ndarray  # (2, 2)
    B: np.ndarray  # (2, 1)
    C: np.ndarray  # (1, 2)


def plant():
    """The controllable canonical realisation of ``0.3 / (z^2 - 1.6 cos(0.2 pi) z + 0.64)``
    (what ``scipy.signal.TransferFunction(...).to_ss()`` returns)."""
    a1 = 2 * 0.8 * math.cos(0.2 * math.pi)
    return Plant(np.array([[a1, -0.64], [1.0, 0.0]]), np.array([[1.0], [0.0]]), np.array([[0.0, 0.3]]))


class State(NamedTuple):
    """Closed-loop state: ``x = [x1 x2 x3]`` of the Youla system ``(B, 6)`` and the policy's ``q``."""

    x: object
    q: object


def _module(cfg):
    model = getattr(cfg, "model", None)
    if model not in ("r2dn", "ren") or cfg.nu != 1 or cfg.ny != 1:
        raise TypeError("cfg must be an r2dn.Config or ren.Config with nu = ny = 1")
    return r2dn if model == "r2dn" else ren


def initial_state(cfg, B, backend=None, dtype="float64"):
    """Zero plant and policy states for ``B`` sequences (``dtype`` float32 or float64)."""
    _module(cfg)
    _validate.positive_int("B", B)
    _validate.one_of("dtype", dtype, ("float32", "float64"))
    _validate.allocation(f"B={B}", "the policy state", (B, cfg.nx))
    xp = namespace(backend)
    return State(xp.zeros((B, 6), dtype=getattr(xp, dtype)), xp.zeros((B, cfg.nx), dtype=getattr(xp, dtype)))


def disturbances(rng, T, B, hold=50, amplitude=10.0):
    """Piecewise-constant disturbances ``(T, B, 1)``: a value ``U(-amplitude, amplitude)`` held for
    ``hold`` steps (NumPy, from the generator ``rng``)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    _validate.positive_int("T", T)
    _validate.positive_int("B", B)
    _validate.positive_int("hold", hold)
    _validate.positive_float("amplitude", amplitude)
    _validate.allocation(f"T={T}, B={B}", "the disturbances", (T, B))
    pieces = rng.uniform(-amplitude, amplitude, (-(-T // hold), B, 1))
    return np.repeat(pieces, hold, axis=0)[:T]


def _plant_outputs(P, x0, w, u):
    """``z_t`` (T, B) of the Youla system from ``x0 : (B, 6)``, ``w``, ``u`` (both (T, B)), and
    ``y~_t`` when ``u`` is None (then only ``x3`` is run); returns ``(out, x_T)``."""
    xp = array_namespace(w)
    A, Bv, C = (asarray(a, xp, w.dtype) for a in P)
    T = int(w.shape[0])
    x = [x0[:, 0:2], x0[:, 2:4], x0[:, 4:6]]
    out = xp.empty(tuple(w.shape), dtype=w.dtype)
    for t in range(T):
        if u is None:
            out[t, ...] = -(x[2] @ C.mT)[:, 0]
            x[2] = x[2] @ A.mT + w[t, ...][:, None] * Bv[:, 0]
        else:
            out[t, ...] = ((x[0] + x[1]) @ C.mT)[:, 0]
            x[0] = x[0] @ A.mT + w[t, ...][:, None] * Bv[:, 0]
            x[1] = x[1] @ A.mT + u[t, ...][:, None] * Bv[:, 0]
    return out, xp.concat(x, axis=1)


def _check(cfg, direct, state, w):
    module = _module(cfg)
    if not isinstance(state, State):
        raise TypeError(f"state must be a youla.State; got {type(state).__name__}")
    _validate.array("w", w, [("T", None), ("B", None), ("nw", 1)])
    B = int(w.shape[1])
    _validate.array("state.x", state.x, [("B", B), ("6", 6)], like=w, like_name="w")
    _validate.array("state.q", state.q, [("B", B), ("nx", cfg.nx)], like=w, like_name="w")
    return module


class Rollout(NamedTuple):
    Z: object  # (T, B) performance output
    U: object  # (T, B) clipped control
    Ut: object  # (T, B) policy output before the clip
    Yt: object  # (T, B) y~, the policy's input
    final: State
    value: float


def rollout(cfg, direct, state, w, _keep=False):
    """Run the closed loop over ``w : (T, B, 1)`` from ``state``.

    Returns a ``Rollout`` with ``Z, U`` (clipped), ``Ut`` (unclipped), ``Yt`` (each ``(T, B)``),
    the final ``State`` and the loss ``mean_{t,b} |z_t| + 1e-4 u_t^2``, (Y1)-(Y3) of
    ``docs/derivations/youla.md``.
    """
    module = _check(cfg, direct, state, w)
    return _rollout(module, cfg, direct, state, w)[0]


def _rollout(module, cfg, direct, state, w):
    xp = array_namespace(w)
    P = plant()
    W = w[..., 0]
    Yt, x3T = _plant_outputs(P, state.x, W, None)  # y~ = -T w: independent of the policy (Y1)
    explicit, map_cache = module.direct_to_explicit(cfg, direct)
    qT, Ut3, cache = module.forward(cfg, explicit, state.q, Yt[..., None])
    Ut = Ut3[..., 0]
    U = xp.clip(Ut, -U_MAX, U_MAX)
    Z, x12T = _plant_outputs(P, state.x, W, U)
    N = int(W.shape[0]) * int(W.shape[1])
    value = float(xp.sum(xp.abs(Z)) + U_WEIGHT * xp.sum(U * U)) / N
    final = State(xp.concat([x12T[:, :4], x3T[:, 4:]], axis=1), qT)
    return Rollout(Z, U, Ut, Yt, final, value), (explicit, map_cache, cache)


def loss_and_grad(cfg, direct, state, w):
    """Closed-loop loss over ``w : (T, B, 1)`` and its gradient in the policy's parameters.

    The states at the end are carried to the next stretch without a gradient (truncated BPTT,
    as the authors train).

    Returns
    -------
    value : float; d_direct : the policy's ``Direct``; final : State.

    Notes
    -----
    (Y4)-(Y6) of ``docs/derivations/youla.md``.
    """
    module = _check(cfg, direct, state, w)
    roll, (explicit, map_cache, cache) = _rollout(module, cfg, direct, state, w)
    xp = array_namespace(w)
    A, Bv, C = (asarray(a, xp, w.dtype) for a in plant())
    T, B = int(w.shape[0]), int(w.shape[1])
    N = T * B
    dZ = xp.sign(roll.Z) / N
    dU = (2.0 * U_WEIGHT / N) * roll.U
    lam = xp.zeros((B, 2), dtype=w.dtype)  # adjoint of x2_{t+1}; zero at T (Y5)
    for t in range(T - 1, -1, -1):
        dU[t, ...] += (lam @ Bv)[:, 0]
        lam = lam @ A + dZ[t, ...][:, None] * C[0, :]
    # the clip passes no gradient where it is active (Y6)
    dUt = dU * xp.astype(xp.abs(roll.Ut) < U_MAX, w.dtype)
    d_explicit, _, _ = module.backward(cfg, explicit, cache, dUt[..., None])
    return roll.value, module.direct_to_explicit_vjp(cfg, map_cache, d_explicit), roll.final


def model_config(model, preset="paper", activation="tanh", init="long_memory"):
    """The paper's policies: REN nx 10, nv 400 or R2DN nx 10, nv 100, LBDN 4 x 140; tanh,
    long-memory init."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {preset!r}")
    _validate.one_of("model", model, ("r2dn", "ren"))
    s = PRESETS[preset][model]
    if model == "ren":
        return ren.Config(nu=1, nx=s["nx"], nv=s["nv"], ny=1, activation=activation, init=init)
    return r2dn.Config(nu=1, nx=s["nx"], nv=s["nv"], ny=1, hidden=s["hidden"], activation=activation,
                       init=init, output_layer="sandwich")


class FitResult(NamedTuple):
    direct: object
    train_losses: list  # mean over the epoch's stretches
    test_losses: list  # before each epoch and after the last (epochs + 1 values)
    seconds: list  # wall-clock seconds of each epoch's training (test evaluation excluded)
    cpu_seconds: list


def fit(cfg, epochs, batch=64, T=800, segments=4, lr=5e-3, decay_epochs=60, clip=10.0, seed=0,
        test_seed=12345, backend=None, log=None):
    """The authors' training: per epoch ``batch`` fresh sequences of ``T`` steps in ``segments``
    stretches with the state carried; Adam with elementwise gradient clipping at ``clip`` and the
    learning rate times 0.1 every ``decay_epochs`` epochs; test loss on a fixed ``batch x T`` set."""
    module = _module(cfg)
    for name, v in (("epochs", epochs), ("batch", batch), ("T", T), ("segments", segments),
                    ("decay_epochs", decay_epochs)):
        _validate.positive_int(name, v)
    if T % segments:
        raise ValueError(f"T must be a multiple of segments; got T={T}, segments={segments}")
    _validate.positive_float("lr", lr)
    _validate.positive_float("clip", clip)
    _validate.seed("seed", seed)
    _validate.seed("test_seed", test_seed)
    _validate.callable_or_none("log", log)
    xp = namespace(backend)
    rng = np.random.default_rng(seed)
    w_test = asarray(disturbances(np.random.default_rng(test_seed), T, batch), xp, "float64")
    direct = module.init(cfg, seed, backend=backend)
    adam = optim.adam_init(direct)
    out = FitResult(direct, [], [], [], [])
    L = T // segments
    for epoch in range(epochs + 1):
        out.test_losses.append(_rollout(module, cfg, direct, initial_state(cfg, batch, backend), w_test)[0].value)
        if epoch == epochs:
            break
        t0, c0 = time.perf_counter(), time.process_time()
        w = asarray(disturbances(rng, T, batch), xp, "float64")
        state = initial_state(cfg, batch, backend)
        total = 0.0
        for k in range(segments):
            lr_now = optim.exponential_decay(adam.step, lr, 0.1, decay_epochs * segments)
            value, grads, state = loss_and_grad(cfg, direct, state, w[k * L:(k + 1) * L, ...])
            direct, adam = optim.adam_step(direct, optim.clip_elementwise(grads, clip), adam, max(lr_now, 1e-6))
            total += value
        mean = total / segments
        if not math.isfinite(mean):
            raise FloatingPointError(f"Youla training loss is not finite at epoch {epoch}")
        out.train_losses.append(mean)
        out.seconds.append(time.perf_counter() - t0)
        out.cpu_seconds.append(time.process_time() - c0)
        if log is not None:
            log(epoch, mean, out.test_losses[-1], out.seconds[-1])
    return out._replace(direct=direct)


def tiny_config(model):
    """Small policies of the same kinds, for tests and the sweep's ``tiny`` preset."""
    _validate.one_of("model", model, ("r2dn", "ren"))
    if model == "r2dn":
        return r2dn.Config(nu=1, nx=3, nv=4, ny=1, hidden=(8,), activation="tanh", init="long_memory")
    return ren.Config(nu=1, nx=3, nv=8, ny=1, activation="tanh", init="long_memory")


# ---- the experiment as one call ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class YoulaSettings:
    """One policy of the experiment: ``model`` (``"r2dn"``, ``"ren"``) at ``preset``'s sizes and
    schedule (``PRESETS``; ``epochs``, ``T`` and ``batch`` override it; ``tiny``: the small
    policies of :func:`tiny_config`), ``seed`` of the initial weights and the disturbances."""

    model: str
    preset: str = "quick"
    seed: int = 0
    epochs: int | None = None
    T: int | None = None
    batch: int | None = None
    tiny: bool = False

    def __post_init__(self):
        _validate.one_of("model", self.model, ("r2dn", "ren"))
        _validate.one_of("preset", self.preset, tuple(PRESETS))
        object.__setattr__(self, "seed", _validate.seed("seed", self.seed))
        for name in ("epochs", "T", "batch"):
            if getattr(self, name) is not None:
                _validate.positive_int(name, getattr(self, name))
        _validate.flag("tiny", self.tiny)

    def schedule(self):
        """The preset's settings with this run's overrides (sizes left out)."""
        p = {k: v for k, v in PRESETS[self.preset].items() if k not in ("r2dn", "ren")}
        p.update({k: getattr(self, k) for k in ("epochs", "T", "batch") if getattr(self, k) is not None})
        return p


@dataclasses.dataclass(frozen=True)
class YoulaResult(JSONResult):
    """What :func:`run` found; ``seconds_per_epoch`` and ``cpu_seconds_per_epoch`` leave out the
    first epoch where there are more; ``test_losses`` has one value before each epoch and one
    after the last. ``cfg`` and ``direct`` are the trained policy (not in :meth:`to_json`)."""

    model: str = dataclasses.field(metadata=NOT_JSON)
    config: dict
    train_losses: list
    test_losses: list
    seconds: list
    cpu_seconds: list
    seconds_per_epoch: float
    cpu_seconds_per_epoch: float
    final_test_loss: float
    cfg: object = dataclasses.field(repr=False, compare=False, default=None, metadata=NOT_JSON)
    direct: object = dataclasses.field(repr=False, compare=False, default=None, metadata=NOT_JSON)

    def table(self):
        return (f"{self.model}: {self.seconds_per_epoch:.2f} s/epoch ({self.cpu_seconds_per_epoch:.2f} CPU s), final "
                f"test loss {self.final_test_loss:.4f}")


def run(settings, *, log=None):
    """Train one policy; ``log`` : callable receiving a line per epoch."""
    if not isinstance(settings, YoulaSettings):
        raise TypeError(f"settings must be a youla.YoulaSettings; got {type(settings).__name__}")
    _validate.callable_or_none("log", log)
    s, p = settings, settings.schedule()
    cfg = tiny_config(s.model) if s.tiny else model_config(s.model, s.preset)

    def epoch_line(e, tr, te, sec):
        log(f"{s.model} epoch {e + 1}: train {tr:.4f}, test (before) {te:.4f} ({sec:.2f} s)")

    res = fit(cfg, p["epochs"], batch=p["batch"], T=p["T"], segments=p["segments"], lr=p["lr"],
              decay_epochs=p["decay_epochs"], clip=p["clip"], seed=s.seed, log=None if log is None else epoch_line)
    return YoulaResult(s.model, cfg.to_dict(), res.train_losses, res.test_losses, res.seconds, res.cpu_seconds,
                       per_epoch(res.seconds), per_epoch(res.cpu_seconds), res.test_losses[-1], cfg, res.direct)
