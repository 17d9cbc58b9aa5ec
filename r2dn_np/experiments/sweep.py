"""Multi-seed experiments, the engine: a grid of tasks x presets x models x kinds x seeds, run on
Dask distributed (a local cluster by default, or an existing one), resumable and fingerprinted.
The table and the plot of the finished runs are ``sweep_report``.

    r2dn sweep --tasks sysid-boucwen --models r2dn,ren --seeds 3 --preset quick
    r2dn sweep --tasks sysid-boucwen --models r2dn,ren --seeds 3 --preset quick --table
    r2dn sweep ... --scheduler tcp://10.0.0.1:8786          # an existing Dask cluster

Every run writes its own folder ``ROOT/TASK/PRESET/MODEL-KIND/seedS-FINGERPRINT``: the task's
files (``r2dn sysid``'s ``results.json``, ``model.npz``, ``checkpoint.npz``, ...), ``run.json``
(the settings and fingerprint) and, when it has finished, ``summary.json``. The fingerprint
hashes the run's settings with the code version (the package's source files and the files a
task names), so results of other code or settings are never resumed, skipped or tabled as these.
A finished run (its ``summary.json``) is not redone; an unfinished one resumes from its
checkpoint, also when Dask reschedules it after its worker died.

A task is one function ``fn(run, folder, context) -> dict`` registered under a name with
:func:`register` (see ``docs/sweep.md``); the built-in ones call the experiments' library
functions (``sysid.run``, ``expressivity.run``, ``observer.run``, ``youla.run``) in the worker's
process. Dask is imported here only, and only when a sweep runs
on a cluster (``pip install 'r2dn_np[sweep]'``); ``serial=True`` runs in this process without it.

Examples
--------
>>> import tempfile
>>> from r2dn_np.experiments import sweep, sweep_report
>>> runs = sweep.grid(["expressivity"], ["r2dn", "ren"], seeds=2, preset="tiny")
>>> len(runs), runs[0].settings()
(4, {'task': 'expressivity', 'preset': 'tiny', 'model': 'r2dn', 'kind': 'contracting', 'seed': 0, 'epochs': None})
>>> report = sweep.run(runs, tempfile.mkdtemp(), serial=True, log=None)   # on Dask: drop serial=True
>>> report.ran, [(row["model"], row["seeds"]) for row in sweep_report.table(report.summaries)]
(4, [('r2dn', [0, 1]), ('ren', [0, 1])])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import socket
import tempfile
import time
import traceback
from typing import Callable, NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from .. import __version__
from ..core import _validate
from ..data import registry
from ..interface import io, registry as model_registry
from . import expressivity, observer, sysid, youla

__all__ = ["TASKS", "KINDS", "Task", "Run", "Context", "Report", "register", "grid", "code_version", "run",
           "run_one", "gather"]

KINDS = ("contracting", "lipschitz")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the whole package
_REPO = os.path.dirname(_PACKAGE)


class Task(NamedTuple):
    """A registered task: ``function(run, folder, context) -> summary dict`` (see :func:`register`)."""

    name: str
    function: Callable
    presets: tuple
    models: tuple
    metric: str  # what ``test_metric`` is, for the table
    curve: str  # what ``curve`` holds per epoch, for the plot
    sources: tuple  # files beyond the package whose content is part of the code version


TASKS = {}


def register(name, function, *, presets, metric, curve, models=model_registry.names(feedback=True), sources=()):
    """Add a task to :data:`TASKS` (a later registration of the same name replaces it).

    Parameters
    ----------
    name : the task's name on the command line (``--tasks NAME``).
    function : ``function(run, folder, context) -> dict``, importable by name on every worker (a
        module-level function of an installed module). It runs one :class:`Run` in ``folder``
        (created, and holding what an interrupted attempt left there: resume from it), and returns
        ``{"seconds_per_epoch": float, "curve": [float per epoch], "test_metric": float,
        "epochs": int, "resumed_from": int}`` (epochs found done in the folder), plus anything else
        JSON-able.
    presets : the preset names it accepts. models : the model names it accepts.
    metric, curve : what ``test_metric`` and ``curve`` measure (table and plot labels).
    sources : paths, relative to the repository root, of files outside the package the task runs
        (a script): their content joins the code version.
    """
    if not isinstance(name, str) or not name or any(c in name for c in " /,\\"):
        raise ValueError(f"name must be a non-empty str without spaces, commas or slashes; got {name!r}")
    if not callable(function):
        raise TypeError(f"function must be callable; got {type(function).__name__}")
    for arg, value in (("presets", presets), ("models", models), ("sources", sources)):
        if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
            raise TypeError(f"{arg} must be a list of non-empty str; got {value!r}")
    if not presets or not models:
        raise ValueError("presets and models must each name at least one")
    for arg, value in (("metric", metric), ("curve", curve)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"{arg} must be a non-empty str; got {value!r}")
    TASKS[name] = Task(name, function, tuple(presets), tuple(models), metric, curve, tuple(sources))
    return TASKS[name]


@dataclasses.dataclass(frozen=True)
class Run:
    """One point of the grid. ``epochs`` overrides the preset's (None: the preset's)."""

    task: str
    preset: str
    model: str
    kind: str = "contracting"
    seed: int = 0
    gamma: float = 10.0  # the Lipschitz bound of kind "lipschitz"
    epochs: int | None = None

    def __post_init__(self):
        _validate.one_of("task", self.task, tuple(TASKS))
        task = TASKS[self.task]
        _validate.one_of("preset", self.preset, task.presets)
        _validate.one_of("model", self.model, task.models)
        _validate.one_of("kind", self.kind, KINDS)
        object.__setattr__(self, "seed", _validate.seed("seed", self.seed))
        object.__setattr__(self, "gamma", _validate.positive_float("gamma", self.gamma))
        if self.epochs is not None:
            object.__setattr__(self, "epochs", _validate.positive_int("epochs", self.epochs))

    def settings(self):
        """The settings that decide the run's result (the kind's gamma only where it has one)."""
        out = dataclasses.asdict(self)
        if self.kind != "lipschitz":
            del out["gamma"]
        return out

    def fingerprint(self, code):
        """A hash of the settings and the code version ``code`` (:func:`code_version`)."""
        text = json.dumps({"settings": self.settings(), "code": code}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def folder(self, root, code):
        return os.path.join(root, self.task, self.preset, f"{self.model}-{self.kind}",
                            f"seed{self.seed}-{self.fingerprint(code)}")


class Context(NamedTuple):
    """Settings of the machines rather than of the runs (not part of the fingerprint)."""

    data_dir: str | None = None  # the F-16 BenchmarkData folder
    cache_dir: str | None = None  # where simulated data sets are cached
    blas_threads: int = 1


def code_version(task):
    """A hash of every ``.py`` file of the installed package, its version and the task's
    ``sources``: what decides whether two runs ran the same code."""
    _validate.one_of("task", task, tuple(TASKS))
    h = hashlib.sha256(__version__.encode())
    files = []
    for folder, dirs, names in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
    files += [os.path.join(_REPO, s) for s in TASKS[task].sources]
    for path in files:
        h.update(os.path.relpath(path, _REPO).replace(os.sep, "/").encode() + b"\0")
        try:
            with open(path, "rb") as fh:
                h.update(fh.read())
        except FileNotFoundError:
            h.update(b"<missing>")
        h.update(b"\0")
    return h.hexdigest()[:16]


def grid(tasks, models, seeds, preset, kinds=("contracting",), *, gamma=10.0, epochs=None):
    """Every :class:`Run` of ``tasks x models x kinds x seeds`` at ``preset``, in that order.

    ``tasks``, ``models``, ``kinds`` : lists of names (:data:`TASKS`, ``"r2dn"``/``"ren"``,
    :data:`KINDS`); ``seeds`` : a list of integers >= 0, or an int ``n`` for seeds ``0..n-1``.
    Raises ValueError or TypeError naming the argument.
    """
    def names(arg, value, options):
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
            raise TypeError(f"{arg} must be a non-empty list of names from {list(options)}; got {value!r}")
        for v in value:
            _validate.one_of(arg, v, tuple(options))
        if len(set(value)) != len(value):
            raise ValueError(f"{arg} must not repeat a name; got {list(value)}")
        return list(value)

    tasks = names("tasks", tasks, TASKS)
    models = names("models", models, model_registry.names(feedback=True))
    kinds = names("kinds", kinds, KINDS)
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = list(range(_validate.positive_int("seeds", seeds)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple, range)) or not len(seeds):
        raise TypeError(f"seeds must be a count >= 1 or a non-empty list of integers >= 0; got {seeds!r}")
    seeds = [_validate.seed("seeds", s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must not repeat a seed; got {seeds}")
    for t in tasks:
        if preset not in TASKS[t].presets:
            raise ValueError(f"preset must be one of {list(TASKS[t].presets)} for task {t!r}; got {preset!r}")
        for m in models:
            if m not in TASKS[t].models:
                raise ValueError(f"models: task {t!r} runs {list(TASKS[t].models)}; got {m!r}")
    return [Run(t, preset, m, k, s, gamma, epochs) for t in tasks for m in models for k in kinds for s in seeds]


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _write_json(path, value):
    with io.atomic_write(path) as fh:
        fh.write(json.dumps(value, indent=2, default=float).encode())


def run_one(run, root, code=None, context=None):
    """Run one :class:`Run` in its folder under ``root`` (skipped when its ``summary.json`` is
    there) with BLAS limited to ``context.blas_threads``; returns its summary. ``code``: the
    code version the caller expects (:func:`code_version`); a worker whose code differs refuses.
    Errors are also written to the folder's ``error.txt``."""
    if not isinstance(run, Run):
        raise TypeError(f"run must be a sweep.Run; got {type(run).__name__}")
    root = os.path.abspath(_validate.path("root", root))
    context = Context() if context is None else context
    if not isinstance(context, Context):
        raise TypeError(f"context must be a sweep.Context; got {type(context).__name__}")
    here = code_version(run.task)
    if code is not None and code != here:
        raise RuntimeError(f"code version differs on {socket.gethostname()} ({here}, expected {code}): install "
                           "the same r2dn_np on every worker")
    folder = run.folder(root, here)
    done = _read_json(os.path.join(folder, "summary.json"))
    if done is not None:
        return done
    os.makedirs(folder, exist_ok=True)
    info = {"settings": run.settings(), "code_version": here, "fingerprint": run.fingerprint(here),
            "r2dn_np_version": __version__}
    _write_json(os.path.join(folder, "run.json"), info)
    start = time.perf_counter()
    try:
        with threadpool_limits(limits=context.blas_threads):
            summary = TASKS[run.task].function(run, folder, context)
        summary = {**info, **summary, "host": socket.gethostname(), "wall_seconds": time.perf_counter() - start}
        for key in ("seconds_per_epoch", "test_metric"):
            if not isinstance(summary.get(key), (int, float)):
                raise TypeError(f"task {run.task!r} returned no number {key!r}")
        _write_json(os.path.join(folder, "summary.json"), summary)
    except BaseException:
        with open(os.path.join(folder, "error.txt"), "w", encoding="utf-8") as fh:
            fh.write(traceback.format_exc())
        raise
    if os.path.exists(os.path.join(folder, "error.txt")):
        os.replace(os.path.join(folder, "error.txt"), os.path.join(folder, "error.previous.txt"))
    return summary


class Report(NamedTuple):
    """What :func:`run` did: ``summaries`` of every finished run of the grid (in grid order, None
    where not finished), how many ran now and were found done, and ``failed`` ``{Run: message}``."""

    summaries: list
    ran: int
    skipped: int
    failed: dict
    seconds: float


def _duration(seconds):
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Progress:
    """Progress lines: done / running / failed of the runs to do, and the time left."""

    def __init__(self, total, skipped, log, interval):
        self.total, self.skipped, self.log, self.interval = total, skipped, log, interval
        self.start = time.perf_counter()
        self.last, self.last_time = None, -math.inf
        self.walls = []

    def update(self, done, running, failed, slots):
        todo = self.total - done - failed
        left = np.mean(self.walls) * math.ceil(todo / max(slots, 1)) if self.walls else math.nan
        state = (done, running, failed)
        now = time.perf_counter()
        if self.log is not None and (state != self.last or now - self.last_time >= self.interval):
            self.log(f"sweep: {done + self.skipped}/{self.total + self.skipped} done ({self.skipped} found done), "
                     f"{running} running, {failed} failed, {_duration(now - self.start)} elapsed, "
                     f"~{_duration(left) if todo else '0:00:00'} left")
            self.last, self.last_time = state, now


def _python_path():
    """PYTHONPATH for workers and their subprocesses: this package's folder first."""
    rest = os.environ.get("PYTHONPATH")
    return _REPO + (os.pathsep + rest if rest else "")


def run(runs, root, *, scheduler=None, workers=None, serial=False, data_dir=None, cache_dir=None, blas_threads=1,
        retries=1, log=print, interval=30.0):
    """Run ``runs`` (from :func:`grid`), each in its folder under ``root``; finished ones are skipped.

    Parameters
    ----------
    scheduler : address of an existing Dask scheduler (``"tcp://host:8786"``), or a
        ``distributed.Client``; None: a local cluster of ``workers`` processes (default: one per
        core), one thread and one BLAS thread each.
    serial : run in this process, one after another, without Dask.
    data_dir, cache_dir : see :class:`Context`; paths every worker can read.
    blas_threads : BLAS threads of each run.
    retries : times a run that raised is retried (a run whose worker died is rescheduled by Dask,
        up to its ``distributed.scheduler.allowed-failures``), resuming from its checkpoint.
    log : callable receiving progress lines (None: quiet).
    interval : seconds between progress lines when nothing changes.

    Returns
    -------
    Report
    """
    if isinstance(runs, Run) or not isinstance(runs, (list, tuple)) or not runs:
        raise TypeError(f"runs must be a non-empty list of sweep.Run (sweep.grid); got {type(runs).__name__}")
    for i, r in enumerate(runs):
        if not isinstance(r, Run):
            raise TypeError(f"runs[{i}] must be a sweep.Run; got {type(r).__name__}")
    if len(set(runs)) != len(runs):
        raise ValueError("runs must not repeat a run")
    root = os.path.abspath(_validate.path("root", root))
    if os.path.exists(root) and not os.path.isdir(root):
        raise ValueError(f"root {root}: exists and is not a folder")
    if scheduler is not None and not isinstance(scheduler, str) and type(scheduler).__name__ != "Client":
        raise TypeError(f"scheduler must be an address (str) or a distributed.Client; got {type(scheduler).__name__}")
    if isinstance(scheduler, str) and not scheduler:
        raise ValueError("scheduler must be a non-empty address, such as tcp://host:8786")
    if workers is not None:
        workers = _validate.positive_int("workers", workers)
    serial = _validate.flag("serial", serial)
    if serial and (scheduler is not None or workers is not None):
        raise ValueError("serial runs in this process: give neither scheduler nor workers with it")
    context = Context(*(None if p is None else os.path.abspath(_validate.path(n, p))
                        for n, p in (("data_dir", data_dir), ("cache_dir", cache_dir))),
                      blas_threads=_validate.positive_int("blas_threads", blas_threads))
    # here, not in every run; on an existing cluster only its workers may see the folder
    if context.data_dir is not None and scheduler is None and not os.path.isdir(context.data_dir):
        raise ValueError(f"data_dir {context.data_dir}: " + ("exists and is not a folder"
                                                             if os.path.exists(context.data_dir) else "no such folder"))
    retries = _validate.nonnegative_int("retries", retries)
    _validate.callable_or_none("log", log)
    interval = _validate.positive_float("interval", interval)
    _check_writable(root)  # the first side effect, after every argument was checked

    start = time.perf_counter()
    codes = {t: code_version(t) for t in {r.task for r in runs}}
    summaries = [_read_json(os.path.join(r.folder(root, codes[r.task]), "summary.json")) for r in runs]
    todo = [i for i, s in enumerate(summaries) if s is None]
    progress = _Progress(len(todo), len(runs) - len(todo), log, interval)
    failed = {}
    if serial:
        for n, i in enumerate(todo):
            progress.update(n - len(failed), 1, len(failed), 1)
            t0 = time.perf_counter()
            try:
                summaries[i] = run_one(runs[i], root, codes[runs[i].task], context)
            except Exception as exc:  # noqa: BLE001 - a failed run is reported, the sweep goes on
                failed[runs[i]] = f"{type(exc).__name__}: {exc}"
            progress.walls.append(time.perf_counter() - t0)
        progress.update(len(todo) - len(failed), 0, len(failed), 1)
    elif todo:
        _run_on_dask(runs, todo, summaries, failed, root, codes, context, scheduler, workers, retries, progress)
    _report_failures(failed, root, codes, log)
    return Report(summaries, len(todo) - len(failed), len(runs) - len(todo), failed, time.perf_counter() - start)


def _check_writable(root):
    """Refuse a ``root`` that cannot be created or written, with the reason, before any run starts."""
    try:
        os.makedirs(root, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason += "; a part of the path is a file, not a folder"
        raise ValueError(f"root {root}: cannot write runs there ({reason})") from None


def _report_failures(failed, root, codes, log):
    if log is None:
        return
    for r, message in failed.items():
        log(f"sweep: FAILED {r.task} {r.preset} {r.model}-{r.kind} seed {r.seed}: {message} "
            f"(traceback in {os.path.join(r.folder(root, codes[r.task]), 'error.txt')})")


def _dask():
    try:
        import distributed
    except ImportError:
        raise ImportError("the sweep runs on Dask distributed, which is not installed: "
                          "pip install 'r2dn_np[sweep]' (or run it with serial=True, --serial)") from None
    return distributed


def _run_on_dask(runs, todo, summaries, failed, root, codes, context, scheduler, workers, retries, progress):
    distributed = _dask()
    import contextlib

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            # one process per core already: no gradient-pass workers inside a run (r2dn_np.loop.parallel)
            env = {"PYTHONPATH": _python_path(), "R2DN_WORKERS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1"}
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                dashboard_address=":0", env=env))
            client = stack.enter_context(distributed.Client(cluster))
        elif isinstance(scheduler, str):
            client = stack.enter_context(distributed.Client(scheduler))
        else:
            client = scheduler
        futures, queue = {}, list(todo)

        def submit(i):
            r = runs[i]
            key = f"r2dn-sweep-{r.task}-{r.preset}-{r.model}-{r.kind}-seed{r.seed}-{r.fingerprint(codes[r.task])}"
            future = client.submit(_run_task, TASKS[r.task], r, root, codes[r.task], context, key=key,
                                   retries=retries, pure=False)
            futures[future] = i
            pending[future] = i

        pending = {}
        try:
            while pending or queue:
                # no more runs in flight than worker threads: the scheduler would otherwise assign
                # them all at once, and a run queued behind a long one waits while a worker idles
                slots = sum(client.nthreads().values())
                while queue and len(pending) < max(slots, 1):
                    submit(queue.pop(0))
                for f in [f for f in pending if f.status in ("finished", "error", "cancelled", "lost")]:
                    i = pending.pop(f)
                    t_done = time.perf_counter()
                    if f.status == "finished":
                        summaries[i] = f.result()
                        progress.walls.append(summaries[i].get("wall_seconds", t_done - progress.start))
                    else:
                        exc = f.exception() if f.status == "error" else None
                        failed[runs[i]] = f"{type(exc).__name__}: {exc}" if exc is not None else f.status
                keys = {f.key for f in pending}
                executing = client.run(_executing, on_error="ignore")
                running = sum(k in keys for ks in executing.values() for k in ks)
                done = len(futures) - len(pending) - len(failed)
                progress.update(done, running, len(failed), max(slots, 1))
                if pending:
                    time.sleep(0.5)
        finally:
            for f in pending:
                f.cancel()
            for f in futures:
                f.release()


def _run_task(task, run, root, code, context):
    """:func:`run_one` on a worker, registering the task there first: a task registered by the
    user's module arrives with its function (pickled by reference, so that module is imported)."""
    TASKS.setdefault(task.name, task)
    return run_one(run, root, code, context)


def _executing(dask_worker):
    """The keys a worker is executing now (run there by ``client.run``)."""
    return [ts.key for ts in dask_worker.state.executing]


# ---- what the sweep gathers ----------------------------------------------------------------------------------


def gather(runs, root):
    """The summaries of ``runs`` found finished under ``root`` with this code version: a list in
    ``runs``' order, None where a run has not finished (or ran other code or settings)."""
    if isinstance(runs, Run) or not isinstance(runs, (list, tuple)):
        raise TypeError(f"runs must be a list of sweep.Run (sweep.grid); got {type(runs).__name__}")
    root = os.path.abspath(_validate.path("root", root))
    codes = {}
    out = []
    for i, r in enumerate(runs):
        if not isinstance(r, Run):
            raise TypeError(f"runs[{i}] must be a sweep.Run; got {type(r).__name__}")
        code = codes.setdefault(r.task, code_version(r.task))
        out.append(_read_json(os.path.join(r.folder(root, code), "summary.json")))
    return out



# ---- the tasks: each calls an experiment's library function in this process ----------------------------------


def _checkpoint_epoch(path):
    """Epochs done according to a checkpoint (0 if none or unreadable)."""
    try:
        return int(io.read_arrays(path)[1].get("epoch", 0))
    except (OSError, ValueError, TypeError):
        return 0


def _log_file(folder):
    """A ``log`` callable writing lines to the run's ``log.txt``, and the open file."""
    fh = open(os.path.join(folder, "log.txt"), "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller

    def log(line):
        print(line, file=fh, flush=True)

    return log, fh


def _sysid_task(dataset):
    def task(run, folder, context):
        if registry.get(dataset).needs_data_dir and not context.data_dir:
            raise ValueError(f"data_dir must name the {dataset} data folder for task sysid-{dataset} (--data-dir)")
        resumed = _checkpoint_epoch(os.path.join(folder, "checkpoint.npz"))
        if os.path.exists(os.path.join(folder, "results.json")):
            os.remove(os.path.join(folder, "results.json"))  # of an attempt that died before its summary
        # one process per run already: no gradient-pass workers inside it (r2dn_np.loop.parallel)
        settings = sysid.SysidSettings(dataset=dataset, model=run.model, kind=run.kind, gamma=run.gamma,
                                       preset=run.preset, seed=run.seed, epochs=run.epochs, out=folder, resume=True,
                                       quiet=True, data_dir=context.data_dir, cache_dir=context.cache_dir, workers=1)
        log, fh = _log_file(folder)
        with fh:
            results = sysid.run(settings, log=log).results
        test = next(iter(results["test"]))  # boucwen: multisine (the official test), f16: Level6
        refined = results.get("refine")  # preset best: the Adam result's score beside the refined one's
        return {"seconds_per_epoch": results["seconds_per_epoch"], "curve": results["history"]["val_nrmse"],
                "test_metric": results["test"][test]["nrmse"], "test_set": test, "epochs": results["epochs_run"],
                "resumed_from": resumed, "certificate_holds": results["certificate"]["holds"],
                "exit_status": 0 if results["certificate"]["holds"] else 1,
                "refine": None if refined is None else {
                    "seconds": refined["seconds"], "iterations": refined["history"]["iterations"],
                    "test_metric_before": refined["test_before"][test]["nrmse"]}}

    task.__name__ = task.__qualname__ = f"sysid_{dataset}"
    return task


sysid_boucwen = _sysid_task("boucwen")
sysid_f16 = _sysid_task("f16")


def expressivity_task(run, folder, context):
    """One model size of the expressivity study (``expressivity.sweep_size``), with a checkpoint
    per epoch; the curve is the last batch's training loss per epoch."""
    settings = expressivity.ExpressivitySettings(run.model, run.kind, run.gamma, run.preset, seed=run.seed,
                                                 epochs=run.epochs)
    r = expressivity.run(settings, checkpoint=os.path.join(folder, "checkpoint.npz"), record=run.settings())
    return {"seconds_per_epoch": float(np.mean(r.seconds)), "curve": r.curve, "test_metric": r.nrmse,
            "epochs": r.epochs, "resumed_from": r.resumed_from, "params": r.params, "size": r.size}


# tiny: the tests' sizes; the experiments have no checkpoints, so a run that died starts again
_OBSERVER_TINY = dict(T=600, chunks=3, epochs=2, val_T=40, nodes=11)
_YOULA_TINY = dict(tiny=True, epochs=2, T=40, batch=4)


def _paper_task(experiment, settings_class, tiny, curve, metric):
    """The task of one model of a paper experiment (``observer``, ``youla``): its ``run`` at
    the preset (``tiny``: the ``quick`` preset with the overrides ``tiny``), its results in the
    run's ``results.json``, the summary's curve and metric the result's fields ``curve`` and
    ``metric``."""
    def task(run, folder, context):
        over = dict(tiny) if run.preset == "tiny" else {}
        if run.epochs:
            over["epochs"] = run.epochs
        settings = settings_class(run.model, "quick" if run.preset == "tiny" else run.preset, run.seed, **over)
        log, fh = _log_file(folder)
        with fh:
            r = experiment.run(settings, log=log)
        _write_json(os.path.join(folder, "results.json"), {"preset": settings.preset,
                                                           "settings": settings.schedule(), run.model: r.to_dict()})
        return {"seconds_per_epoch": r.seconds_per_epoch, "cpu_seconds_per_epoch": r.cpu_seconds_per_epoch,
                "curve": getattr(r, curve), "test_metric": getattr(r, metric), "epochs": len(getattr(r, curve)),
                "resumed_from": 0}

    task.__name__ = task.__qualname__ = f"{experiment.__name__.rsplit('.', 1)[-1]}_task"
    return task


observer_task = _paper_task(observer, observer.ObserverSettings, _OBSERVER_TINY, "losses", "val_nrmse")
youla_task = _paper_task(youla, youla.YoulaSettings, _YOULA_TINY, "test_losses", "final_test_loss")


register("sysid-boucwen", sysid_boucwen, presets=("tiny", "quick", "paper", "best"),
         metric="test NRMSE (official multisine)", curve="validation NRMSE")
register("sysid-f16", sysid_f16, presets=("tiny", "quick", "paper", "best"), metric="test NRMSE (level 6)",
         curve="validation NRMSE")
register("expressivity", expressivity_task, presets=tuple(expressivity.PRESETS), metric="test NRMSE (u = 1)",
         curve="training loss (last batch)")
register("observer", observer_task, presets=("tiny", "quick", "paper"), metric="validation NRMSE (closed loop)",
         curve="training loss")
register("youla", youla_task, presets=("tiny", "quick", "paper"), metric="test loss", curve="test loss")
