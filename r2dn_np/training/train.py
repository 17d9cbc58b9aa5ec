"""Training recurrent models on input-output records: truncated backpropagation through time
with the state carried from one window to the next, Adam with element-wise gradient
clipping and a learning-rate schedule, validation NRMSE after a washout, early stopping, and
checkpoints from which training resumes exactly as if it had not stopped.

The model enters as a module with the library's common interface (``Config``, ``init``,
``direct_to_explicit``, ``direct_to_explicit_vjp``, ``forward``, ``backward``), so any
feedback model of the registry trains here: ``get_model("r2dn")``, ``get_model("ren")``.

One epoch: every training record is cut into chunks of ``chunk`` samples (from a random
offset below ``window``), the chunks are shuffled into minibatches of ``batch`` parallel
streams, and each minibatch is run window by window: ``forward`` over ``window`` samples,
the mean-squared error of the standardised output, ``backward``, one Adam step, and the
final state handed to the next window as its initial state (not differentiated through).
The loss ignores the first ``washout`` samples of each chunk, where the zero initial state
has not yet been forgotten (windows wholly inside the washout only carry the state on).

:func:`refine` is a second stage after :func:`fit`: the same loss over whole training records
(no windows), minimised by L-BFGS-B with gradients exact through every record; every iterate is
a certified model, and the one of the best validation NRMSE is kept (docs/sysid.md,
"Whole-record refinement").

Examples
--------
>>> import numpy as np
>>> from r2dn_np import r2dn
>>> from r2dn_np.training import train
>>> from r2dn_np.data import sequences
>>> rng = np.random.default_rng(0)
>>> u = rng.standard_normal((400, 1)); y = np.cumsum(u, axis=0) * 0.1
>>> data = sequences.SysIdData("toy", 1.0, [sequences.Record(u, y)], [sequences.Record(u, y)], {}, ("u",), ("y",), {})
>>> cfg = r2dn.Config(nu=1, nx=4, nv=4, ny=1, hidden=(8,))
>>> opts = train.Options(epochs=2, chunk=100, window=50, batch=4, washout=10)
>>> result = train.fit(r2dn, cfg, data, opts)
>>> len(result.history["loss"]), result.history["loss"][1] < result.history["loss"][0]
(2, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from typing import NamedTuple

import numpy as np
from array_api_compat import array_namespace

from ..core import _validate, tree
from ..checks import certificates
from ..loop import graph, parallel
from ..interface import io, registry
from . import optim
from . import checkpoint as _checkpoint  # the module; "checkpoint" is fit's and refine's path argument
from ..core.backend import asarray, namespace, to_numpy
from ..data import sequences

__all__ = ["Options", "Result", "Model", "RefineOptions", "get_model", "fit", "refine", "simulate", "evaluate",
           "load_model", "pretrained", "check_input"]

SCHEDULES = ("exponential", "plateau", "constant")
_CHECKPOINT_KIND = "r2dn_np.training.train checkpoint"
_REFINE_KIND = "r2dn_np.training.train refinement checkpoint"
PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "pretrained")
PRETRAINED_PREFIX = "pretrained:"


def get_model(name):
    """The module of a feedback model by name (``registry.names(feedback=True)``: ``"r2dn"``, ``"ren"``).

    Raises
    ------
    ValueError
        Unknown name, or a model this module does not train.
    """
    return registry.module(name, feedback=True)


@dataclasses.dataclass(frozen=True)
class Options:
    """Training options (all saved with a checkpoint and in ``results.json``)."""

    epochs: int = 100
    chunk: int = 2048  # samples per stream
    window: int = 256  # samples per truncated-BPTT window (one Adam step)
    batch: int = 16  # streams per minibatch
    lr: float = 3e-3
    schedule: str = "exponential"
    decay_rate: float = 0.5  # exponential: lr * decay_rate ** (epoch // decay_epochs)
    decay_epochs: int = 40
    plateau_factor: float = 0.5  # plateau: lr * factor after plateau_patience epochs without progress
    plateau_patience: int = 10
    clip: float = 10.0  # element-wise gradient clipping, as the R2DN authors
    washout: int = 100  # samples ignored by the loss at each chunk start and by validation
    val_samples: int = 0  # validate on the first val_samples samples of each record; 0: all
    patience: int = 0  # early stopping after this many epochs without a better validation; 0: never
    min_improvement: float = 1e-4  # relative: "better" means below best * (1 - min_improvement)
    seed: int = 0
    dtype: str = "float64"

    def __post_init__(self):
        # stored as plain int/float/str: the options go into JSON (checkpoints, results.json)
        def put(name, value):
            object.__setattr__(self, name, value)

        for name in ("epochs", "chunk", "window", "batch", "decay_epochs", "plateau_patience"):
            put(name, _validate.positive_int(name, getattr(self, name)))
        for name in ("washout", "patience", "val_samples"):
            put(name, _validate.nonnegative_int(name, getattr(self, name)))
        put("seed", _validate.seed("seed", self.seed))
        for name in ("lr", "clip"):
            put(name, _validate.positive_float(name, getattr(self, name)))
        put("decay_rate", _validate.real("decay_rate", self.decay_rate, 0, 1, low_open=True))
        put("min_improvement", _validate.real("min_improvement", self.min_improvement, 0, 1, high_open=True))
        put("plateau_factor", _validate.real("plateau_factor", self.plateau_factor, 0, 1, low_open=True,
                                             high_open=True))
        put("schedule", str(_validate.one_of("schedule", self.schedule, SCHEDULES)))
        put("dtype", str(_validate.one_of("dtype", self.dtype, ("float32", "float64"))))
        if self.window > self.chunk:
            raise ValueError(f"window ({self.window}) must not exceed chunk ({self.chunk})")
        if self.val_samples and self.val_samples <= self.washout:
            raise ValueError(f"val_samples ({self.val_samples}) must exceed washout ({self.washout})")
        if self.washout >= self.chunk:
            raise ValueError(f"washout ({self.washout}) must be smaller than chunk ({self.chunk})")


_INTERFACE = ("Config", "init", "direct_to_explicit", "direct_to_explicit_vjp", "forward", "backward")


def _check_model(module, cfg):
    """``module`` has the recurrent-model interface and ``cfg`` is its ``Config``."""
    missing = [n for n in _INTERFACE if not hasattr(module, n)]
    if missing:
        raise TypeError(f"module must be a recurrent model module (get_model('r2dn'), say) with {', '.join(_INTERFACE)}; "
                        f"got {getattr(module, '__name__', type(module).__name__)!r}, which lacks {missing[0]}")
    if not isinstance(cfg, module.Config):
        raise TypeError(f"cfg must be a {module.__name__.rsplit('.', 1)[-1]}.Config; got "
                        f"{type(cfg).__module__.rsplit('.', 1)[-1]}.{type(cfg).__qualname__}")


def _check_params(name, module, cfg, params, dtype=None):
    """``params`` is ``module``'s ``Direct`` for ``cfg`` (every field, exact shapes, finite), of
    ``dtype`` where given. Returns the parameters' namespace."""
    template = module.init(cfg, seed=0, backend="numpy")
    xp = _validate.container(name, params, template)
    leaf = tree.leaves(params)[0]
    if dtype is not None and leaf.dtype != getattr(xp, dtype):
        raise TypeError(f"{name} must be {dtype} (Options.dtype); got {leaf.dtype}")
    return xp


class Result(NamedTuple):
    params: object  # the parameters of the best validation epoch
    scaler: sequences.Scaler
    history: dict  # per epoch: loss, val_nrmse, lr, seconds
    best_epoch: int  # 1-based
    best_val_nrmse: float
    epochs_run: int
    stopped_early: bool
    resumed_from: int = 0  # epochs a resumed run found done in its checkpoint


class _State(NamedTuple):
    """Everything training needs to continue exactly: the checkpoint's content."""

    params: object
    adam: optim.AdamState
    best_params: object
    epoch: int  # epochs completed
    rng: dict  # numpy bit-generator state
    plateau: optim.PlateauState
    best_val: float
    best_epoch: int
    since_best: int
    history: dict


def _lr(opts, state):
    if opts.schedule == "exponential":
        return optim.exponential_decay(state.epoch, opts.lr, opts.decay_rate, opts.decay_epochs)
    if opts.schedule == "plateau":
        return state.plateau.lr
    return opts.lr


def _window_loss(Y, Yt, skip, n=None):
    """MSE over samples ``t >= skip`` and its cotangent (zero on the skipped samples); ``n``: the
    count the squared errors are divided by (default those scored here: several groups of
    records then share one mean)."""
    xp = array_namespace(Y)
    r = Y[skip:, ...] - Yt[skip:, ...]
    if n is None:
        n = math.prod(int(s) for s in r.shape)
    dY = xp.zeros_like(Y)
    dY[skip:, ...] = (2.0 / n) * r
    return xp.sum(r * r) / n, dY


def _window_grad(explicit, x, U, Yt, *, module, cfg, skip, workers):
    """One window's loss, the cotangent of the explicit weights and the final state: rollout, loss
    and BPTT, the part of a training step that ``graph.captured`` replays as one CUDA graph on
    CuPy (the parameter map and its VJP run outside it)."""
    x_next, Yp, cache = module.forward(cfg, explicit, x, U, **({} if workers is None else {"workers": workers}))
    loss, dY = _window_loss(Yp, Yt, skip)
    d_explicit, _, _ = module.backward(cfg, explicit, cache, dY)
    return loss, d_explicit, x_next


def _epoch(module, cfg, state, records, opts, xp, lr, workers=None, window_grad=_window_grad):
    rng = np.random.default_rng(0)
    rng.bit_generator.state = state.rng
    offsets = rng.integers(0, opts.window, size=len(records)) if opts.window > 1 else [0] * len(records)
    U, Y = sequences.chunk(records, opts.chunk, offsets)
    order = rng.permutation(U.shape[1])
    params, adam = state.params, state.adam
    total, count = 0.0, 0
    n_win = opts.chunk // opts.window
    for b in range(0, len(order), opts.batch):
        idx = order[b:b + opts.batch]
        Ub = asarray(U[:, idx, :], xp, opts.dtype)
        Yb = asarray(Y[:, idx, :], xp, opts.dtype)
        x = xp.zeros((len(idx), cfg.nx), dtype=Ub.dtype)
        for k in range(n_win):
            sl = slice(k * opts.window, (k + 1) * opts.window)
            skip = max(0, opts.washout - k * opts.window)
            explicit, map_cache = module.direct_to_explicit(cfg, params)
            if skip >= opts.window:  # still in the washout: only carry the state on
                x, _, _ = module.forward(cfg, explicit, x, Ub[sl, ...],
                                         **({} if workers is None else {"workers": workers}))
                continue
            loss, d_explicit, x_next = window_grad(explicit, x, Ub[sl, ...], Yb[sl, ...], module=module, cfg=cfg,
                                                   skip=skip, workers=workers)
            grads = module.direct_to_explicit_vjp(cfg, map_cache, d_explicit)
            grads = optim.clip_elementwise(grads, opts.clip)
            params, adam = optim.adam_step(params, grads, adam, lr)
            loss = float(loss)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {loss} at epoch {state.epoch + 1}; lower the learning rate (lr={lr:g})"
                )
            total += loss
            count += 1
            x = x_next
    return params, adam, total / max(count, 1), rng.bit_generator.state


def simulate(module, cfg, params, records, scaler, dtype=None):
    """Free-run simulation from the zero state. Returns one ``(T, ny)`` host array per record,
    in the records' original units.

    Parameters
    ----------
    module, cfg : the model (``get_model(name)``) and its ``Config``.
    params : the model's free parameters (its ``Direct``).
    records : list of ``Record(u (T, nu), y)``; only ``u`` is read.
    scaler : the ``sequences.Scaler`` the model was trained with.
    dtype : ``"float32"`` or ``"float64"``; default the parameters' dtype.

    Raises
    ------
    TypeError, ValueError
        Any argument malformed, named in the message (``records[1].u``, ``params.X``).
    """
    _check_model(module, cfg)
    xp = _check_params("params", module, cfg, params)
    leaf = tree.leaves(params)[0]
    sequences.check_records("records", records, cfg.nu, outputs=False)
    sequences.check_scaler("scaler", scaler, cfg.nu, cfg.ny)
    if dtype is not None:
        _validate.one_of("dtype", dtype, ("float32", "float64"))
    explicit, _ = module.direct_to_explicit(cfg, params)
    out = [None] * len(records)
    by_length = {}
    for i, rec in enumerate(records):
        by_length.setdefault(rec.u.shape[0], []).append(i)
    # records of one length run as parallel streams: the time loop's cost is mostly per step
    for idx in by_length.values():
        U = np.stack([scaler.u(records[i].u) for i in idx], axis=1)
        u = asarray(U, xp, dtype or str(to_numpy(leaf).dtype))
        # forward only: checkpointing the whole record as one segment keeps no step caches
        _, Yp, _ = module.forward(cfg, explicit, xp.zeros((len(idx), cfg.nx), dtype=u.dtype), u,
                                  checkpoint_every=int(u.shape[0]))
        Y = np.asarray(to_numpy(Yp), dtype=np.float64)
        for k, i in enumerate(idx):
            out[i] = scaler.y_inverse(Y[:, k, :])
    return out


class Model(NamedTuple):
    """A trained model with the standardisation it was trained with (what :func:`load_model` returns)."""

    module: object  # r2dn_np.r2dn or r2dn_np.ren
    config: object
    params: object
    scaler: sequences.Scaler
    metadata: dict

    def simulate(self, inputs, warmup=None, periodic=False):
        """Free-run simulation from the zero state, inputs and outputs in physical units.

        The zero state is the model's, not the system's rest: the first samples carry a
        start-up transient (docs/sysid.md, "The zero state"). ``warmup`` runs an input record
        first and starts from the state it leaves; ``periodic`` runs the input twice and returns
        the second pass (the steady state of a periodic input, for a contracting model).

        Parameters
        ----------
        inputs : (T, nu) array, or a list of them (records of any length). A 1-D ``(T,)``
            array is read as ``(T, 1)`` when the model has one input.
        warmup : (T0, nu) array run before each input; its outputs are dropped.
        periodic : run each input twice and return the second pass.

        Returns
        -------
        (T, ny) host float64 array, or a list of them for a list of inputs.

        Raises
        ------
        ValueError
            An input of the wrong shape or number of channels, or with NaN or Inf.
        """
        single = hasattr(inputs, "shape")
        inputs = [inputs] if single else list(inputs)
        names = ["inputs"] if single else [f"inputs[{i}]" for i in range(len(inputs))]
        inputs = [check_input(n, u, self.config.nu) for n, u in zip(names, inputs)]
        periodic = _validate.flag("periodic", periodic)
        head = np.zeros((0, self.config.nu)) if warmup is None else check_input("warmup", warmup, self.config.nu)
        # train.simulate reads only the inputs of its records
        records = [sequences.Record(np.concatenate([head] + [u] * (2 if periodic else 1)), None) for u in inputs]
        out = simulate(self.module, self.config, self.params, records, self.scaler)
        out = [y[y.shape[0] - u.shape[0]:] for y, u in zip(out, inputs)]
        return out[0] if single else out

    def save(self, path):
        """Write the model and its standardisation (``metadata["scaler"]``) to ``path`` (``.npz``),
        readable by :func:`load_model` and ``r2dn simulate`` / ``r2dn verify``."""
        io.save(path, self.config, self.params, metadata=dict(self.metadata, scaler=self.scaler.to_dict()))

    def certify(self):
        """The :class:`~r2dn_np.checks.certificates.Report` of the model's certificate (``.holds``, ``.table()``)."""
        explicit, cache = self.module.direct_to_explicit(self.config, self.params)
        return certificates.certify(self.config, explicit, cache)


def check_input(name, u, nu):
    """``u`` as a finite float64 ``(T, nu)`` host array, ``T >= 1``; ``(T,)`` is ``(T, 1)`` when
    ``nu == 1``. Errors name the argument ``name``."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (the argument's name in messages); got {type(name).__name__}")
    nu = _validate.positive_int("nu", nu)
    try:
        u = np.asarray(to_numpy(u) if hasattr(u, "shape") else u)
        if u.dtype.kind not in "biuf":  # strings would parse, complex lose its imaginary part
            raise TypeError
        u = np.asarray(u, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of numbers of shape (T, nu={nu}); got "
                        f"{type(u).__name__}{' of dtype %s' % u.dtype if hasattr(u, 'dtype') else ''}") from None
    if u.ndim == 1 and nu == 1:
        u = u[:, None]
    if u.ndim != 2 or u.shape[0] < 1:
        raise ValueError(f"{name} must have shape (T, nu={nu}), one row per sample; got shape {u.shape}")
    if u.shape[1] != nu:
        raise ValueError(f"{name} has {u.shape[1]} input channels (columns) but the model expects nu={nu}")
    bad = np.argwhere(~np.isfinite(u))
    if bad.size:
        raise ValueError(f"{name} contains NaN or Inf (first at sample {bad[0, 0]}, channel {bad[0, 1]})")
    return u


def pretrained(name=None):
    """The trained models shipped with the package (``r2dn_np/data/pretrained/``; its README says
    the command, seed, code version and scores of each): without ``name``, their names; with one,
    the path of its file. ``load_model("pretrained:NAME")`` and ``r2dn simulate --params
    pretrained:NAME`` read them.

    Raises
    ------
    FileNotFoundError
        No shipped model of that name (the message lists those there are).
    """
    names = sorted(f[:-4] for f in os.listdir(PRETRAINED_DIR) if f.endswith(".npz")) \
        if os.path.isdir(PRETRAINED_DIR) else []
    if name is None:
        return names
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-." for c in name) or name[0] == ".":
        raise ValueError(f"name must be the name of a shipped model (letters, digits, _ - .); got {name!r}")
    if name not in names:
        have = ", ".join(names) if names else "none in this version"
        raise FileNotFoundError(f"{PRETRAINED_PREFIX}{name}: no such pretrained model (shipped: {have})")
    return os.path.join(PRETRAINED_DIR, name + ".npz")


def load_model(path, backend=None):
    """Load a model saved by ``r2dn sysid`` (its ``model.npz``) with its standardisation;
    ``"pretrained:NAME"`` loads a model shipped with the package (:func:`pretrained`).

    ``load_model(path).simulate(u)`` predicts the output for an input record ``u : (T, nu)``,
    both in physical units. A model trained elsewhere can be used the same way when it is
    saved with ``io.save(path, cfg, params, metadata={"scaler": scaler.to_dict()})``
    (``sequences.Scaler``; zero means and unit deviations for a model of unscaled data).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    io.FormatError
        Not a readable parameter file, not a recurrent model, or no valid ``scaler`` in its
        metadata (a file written by plain ``io.save``).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from r2dn_np.interface import io
    >>> from r2dn_np import r2dn
    >>> from r2dn_np.training import train
    >>> from r2dn_np.data import sequences
    >>> cfg = r2dn.Config(nu=1, nx=2, nv=2, ny=1, hidden=(4,))
    >>> unscaled = sequences.Scaler(np.zeros(1), np.ones(1), np.zeros(1), np.ones(1))
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> io.save(path, cfg, r2dn.init(cfg, seed=0), metadata={"scaler": unscaled.to_dict()})
    >>> train.load_model(path).simulate(np.ones(50)).shape
    (50, 1)
    """
    path = _validate.path("path", path)
    if path.startswith(PRETRAINED_PREFIX):
        path = pretrained(path[len(PRETRAINED_PREFIX):])
    loaded = io.load(path, backend=backend)
    cfg = loaded.config
    feedback = registry.names(feedback=True)
    if cfg.model not in feedback:
        raise io.FormatError(f"{path}: holds a {cfg.model!r} model; only {' and '.join(feedback)} "
                             "models simulate input records")
    if "scaler" not in loaded.metadata:
        # refuse rather than assume unscaled data: a wrong guess gives plausible-looking nonsense
        raise io.FormatError(
            f"{path}: has no 'scaler' in its metadata, so it was not saved by `r2dn sysid`; save the model with "
            "io.save(..., metadata={'scaler': scaler.to_dict()}) to use it here")
    try:
        scaler = sequences.Scaler.from_dict(loaded.metadata["scaler"])
    except (KeyError, TypeError, ValueError) as exc:
        raise io.FormatError(f"{path}: the 'scaler' metadata is invalid ({type(exc).__name__}: {exc})") from None
    for name, n in (("u_mean", cfg.nu), ("u_std", cfg.nu), ("y_mean", cfg.ny), ("y_std", cfg.ny)):
        v = getattr(scaler, name)
        if v.shape != (n,) or not np.all(np.isfinite(v)) or (name.endswith("std") and not np.all(v > 0)):
            raise io.FormatError(f"{path}: scaler field {name!r} must hold {n} finite number(s)"
                                 f"{' > 0' if name.endswith('std') else ''}; got {v.tolist()}")
    return Model(get_model(cfg.model), cfg, loaded.params, scaler, loaded.metadata)


def evaluate(predictions, records, washout):
    """NRMSE and RMSE of each prediction against its record, after ``washout`` samples;
    the mean NRMSE and the pooled RMSE over all records.

    ``predictions`` : list of ``(T_i, ny)`` arrays, one per record of ``records`` (list of
    ``Record(u, y (T_i, ny))``); ``washout`` : samples skipped, fewer than every ``T_i``.
    A prediction with NaN or Inf (a diverged model) scores NaN or Inf, by design; the records
    must be finite."""
    sequences.check_records("records", records)
    if not isinstance(predictions, (list, tuple)) or len(predictions) != len(records):
        got = f"{len(predictions)} predictions" if isinstance(predictions, (list, tuple)) else type(predictions).__name__
        raise ValueError(f"predictions must be a list of one (T, ny) array per record ({len(records)}); got {got}")
    for i, (p, r) in enumerate(zip(predictions, records)):
        sequences.check_series(f"predictions[{i}]", p, r.y.shape[1], "ny", T=r.y.shape[0], finite=False)
    washout = _validate.nonnegative_int("washout", washout)
    shortest = min(r.y.shape[0] for r in records)
    if washout >= shortest:
        raise ValueError(f"washout must be smaller than every record ({shortest} samples the shortest); got {washout}")
    per = [(sequences.nrmse(p, r.y, washout), sequences.rmse(p, r.y, washout)) for p, r in zip(predictions, records)]
    n = [r.y.shape[0] - washout for r in records]
    pooled = math.sqrt(sum(k * e * e for k, (_, e) in zip(n, per)) / sum(n))
    return float(np.mean([a for a, _ in per])), pooled


def _validate_data(data, opts, cfg):
    if not isinstance(data, sequences.SysIdData):
        raise TypeError(f"data must be a sequences.SysIdData; got {type(data).__name__}")
    if not data.train or not data.val:
        raise ValueError("data.train and data.val must each hold at least one record")
    sequences.check_records("data.train", data.train)
    if data.nu != cfg.nu or data.ny != cfg.ny:
        raise ValueError(f"the model has nu={cfg.nu}, ny={cfg.ny} but the data has nu={data.nu}, ny={data.ny}")
    if max(r.u.shape[0] for r in data.train) < opts.chunk:
        raise ValueError(
            f"chunk ({opts.chunk}) is longer than every training record "
            f"(longest {max(r.u.shape[0] for r in data.train)} samples)"
        )
    if min(r.u.shape[0] for r in data.val) <= opts.washout:
        raise ValueError(f"every validation record must be longer than washout ({opts.washout})")
    sequences.check_sysid_data("data", data, cfg.nu, cfg.ny)


def fit(module, cfg, data, opts=None, *, params=None, backend=None, checkpoint=None, resume=False,
        log=None, stop_after=None, workers=None):
    """Train ``module`` with config ``cfg`` on ``data`` (a ``SysIdData``), standardised with
    the statistics of ``data.scale`` (default: of the training records).

    Parameters
    ----------
    params : initial free parameters; default ``module.init(cfg, opts.seed, backend, opts.dtype)``.
    checkpoint : path of a checkpoint file written after every epoch.
    resume : continue from ``checkpoint`` if it exists (it must have been written with the
        same ``cfg``, ``opts`` and data); the result equals an uninterrupted run bit for bit.
    log : callable receiving one progress line per epoch (``print``, say).
    stop_after : stop after this many epochs in this call (for tests of resumption).
    workers : processes sharing each gradient pass (``r2dn_np.loop.parallel``): an int (1:
        serial), ``"auto"`` (one per core for large enough batches), or None: ``R2DN_WORKERS``,
        else serial (a library call starts no process unless asked). The result is the serial
        one up to the rounding of the shards' gradient sum.

    Returns
    -------
    Result, with the parameters of the epoch of the best validation NRMSE.
    """
    _check_model(module, cfg)
    opts = Options() if opts is None else opts
    if not isinstance(opts, Options):
        raise TypeError(f"opts must be a train.Options; got {type(opts).__name__}")
    _validate_data(data, opts, cfg)
    if checkpoint is not None:
        checkpoint = _validate.path("checkpoint", checkpoint)
    resume = _validate.flag("resume", resume)
    _validate.callable_or_none("log", log)
    if stop_after is not None:
        _validate.nonnegative_int("stop_after", stop_after)
    parallel.check_workers(workers)
    xp = namespace(backend)
    if params is not None:
        got = _check_params("params", module, cfg, params, opts.dtype)
        if got is not xp:
            raise TypeError(f"params live on {got.__name__} but backend is {xp.__name__}; move them with "
                            "r2dn_np.to_backend")
    scaler = sequences.fit_scaler(data.scale or data.train)
    records = [sequences.Record(scaler.u(r.u), scaler.y(r.y)) for r in data.train]
    fingerprint = {"config": cfg.to_dict(), "model": cfg.model, "options": dataclasses.asdict(opts),
                   "scaler": scaler.to_dict()}
    state = None
    if resume and checkpoint is not None and os.path.exists(checkpoint):
        state = _load_state(checkpoint, module, cfg, fingerprint, xp)
    resumed_from = 0 if state is None else state.epoch
    if state is None:
        if params is None:
            params = module.init(cfg, seed=opts.seed, backend=xp, dtype=opts.dtype)
        state = _State(params, optim.adam_init(params), params, 0,
                       np.random.default_rng(opts.seed).bit_generator.state, optim.plateau_init(opts.lr),
                       math.inf, 0, 0, {"loss": [], "val_nrmse": [], "lr": [], "seconds": []})
    val_records = data.val
    if opts.val_samples:
        val_records = [sequences.Record(r.u[:opts.val_samples], r.y[:opts.val_samples]) for r in data.val]
    stopped_early = False
    window_grad = graph.captured(_window_grad)  # on CuPy, each window's pass is one CUDA graph
    done_here = 0
    while state.epoch < opts.epochs:
        if opts.patience and state.since_best >= opts.patience:
            stopped_early = True
            break
        if stop_after is not None and done_here >= stop_after:
            break
        start = time.perf_counter()
        lr = _lr(opts, state)
        params, adam, loss, rng_state = _epoch(module, cfg, state, records, opts, xp, lr, workers, window_grad)
        pred = simulate(module, cfg, params, val_records, scaler, opts.dtype)
        val, _ = evaluate(pred, val_records, opts.washout)
        seconds = time.perf_counter() - start
        better = val < state.best_val * (1.0 - opts.min_improvement) or (
            math.isinf(state.best_val) and math.isfinite(val))
        new = {"loss": loss, "val_nrmse": val, "lr": lr, "seconds": seconds}
        history = {k: state.history[k] + [new[k]] for k in new}
        plateau = optim.plateau_update(state.plateau, val, opts.plateau_factor, opts.plateau_patience) \
            if opts.schedule == "plateau" else state.plateau
        state = _State(params, adam, params if better else state.best_params, state.epoch + 1, rng_state,
                       plateau, val if better else state.best_val,
                       state.epoch + 1 if better else state.best_epoch, 0 if better else state.since_best + 1,
                       history)
        done_here += 1
        if checkpoint is not None:
            _save_state(checkpoint, state, fingerprint)
        if log is not None:
            mean_s = float(np.mean(history["seconds"]))
            left = mean_s * (opts.epochs - state.epoch)
            log(f"epoch {state.epoch:4d}/{opts.epochs}  loss {loss:.4e}  val NRMSE {val:.4f}"
                f"{' *' if better else '  '}  lr {lr:.2e}  {seconds:.2f} s/epoch  ~{_duration(left)} left")
    return Result(state.best_params, scaler, state.history, state.best_epoch, state.best_val, state.epoch,
                  stopped_early, resumed_from)


def _duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


@dataclasses.dataclass(frozen=True)
class RefineOptions:
    """Options of whole-record refinement (:func:`refine`; saved in ``results.json``).

    The loss is scaled by its value at the start, so ``ftol`` and ``gtol`` are relative to the
    starting loss."""

    iterations: int = 200  # L-BFGS-B iterations at most (each one to a few loss-and-gradient passes)
    ftol: float = 1e-12  # stop when an iteration lowers the loss by less than ftol (x the starting loss)
    gtol: float = 1e-10  # stop when no gradient entry exceeds gtol (x the starting loss)
    memory: int = 100  # correction pairs L-BFGS keeps (scipy's maxcor; more converged faster on Bouc-Wen)
    checkpoint_every: int | None = None  # BPTT checkpoint spacing: None ceil(sqrt(T)) per record length; 0 none
    washout: int = 100  # samples at each record's start that the loss and validation skip
    val_samples: int = 0  # validate on the first val_samples samples of each record; 0: all
    records: tuple = ()  # indices of the training records refined on; (): all
    max_seconds: float = 0.0  # stop after the first iteration past this wall time; 0: no limit

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        for name in ("iterations", "memory"):
            put(name, _validate.positive_int(name, getattr(self, name)))
        for name in ("washout", "val_samples"):
            put(name, _validate.nonnegative_int(name, getattr(self, name)))
        for name in ("ftol", "gtol", "max_seconds"):
            put(name, _validate.real(name, getattr(self, name), 0))
        if self.checkpoint_every is not None:
            put("checkpoint_every", _validate.nonnegative_int("checkpoint_every", self.checkpoint_every))
        if isinstance(self.records, (str, bytes)) or not isinstance(self.records, (tuple, list, range)):
            raise TypeError(f"records must be a tuple of training-record indices (() for all); got {self.records!r}")
        put("records", tuple(_validate.nonnegative_int(f"records[{i}]", r) for i, r in enumerate(self.records)))
        if len(set(self.records)) != len(self.records):
            raise ValueError(f"records must not repeat an index; got {self.records}")
        if self.val_samples and self.val_samples <= self.washout:
            raise ValueError(f"val_samples ({self.val_samples}) must exceed washout ({self.washout})")


class _Diverged(Exception):
    """A loss evaluation whose model output was not finite (a line-search trial too far out)."""


def _record_loss(Y, Yt, skip, n):
    value, dY = _window_loss(Y, Yt, skip, n)
    if not math.isfinite(float(value)):
        raise _Diverged
    return value, dY


def _refine_records(data, scaler, opts, xp, dtype):
    """The chosen training records, standardised, grouped by length into time-major batches:
    ``[(U (T, B, nu), Y (T, B, ny), checkpoint_every)]`` and the count of the scored values."""
    picked = opts.records or tuple(range(len(data.train)))
    for i, r in enumerate(picked):
        if r >= len(data.train):
            raise ValueError(f"records[{i}] is {r} but data.train holds {len(data.train)} record(s)")
    by_length = {}
    for r in picked:
        by_length.setdefault(data.train[r].u.shape[0], []).append(data.train[r])
    if min(by_length) <= opts.washout:
        raise ValueError(f"every refined training record must be longer than washout ({opts.washout}); the "
                         f"shortest has {min(by_length)} samples")
    groups, n = [], 0
    for T, recs in by_length.items():
        U = asarray(np.stack([scaler.u(r.u) for r in recs], axis=1), xp, dtype)
        Y = asarray(np.stack([scaler.y(r.y) for r in recs], axis=1), xp, dtype)
        k = opts.checkpoint_every
        k = math.ceil(math.sqrt(T)) if k is None else (k or None)
        groups.append((U, Y, k))
        n += (T - opts.washout) * len(recs) * int(Y.shape[2])
    return groups, n


def _whole_record_loss(module, cfg, params, data, scaler, options, xp, kw):
    """The refinement's objective over a flat float64 vector of the free parameters:
    ``(theta0, loss_and_grad, unflatten)``, ``theta0`` the vector of ``params`` and
    ``loss_and_grad(theta) -> (loss, gradient vector)`` exact through every whole record."""
    dtype = str(to_numpy(tree.leaves(params)[0]).dtype)
    groups, n_scored = _refine_records(data, scaler, options, xp, dtype)
    named = tree.paths(params)
    sizes = [math.prod(int(s) for s in leaf.shape) for _, leaf in named]

    def flatten(container):
        return np.concatenate([np.asarray(to_numpy(leaf), dtype=np.float64).ravel() for leaf in tree.leaves(container)])

    def unflatten(theta):
        parts = np.split(theta, np.cumsum(sizes)[:-1])
        return tree.from_paths(params, {name: asarray(part.reshape(leaf.shape), xp, dtype)
                                        for (name, leaf), part in zip(named, parts)})

    def loss_and_grad(theta):
        p = unflatten(theta)
        value, grad = 0.0, None
        for U, Y, k in groups:  # one batch per record length; the mean is over all of them (n_scored)
            v, g = module.value_and_grad(cfg, p, None, U, lambda Yp, Y=Y: _record_loss(Yp, Y, options.washout, n_scored),
                                         checkpoint_every=k, **kw)
            value += float(v)
            grad = g.direct if grad is None else tree.map(lambda a, b: a + b, grad, g.direct)
        return value, flatten(grad)

    return flatten(params), loss_and_grad, unflatten


def refine(module, cfg, params, data, scaler, options=None, *, log=None, workers=None, checkpoint=None,
           resume=False):
    """Whole-record refinement: minimise the training loss over whole records with L-BFGS-B.

    The loss is the one :func:`fit` minimises, the mean-squared error of the standardised
    output after ``washout`` samples from the zero state, but over each whole training record
    instead of truncated windows; its gradient is exact (backpropagation through the whole
    record, checkpointed to bound memory). Every iterate is a model of the parameterisation,
    so every iterate keeps the certificate. After each iteration the validation NRMSE is
    measured, and the iterate with the best one is returned (the start counts as iteration 0).

    Parameters
    ----------
    module, cfg : the model (``get_model(name)``) and its ``Config``.
    params : the free parameters to start from (``fit(...).params``).
    data : the ``SysIdData`` trained on (``data.train`` refined on, ``data.val`` validates).
    scaler : the standardisation of the training (``fit(...).scaler``).
    options : :class:`RefineOptions` (default ``RefineOptions()``).
    log : callable receiving one progress line per iteration (``print``, say).
    workers : processes sharing each gradient pass, as in :func:`fit`.
    checkpoint : path of a file written after every iteration (the iterate, the best one, the
        history).
    resume : continue from ``checkpoint`` if it exists (the same model, data, start and options,
        ``iterations`` and ``max_seconds`` aside): from its last iterate, with L-BFGS's memory
        rebuilt from there, so the path differs from an uninterrupted run's after the restart.

    Returns
    -------
    params : the iterate of the best validation NRMSE, of ``params``' type, dtype and backend.
    history : dict of per-iteration lists, index 0 the start: ``loss``, ``val_nrmse``,
        ``seconds`` (wall time of the iteration), ``evaluations`` (loss-and-gradient passes so
        far); and ``best_iteration``, ``best_val_nrmse``, ``iterations``, ``message`` (why
        L-BFGS-B stopped), ``seconds_total`` (this call), ``resumed_from`` (iterations a
        checkpoint held).

    Raises
    ------
    TypeError, ValueError
        An argument malformed, named in the message.

    Notes
    -----
    docs/sysid.md, "Whole-record refinement".

    Examples
    --------
    >>> import numpy as np
    >>> from r2dn_np import r2dn
    >>> from r2dn_np.training import train
    >>> from r2dn_np.data import sequences
    >>> u = np.random.default_rng(1).standard_normal((700, 1)); y = np.tanh(np.cumsum(u, axis=0) * 0.05)
    >>> records = [sequences.Record(u[:400], y[:400]), sequences.Record(u[400:], y[400:])]  # two lengths
    >>> data = sequences.SysIdData("toy", 1.0, records, records[:1], {}, ("u",), ("y",), {})
    >>> cfg = r2dn.Config(nu=1, nx=3, nv=4, ny=1, hidden=(6,))
    >>> result = train.fit(r2dn, cfg, data, train.Options(epochs=2, chunk=100, window=50, batch=4, washout=10))
    >>> params, history = train.refine(r2dn, cfg, result.params, data, result.scaler,
    ...                                train.RefineOptions(iterations=5, washout=10))
    >>> history["iterations"], history["loss"][-1] < history["loss"][0]
    (5, True)
    """
    from scipy import optimize

    _check_model(module, cfg)
    options = RefineOptions() if options is None else options
    if not isinstance(options, RefineOptions):
        raise TypeError(f"options must be a train.RefineOptions; got {type(options).__name__}")
    xp = _check_params("params", module, cfg, params)
    if not isinstance(data, sequences.SysIdData):
        raise TypeError(f"data must be a sequences.SysIdData; got {type(data).__name__}")
    if not data.train or not data.val:
        raise ValueError("data.train and data.val must each hold at least one record")
    sequences.check_sysid_data("data", data, cfg.nu, cfg.ny)
    sequences.check_scaler("scaler", scaler, cfg.nu, cfg.ny)
    _validate.callable_or_none("log", log)
    kw = {} if parallel.check_workers(workers) is None else {"workers": workers}
    if checkpoint is not None:
        checkpoint = _validate.path("checkpoint", checkpoint)
    resume = _validate.flag("resume", resume)
    if min(r.u.shape[0] for r in data.val) <= options.washout:
        raise ValueError(f"every validation record must be longer than washout ({options.washout})")
    theta0, loss_and_grad, unflatten = _whole_record_loss(module, cfg, params, data, scaler, options, xp, kw)
    val_records = data.val
    if options.val_samples:
        val_records = [sequences.Record(r.u[:options.val_samples], r.y[:options.val_samples]) for r in data.val]

    def validate(p):
        return evaluate(simulate(module, cfg, p, val_records, scaler), val_records, options.washout)[0]

    # what a checkpoint must match to be continued; not the iterations (a run may be extended). The
    # kind is in it too, as in the files written before training/checkpoint.py, which still resume
    fingerprint = json.loads(json.dumps({
        "kind": _REFINE_KIND, "config": cfg.to_dict(), "model": cfg.model, "scaler": scaler.to_dict(),
        "options": {k: v for k, v in dataclasses.asdict(options).items() if k not in ("iterations", "max_seconds")},
        "start": hashlib.sha256(theta0.tobytes()).hexdigest()}))
    start = time.perf_counter()
    state = None
    if resume and checkpoint is not None and os.path.exists(checkpoint):
        state = _load_refine_checkpoint(checkpoint, fingerprint, theta0.size)
    if state is None:
        try:
            loss0, grad0 = loss_and_grad(theta0)
        except _Diverged:
            raise FloatingPointError("the starting model's output is not finite on the training records") from None
        history = {"loss": [loss0], "val_nrmse": [validate(params)], "seconds": [time.perf_counter() - start],
                   "evaluations": [1]}
        best = [0, history["val_nrmse"][0], None]  # iteration, validation NRMSE, theta (None: the start)
        theta_start = theta0
    else:
        history, best, theta_start = state
        loss0, grad0 = history["loss"][0], None
    scale = 1.0 / loss0 if loss0 > 0 else 1.0  # tolerances relative to the loss at the start
    evaluations = [history["evaluations"][-1]]
    done_before = len(history["loss"]) - 1
    tick = [time.perf_counter()]

    def objective(theta):
        if grad0 is not None and np.array_equal(theta, theta0):  # L-BFGS-B starts where the start was measured
            return loss0 * scale, grad0 * scale
        evaluations[0] += 1
        if not np.all(np.isfinite(theta)):
            return math.inf, np.zeros_like(theta)
        try:
            value, grad = loss_and_grad(theta)
        except _Diverged:
            return math.inf, np.zeros_like(theta)
        return value * scale, grad * scale

    def callback(intermediate_result):
        loss = float(intermediate_result.fun) / scale
        val = validate(unflatten(intermediate_result.x))
        now = time.perf_counter()
        history["loss"].append(loss)
        history["val_nrmse"].append(val)
        history["seconds"].append(now - tick[0])
        history["evaluations"].append(evaluations[0])
        tick[0] = now
        it = len(history["loss"]) - 1
        better = val < best[1] or (not math.isfinite(best[1]) and math.isfinite(val))
        if better:
            best[:] = [it, val, np.array(intermediate_result.x)]
        if checkpoint is not None:
            _save_refine_checkpoint(checkpoint, fingerprint, intermediate_result.x, best, history)
        if log is not None:
            left = (now - start) / (it - done_before) * (options.iterations - it)
            log(f"refine {it:4d}/{options.iterations}  loss {loss:.4e}  val NRMSE {val:.4f}{' *' if better else '  '}"
                f"  {evaluations[0]} passes  {history['seconds'][-1]:.2f} s/iteration  ~{_duration(left)} left")
        if options.max_seconds and now - start >= options.max_seconds:
            raise StopIteration

    message = f"resumed with {done_before} of {options.iterations} iterations done"
    if done_before < options.iterations:
        res = optimize.minimize(objective, theta_start, jac=True, method="L-BFGS-B", callback=callback,
                                options={"maxiter": options.iterations - done_before, "maxcor": options.memory,
                                         "ftol": options.ftol, "gtol": options.gtol})
        message = str(res.message)
        if options.max_seconds and time.perf_counter() - start >= options.max_seconds and \
                len(history["loss"]) - 1 < options.iterations:
            message = f"stopped after max_seconds ({options.max_seconds:g} s)"
    history.update(best_iteration=best[0], best_val_nrmse=best[1], iterations=len(history["loss"]) - 1,
                   message=message, seconds_total=time.perf_counter() - start, resumed_from=done_before)
    return (params if best[2] is None else unflatten(best[2])), history


def _refine_templates(size):
    """The trees of a refinement checkpoint: the last iterate and the best one (absent while
    the start is the best)."""
    return {"theta": np.zeros(size), "best_theta": np.zeros(size)}


def _save_refine_checkpoint(path, fingerprint, theta, best, history):
    """The refinement's state after an iteration: the iterate, the best one and the history."""
    _checkpoint.write(path, _REFINE_KIND, fingerprint,
                     {"theta": np.asarray(theta, dtype=np.float64),
                      "best_theta": None if best[2] is None else np.asarray(best[2], dtype=np.float64)},
                     {"best_iteration": best[0], "best_val": best[1], "history": history})


def _load_refine_checkpoint(path, fingerprint, size):
    """``(history, best, theta)`` of a refinement checkpoint of the same refinement.

    Raises
    ------
    io.FormatError
        Not a refinement checkpoint, one of another refinement (model, options, data or start;
        named), or a field missing or malformed."""
    keys = ("loss", "val_nrmse", "seconds", "evaluations")

    def history_ok(h):
        return (isinstance(h, dict) and all(isinstance(h.get(k), list) for k in keys)
                and len({len(h[k]) for k in keys}) == 1 and bool(h["loss"]))

    ck = _checkpoint.read(path, _REFINE_KIND, fingerprint, _refine_templates(size), optional=("best_theta",),
                         fields={"history": history_ok, "best_iteration": _checkpoint.count})
    history = {k: list(ck.fields["history"][k]) for k in keys}
    best_it, best_theta = ck.fields["best_iteration"], ck.trees["best_theta"]
    if best_it >= len(history["loss"]) or (best_it > 0) != (best_theta is not None):
        raise io.FormatError(f"{path}: checkpoint field 'best_iteration' is missing or malformed")
    return history, [best_it, history["val_nrmse"][best_it], best_theta], ck.trees["theta"]


def _save_state(path, state, fingerprint):
    """Write the whole training state of :func:`fit`: the trees of parameters and Adam's moments,
    the rest as fields."""
    _checkpoint.write(path, _CHECKPOINT_KIND, fingerprint,
                     {"params": state.params, "adam_m": state.adam.m, "adam_v": state.adam.v,
                      "best": state.best_params},
                     {"adam_step": state.adam.step, "epoch": state.epoch, "rng": state.rng,
                      "plateau": list(state.plateau), "best_val": state.best_val, "best_epoch": state.best_epoch,
                      "since_best": state.since_best, "history": state.history})


def _load_state(path, module, cfg, fingerprint, xp):
    """The training state of a checkpoint of :func:`fit` of the same run.

    Raises
    ------
    io.FormatError
        Not a training checkpoint, one of another run (what differs named), or an array or
        field missing or malformed (named).
    """
    template = module.init(cfg, seed=0, backend="numpy", dtype=fingerprint["options"]["dtype"])
    fields = {key: _checkpoint.count for key in ("adam_step", "epoch", "best_epoch", "since_best")}
    fields.update(
        best_val=_checkpoint.number,
        rng=lambda v: isinstance(v, dict) and "bit_generator" in v,
        plateau=lambda v: (isinstance(v, list) and len(v) == 3 and all(map(_checkpoint.number, v))
                           and _checkpoint.count(v[2])),
        history=lambda v: isinstance(v, dict) and all(isinstance(v.get(k), list)
                                                      for k in ("loss", "val_nrmse", "lr", "seconds")))
    ck = _checkpoint.read(path, _CHECKPOINT_KIND, fingerprint, dict.fromkeys(("params", "adam_m", "adam_v", "best"),
                                                                             template), fields=fields, xp=xp)
    t, f = ck.trees, ck.fields
    lr, best, wait = f["plateau"]
    return _State(t["params"], optim.AdamState(t["adam_m"], t["adam_v"], int(f["adam_step"])), t["best"],
                  int(f["epoch"]), f["rng"], optim.PlateauState(float(lr), float(best), int(wait)),
                  float(f["best_val"]), int(f["best_epoch"]), int(f["since_best"]), f["history"])
