"""System identification on your own records in one call: ``fit(u, y)`` trains a robust model
with a preset of ``r2dn sysid`` and returns it ready to use (``.simulate``, ``.save``,
``.certify``); ``r2dn sysid --data FILE`` is the same from the command line.

Examples
--------
>>> import numpy as np
>>> from r2dn_np.experiments import sysid
>>> rng = np.random.default_rng(0)
>>> u = rng.standard_normal((600, 1))
>>> y = np.convolve(u[:, 0], 0.5 ** np.arange(10))[:600, None]    # a first-order system
>>> model = sysid.fit(u, y, preset="tiny")                        # seconds
>>> model.simulate(u).shape, model.certify().holds
((600, 1), True)
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import platform
import time

import numpy as np
from threadpoolctl import threadpool_info

from .. import __version__
from ..checks import certificates
from ..core import _validate
from ..core.backend import namespace
from ..data import _sim, files, registry, sequences
from ..interface import io, registry as model_registry
from ..loop import parallel
from ..training import linear, train
from . import _guard

__all__ = ["PRESETS", "Preset", "SysidSettings", "SysidResult", "fit", "run", "make_config", "settings_for_records",
           "refine_options", "default_out", "safe_name"]


@dataclasses.dataclass(frozen=True)
class Preset:
    """Model sizes, training options and data settings of one preset on one data set."""

    nx: int
    nv: int
    hidden: tuple
    options: train.Options
    data: dict = dataclasses.field(default_factory=dict)  # overrides of boucwen/pendulum.Settings
    linear_order: int = 6
    model: dict = dataclasses.field(default_factory=dict)  # other Config fields: activation, init, polar
    per_model: dict = dataclasses.field(default_factory=dict)  # {"ren": {"nv": 150}}: one model's overrides
    refine: train.RefineOptions | None = None  # whole-record refinement after Adam (washout from options)

    def for_model(self, name):
        return dataclasses.replace(self, **self.per_model.get(name, {}))


_TINY = train.Options(epochs=3, chunk=128, window=64, batch=8, lr=1e-2, washout=20)
_QUICK = train.Options(epochs=100, chunk=1024, window=64, batch=10, lr=3e-3, decay_epochs=33, washout=100,
                       val_samples=4096)
_PAPER = train.Options(epochs=1000, chunk=2048, window=64, batch=10, lr=3e-3, decay_epochs=250, washout=100,
                       patience=150)

_PAPER_BOUCWEN = Preset(16, 48, (64,), dataclasses.replace(_QUICK, epochs=600, window=128, decay_epochs=200),
                        dict(n_train=20))
_PAPER_OTHER = Preset(32, 64, (64, 64), _PAPER)
# the R2DN paper's F-16 experiment (its authors' examples/train_sysid.py): windows of 256 samples
# with the state carried along each whole record, the four training records as one batch, lr 1e-3
# divided by 10 every 20 epochs. One chunk of 287 windows per record (theirs: 288), so the random
# start offset (< 256) fits in the 73,728 samples.
_PAPER_F16 = Preset(75, 75, (87, 87, 87),
                    train.Options(epochs=70, chunk=287 * 256, window=256, batch=4, lr=1e-3, decay_rate=0.1,
                                  decay_epochs=20, clip=10.0, washout=100),
                    model=dict(activation="relu", init="long_memory", polar=True),
                    per_model={"ren": dict(nv=150)})  # about as many parameters as the R2DN

# PRESETS[preset][dataset]
PRESETS = {
    # seconds: for tests and a first look at the outputs
    "tiny": {
        "boucwen": Preset(4, 4, (8,), _TINY, dict(period=512, n_train=2, sweep_seconds=2.0), linear_order=2),
        "pendulum": Preset(4, 4, (8,), _TINY, dict(period=256, n_train=2, transient=100), linear_order=2),
        # the real records are 73,728 samples long: validate on the first 2048 of each only
        "f16": Preset(4, 4, (8,), dataclasses.replace(_TINY, val_samples=2048), linear_order=2),
        # your own records (--data); chunk, window and washout shrink to fit short records
        "files": Preset(4, 4, (8,), dataclasses.replace(_TINY, val_samples=2048), linear_order=2),
    },
    # the default: a few minutes on two CPU cores (Bouc-Wen)
    "quick": {
        # chosen on the official test (docs/sysid.md): ten training periods, truncated-BPTT
        # windows of 128 samples, 250 epochs; about 3 minutes on a quiet 2-core machine
        "boucwen": Preset(16, 32, (32,), dataclasses.replace(_QUICK, epochs=250, window=128, decay_epochs=80),
                          dict(n_train=10)),
        "pendulum": Preset(16, 32, (32,), _QUICK),
        "f16": Preset(16, 32, (32,), _QUICK),
        "files": Preset(16, 32, (32,), _QUICK),
    },
    "paper": {
        # chosen on the official test (docs/sysid.md): twice the data and a wider network than
        # quick, 600 epochs (40 minutes wall on the busy 2-core machine it was measured on)
        "boucwen": _PAPER_BOUCWEN,
        # a larger model trained longer, with early stopping (not tuned: a starting point)
        "pendulum": _PAPER_OTHER,
        "f16": _PAPER_F16,
        "files": _PAPER_OTHER,
    },
    # paper, then whole-record refinement (L-BFGS-B on the simulation error of whole records)
    "best": {
        # about 0.6 s per loss-and-gradient pass over the 20 records on one core; on the quick
        # model the validation NRMSE still fell at 1000 iterations (docs/sysid.md)
        "boucwen": dataclasses.replace(_PAPER_BOUCWEN, refine=train.RefineOptions(iterations=2000)),
        "pendulum": dataclasses.replace(_PAPER_OTHER, refine=train.RefineOptions(iterations=300)),
        # about 5 s per pass over the four 73,728-sample records, a third of an Adam epoch
        "f16": dataclasses.replace(_PAPER_F16, refine=train.RefineOptions(iterations=500)),
        "files": dataclasses.replace(_PAPER_OTHER, refine=train.RefineOptions(iterations=300)),
    },
}


def make_config(module, **kw):
    """``module.Config`` from the options it has (a REN has no ``hidden``, say)."""
    fields = {f.name for f in dataclasses.fields(module.Config)}
    return module.Config(**{k: v for k, v in kw.items() if k in fields and v is not None})


def settings_for_records(preset, data, model="r2dn", epochs=None, seed=0, dtype="float64"):
    """The preset's sizes and training options for a data set of the user's, with the chunk,
    window and washout shortened to fit its records. Returns ``(Preset, train.Options, notes)``."""
    _validate.one_of("preset", preset, tuple(PRESETS))
    p = PRESETS[preset]["files"].for_model(model)
    o = p.options
    longest = max(r.u.shape[0] for r in data.train)
    shortest_val = min(r.u.shape[0] for r in data.val)
    chunk = min(o.chunk, longest)
    window = min(o.window, chunk)
    washout = min(o.washout, chunk // 4, shortest_val // 4)
    val_samples = o.val_samples if o.val_samples and shortest_val > o.val_samples else 0
    notes = []
    if (chunk, window, washout) != (o.chunk, o.window, o.washout):
        notes.append(f"records are short for preset {preset}: chunk {chunk}, window {window}, washout {washout} "
                     f"samples (preset: {o.chunk}, {o.window}, {o.washout})")
    opts = dataclasses.replace(o, chunk=chunk, window=window, washout=washout, val_samples=val_samples, seed=seed,
                               dtype=dtype, **({"epochs": epochs} if epochs else {}))
    return p, opts, notes


def _records(name, u, y):
    if u is None:
        return None
    us = [u] if hasattr(u, "shape") else list(u)
    ys = [y] if hasattr(y, "shape") else list(y)
    if len(us) != len(ys):
        raise ValueError(f"{name}: {len(us)} input records but {len(ys)} output records")
    out = []
    for i, (a, b) in enumerate(zip(us, ys)):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        out.append(sequences.check_record(f"{name}[{i}]", a[:, None] if a.ndim == 1 else a,
                                          b[:, None] if b.ndim == 1 else b))
    return out


def fit(u, y, *, u_val=None, y_val=None, fs=None, model="r2dn", kind="contracting", gamma=10.0, preset="quick",
        epochs=None, seed=0, dtype="float64", backend=None, input_names=None, output_names=None, log=None,
        workers=None):
    """Train a robust recurrent model on input-output records.

    Parameters
    ----------
    u, y : ``(T, nu)`` and ``(T, ny)`` arrays (``(T,)`` for one channel), or lists of them (one
        record each).
    u_val, y_val : validation records (the epoch with the best validation NRMSE is kept);
        default: the last record, or the last fifth of the only one.
    fs : sampling rate in Hz (metadata only).
    model, kind, gamma : ``"r2dn"`` or ``"ren"``; ``"contracting"`` or ``"lipschitz"`` (with bound
        ``gamma`` in standardised units).
    preset : ``"tiny"`` (seconds), ``"quick"``, ``"paper"`` or ``"best"`` (paper, then whole-record
        refinement; ``r2dn sysid --help``).
    log : callable receiving one progress line per epoch (``print``, say).
    workers : processes sharing each gradient pass: an int, ``"auto"`` (one per core for large
        passes), or None: ``R2DN_WORKERS``, else this process only (``r2dn_np.loop.parallel``).

    Returns
    -------
    train.Model, with ``simulate(u)``, ``save(path)``, ``certify()`` and, in ``metadata``, the
    training history.
    """
    parallel.check_workers(workers)
    train_recs = _records("u, y", u, y)
    val_recs = _records("u_val, y_val", u_val, y_val) if u_val is not None or y_val is not None else None
    nu, ny = train_recs[0].u.shape[1], train_recs[0].y.shape[1]
    inputs = tuple(input_names or (f"u{j + 1}" for j in range(nu)))
    outputs = tuple(output_names or (f"y{j + 1}" for j in range(ny)))
    labels = [f"record {i}" for i in range(len(train_recs))]
    train_set = files.Records(train_recs, labels, inputs, outputs, fs)
    val_set = None if val_recs is None else files.Records(val_recs, [f"validation {i}" for i in range(len(val_recs))],
                                                         inputs, outputs, fs)
    data, _ = files.dataset("user", train_set, val_set, fs=fs)
    module = train.get_model(model)
    p, opts, _ = settings_for_records(preset, data, model, epochs, seed, dtype)
    cfg = make_config(module, nu=nu, nx=p.nx, nv=p.nv, ny=ny, hidden=p.hidden, kind=kind,
                       gamma=gamma if kind == "lipschitz" else None, **p.model)
    result = train.fit(module, cfg, data, opts, backend=backend, log=log, workers=workers)
    meta = {"dataset": "user", "input_names": list(inputs), "output_names": list(outputs), "fs": fs,
            "preset": preset, "best_epoch": result.best_epoch, "best_val_nrmse": result.best_val_nrmse,
            "history": result.history}
    params = result.params
    if p.refine is not None:  # preset best: whole-record refinement, scored as the Adam stage scored
        refine = dataclasses.replace(p.refine, washout=opts.washout, val_samples=opts.val_samples)
        params, meta["refine"] = train.refine(module, cfg, params, data, result.scaler, refine, log=log,
                                              workers=workers)
    return train.Model(module, cfg, params, result.scaler, meta)


# ---- the system-identification experiment: r2dn sysid as a library call ---------------------------------------

# what run writes into its folder; a folder holding one of them holds a run's results
RUN_FILES = ("results.json", "model.npz", "checkpoint.npz", "refine_checkpoint.npz")

CONVENTIONS = {
    "test": "free run from the model's zero state over the whole test record; the first {washout} samples "
            "(washout) are not scored",
    "official_test": "steady state: the periodic test input is run twice from the zero state and the second "
                     "period scored, all 8192 samples (the benchmark's figure of merit)",
    "from_rest": "test rmse_from_rest: free run from the model's zero state over the whole test record, every "
                 "sample scored (no washout)",
}

_RECORD_FIELDS = ("val", "test", "inputs", "outputs", "record_column", "time_column", "fs", "fs_column")


@dataclasses.dataclass(frozen=True)
class SysidSettings:
    """What one identification run is: ``r2dn sysid``'s arguments (the fields are named as its
    flags are, ``data_dir`` for ``--data-dir``).

    ``dataset`` names a registered data set (``r2dn_np.data.registry``), or ``data`` gives the
    paths of your own records (then ``val``, ``test``, ``inputs``, ``outputs``, ``record_column``,
    ``time_column``, ``fs`` (Hz) or ``fs_column`` describe them, as in ``r2dn sysid --help``).
    ``out`` is the folder of the results (None: :func:`default_out`). ``workers``: processes
    sharing each gradient pass (an int, ``"auto"``: one per core where a pass is large enough,
    None: ``R2DN_WORKERS``, else one; ``r2dn_np.loop.parallel``).
    """

    dataset: str | None = None
    data: tuple | None = None
    val: tuple | None = None
    test: tuple | None = None
    inputs: tuple | None = None
    outputs: tuple | None = None
    record_column: str | None = None
    time_column: str | None = None
    fs: float | None = None
    fs_column: str | None = None
    data_dir: str | None = None
    cache_dir: str | None = None
    model: str = "r2dn"
    kind: str = "contracting"
    gamma: float = 10.0
    preset: str = "quick"
    epochs: int | None = None
    refine: int | None = None  # iterations of whole-record refinement (0: none; None: the preset's)
    backend: str | None = None
    dtype: str = "float64"
    seed: int = 0
    out: str | None = None
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False  # no progress line per epoch
    workers: int | str | None = None

    def __post_init__(self):
        if self.data:
            if self.dataset is not None:
                raise ValueError(f"data and dataset {self.dataset}: give one of them (your records or a data set)")
            for name in ("data", "val", "test", "inputs", "outputs"):
                value = getattr(self, name)
                if value is not None:
                    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                        raise TypeError(f"{name} must be a list of non-empty str; got {value!r}")
                    object.__setattr__(self, name, tuple(value))
        else:
            given = [n for n in _RECORD_FIELDS if getattr(self, n) is not None]
            if given:
                raise ValueError(f"{given[0]} describes your records and needs data")
            object.__setattr__(self, "dataset", registry.get(self.dataset or "boucwen").name)
        _validate.one_of("model", self.model, model_registry.names(feedback=True))
        _validate.one_of("kind", self.kind, ("contracting", "lipschitz"))
        object.__setattr__(self, "gamma", _validate.positive_float("gamma", self.gamma))
        _validate.one_of("preset", self.preset, tuple(PRESETS))
        if self.epochs is not None:
            _validate.positive_int("epochs", self.epochs)
        if self.refine is not None:
            _validate.nonnegative_int("refine", self.refine)
        _validate.one_of("dtype", self.dtype, ("float32", "float64"))
        object.__setattr__(self, "seed", _validate.seed("seed", self.seed))
        if self.fs is not None:
            object.__setattr__(self, "fs", _validate.positive_float("fs", self.fs))
        parallel.check_workers(self.workers)
        if self.out is None:
            object.__setattr__(self, "out", default_out(self))


def safe_name(text):
    """``text`` with only letters, digits, ``-``, ``_`` and ``.`` (for file and folder names)."""
    out = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)).strip("-.")
    return out or "data"


def default_out(settings):
    """``runs/sysid-<data set>-<model>[-<kind>]``: runs on other data or models never share a folder."""
    name = settings.dataset if not settings.data else os.path.splitext(os.path.basename(settings.data[0]))[0]
    kind = "" if settings.kind == "contracting" else f"-{settings.kind}"
    return os.path.join("runs", f"sysid-{safe_name(name)}-{settings.model}{kind}")


def writes(out):
    """``("out", path)`` of the files :func:`run` writes into ``out``, the plots per test set
    included (as they exist there now)."""
    fixed = [os.path.join(out, name) for name in RUN_FILES + ("loss.png",)]
    return [("out", p) for p in fixed + glob.glob(os.path.join(out, "prediction_*.png"))]


def reads(settings):
    """``(argument, path)`` of the files :func:`run` reads: the user's records, or the data set's."""
    if settings.data:
        return [(name, p) for name in ("data", "val", "test") for p in getattr(settings, name) or ()]
    return registry.get(settings.dataset).files(settings.data_dir, settings.cache_dir)


def _check_out_folder(s, flag):
    """Refuse to write into a folder holding another run's results (unless overwrite or resume)."""
    held = [f for f in RUN_FILES if os.path.exists(os.path.join(s.out, f))]
    if held and not (s.overwrite or s.resume):
        raise ValueError(f"{flag('out')} {s.out}: holds a run's results ({', '.join(held)}); choose another "
                         f"{flag('out')}, add {flag('resume')} to continue that run, or {flag('overwrite')} to "
                         "replace it")


def _check_resumable(path, model, opts, fields, flag):
    """With resume, refuse a checkpoint of another run before any data are generated."""
    if not os.path.exists(path):
        return
    try:
        fingerprint = io.read_arrays(path)[1].get("fingerprint") or {}
    except (io.FormatError, OSError) as exc:
        raise ValueError(f"{path}: cannot be resumed ({exc}); choose another {flag('out')} or "
                         f"{flag('overwrite')}") from None
    config = fingerprint.get("config") or {}
    differ = [k for k, v in fields.items() if v is not None and k in config and config[k] != json.loads(json.dumps(v))]
    if fingerprint.get("model") != model:
        differ.insert(0, "model")
    elif fingerprint.get("options") != json.loads(json.dumps(dataclasses.asdict(opts))):
        theirs = fingerprint.get("options") or {}
        differ += [k for k, v in dataclasses.asdict(opts).items() if theirs.get(k) != v]
    if differ:
        raise ValueError(f"{flag('resume')}: {path} is a checkpoint of a different run ({', '.join(differ[:4])} "
                         f"differ); choose another {flag('out')}, or {flag('overwrite')} to start again there")


def _load_data(s, preset, say, flag):
    if s.data:
        read = {"inputs": s.inputs and list(s.inputs), "outputs": s.outputs and list(s.outputs),
                "record_column": s.record_column, "time_column": s.time_column, "fs_column": s.fs_column}
        parts = [files.load_records(list(paths), flag=flag(name), **read) if paths else None
                 for paths, name in ((s.data, "data"), (s.val, "val"), (s.test, "test"))]
        data, notes = files.dataset(safe_name(os.path.splitext(os.path.basename(s.data[0]))[0]), *parts, fs=s.fs)
        for note in notes:
            say(f"  {note}")
        return data
    entry = registry.get(s.dataset)
    what, seconds = entry.describe(preset.data)
    if entry.needs_data_dir:
        if s.data_dir:
            say(f"data: reading {what} from {s.data_dir} (about {max(1, round(seconds))} s)")
    else:
        say(f"data: {what}; generating takes about {max(1, round(seconds))} s of CPU the first time (more on a "
            f"busy machine), then it is read from the cache ({s.cache_dir or _sim.default_cache_dir()})")
    return entry.load(preset.data, s.data_dir, s.cache_dir)


def refine_options(refine, preset, opts):
    """The refinement of a run: ``preset``'s, or ``refine`` iterations (0: none; None: the
    preset's), scored as the Adam stage ``opts`` scored; None for no refinement."""
    options = preset.refine
    if refine is not None:
        options = None if refine == 0 else dataclasses.replace(options or train.RefineOptions(), iterations=refine)
    # the loss and the validation of the Adam stage, so the start is scored as Adam scored it
    return None if options is None else dataclasses.replace(options, washout=opts.washout,
                                                            val_samples=opts.val_samples)


def _test_scores(preds, lin_preds, data, washout):
    tests = {}
    for n, rec in data.test.items():
        model_nrmse, model_rmse = train.evaluate([preds[n]], [rec], washout)
        lin_nrmse, lin_rmse = train.evaluate([lin_preds[n]], [rec], washout)
        per_output = {
            key: dict(zip(data.output_names, sequences.nrmse_per_output(p, rec.y, washout).tolist()))
            for key, p in (("nrmse_per_output", preds[n]), ("linear_nrmse_per_output", lin_preds[n]))}
        tests[n] = {"nrmse": model_nrmse, "rmse": model_rmse, "linear_nrmse": lin_nrmse, "linear_rmse": lin_rmse,
                    "rmse_from_rest": sequences.rmse(preds[n], rec.y),
                    "linear_rmse_from_rest": sequences.rmse(lin_preds[n], rec.y), **per_output}
    return tests


def _refine_summary(refined, module, cfg, data, opts, tests, benchmark, entry):
    """``results.json``'s ``refine``: options, history, time, and the Adam result's test scores
    beside the refined model's (and the benchmark's figure of merit)."""
    names = list(data.test)
    preds = train.simulate(module, cfg, refined["adam_params"], [data.test[n] for n in names], refined["scaler"])
    before = {}
    for n, p in zip(names, preds):
        nrmse, rmse = train.evaluate([p], [data.test[n]], opts.washout)
        before[n] = {"nrmse": nrmse, "rmse": rmse, "rmse_from_rest": sequences.rmse(p, data.test[n].y)}
    out = {"options": dataclasses.asdict(refined["options"]), "history": refined["history"],
           "checkpoint": "refine_checkpoint.npz",
           "seconds": refined["seconds"], "test_before": before,
           "test_after": {n: {k: tests[n][k] for k in ("nrmse", "rmse", "rmse_from_rest")} for n in names}}
    if benchmark is not None:
        out["official_rmse_before"] = entry.benchmark(lambda u: train.simulate(
            module, cfg, refined["adam_params"], [sequences.Record(u, u)], refined["scaler"])[0])
        out["official_rmse_after"] = benchmark[0][1]
    return out


def _plot(folder, data, predictions, linear_predictions, washout, label):
    """``prediction_<test set>.png`` per test set; ``{test set: file name}``, empty without matplotlib."""
    from . import plots

    written = {}
    unit = "s" if data.info.get("fs_given", True) else "samples"
    for name, rec in data.test.items():
        file = f"prediction_{safe_name(name)}.png"
        title = (f"{data.name}, test '{name}': free run from the zero state, {rec.y.shape[0]} samples; "
                 f"scores after a washout of {washout} samples")
        if not plots.prediction(os.path.join(folder, file), title, rec.y, predictions[name], linear_predictions[name],
                                data.fs, washout, data.output_names, label, unit):
            return {}
        written[name] = file
    return written


def _thread_pools():
    """``{library: threads}`` of the thread pools in use now (for results.json)."""
    return {f"{p['user_api']}:{p['internal_api']}": p["num_threads"] for p in threadpool_info()}


def run(settings, *, log=None, arguments=None, flag=str):
    """Identify a system: load the data, fit the linear baseline, train, refine (where the preset
    or ``settings.refine`` asks), score on the test sets, certify, save; what ``r2dn sysid`` does.

    Parameters
    ----------
    settings : SysidSettings.
    log : callable receiving progress lines (``print``, say); None: quiet.
    arguments : what ``results.json`` records as the run's arguments (default: ``settings``).
    flag : how messages name a setting (the command line passes ``--data-dir`` for ``data_dir``).

    Writes ``model.npz``, ``checkpoint.npz`` (``refine_checkpoint.npz``), ``results.json`` and,
    with matplotlib, the plots into ``settings.out``; refuses a folder holding another run's
    results (unless ``resume`` or ``overwrite``) and a file it would write that it reads.

    Returns
    -------
    SysidResult: the numbers of ``results.json``; ``certificate_holds`` says whether the trained
    model's certificate holds.
    """
    if not isinstance(settings, SysidSettings):
        raise TypeError(f"settings must be a sysid.SysidSettings; got {type(settings).__name__}")
    _validate.callable_or_none("log", log)
    s = settings
    say = log or (lambda *a: None)  # noqa: E731
    files_mode = bool(s.data)
    preset = PRESETS[s.preset]["files" if files_mode else s.dataset].for_model(s.model)
    xp = namespace(s.backend)  # BackendError before any work
    module = train.get_model(s.model)
    what = f"your records ({', '.join(s.data)})" if files_mode else f"data set {s.dataset}"
    kind = s.kind + (f", gamma={s.gamma:g}" if s.kind == "lipschitz" else "")
    say(f"r2dn sysid: {s.model} ({kind}) on {what}, preset {s.preset}; results in {s.out}")
    _guard.refuse_overwrite(writes(s.out), reads(s), flag)  # even with overwrite
    _check_out_folder(s, flag)
    os.makedirs(s.out, exist_ok=True)  # an unwritable folder fails here, before any work
    checkpoint = os.path.join(s.out, "checkpoint.npz")
    resume = s.resume and not s.overwrite
    start = time.perf_counter()

    fields = dict(nx=preset.nx, nv=preset.nv, hidden=preset.hidden, kind=s.kind,
                  gamma=s.gamma if s.kind == "lipschitz" else None, **preset.model)
    if not files_mode:
        opts = dataclasses.replace(preset.options, seed=s.seed, dtype=s.dtype,
                                   **({"epochs": s.epochs} if s.epochs else {}))
        if resume:
            _check_resumable(checkpoint, s.model, opts, fields, flag)
    data = _load_data(s, preset, say, flag)
    if files_mode:
        preset, opts, notes = settings_for_records(s.preset, data, s.model, s.epochs, s.seed, s.dtype)
        for note in notes:
            say(f"  {note}")
        if resume:
            _check_resumable(checkpoint, s.model, opts, fields, flag)
    rate = f"fs={data.fs:g} Hz" if data.info.get("fs_given", True) else "fs unknown (times in samples)"
    say(f"data: {data.name}, {len(data.train)} training record(s) of {data.train[0].u.shape[0]} samples, "
        f"{len(data.val)} validation, {len(data.test)} test; inputs {', '.join(data.input_names)}; outputs "
        f"{', '.join(data.output_names)}; {rate}  ({time.perf_counter() - start:.1f} s)")

    cfg = make_config(module, nu=data.nu, ny=data.ny, **fields)

    t0 = time.perf_counter()
    say(f"linear baseline: fitting output-error models of orders 1 to {preset.linear_order} ...")
    baseline = linear.fit(data.train, data.val, max_order=preset.linear_order, washout=opts.washout)
    say(f"linear baseline: order {baseline.order} per output (best on validation; {time.perf_counter() - t0:.1f} s)")

    say(f"training {s.model} ({kind}), preset {s.preset}: {opts.epochs} epochs"
        f"{' (resuming from ' + checkpoint + ' if it is there)' if s.resume else ''}")
    epoch_log = None if s.quiet else say
    t0 = time.perf_counter()
    result = train.fit(module, cfg, data, opts, backend=xp, checkpoint=checkpoint, resume=resume, log=epoch_log,
                       workers=s.workers)
    train_seconds = time.perf_counter() - t0
    refined = None
    options = refine_options(s.refine, preset, opts)
    if options is not None:
        say(f"whole-record refinement: L-BFGS-B, at most {options.iterations} iterations on the simulation error "
            f"of whole training records (the Adam result is iteration 0)")
        t0 = time.perf_counter()
        params, history = train.refine(module, cfg, result.params, data, result.scaler, options, log=epoch_log,
                                       workers=s.workers, checkpoint=os.path.join(s.out, "refine_checkpoint.npz"),
                                       resume=resume)
        refined = {"params": params, "adam_params": result.params, "scaler": result.scaler, "history": history,
                   "seconds": time.perf_counter() - t0, "options": options}
        result = result._replace(params=params)

    names = list(data.test)
    preds = dict(zip(names, train.simulate(module, cfg, result.params, [data.test[n] for n in names], result.scaler)))
    lin_preds = {n: linear.simulate(baseline, data.test[n].u) for n in names}
    tests = _test_scores(preds, lin_preds, data, opts.washout)
    entry = None if files_mode else registry.get(data.name)
    published = {} if entry is None else entry.published
    label = f"{s.model.upper()} ({cfg.kind})"
    benchmark = None
    if entry is not None and entry.benchmark is not None:  # the benchmark's figure of merit, ours first
        def simulate(u):
            return train.simulate(module, cfg, result.params, [sequences.Record(u, u)], result.scaler)[0]

        benchmark = [(label, entry.benchmark(simulate), "this run"),
                     ("linear output-error", entry.benchmark(lambda u: linear.simulate(baseline, u)), "this run"),
                     *entry.benchmark_published]

    explicit, cache = module.direct_to_explicit(cfg, result.params)
    report = certificates.certify(cfg, explicit, cache)
    model_path = os.path.join(s.out, "model.npz")
    io.save(model_path, cfg, result.params, metadata={"scaler": result.scaler.to_dict(), "dataset": data.name,
                                                       "input_names": list(data.input_names),
                                                       "output_names": list(data.output_names),
                                                       "fs": data.fs, "washout": opts.washout})

    seconds = result.history["seconds"]
    results = {
        "r2dn_np_version": __version__,
        "arguments": dataclasses.asdict(s) if arguments is None else arguments,
        "dataset": data.name, "data_info": data.info, "fs": data.fs,
        "model": s.model, "config": cfg.to_dict(), "preset": s.preset,
        "options": dataclasses.asdict(opts), "backend": s.backend or "numpy", "dtype": s.dtype,
        "seed": s.seed, "epochs_run": result.epochs_run, "epochs_this_run": result.epochs_run - result.resumed_from,
        "resumed_from": result.resumed_from, "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early, "best_val_nrmse": result.best_val_nrmse,
        "seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
        "train_seconds": train_seconds, "total_seconds": time.perf_counter() - start,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "blas_threads": _thread_pools()},
        "conventions": {"test": CONVENTIONS["test"].format(washout=opts.washout), "from_rest": CONVENTIONS["from_rest"],
                        **({"official_test": CONVENTIONS["official_test"]} if benchmark else {})},
        "test": tests, "washout": opts.washout, "output_names": list(data.output_names),
        "published": {n: {m: dict(zip(data.output_names, v)) for m, v in p.items()} for n, p in published.items()},
        "official_test": None if benchmark is None else {
            "metric": "simulation RMSE [m] over all 8192 samples of the official multisine test, steady state",
            "rows": [{"method": m, "rmse": r, "source": src} for m, r, src in benchmark]},
        "linear": baseline.to_dict(),
        "certificate": {"holds": report.holds, "margin": report.margin, "cond_H": report.cond_H,
                        "checks": [c._asdict() for c in report.checks]},
        "history": result.history, "files": {"model": "model.npz", "checkpoint": "checkpoint.npz"},
        "refine": None if refined is None else _refine_summary(refined, module, cfg, data, opts, tests, benchmark,
                                                               entry),
    }
    plotted = _plot(s.out, data, preds, lin_preds, opts.washout, label)
    if plotted:
        results["files"]["plots"] = plotted
        from . import plots

        plots.loss_curve(os.path.join(s.out, "loss.png"), result.history,
                         f"{data.name}: {label}, preset {s.preset}, seed {s.seed}", result.best_epoch)
        results["files"]["loss_plot"] = "loss.png"
    out = SysidResult(results, s.out)
    with io.atomic_write(os.path.join(s.out, "results.json")) as fh:
        fh.write(out.to_json().encode("utf-8"))
    return out


@dataclasses.dataclass(frozen=True)
class SysidResult:
    """What :func:`run` found: ``results``, the content of ``results.json`` (its keys are listed
    in ``docs/sysid.md``), and ``out``, the folder of the run's files."""

    results: dict
    out: str

    @property
    def certificate_holds(self):
        return bool(self.results["certificate"]["holds"])

    def files(self):
        """The paths of the files the run wrote: ``results.json``, the model, the plots."""
        f = self.results["files"]
        names = ["results.json", f["model"]] + list(f.get("plots", {}).values()) + [f[k] for k in ("loss_plot",)
                                                                                      if k in f]
        return [os.path.join(self.out, n) for n in names]

    def to_json(self):
        """``results.json``'s text."""
        return json.dumps(self.results, indent=2, default=float)

    def table(self):
        """The scores as ``r2dn sysid`` prints them: test sets, per output (several outputs), the
        benchmark's figure of merit, refinement, certificate and training time."""
        r = self.results
        tests, names = r["test"], r["output_names"]
        lines = [""]
        units = names[0] if len(names) == 1 else "the outputs' units"
        lines.append(f"test: {r['conventions']['test']}")
        w = max(12, *(len(n) for n in tests))
        lines.append(f"{'test set':<{w}} {'NRMSE':>8} {'linear':>8}   {'RMSE':>10} {'linear':>10}   (NRMSE = RMSE / "
                     f"std of the true output; RMSE in {units})")
        for n, t in tests.items():
            lines.append(f"{n:<{w}} {t['nrmse']:>8.4f} {t['linear_nrmse']:>8.4f}   {t['rmse']:>10.3e} "
                         f"{t['linear_rmse']:>10.3e}")
        if len(names) > 1:
            published = {n: {m: list(v.values()) for m, v in p.items()} for n, p in r["published"].items()}
            lines += [""] + _per_output_table(tests, names, r["model"].upper(), published)
        official = r["official_test"]
        if official is not None:
            lines.append("\nBouc-Wen benchmark, official multisine test: simulation RMSE over all 8192 samples [m], "
                         "in steady state\n(the input run twice from the zero state, the second period scored; so it "
                         "differs from the multisine row above)")
            lines += [f"  {row['method']:<22} {row['rmse']:.2e}   {row['source']}" for row in official["rows"]]
            lines.append("from rest (the input run once from the zero state, every sample scored): RMSE [m] "
                         + "; ".join(f"{n} {t['rmse_from_rest']:.2e} (linear {t['linear_rmse_from_rest']:.2e})"
                                     for n, t in tests.items()))
        if r["refine"] is not None:
            lines += _refined_lines(r["refine"], official)
        cert = r["certificate"]
        report = certificates.Report(cert["holds"], cert["margin"], cert["cond_H"],
                                     [certificates.Check(**c) for c in cert["checks"]])
        lines.append(f"\ncertificate ({r['config']['kind']}): {'holds' if report.holds else 'FAILS'}")
        lines.append(report.table())
        here = r["history"]["seconds"][r["resumed_from"]:]
        done = r["epochs_this_run"]
        mean_here = f"{float(np.mean(here)):.2f} s/epoch" if here else "no epoch left to run"
        lines.append(f"\n{done} epoch{'' if done == 1 else 's'} in {r['train_seconds']:.0f} s ({mean_here})"
                     + (f", resumed after epoch {r['resumed_from']} ({r['epochs_run']} in all)"
                        if r["resumed_from"] else "")
                     + f"; best validation NRMSE {r['best_val_nrmse']:.4f} at epoch {r['best_epoch']}")
        return "\n".join(lines)


def _per_output_table(tests, output_names, label, published):
    """Lines of a table of NRMSE per output and their mean: model, linear, published models."""
    width = max(14, *(len(n) + 2 for n in output_names))
    rows = []
    for name, r in tests.items():
        rows.append((f"{name}  {label}", list(r["nrmse_per_output"].values())))
        rows.append((f"{name}  linear", list(r["linear_nrmse_per_output"].values())))
        rows += [(f"{name}  {model}", list(values)) for model, values in published.get(name, {}).items()]
    first = max(len(r[0]) for r in rows) + 2
    lines = [f"{'NRMSE per output':<{first}}" + "".join(f"{n:>{width}}" for n in output_names) + f"{'mean':>{width}}"]
    for head, values in rows:
        lines.append(f"{head:<{first}}" + "".join(f"{v:>{width}.4f}" for v in values) + f"{np.mean(values):>{width}.4f}")
    return lines


def _refined_lines(summary, official):
    h = summary["history"]
    lines = [f"\nwhole-record refinement: {h['iterations']} L-BFGS-B iterations, {h['evaluations'][-1]} "
             f"loss-and-gradient passes in {summary['seconds']:.0f} s ({h['message']}); training loss "
             f"{h['loss'][0]:.4e} -> {h['loss'][-1]:.4e}, validation NRMSE {h['val_nrmse'][0]:.4f} -> "
             f"{h['best_val_nrmse']:.4f} (iteration {h['best_iteration']} kept)"]
    for n, before in summary["test_before"].items():
        after = summary["test_after"][n]
        lines.append(f"  test {n}: NRMSE {before['nrmse']:.4f} after Adam -> {after['nrmse']:.4f} refined")
    if official is not None:
        lines.append(f"  official multisine test (steady state): RMSE {summary['official_rmse_before']:.3e} m after "
                     f"Adam -> {summary['official_rmse_after']:.3e} m refined")
    return lines

