"""The R2DN paper's expressivity experiment: fit a scalar one-step map as a state update.

The target is

    x+ = 0.2 sin x + 0.05 cos(2(x+u)) + 0.05 sin(3(x+u)) + 0.075 sin(4(x+u)) atan(0.1 (x+u)^2)
         + 0.05 x + u

with x ~ U(-30, 30) and u ~ U(-1, 1). Each model has nu = nx = ny = 1 and is trained so that
its state update from (x, u) gives x+ (one time step, MSE on the next state). Models: the R2DN
of the timing study (nv 16, LBDN 6 x nh, relu) and the REN (nv, tanh). Scored: test NRMSE on
2048 points (x evenly spaced on [-30, 30], u = 1); NRMSE = RMS error / RMS of the target.

One :func:`run` trains one model size with one seed; ``scripts/expressivity.py`` runs the
paper's sizes and seeds and plots NRMSE against parameters and training time, and the sweep's
task ``expressivity`` runs one size per model and seed (``sweep_size``).

Examples
--------
>>> from r2dn_np.experiments import expressivity
>>> result = expressivity.run(expressivity.ExpressivitySettings("r2dn", preset="tiny"))
>>> result.epochs, result.size, 0 < result.nrmse < 10
(3, 'nh=8', True)
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
from array_api_compat import array_namespace

from ..core import _validate, tree
from ..core.backend import namespace, to_numpy
from ..interface import io
from ..training import losses, optim
from ..training import checkpoint as _checkpoint  # the module; "checkpoint" is run's path argument
from ..interface import registry as model_registry
from ..training.train import get_model
from ._result import JSONResult

__all__ = ["PRESETS", "ExpressivitySettings", "ExpressivityResult", "run", "target_map", "model_config",
           "loss_and_grads", "nrmse", "sweep_size"]

# sizes: the LBDN widths nh of the R2DN and the nv of the REN that the study compares; the sweep
# runs the middle one (``sweep_size``)
PRESETS = {
    "tiny": dict(epochs=3, batches=2, batch=64, lr=3e-3, decay_every=20, seeds=1, r2dn=(8,), ren=(20,)),
    "quick": dict(epochs=30, batches=32, batch=512, lr=3e-3, decay_every=20, seeds=1,
                  r2dn=(8, 32, 96), ren=(20, 60, 200)),
    # the paper's schedule: Adam at 1e-3, times 0.1 every 500 epochs, 1500 epochs of 128 batches of
    # 512 fresh samples, 5 seeds, all sizes (many CPU hours)
    "full": dict(epochs=1500, batches=128, batch=512, lr=1e-3, decay_every=500, seeds=5,
                 r2dn=(8, 16, 24, 32, 48, 64, 80, 96), ren=(20, 30, 40, 60, 80, 100, 128, 200)),
}
# the one size per model and preset of the sweep's expressivity task
_SWEEP_SIZES = {"tiny": dict(r2dn=8, ren=20), "quick": dict(r2dn=32, ren=60), "full": dict(r2dn=96, ren=200)}


def sweep_size(preset, model):
    """The size the sweep runs of ``model`` at ``preset``: nh of the R2DN, nv of the REN."""
    return _SWEEP_SIZES[preset][model]


def target_map(x, u):
    """The one-step map to learn (NumPy, elementwise)."""
    s = x + u
    return (0.2 * np.sin(x) + 0.05 * np.cos(2 * s) + 0.05 * np.sin(3 * s)
            + 0.075 * np.sin(4 * s) * np.arctan(0.1 * s**2) + 0.05 * x + u)


def model_config(model, size, kind="contracting", gamma=10.0):
    """The study's model: an R2DN with nv 16 and an LBDN of 6 layers of ``size`` (relu), or a
    REN with nv ``size`` (tanh); nu = nx = ny = 1."""
    module = get_model(model)
    kw = dict(kind=kind, gamma=gamma) if kind == "lipschitz" else {}
    if model == "r2dn":
        return module.Config(1, 1, 16, 1, hidden=(size,) * 6, activation="relu", **kw)
    return module.Config(1, 1, size, 1, activation="tanh", **kw)


def _next_state(module, cfg, explicit, x, u):
    """``x+`` from ``x, u : (N, 1)`` with one step of the model; also its outputs and cache."""
    return module.forward(cfg, explicit, x, u[None, ...])


def loss_and_grads(module, cfg, direct, x, u, x_next):
    """The MSE of one step's state against ``x_next`` and its gradient in the free parameters."""
    explicit, map_cache = module.direct_to_explicit(cfg, direct)
    xT, Y, cache = _next_state(module, cfg, explicit, x, u)
    value, dxT = losses.mse(xT, x_next)
    d_explicit, _, _ = module.backward(cfg, explicit, cache, array_namespace(Y).zeros_like(Y), dxT)
    return value, module.direct_to_explicit_vjp(cfg, map_cache, d_explicit)


def nrmse(module, cfg, direct, put):
    """Test NRMSE on 2048 points, x evenly spaced on [-30, 30], u = 1 (``put``: NumPy to the
    parameters' backend and dtype)."""
    x = np.linspace(-30.0, 30.0, 2048)[:, None]
    u = np.ones_like(x)
    explicit, _ = module.direct_to_explicit(cfg, direct)
    pred = np.asarray(to_numpy(_next_state(module, cfg, explicit, put(x), put(u))[0]))
    truth = target_map(x, u)
    return float(np.sqrt(np.mean((pred - truth) ** 2)) / np.sqrt(np.mean(truth**2)))


@dataclasses.dataclass(frozen=True)
class ExpressivitySettings:
    """One training run: ``model`` (``"r2dn"``, ``"ren"``) of ``size`` (nh of the R2DN, nv of
    the REN; None: :func:`sweep_size`), ``preset``'s schedule (``epochs`` overrides it), ``seed``
    (of the initial weights; the samples use ``1000 + seed``)."""

    model: str
    kind: str = "contracting"
    gamma: float = 10.0
    preset: str = "quick"
    size: int | None = None
    seed: int = 0
    epochs: int | None = None
    decay_every: int | None = None
    backend: str = "numpy"
    dtype: str = "float64"

    def __post_init__(self):
        _validate.one_of("model", self.model, model_registry.names(feedback=True))
        _validate.one_of("kind", self.kind, ("contracting", "lipschitz"))
        object.__setattr__(self, "gamma", _validate.positive_float("gamma", self.gamma))
        _validate.one_of("preset", self.preset, tuple(PRESETS))
        if self.size is None:
            object.__setattr__(self, "size", sweep_size(self.preset, self.model))
        for name in ("size", "epochs", "decay_every"):
            if getattr(self, name) is not None:
                _validate.positive_int(name, getattr(self, name))
        object.__setattr__(self, "seed", _validate.seed("seed", self.seed))
        _validate.one_of("dtype", self.dtype, ("float32", "float64"))

    def schedule(self):
        """The preset's schedule with this run's overrides."""
        p = {k: v for k, v in PRESETS[self.preset].items() if k != "seeds" and k not in model_registry.names(feedback=True)}
        p.update({k: getattr(self, k) for k in ("epochs", "decay_every") if getattr(self, k)})
        return p

    def label(self):
        return f"nh={self.size}" if self.model == "r2dn" else f"nv={self.size}"


@dataclasses.dataclass(frozen=True)
class ExpressivityResult(JSONResult):
    """What :func:`run` found: ``curve`` the last batch's training loss per epoch, ``seconds``
    and ``cpu_seconds`` per epoch, ``nrmse`` the test NRMSE (u = 1), ``params`` the number of
    free parameters, ``resumed_from`` the epochs found done in the checkpoint."""

    model: str
    size: str
    seed: int
    params: int
    curve: list
    seconds: list
    cpu_seconds: list
    nrmse: float
    steps: int
    resumed_from: int = 0

    @property
    def epochs(self):
        return len(self.curve)

    def table(self):
        return (f"{self.model:5} {self.size:7} params {self.params:7d} seed {self.seed}: NRMSE {self.nrmse:.4f} "
                f"loss {self.curve[-1]:.2e}  {sum(self.cpu_seconds):7.1f} s CPU ({sum(self.seconds):.1f} s wall)")


# what a checkpoint of run() must have been written with; files of the format before
# r2dn_np.training.checkpoint carry no kind and are refused as not of this kind
CHECKPOINT_KIND = "r2dn_np.experiments.expressivity checkpoint"


def _save(path, record, direct, state, epoch, history, rng):
    _checkpoint.write(path, CHECKPOINT_KIND, record, {"params": direct, "adam_m": state.m, "adam_v": state.v},
                     {"epoch": epoch, "adam_step": state.step, "history": history, "rng": rng.bit_generator.state})


def _load(path, record, direct, xp):
    """``(direct, Adam state, epoch, history, rng state)`` of a checkpoint of the same run."""
    keys = ("loss", "seconds", "cpu_seconds")

    def history_ok(h):
        return isinstance(h, dict) and all(isinstance(h.get(k), list) for k in keys) and \
            len({len(h[k]) for k in keys}) == 1

    ck = _checkpoint.read(path, CHECKPOINT_KIND, record, {"params": direct, "adam_m": direct, "adam_v": direct},
                         fields={"epoch": _checkpoint.count, "adam_step": _checkpoint.count, "history": history_ok,
                                 "rng": lambda v: isinstance(v, dict) and "bit_generator" in v}, xp=xp)
    t, f = ck.trees, ck.fields
    if len(f["history"]["loss"]) != f["epoch"]:
        raise io.FormatError(f"{path}: checkpoint field 'history' does not hold {f['epoch']} epochs")
    return (t["params"], optim.AdamState(t["adam_m"], t["adam_v"], f["adam_step"]), f["epoch"],
            {k: list(f["history"][k]) for k in keys}, f["rng"])


def run(settings, *, checkpoint=None, log=None, record=None):
    """Train one model of the study and score it.

    ``checkpoint`` : a file written after every epoch and resumed from when it is there (it
    must hold a checkpoint of the same ``record``); ``record``: what identifies the run in it
    (default: ``settings``). ``log`` : callable receiving a line per epoch.
    """
    if not isinstance(settings, ExpressivitySettings):
        raise TypeError(f"settings must be an expressivity.ExpressivitySettings; got {type(settings).__name__}")
    _validate.callable_or_none("log", log)
    if checkpoint is not None:
        checkpoint = _validate.path("checkpoint", checkpoint)
    s = settings
    record = dataclasses.asdict(s) if record is None else record
    p = s.schedule()
    xp = namespace(s.backend)
    module = get_model(s.model)
    cfg = model_config(s.model, s.size, s.kind, s.gamma)
    direct = module.init(cfg, s.seed, backend=xp, dtype=s.dtype)
    dt = tree.leaves(direct)[0].dtype

    def put(a):
        return xp.astype(xp.asarray(a), dt)

    state, epoch, rng_state = optim.adam_init(direct), 0, None
    history = {"loss": [], "seconds": [], "cpu_seconds": []}
    if checkpoint is not None and os.path.exists(checkpoint):
        direct, state, epoch, history, rng_state = _load(checkpoint, record, direct, xp)
    resumed = epoch
    rng = np.random.default_rng(1000 + s.seed)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    while epoch < p["epochs"]:
        lr = optim.exponential_decay(epoch, p["lr"], 0.1, p["decay_every"])
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(p["batches"]):
            x = rng.uniform(-30.0, 30.0, (p["batch"], 1))
            u = rng.uniform(-1.0, 1.0, (p["batch"], 1))
            value, grads = loss_and_grads(module, cfg, direct, put(x), put(u), put(target_map(x, u)))
            direct, state = optim.adam_step(direct, grads, state, lr=lr)
        epoch += 1
        history["loss"].append(float(value))
        history["seconds"].append(time.perf_counter() - t0)
        history["cpu_seconds"].append(time.process_time() - c0)
        if checkpoint is not None:
            _save(checkpoint, record, direct, state, epoch, history, rng)
        if log is not None:
            log(f"{s.model} {s.label()} epoch {epoch}: loss {history['loss'][-1]:.3e} "
                f"({history['seconds'][-1]:.2f} s, lr {lr:.1e})")
    return ExpressivityResult(s.model, s.label(), s.seed, tree.size(direct), history["loss"], history["seconds"],
                              history["cpu_seconds"], nrmse(module, cfg, direct, put), epoch * p["batches"], resumed)
