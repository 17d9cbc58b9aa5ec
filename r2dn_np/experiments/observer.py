"""A learned state observer for a reaction-diffusion PDE (the R2DN paper's observer experiment).

The plant is ``d xi/dt = d2 xi/dz2 + 0.5 xi (1 - xi)(xi - 0.5)`` on ``z in [0, 10]``, discretised
on ``nodes`` points (51: dz = 0.2) and integrated by explicit Euler with ``dt = 0.1 dz^2``; its
Dirichlet boundaries ``xi(0) = xi(10) = b_t`` are the input, a clipped random walk
``b_{t+1} = clip(b_t + 0.05 N(0, 1), 0, 1)``. One sample applies ``substeps`` Euler steps, each
followed by writing ``b_t`` into the boundary nodes. The authors' ``dynamics(..., steps=5)``
returns the state from the start of its last pass, so their data apply 4 sub-steps (0.016 time
units per sample): ``substeps=4`` is the default and reproduces it. The measurement is
``y_t = [b_t, xi_t[nodes // 2]]``.

The observer is an R2DN or REN with ``nu = 2`` (y), ``nx = ny = nodes`` and ``identity_output``
(its state is the estimate). It is trained one step ahead with the true state fed in: loss
``mean_b ||xi_{t+1} - f(xi_t, y_t)||^2`` over a chunk of samples, (O1) of
``docs/derivations/observer.md``. It is then run closed-loop on ``y`` alone from a zero state;
because the model is contracting, estimates from any two initial guesses converge to each other
(``docs/guarantees.md``), so a model that is right one step ahead forgets a wrong start.

Examples
--------
>>> from r2dn_np.experiments import observer
>>> Xi, b = observer.simulate(50, seed=0, nodes=11)
>>> Xi.shape, b.shape, float(Xi.min()) >= 0.0
((50, 11), (50, 1), True)
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
from ..core.backend import asarray, namespace, resolve_dtype, to_numpy

__all__ = [
    "pde_step", "simulate", "measure", "Chunk", "make_data", "model_config", "loss_and_grad",
    "FitResult", "fit", "estimate", "nrmse", "validate", "PRESETS", "ObserverSettings", "ObserverResult", "run",
]

# the paper's settings ("paper") and a few-minute version of them ("quick"), per model
PRESETS = {
    "paper": dict(T=100_000, chunks=200, epochs=200, lr=2e-3, min_lr=1e-6, patience=10,
                  ren=dict(nv=200), r2dn=dict(nv=50, hidden=(96,) * 4), val_T=2001),
    "quick": dict(T=20_000, chunks=40, epochs=30, lr=2e-3, min_lr=1e-6, patience=10,
                  ren=dict(nv=200), r2dn=dict(nv=50, hidden=(96,) * 4), val_T=2001),
}


def _check_nodes(nodes):
    """``nodes``: an integer >= 3 (two boundary nodes and at least one inside), as a model size."""
    if isinstance(nodes, bool) or not isinstance(nodes, (int, np.integer)):
        raise TypeError(f"nodes must be an integer >= 3; got {nodes!r}")
    if nodes < 3:
        raise ValueError(f"nodes must be an integer >= 3 (two boundary nodes and one inside); got {nodes}")
    return _validate.dimension("nodes", nodes)


def _check_grid(nodes, substeps, length, sigma):
    _validate.positive_int("substeps", substeps)
    _check_nodes(nodes)
    _validate.positive_float("length", length)
    _validate.positive_float("sigma", sigma)
    if sigma > 0.5:  # explicit Euler on the heat equation is stable only for dt <= dz^2 / 2
        raise ValueError(f"sigma must be <= 0.5 (explicit Euler stability); got {sigma!r}")


def pde_step(xi, b, substeps=4, length=10.0, sigma=0.1):
    """One sample of the discretised PDE: ``substeps`` Euler steps with boundaries ``b``.

    Parameters
    ----------
    xi : (..., nodes) state; b : (..., 1) boundary value held over the sample.
    substeps : Euler steps per sample (4 reproduces the authors' data).
    length, sigma : domain length and ``dt = sigma dz^2``.

    Returns
    -------
    (..., nodes) the next state; its boundary nodes hold ``b``.
    """
    xi = _validate.host_array("xi", xi, None, text="(..., nodes)")
    b = _validate.host_array("b", b, None, text="(..., 1)")
    if b.shape != xi.shape[:-1] + (1,):
        raise ValueError(f"xi must be (..., nodes) and b (..., 1) with the same leading shape; got "
                         f"xi {xi.shape}, b {b.shape}")
    nodes = int(xi.shape[-1])
    _check_grid(nodes, substeps, length, sigma)
    dz = length / (nodes - 1)
    dt = sigma * dz * dz
    x = xi.copy()
    for _ in range(substeps):
        mid = x[..., 1:-1]
        lap = (x[..., :-2] + x[..., 2:] - 2.0 * mid) / (dz * dz)
        x[..., 1:-1] = mid + dt * (lap + 0.5 * mid * (1.0 - mid) * (mid - 0.5))
        x[..., :1] = b
        x[..., -1:] = b
    return x


def simulate(T, seed=0, xi0=0.0, b0=0.0, nodes=51, substeps=4, noise=0.05):
    """A trajectory of ``T`` samples from ``xi_0 = xi0``, ``b_0 = b0`` (scalars fill every node).

    Returns ``Xi : (T, nodes)`` and ``b : (T, 1)`` with ``Xi[t+1] = pde_step(Xi[t], b[t])`` and
    ``b[t+1] = clip(b[t] + noise N(0, 1), 0, 1)`` (NumPy generator seeded with ``seed``).
    """
    _validate.positive_int("T", T)
    _validate.seed("seed", seed)
    _check_grid(nodes, substeps, 10.0, 0.1)
    for name, v in (("xi0", xi0), ("b0", b0)):
        if not isinstance(v, (int, float, np.floating, np.integer)) or isinstance(v, bool) or not 0 <= v <= 1:
            raise ValueError(f"{name} must be a number in [0, 1]; got {v!r}")
    _validate.real("noise", noise, 0.0)
    _validate.allocation(f"T={T}", "the trajectory Xi", (T, nodes))
    w = noise * np.random.default_rng(seed).standard_normal((T - 1, 1))
    Xi = np.empty((T, nodes))
    b = np.empty((T, 1))
    Xi[0], b[0] = xi0, b0
    for t in range(T - 1):
        Xi[t + 1] = pde_step(Xi[t], b[t], substeps)
        b[t + 1] = np.clip(b[t] + w[t], 0.0, 1.0)
    return Xi, b


def measure(Xi, b):
    """``y_t = [b_t, xi_t[nodes // 2]]``: ``(T, nodes), (T, 1) -> (T, 2)``."""
    Xi = _validate.host_array("Xi", Xi, 2, text="(T, nodes)")
    b = _validate.host_array("b", b, 2, text="(T, 1)")
    if b.shape != (Xi.shape[0], 1):
        raise ValueError(f"Xi must be (T, nodes) and b (T, 1); got {Xi.shape}, {b.shape}")
    mid = Xi.shape[1] // 2
    return np.concatenate([b, Xi[:, mid:mid + 1]], axis=1)


class Chunk(NamedTuple):
    """One training batch: consecutive samples used as independent one-step examples."""

    xi: object  # (B, nodes) xi_t
    y: object  # (B, 2) y_t
    xi_next: object  # (B, nodes) xi_{t+1}


def make_data(T=100_000, chunks=200, seed=0, nodes=51, substeps=4, backend=None, dtype="float64"):
    """The training set: one ``T``-sample trajectory from ``xi = 0, b = 0`` cut into ``chunks``
    consecutive pieces (sizes as ``np.array_split``), in an order shuffled once by ``seed``."""
    _validate.positive_int("chunks", chunks)
    _validate.positive_int("T", T)
    resolve_dtype(namespace(backend), dtype)  # a bad dtype before the simulation
    if T - 1 < chunks:
        raise ValueError(f"T - 1 = {T - 1} one-step pairs cannot fill chunks={chunks}")
    Xi, b = simulate(T, seed, nodes=nodes, substeps=substeps)
    y = measure(Xi, b)
    xp = namespace(backend)
    parts = [np.array_split(a, chunks) for a in (Xi[:-1], y[:-1], Xi[1:])]
    order = np.random.default_rng(seed).permutation(chunks)
    return [Chunk(*(asarray(p[i], xp, dtype) for p in parts)) for i in order]


def model_config(model, nodes=51, preset="paper", activation="relu", init="long_memory"):
    """The paper's observer: ``nu = 2``, ``nx = ny = nodes``, identity output; REN nv 200 or R2DN
    nv 50 with an LBDN of 4 x 96 (``PRESETS[preset]``), relu, long-memory init."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {preset!r}")
    _validate.one_of("model", model, ("r2dn", "ren"))
    _check_nodes(nodes)
    sizes = PRESETS[preset][model]
    common = dict(nu=2, nx=nodes, ny=nodes, activation=activation, init=init, identity_output=True)
    if model == "ren":
        return ren.Config(nv=sizes["nv"], **common)
    # every layer a Sandwich layer, as in the authors' LBDN
    return r2dn.Config(nv=sizes["nv"], hidden=sizes["hidden"], output_layer="sandwich", **common)


def _module(cfg):
    model = getattr(cfg, "model", None)
    if model not in ("r2dn", "ren") or not getattr(cfg, "identity_output", False):
        raise TypeError("cfg must be an r2dn.Config or ren.Config with identity_output=True")
    return r2dn if model == "r2dn" else ren


def loss_and_grad(cfg, direct, chunk):
    """One-step observer loss ``mean_b ||xi_next - f(xi, y)||^2`` and its gradient.

    Parameters
    ----------
    cfg : observer config (identity output); direct : its ``Direct``.
    chunk : Chunk with ``xi : (B, nx)``, ``y : (B, nu)``, ``xi_next : (B, nx)``.

    Returns
    -------
    value : float; d_direct : Direct (None where the config fixes a field).

    Notes
    -----
    (O1)-(O2) of ``docs/derivations/observer.md``: one model step from the true state, so the
    cotangent enters as that of the final state ``dxT = 2 (x1 - xi_next) / B``.
    """
    module = _module(cfg)
    if not isinstance(chunk, Chunk):
        raise TypeError(f"chunk must be an observer.Chunk; got {type(chunk).__name__}")
    xi, y, xn = chunk
    _validate.array("chunk.xi", xi, [("B", None), ("nx", cfg.nx)])
    B = int(xi.shape[0])
    _validate.array("chunk.y", y, [("B", B), ("nu", cfg.nu)], like=xi, like_name="chunk.xi")
    _validate.array("chunk.xi_next", xn, [("B", B), ("nx", cfg.nx)], like=xi, like_name="chunk.xi")
    explicit, map_cache = module.direct_to_explicit(cfg, direct)
    xp = array_namespace(xi)
    U = xp.reshape(y, (1,) + tuple(y.shape))
    x1, Y, cache = module.forward(cfg, explicit, xi, U)
    r = x1 - xn
    value = float(xp.sum(r * r)) / B
    d_explicit, _, _ = module.backward(cfg, explicit, cache, xp.zeros_like(Y), (2.0 / B) * r)
    return value, module.direct_to_explicit_vjp(cfg, map_cache, d_explicit)


class FitResult(NamedTuple):
    direct: object
    losses: list  # mean training loss per epoch
    seconds: list  # wall-clock seconds per epoch
    cpu_seconds: list  # process CPU seconds per epoch (all threads)
    lrs: list  # learning rate used in each epoch


def fit(cfg, data, epochs, lr=2e-3, min_lr=1e-6, patience=10, seed=0, backend=None, log=None):
    """Adam with reduce-on-plateau (factor 0.1 on the epoch's mean loss), as the authors train.

    Parameters
    ----------
    data : list of Chunk (``make_data``); epochs : int; lr, min_lr, patience : the schedule.
    log : optional callable ``(epoch, loss, seconds, lr) -> None``.

    Returns
    -------
    FitResult
    """
    module = _module(cfg)
    _validate.positive_int("epochs", epochs)
    _validate.positive_float("lr", lr)
    _validate.positive_float("min_lr", min_lr)
    _validate.positive_int("patience", patience)
    if not isinstance(data, (list, tuple)) or not data or not all(isinstance(c, Chunk) for c in data):
        raise TypeError("data must be a non-empty list of observer.Chunk (make_data)")
    _validate.callable_or_none("log", log)
    like = data[0].xi
    direct = module.init(cfg, seed, backend=backend, dtype=str(to_numpy(like).dtype))
    adam = optim.adam_init(direct)
    plateau = optim.plateau_init(lr)
    out = FitResult(direct, [], [], [], [])
    for epoch in range(epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        total = 0.0
        for chunk in data:
            value, grads = loss_and_grad(cfg, direct, chunk)
            direct, adam = optim.adam_step(direct, grads, adam, plateau.lr)
            total += value
        mean = total / len(data)
        if not math.isfinite(mean):
            raise FloatingPointError(f"observer training loss is not finite at epoch {epoch}")
        out.losses.append(mean)
        out.seconds.append(time.perf_counter() - t0)
        out.cpu_seconds.append(time.process_time() - c0)
        out.lrs.append(plateau.lr)
        if log is not None:
            log(epoch, mean, out.seconds[-1], plateau.lr)
        plateau = optim.plateau_update(plateau, mean, factor=0.1, patience=patience, min_lr=min_lr)
    return out._replace(direct=direct)


def estimate(cfg, direct, y, x0=None):
    """Run the observer closed-loop on measurements alone: ``y : (T, B, 2)`` -> ``(T, B, nx)``
    estimates ``xhat_t`` (``xhat_0 = x0``, zeros when None)."""
    module = _module(cfg)
    _validate.array("y", y, [("T", None), ("B", None), ("nu", cfg.nu)])
    if x0 is not None:
        _validate.array("x0", x0, [("B", int(y.shape[1])), ("nx", cfg.nx)], like=y, like_name="y")
    explicit, _ = module.direct_to_explicit(cfg, direct)
    return module.forward(cfg, explicit, x0, y)[1]


def nrmse(Xi, Xhat):
    """``sqrt(mean (Xi - Xhat)^2 / mean Xi^2)`` over all nodes and times (the authors' metric).

    ``Xi`` (the true states) must be finite and not all zero (the metric is relative to it);
    an estimate ``Xhat`` with NaN or Inf (a diverged observer) scores NaN or Inf, by design, as
    ``train.evaluate`` scores a diverged model.
    """
    Xi = _validate.host_array("Xi", to_numpy(Xi), 2, text="(T, nodes)")
    Xhat = np.asarray(to_numpy(Xhat))
    if Xhat.dtype.kind not in "biuf":
        raise TypeError(f"Xhat must be a real array; got dtype {Xhat.dtype}")
    if Xi.shape != Xhat.shape:
        raise ValueError(f"Xi and Xhat must have one shape; got {Xi.shape} and {Xhat.shape}")
    scale = np.mean(Xi**2)
    if scale == 0:
        raise ValueError("Xi is zero everywhere: the NRMSE, relative to the mean square of Xi, is undefined")
    with np.errstate(invalid="ignore", over="ignore"):
        return float(np.sqrt(np.mean((Xi - Xhat.astype(np.float64)) ** 2) / scale))


def validate(cfg, direct, T=2001, seed=1, x0=None, nodes=None):
    """The paper's validation: a fresh ``T``-sample trajectory from ``xi = 1, b = 0.5``, the
    observer run on its ``y`` from ``x0`` (zeros). ``nodes``, when given, must be ``cfg.nx``.
    Returns ``(Xi, Xhat, nrmse)`` on the host."""
    _module(cfg)
    if nodes is not None and nodes != cfg.nx:
        raise ValueError(f"nodes must equal the observer's state size cfg.nx={cfg.nx} (or be None); got {nodes!r}")
    Xi, b = simulate(T, seed, xi0=1.0, b0=0.5, nodes=cfg.nx)
    like = _module(cfg).direct_to_explicit(cfg, direct)[0].A
    y = asarray(measure(Xi, b)[:, None, :], array_namespace(like), str(to_numpy(like).dtype))
    Xhat = np.asarray(to_numpy(estimate(cfg, direct, y, x0)))[:, 0, :]
    return Xi, Xhat, nrmse(Xi, Xhat)



# ---- the experiment as one call ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ObserverSettings:
    """One observer of the experiment: ``model`` (``"r2dn"``, ``"ren"``) at ``preset``'s sizes
    and schedule (``PRESETS``; ``epochs``, ``T``, ``chunks`` and ``val_T`` override it) on a PDE
    of ``nodes`` points; ``seed`` of the data and the initial weights (validation: ``seed + 1``)."""

    model: str
    preset: str = "quick"
    seed: int = 0
    epochs: int | None = None
    T: int | None = None
    chunks: int | None = None
    val_T: int | None = None
    nodes: int = 51

    def __post_init__(self):
        _validate.one_of("model", self.model, ("r2dn", "ren"))
        _validate.one_of("preset", self.preset, tuple(PRESETS))
        object.__setattr__(self, "seed", _validate.seed("seed", self.seed))
        for name in ("epochs", "T", "chunks", "val_T"):
            if getattr(self, name) is not None:
                _validate.positive_int(name, getattr(self, name))
        _check_nodes(self.nodes)

    def schedule(self):
        """The preset's settings with this run's overrides (sizes left out)."""
        p = {k: v for k, v in PRESETS[self.preset].items() if k not in ("r2dn", "ren")}
        p.update({k: getattr(self, k) for k in ("epochs", "T", "chunks", "val_T") if getattr(self, k) is not None})
        return p


@dataclasses.dataclass(frozen=True)
class ObserverResult(JSONResult):
    """What :func:`run` found; ``seconds_per_epoch`` and ``cpu_seconds_per_epoch`` leave out the
    first epoch (compilation, caches) where there are more. ``cfg`` and ``direct`` are the
    trained observer (not in :meth:`to_json`)."""

    model: str = dataclasses.field(metadata=NOT_JSON)
    config: dict
    losses: list
    seconds: list
    cpu_seconds: list
    lrs: list
    seconds_per_epoch: float
    cpu_seconds_per_epoch: float
    final_train_loss: float
    val_nrmse: float
    cfg: object = dataclasses.field(repr=False, compare=False, default=None, metadata=NOT_JSON)
    direct: object = dataclasses.field(repr=False, compare=False, default=None, metadata=NOT_JSON)

    def table(self):
        return (f"{self.model}: {self.seconds_per_epoch:.3f} s/epoch ({self.cpu_seconds_per_epoch:.3f} CPU s), final "
                f"loss {self.final_train_loss:.3e}, validation NRMSE {self.val_nrmse:.4f}")


def run(settings, *, data=None, log=None):
    """Train one observer and validate it closed-loop; ``data`` : the training chunks
    (``make_data`` of the settings' ``T``, ``chunks``, ``seed`` and ``nodes``; made when None).
    ``log`` : callable receiving a line per epoch."""
    if not isinstance(settings, ObserverSettings):
        raise TypeError(f"settings must be an observer.ObserverSettings; got {type(settings).__name__}")
    _validate.callable_or_none("log", log)
    s, p = settings, settings.schedule()
    if data is None:
        data = make_data(p["T"], p["chunks"], seed=s.seed, nodes=s.nodes)
    cfg = model_config(s.model, nodes=s.nodes, preset=s.preset)

    def epoch_line(e, v, sec, lr):
        log(f"{s.model} epoch {e + 1}: loss {v:.3e} ({sec:.2f} s, lr {lr:.1e})")

    res = fit(cfg, data, p["epochs"], lr=p["lr"], min_lr=p["min_lr"], patience=p["patience"], seed=s.seed,
              log=None if log is None else epoch_line)
    _, _, err = validate(cfg, res.direct, T=p["val_T"], seed=s.seed + 1, nodes=s.nodes)
    return ObserverResult(s.model, cfg.to_dict(), res.losses, res.seconds, res.cpu_seconds, res.lrs,
                          per_epoch(res.seconds), per_epoch(res.cpu_seconds), res.losses[-1], err, cfg, res.direct)
