"""Multi-seed experiments: a grid of tasks x presets x models x kinds x seeds, run on Dask
distributed (a local cluster by default, or an existing one), resumable and fingerprinted,
gathered into the paper's table (mean +- std over seeds of seconds per epoch and of the test
metric, with the REN/R2DN time ratio) and a plot of learning curves.

    r2dn sweep --tasks sysid-boucwen --models r2dn,ren --seeds 3 --preset quick
    r2dn sweep --tasks sysid-boucwen --models r2dn,ren --seeds 3 --preset quick --table
    r2dn sweep ... --scheduler tcp://10.0.0.1:8786          # an existing Dask cluster

Every run writes its own folder ``ROOT/TASK/PRESET/MODEL-KIND/seedS-FINGERPRINT``: the task's
files (``r2dn sysid``'s ``results.json``, ``model.npz``, ``checkpoint.npz``, ...), ``run.json``
(the settings and fingerprint) and, when it has finished, ``summary.json``. The fingerprint
hashes the run's settings with the code version (the package's source files and the task's own
files), so results of other code or settings are never resumed, skipped or tabled as these.
A finished run (its ``summary.json``) is not redone; an unfinished one resumes from its
checkpoint, also when Dask reschedules it after its worker died.

A task is one function ``fn(run, folder, context) -> dict`` registered under a name with
:func:`register` (see ``docs/sweep.md``). Dask is imported here only, and only when a sweep runs
on a cluster (``pip install 'r2dn_np[sweep]'``); ``serial=True`` runs in this process without it.

Examples
--------
>>> import tempfile
>>> from r2dn_np.experiments import sweep
>>> runs = sweep.grid(["expressivity"], ["r2dn", "ren"], seeds=2, preset="tiny")
>>> len(runs), runs[0].settings()
(4, {'task': 'expressivity', 'preset': 'tiny', 'model': 'r2dn', 'kind': 'contracting', 'seed': 0, 'epochs': None})
>>> report = sweep.run(runs, tempfile.mkdtemp(), serial=True, log=None)   # on Dask: drop serial=True
>>> report.ran, [(row["model"], row["seeds"]) for row in sweep.table(report.summaries)]
(4, [('r2dn', [0, 1]), ('ren', [0, 1])])
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Callable, NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from .. import __version__
from ..core import _validate, tree
from ..interface import io, registry
from ..training import optim
from ..training.train import get_model

__all__ = ["TASKS", "KINDS", "Task", "Run", "Context", "Report", "register", "grid", "code_version", "run",
           "run_one", "gather", "table", "write_table", "plot_curves"]

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


def register(name, function, *, presets, metric, curve, models=registry.names(feedback=True), sources=()):
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
    models = names("models", models, registry.names(feedback=True))
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


def _mean_std(values):
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def table(summaries):
    """Rows of the paper's table from run summaries (:func:`gather`; None entries are skipped):
    one per task, preset, model and kind, with ``seeds``, ``seconds_per_epoch`` and
    ``test_metric`` as (mean, std over seeds; std NaN for one seed), and ``time_ratio`` (the
    REN's mean seconds per epoch over the R2DN's of the same task, preset and kind; None
    without both)."""
    if not isinstance(summaries, (list, tuple)):
        raise TypeError(f"summaries must be a list of run summaries (sweep.gather); got {type(summaries).__name__}")
    groups = {}
    for i, s in enumerate(summaries):
        if s is None:
            continue
        if not isinstance(s, dict) or not isinstance(s.get("settings"), dict):
            raise TypeError(f"summaries[{i}] must be a run summary (a dict with 'settings'); got {type(s).__name__}")
        st = s["settings"]
        groups.setdefault((st["task"], st["preset"], st["model"], st["kind"]), []).append(s)
    rows = []
    for (task, preset, model, kind), group in groups.items():
        metric = TASKS[task].metric if task in TASKS else "test metric"
        rows.append({"task": task, "preset": preset, "model": model, "kind": kind,
                     "seeds": sorted(s["settings"]["seed"] for s in group), "metric": metric,
                     "seconds_per_epoch": _mean_std([s["seconds_per_epoch"] for s in group]),
                     "test_metric": _mean_std([s["test_metric"] for s in group]), "time_ratio": None})
    for row in rows:
        ref = {r["model"]: r["seconds_per_epoch"][0] for r in rows
               if (r["task"], r["preset"], r["kind"]) == (row["task"], row["preset"], row["kind"])}
        if "ren" in ref and "r2dn" in ref:
            row["time_ratio"] = ref["ren"] / ref["r2dn"]
    return rows


def _pm(mean, std, fmt):
    return f"{mean:{fmt}}" + ("" if math.isnan(std) else f" ± {std:{fmt}}")


def markdown(rows):
    """The rows of :func:`table` as a Markdown table."""
    lines = ["| task | preset | model | kind | seeds | s / epoch | REN / R2DN time | metric | test metric |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = "" if r["time_ratio"] is None else f"{r['time_ratio']:.2f}"
        lines.append(f"| {r['task']} | {r['preset']} | {r['model']} | {r['kind']} | {len(r['seeds'])} | "
                     f"{_pm(*r['seconds_per_epoch'], '.3g')} | {ratio} | {r['metric']} | "
                     f"{_pm(*r['test_metric'], '.4g')} |")
    return "\n".join(lines)


_CSV_COLUMNS = ("task", "preset", "model", "kind", "seeds", "seconds_per_epoch_mean", "seconds_per_epoch_std",
                "time_ratio_ren_r2dn", "metric", "test_metric_mean", "test_metric_std")


def write_table(rows, folder):
    """Write ``table.md`` and ``table.csv`` into ``folder``; returns their paths."""
    folder = _validate.path("folder", folder)
    os.makedirs(folder, exist_ok=True)
    md, csv_path = os.path.join(folder, "table.md"), os.path.join(folder, "table.csv")
    _write_text(md, markdown(rows) + "\n")
    out = [",".join(_CSV_COLUMNS)]
    for r in rows:
        values = (r["task"], r["preset"], r["model"], r["kind"], " ".join(map(str, r["seeds"])),
                  *r["seconds_per_epoch"], "" if r["time_ratio"] is None else r["time_ratio"], r["metric"],
                  *r["test_metric"])
        out.append(",".join(f'"{v}"' if isinstance(v, str) and ("," in v or " " in v) else
                            ("" if isinstance(v, float) and math.isnan(v) else repr(v) if isinstance(v, float)
                             else str(v)) for v in values))
    _write_text(csv_path, "\n".join(out) + "\n")
    return md, csv_path


def _write_text(path, text):
    with io.atomic_write(path) as fh:
        fh.write(text.encode("utf-8"))


def plot_curves(summaries, path):
    """Learning curves, mean and band (min to max) over seeds, one panel per task and preset.
    Returns False without writing when matplotlib is not installed (``r2dn_np[plots]``)."""
    path = _validate.path("path", path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    groups = {}
    for s in summaries:
        if s is not None and s.get("curve"):
            st = s["settings"]
            groups.setdefault((st["task"], st["preset"]), {}).setdefault(f"{st['model']}-{st['kind']}", []).append(
                s["curve"])
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(5 * max(len(groups), 1), 3.6), squeeze=False)
    for ax, ((task, preset), curves) in zip(axes[0], sorted(groups.items())):
        for label, group in sorted(curves.items()):
            n = min(len(c) for c in group)
            a = np.array([c[:n] for c in group], dtype=np.float64)
            epochs = np.arange(1, n + 1)
            line, = ax.plot(epochs, a.mean(axis=0), label=f"{label} ({len(group)} seeds)")
            ax.fill_between(epochs, a.min(axis=0), a.max(axis=0), color=line.get_color(), alpha=0.25)
        ax.set_yscale("log")
        ax.set_title(f"{task}, {preset}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(TASKS[task].curve if task in TASKS else "curve")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# ---- the tasks -------------------------------------------------------------------------------------------------


def _die_with_parent():
    """A ``preexec_fn`` that makes the child die when the thread that started it dies (Linux's
    ``PR_SET_PDEATHSIG``), so a killed worker leaves no run writing into a folder that its retry
    resumes; None elsewhere. Resolved here, before the fork: the child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import functools

    return functools.partial(ctypes.CDLL(None, use_errno=True).prctl, 1, signal.SIGKILL)


def _checkpoint_epoch(path):
    """Epochs done according to a checkpoint (0 if none or unreadable)."""
    try:
        return int(io.read_arrays(path)[1].get("epoch", 0))
    except (OSError, ValueError, TypeError):
        return 0


def _sysid_task(dataset):
    def task(run, folder, context):
        if dataset == "f16" and not context.data_dir:
            raise ValueError("data_dir must name the F-16 BenchmarkData folder for task sysid-f16 (--data-dir)")
        resumed = _checkpoint_epoch(os.path.join(folder, "checkpoint.npz"))
        if os.path.exists(os.path.join(folder, "results.json")):
            os.remove(os.path.join(folder, "results.json"))  # of an attempt that died before its summary
        cmd = [sys.executable, "-m", "r2dn_np", "sysid", "--dataset", dataset, "--model", run.model,
               "--kind", run.kind, "--gamma", repr(run.gamma), "--preset", run.preset, "--seed", str(run.seed),
               "--out", folder, "--resume", "--quiet", "--threads", str(context.blas_threads)]
        cmd += ["--epochs", str(run.epochs)] if run.epochs else []
        cmd += ["--data-dir", context.data_dir] if context.data_dir else []
        cmd += ["--cache-dir", context.cache_dir] if context.cache_dir else []
        with open(os.path.join(folder, "log.txt"), "w", encoding="utf-8") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=dict(os.environ, PYTHONPATH=_python_path(), R2DN_WORKERS="1"),
                                  preexec_fn=_die_with_parent())
        results = _read_json(os.path.join(folder, "results.json"))
        if results is None:
            with open(os.path.join(folder, "log.txt"), encoding="utf-8") as fh:
                last = (fh.read().strip().splitlines() or [""])[-1]
            raise RuntimeError(f"r2dn sysid exited with status {proc.returncode}: {last}")
        test = next(iter(results["test"]))  # boucwen: multisine (the official test), f16: Level6
        refined = results.get("refine")  # preset best: the Adam result's score beside the refined one's
        return {"seconds_per_epoch": results["seconds_per_epoch"], "curve": results["history"]["val_nrmse"],
                "test_metric": results["test"][test]["nrmse"], "test_set": test, "epochs": results["epochs_run"],
                "resumed_from": resumed, "certificate_holds": results["certificate"]["holds"],
                "exit_status": proc.returncode,
                "refine": None if refined is None else {
                    "seconds": refined["seconds"], "iterations": refined["history"]["iterations"],
                    "test_metric_before": refined["test_before"][test]["nrmse"]}}

    task.__name__ = task.__qualname__ = f"sysid_{dataset}"
    return task


sysid_boucwen = _sysid_task("boucwen")
sysid_f16 = _sysid_task("f16")

# one model size of scripts/expressivity.py per model (its presets sweep sizes)
EXPRESSIVITY_PRESETS = {
    "tiny": dict(epochs=3, batches=2, batch=64, lr=3e-3, decay_every=20, r2dn=8, ren=20),
    "quick": dict(epochs=30, batches=32, batch=512, lr=3e-3, decay_every=20, r2dn=32, ren=60),
    "full": dict(epochs=1500, batches=128, batch=512, lr=1e-3, decay_every=500, r2dn=96, ren=200),
}
_EXPRESSIVITY_SCRIPT = "scripts/expressivity.py"


def _expressivity_script():
    name = "_r2dn_np_expressivity_script"
    if name not in sys.modules:
        path = os.path.join(_REPO, _EXPRESSIVITY_SCRIPT)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: the expressivity task runs this script of a source checkout "
                                    "(clone the repository and pip install -e it)")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def expressivity(run, folder, context):
    """The expressivity study of ``scripts/expressivity.py`` at one model size, with a checkpoint
    per epoch; the curve is the last batch's training loss per epoch."""
    script = _expressivity_script()
    p = dict(EXPRESSIVITY_PRESETS[run.preset])
    if run.epochs:
        p["epochs"] = run.epochs
    module = get_model(run.model)
    kw = dict(kind=run.kind, gamma=run.gamma) if run.kind == "lipschitz" else {}
    if run.model == "r2dn":
        cfg = module.Config(1, 1, 16, 1, hidden=(p["r2dn"],) * 6, activation="relu", **kw)
    else:
        cfg = module.Config(1, 1, p["ren"], 1, activation="tanh", **kw)
    def put(a):
        return np.asarray(a, dtype=np.float64)

    path = os.path.join(folder, "checkpoint.npz")
    direct = module.init(cfg, run.seed, backend="numpy")
    state, epoch, history, rng_state = optim.adam_init(direct), 0, {"loss": [], "seconds": []}, None
    if os.path.exists(path):
        arrays, meta = io.read_arrays(path)
        if meta.get("settings") != run.settings():
            raise io.FormatError(f"{path}: checkpoint of another run")

        def part(prefix):
            return tree.from_paths(direct, {n: arrays[f"{prefix}.{n}"] for n, _ in tree.paths(direct)})

        direct, state = part("params"), optim.AdamState(part("m"), part("v"), int(meta["step"]))
        epoch, history, rng_state = int(meta["epoch"]), meta["history"], meta["rng"]
    resumed = epoch
    rng = np.random.default_rng(1000 + run.seed)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    while epoch < p["epochs"]:
        lr = optim.exponential_decay(epoch, p["lr"], 0.1, p["decay_every"])
        t0 = time.perf_counter()
        for _ in range(p["batches"]):
            x = rng.uniform(-30.0, 30.0, (p["batch"], 1))
            u = rng.uniform(-1.0, 1.0, (p["batch"], 1))
            value, grads = script.loss_and_grads(module, cfg, direct, put(x), put(u), put(script.target_map(x, u)))
            direct, state = optim.adam_step(direct, grads, state, lr=lr)
        epoch += 1
        history["loss"].append(float(value))
        history["seconds"].append(time.perf_counter() - t0)
        arrays = {f"{prefix}.{n}": np.asarray(v) for prefix, c in (("params", direct), ("m", state.m), ("v", state.v))
                  for n, v in tree.paths(c)}
        io.write_arrays(path, arrays, {"format": io.FORMAT, "format_version": io.FORMAT_VERSION,
                                       "settings": run.settings(), "epoch": epoch, "step": state.step,
                                       "history": history, "rng": rng.bit_generator.state})
    return {"seconds_per_epoch": float(np.mean(history["seconds"])), "curve": history["loss"],
            "test_metric": script.nrmse(module, cfg, direct, put), "epochs": epoch, "resumed_from": resumed,
            "params": tree.size(direct), "size": f"nh={p['r2dn']}" if run.model == "r2dn" else f"nv={p['ren']}"}


# the R2DN paper's generated-data experiments: one model of scripts/observer.py or scripts/youla.py per
# run (tiny: the tests' sizes); they have no checkpoints, so a run that died starts again
_EXPERIMENT_TINY = {"observer": ["--T", "600", "--chunks", "3", "--epochs", "2", "--val-T", "40", "--nodes", "11"],
                    "youla": ["--tiny", "--epochs", "2", "--T", "40", "--batch", "4"]}


def _experiment_task(name, curve_key, metric_key):
    script = f"scripts/{name}.py"

    def task(run, folder, context):
        path = os.path.join(_REPO, script)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: the {name} task runs this script of a source checkout")
        preset = "quick" if run.preset == "tiny" else run.preset
        cmd = [sys.executable, path, "--preset", preset, "--models", run.model, "--seed", str(run.seed),
               "--out", folder, "--threads", str(context.blas_threads)]
        cmd += _EXPERIMENT_TINY[name] if run.preset == "tiny" else []
        cmd += ["--epochs", str(run.epochs)] if run.epochs else []
        cmd += ["--no-plots"] if name == "observer" else []
        with open(os.path.join(folder, "log.txt"), "w", encoding="utf-8") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=dict(os.environ, PYTHONPATH=_python_path(), R2DN_WORKERS="1"),
                                  preexec_fn=_die_with_parent())
        results = _read_json(os.path.join(folder, "results.json"))
        if proc.returncode != 0 or results is None or run.model not in results:
            raise RuntimeError(f"scripts/{name}.py exited with status {proc.returncode}; see {folder}/log.txt")
        r = results[run.model]
        return {"seconds_per_epoch": r["seconds_per_epoch"], "cpu_seconds_per_epoch": r["cpu_seconds_per_epoch"],
                "curve": r[curve_key], "test_metric": r[metric_key], "epochs": len(r[curve_key]), "resumed_from": 0}

    task.__name__ = task.__qualname__ = f"{name}_task"
    return task


observer_task = _experiment_task("observer", "losses", "val_nrmse")
youla_task = _experiment_task("youla", "test_losses", "final_test_loss")


register("sysid-boucwen", sysid_boucwen, presets=("tiny", "quick", "paper", "best"),
         metric="test NRMSE (official multisine)", curve="validation NRMSE")
register("sysid-f16", sysid_f16, presets=("tiny", "quick", "paper", "best"), metric="test NRMSE (level 6)",
         curve="validation NRMSE")
register("expressivity", expressivity, presets=tuple(EXPRESSIVITY_PRESETS), metric="test NRMSE (u = 1)",
         curve="training loss (last batch)", sources=(_EXPRESSIVITY_SCRIPT,))
register("observer", observer_task, presets=("tiny", "quick", "paper"), metric="validation NRMSE (closed loop)",
         curve="training loss", sources=("scripts/observer.py",))
register("youla", youla_task, presets=("tiny", "quick", "paper"), metric="test loss",
         curve="test loss", sources=("scripts/youla.py",))
