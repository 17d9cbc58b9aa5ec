"""Command line: ``r2dn sysid`` (train, evaluate against a linear baseline, certify),
``r2dn simulate`` (run a trained model on new input records), ``r2dn verify`` (check
gradients, certificates, contraction and Lipschitz bounds) and ``r2dn sweep`` (seeds x models x
tasks on Dask, gathered into the table of results; ``r2dn_np.experiments.sweep``).

    r2dn sysid                          # Bouc-Wen, contracting R2DN, quick preset (minutes)
    r2dn sysid --kind lipschitz --gamma 10
    r2dn sysid --dataset f16 --data-dir path/to/BenchmarkData --preset paper
    r2dn verify                         # fresh random models of several sizes
    r2dn sysid --data train.csv --val val.csv --outputs y --fs 750   # your own records
    r2dn verify --params runs/sysid-boucwen-r2dn/model.npz
    r2dn simulate --params runs/sysid-boucwen-r2dn/model.npz --input u.csv --out y.csv [--periodic]
    r2dn sweep --tasks sysid-boucwen --models r2dn,ren --seeds 3   # seeds x models on Dask
    r2dn sweep --tasks sysid-boucwen --models r2dn,ren --seeds 3 --table

Errors a user can cause (a missing folder, a malformed file, no GPU) print one line and exit
with status 1 (``R2DN_DEBUG=1`` shows the traceback instead); ``r2dn sysid`` exits with status 1
when the trained model's certificate fails and ``r2dn verify`` when any check fails.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import dataclasses
import os
import shlex
import sys
import textwrap

import numpy as np
from threadpoolctl import threadpool_limits

from . import __version__
from .checks import verify
from .core import supply
from .core.backend import BackendError, namespace, to_backend
from .data import files, registry, sequences
from .experiments import _guard, sysid
from .interface import io, registry as model_registry
from .loop import parallel
from .training import train

__all__ = ["main"]


def say(*parts):
    print(*parts, flush=True)


class UserError(Exception):
    """A problem with the command's inputs, reported in one line."""


def _names(text):
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _workers(args):
    """``--workers``, else ``R2DN_WORKERS`` where it is set, else ``"auto"``: the command line
    shares large gradient passes among the cores (a library call does only when asked)."""
    if args.workers is not None:
        return args.workers
    return None if os.environ.get(parallel.ENV, "").strip() else parallel.AUTO


def _sysid_settings(args):
    """The :class:`~r2dn_np.experiments.sysid.SysidSettings` that ``r2dn sysid``'s arguments say."""
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(sysid.SysidSettings)}
    fields.update(inputs=_names(args.inputs), outputs=_names(args.outputs), workers=_workers(args),
                  data=args.data and tuple(args.data), val=args.val and tuple(args.val),
                  test=args.test and tuple(args.test))
    return sysid.SysidSettings(**fields)


def _sysid(args):
    result = sysid.run(_sysid_settings(args), log=say, arguments=vars(args), flag=_guard.as_flag)
    say(result.table())
    plotted = "plots" in result.results["files"]
    say(f"wrote {', '.join(result.files())}")
    if not plotted:
        say("no plots: matplotlib is not installed (pip install 'r2dn_np[plots]')")
    return 0 if result.certificate_holds else 1


SIZES = [(1, 2, 3, 1), (2, 4, 6, 2), (3, 8, 8, 1)]


def _verify(args):
    xp = namespace(args.backend)
    rows = []
    if args.params:
        loaded = io.load(args.params, backend=args.backend)
        cfg = loaded.config
        if cfg.model not in model_registry.names(feedback=True):
            raise UserError(f"{args.params}: holds a {cfg.model!r} model; r2dn verify checks r2dn and ren models")
        module = train.get_model(cfg.model)
        label = f"{cfg.model} {cfg.kind}, nu={cfg.nu} nx={cfg.nx} nv={cfg.nv} ny={cfg.ny} (file)"
        rows += [(label, c) for c in verify.check_model(module, cfg, loaded.params, seed=args.seed)]
    else:
        module = train.get_model(args.model)
        kinds = [args.kind] if args.kind else ["contracting", "lipschitz"]
        for kind in kinds:
            for i, (nu, nx, nv, ny) in enumerate(SIZES):
                # --kind qsr: a random valid supply rate per size, from the seed
                Q, S, R = supply.example(nu, ny, args.seed + i) if kind == "qsr" else (None, None, None)
                cfg = sysid.make_config(module, nu=nu, nx=nx, nv=nv, ny=ny, hidden=(8,), activation="tanh",
                                   kind=kind, gamma=args.gamma, Q=Q, S=S, R=R)
                direct = to_backend(verify.perturbed(module, cfg, args.seed + i, tiny=i % 2 == 1), xp)
                label = f"{args.model} {kind}, nu={nu} nx={nx} nv={nv} ny={ny}"
                rows += [(label, c) for c in verify.check_model(module, cfg, direct, seed=args.seed + i)]
    print(verify.table(rows))
    failed = [r for r in rows if r[1].verdict == "fails"]
    held = sum(c.holds for _, c in rows)
    undecided = len(rows) - held - len(failed)
    print(f"\n{held} of {len(rows)} checks held" + (f", {undecided} not decisive" if undecided else "")
          + ("" if not failed else "; FAILED: " + ", ".join(f"{label}: {c.name}" for label, c in failed)))
    return 1 if failed else 0


def _read_csv(path):
    """Delimited numbers, one row per sample, an optional header line (``files.read_csv``)."""
    try:
        return files.read_csv(path).numbers()
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None


def _read_npz(path):
    """The array ``u`` of a ``.npz`` file, or its only array."""
    try:
        arrays = io.read_npz(path)
    except io.FormatError as exc:
        raise UserError(str(exc)) from None
    if "u" in arrays:
        return arrays["u"]
    if len(arrays) != 1:
        raise UserError(f"{path}: holds the arrays {sorted(arrays)}; name the input array 'u'")
    return arrays.popitem()[1]


def _write_output(path, y, names):
    """``y : (T, ny)`` as CSV with a header of ``names``, or as the array ``y`` of a ``.npz``."""
    with io.atomic_write(path) as fh:
        if path.lower().endswith(".npz"):
            np.savez(fh, y=y)
            return
        writer = csv.writer(codecs.getwriter("utf-8")(fh), lineterminator="\n")  # csv writes str, fh takes bytes
        writer.writerow(names)
        writer.writerows(y.tolist())  # floats as repr: every digit of a float64 survives


def _simulate(args):
    if not args.out.lower().endswith((".csv", ".npz")):
        raise UserError(f"--out {args.out}: must end in .csv or .npz (the format to write)")
    _guard.refuse_overwrite([("out", args.out)], [("params", args.params), ("input", args.input)]
                            + ([("warmup", args.warmup)] if args.warmup else []), _guard.as_flag)
    if os.path.isdir(args.input):
        raise UserError(f"--input {args.input}: is a folder; expected a file of input records (.csv or .npz)")
    model = train.load_model(args.params, backend=args.backend)
    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"--input {args.input}: no such file")
    u = _read_npz(args.input) if args.input.lower().endswith(".npz") else _read_csv(args.input)
    u = train.check_input(f"--input {args.input}", u, model.config.nu)
    warmup = None
    if args.warmup:
        if not os.path.isfile(args.warmup):
            raise FileNotFoundError(f"--warmup {args.warmup}: no such file")
        warmup = _read_npz(args.warmup) if args.warmup.lower().endswith(".npz") else _read_csv(args.warmup)
        warmup = train.check_input(f"--warmup {args.warmup}", warmup, model.config.nu)
    y = model.simulate(u, warmup=warmup, periodic=args.periodic)
    ny = model.config.ny
    names = [str(n) for n in model.metadata.get("output_names", ())]
    if len(names) != ny:  # files without output names: number the columns
        names = [f"y{j + 1}" for j in range(ny)]
    try:
        _write_output(args.out, y, names)
    except OSError as exc:
        raise UserError(f"--out {args.out}: cannot write it ({exc.strerror or exc})") from None
    say(f"wrote {args.out}: {y.shape[0]} samples of {ny} output(s), {model.config.model} model from {args.params}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (``r2dn sysid: error: argument --threads: ...``)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# the names sweep's errors start with, and the flags that give them
_SWEEP_FLAGS = {"tasks": "--tasks", "models": "--models", "kinds": "--kinds", "seeds": "--seeds",
                "preset": "--preset", "gamma": "--gamma", "epochs": "--epochs", "root": "--root",
                "scheduler": "--scheduler", "workers": "--workers", "serial": "--serial", "data_dir": "--data-dir",
                "cache_dir": "--cache-dir", "retries": "--retries", "interval": "--interval",
                "blas_threads": "--threads"}


def _sweep_flag(message):
    """A message of ``r2dn_np.experiments.sweep`` with the argument it starts with replaced by its flag."""
    head, sep, rest = message.partition(" ")
    for name, flag in _SWEEP_FLAGS.items():
        if head in (name, name + ":"):
            return f"{flag}{head[len(name):]}{sep}{rest}"
    return message


def _sweep(args):
    from .experiments import sweep, sweep_report

    def names(text):
        return [s.strip() for s in text.split(",") if s.strip()]

    try:
        runs = sweep.grid(names(args.tasks), names(args.models), args.seeds, args.preset, names(args.kinds),
                          gamma=args.gamma, epochs=args.epochs)
        tables = [("root", os.path.join(args.root, n)) for n in ("table.md", "table.csv", "curves.png")]
        data = [f for d in registry.DATASETS.values() for f in d.files(args.data_dir, args.cache_dir)]
        _guard.refuse_overwrite(tables, data, _guard.as_flag)
        if args.table:
            summaries = sweep.gather(runs, args.root)
        else:
            summaries = sweep.run(runs, args.root, scheduler=args.scheduler, workers=args.workers,
                                  serial=args.serial, data_dir=args.data_dir, cache_dir=args.cache_dir,
                                  blas_threads=args.threads or 1, retries=args.retries, log=say,
                                  interval=args.interval).summaries
    except (ValueError, TypeError) as exc:
        raise UserError(_sweep_flag(str(exc))) from None
    missing = sum(s is None for s in summaries)
    rows = sweep_report.table(summaries)
    if not rows:
        raise UserError(f"--root {args.root}: none of the {len(runs)} runs of this grid has finished there "
                        "with this code (run the same command without --table)")
    md, csv_path = sweep_report.write_table(rows, args.root)
    png = os.path.join(args.root, "curves.png")
    plotted = sweep_report.plot_curves(summaries, png)
    say("")
    say(sweep_report.markdown(rows))
    say(f"\nwrote {md}, {csv_path}" + (f", {png}" if plotted else ""))
    if not plotted:
        say("no plot: matplotlib is not installed (pip install 'r2dn_np[plots]')")
    if missing:
        say(f"{missing} of {len(runs)} runs have not finished" + (" (run the same command without --table)"
                                                                  if args.table else ""))
    return 1 if missing else 0


class _Help(argparse.RawDescriptionHelpFormatter):
    """Help with every option's default (where its text does not already say it) and the
    description and epilog as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
                and "default" not in text and action.option_strings and action.nargs != 0):
            text += " (default: %(default)s)"
        return text


# how long each preset takes, for `r2dn sysid --help` (measured: docs/sysid.md)
_PRESET_TIME = {
    "tiny": "seconds; for tests and a first look at the outputs",
    "quick": "the default; Bouc-Wen about 3 minutes of CPU (official-test RMSE 2.4e-5 m), pendulum and F-16 "
             "a few minutes",
    "paper": "Bouc-Wen about 40 minutes, F-16 the R2DN paper's protocol (about 30 minutes); pendulum and your "
             "own data: a larger model trained longer, with early stopping",
    "best": "paper, then whole-record refinement (L-BFGS-B on whole records): Bouc-Wen about 25 minutes more, "
            "F-16 about an hour more",
}


def _presets_help():
    lines = ["presets (--preset; model sizes nx, nv, LBDN hidden widths; epochs; chunk/window/batch):"]
    for name, per in sysid.PRESETS.items():
        lines.append(textwrap.fill(f"{name}: {_PRESET_TIME[name]}", 100, initial_indent="  ", subsequent_indent="    "))
        for dataset, p in per.items():
            o = p.options
            where = "--data" if dataset == "files" else dataset
            lines.append(f"    {where:<9} nx {p.nx}, nv {p.nv}, hidden {p.hidden}, {o.epochs} epochs, "
                         f"{o.chunk}/{o.window}/{o.batch}, lr {o.lr:g}"
                         + (f", refine {p.refine.iterations}" if p.refine else ""))
    lines += ["", "your own records (docs/sysid.md, \"Your own data\"):",
              "  r2dn sysid --data train.csv [more.csv ...] [--val val.csv] [--test test.csv] \\",
              "             --inputs force --outputs position --fs 750"]
    return "\n".join(lines)


_BACKEND_HELP = "array backend: numpy (CPU) or cupy (GPU) (default: numpy, or R2DN_BACKEND)"
_THREADS_HELP = "BLAS threads (default 1, or what OMP_NUM_THREADS says)"


def _parser():
    ap = _Parser(prog="r2dn", description="Robust recurrent networks: system identification and checks.",
                 formatter_class=_Help)
    ap.add_argument("--version", action="version", version=f"r2dn_np {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sysid", help="train a model on an identification benchmark or your own records, compare "
                                     "with a linear model, certify it", formatter_class=_Help,
                       description="Train a robust recurrent model, compare it with the best linear model and "
                                   "certify it.", epilog=_presets_help())
    s.add_argument("--dataset", choices=registry.names(), default=None,
                   help="built-in data set: " + ", ".join(f"{d.name} ({d.help})" for d in registry.DATASETS.values())
                        + " (default: boucwen, unless --data is given)")
    s.add_argument("--data", nargs="+", metavar="FILE",
                   help="your training records instead of a data set: CSV files with a header naming the columns, "
                        "or .npz files (arrays as columns); one record per file, or per value of --record-column")
    s.add_argument("--val", nargs="+", metavar="FILE",
                   help="validation records (choose the epoch kept) (default: the last --data record, or the last "
                        "fifth of the only one)")
    s.add_argument("--test", nargs="+", metavar="FILE",
                   help="test records, scored and plotted (default: the validation records)")
    s.add_argument("--inputs", metavar="NAMES",
                   help="comma-separated input columns of --data (default: every column but the outputs, the time "
                        "and the record column; .npz: array u)")
    s.add_argument("--outputs", metavar="NAMES",
                   help="comma-separated output columns of --data (default: the last column; .npz: array y)")
    s.add_argument("--record-column", metavar="NAME",
                   help="column whose value numbers the record each row belongs to (default: one record per file)")
    s.add_argument("--time-column", metavar="NAME",
                   help="column of time stamps in seconds, uniformly spaced: gives the sampling rate")
    s.add_argument("--fs", metavar="HZ|COLUMN",
                   help="sampling rate of --data: a number of Hz, or the name of a column that states it (F-16's Fs) "
                        "(default: from --time-column or an .npz array fs; otherwise unknown, and times are in samples)")
    s.add_argument("--data-dir", help="folder with F16Data_FullMSine_Level*.csv (for --dataset f16)")
    s.add_argument("--cache-dir", help="where simulated data sets are cached (default: ~/.cache/r2dn_np, "
                                       "or R2DN_CACHE_DIR)")
    s.add_argument("--model", choices=model_registry.names(feedback=True), default="r2dn",
                   help="r2dn (LTI system in feedback with an LBDN) or ren (recurrent equilibrium network)")
    s.add_argument("--kind", choices=("contracting", "lipschitz"), default="contracting",
                   help="the guarantee: contracting, or gamma-Lipschitz from input to output (with --gamma)")
    s.add_argument("--gamma", type=float, default=10.0, help="Lipschitz bound for --kind lipschitz (standardised units)")
    s.add_argument("--preset", choices=tuple(sysid.PRESETS), default="quick",
                   help="model sizes and training schedule: tiny, quick, paper or best (listed below)")
    s.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    s.add_argument("--refine", type=int, metavar="N",
                   help="after Adam, N iterations of whole-record refinement (L-BFGS-B on the simulation error of "
                        "whole training records, exact gradients; docs/sysid.md); 0: none (default: the preset's, "
                        "only best refines)")
    s.add_argument("--backend", choices=("numpy", "cupy"), default=None, help=_BACKEND_HELP)
    s.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="floating-point precision of training")
    s.add_argument("--seed", type=int, default=0, help="seed of the initial weights and of the minibatch order")
    s.add_argument("--out", default=None,
                   help="output folder (default: runs/sysid-<data set>-<model>[-<kind>], e.g. "
                        "runs/sysid-boucwen-r2dn; a folder holding another run's results is refused)")
    s.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint.npz (the same command, interrupted)")
    s.add_argument("--overwrite", action="store_true", help="replace the results of another run in --out")
    s.add_argument("--quiet", action="store_true", help="no progress line per epoch")

    s.add_argument("--threads", type=int, default=None, help=_THREADS_HELP)
    s.add_argument("--workers", type=int, default=None,
                   help="processes sharing each gradient pass (default: R2DN_WORKERS, else one per core for "
                        "large passes; r2dn_np.loop.parallel)")

    v = sub.add_parser("verify", help="check gradients, certificates, contraction and Lipschitz bounds",
                       formatter_class=_Help)
    v.add_argument("--model", choices=model_registry.names(feedback=True), default="r2dn",
                   help="model of the fresh random models checked without --params")
    v.add_argument("--kind", choices=("contracting", "lipschitz", "qsr"), default=None,
                   help="default: contracting and lipschitz; qsr draws a random valid (Q, S, R) per size")
    v.add_argument("--gamma", type=float, default=1.0, help="Lipschitz bound of the fresh lipschitz models")
    v.add_argument("--params", help="a saved model (.npz from r2dn sysid or r2dn_np.interface.io.save, or pretrained:NAME) to "
                                    "check instead")
    v.add_argument("--backend", choices=("numpy", "cupy"), default=None, help=_BACKEND_HELP)
    v.add_argument("--seed", type=int, default=0, help="seed of the random models, inputs and searches")
    v.add_argument("--threads", type=int, default=None, help=_THREADS_HELP)

    m = sub.add_parser("simulate", help="run a trained model (model.npz of r2dn sysid) on an input record",
                       formatter_class=_Help)
    m.add_argument("--params", required=True, help="the model: model.npz written by r2dn sysid, or pretrained:NAME, "
                                                   "a model shipped with the package (r2dn_np/data/pretrained)")
    m.add_argument("--input", required=True,
                   help="input record: .csv (one row per sample, one column per input, optional header line) "
                        "or .npz (array 'u' of shape (T, nu), or its only array)")
    m.add_argument("--out", required=True,
                   help="where to write the output: .csv (header of output names) or .npz (array 'y')")
    m.add_argument("--warmup", metavar="FILE",
                   help="an input record (.csv or .npz) run first to bring the model to a state like the system's; "
                        "its outputs are not written (default: start from the model's zero state)")
    m.add_argument("--periodic", action="store_true",
                   help="run the input twice and write the second pass: the steady state for a periodic input")
    m.add_argument("--backend", choices=("numpy", "cupy"), default=None, help=_BACKEND_HELP)
    m.add_argument("--threads", type=int, default=None, help=_THREADS_HELP)

    w = sub.add_parser("sweep", help="run tasks x models x kinds x seeds on Dask and print the table of results "
                                     "(docs/sweep.md)", formatter_class=_Help)
    w.add_argument("--tasks", default="sysid-boucwen",
                   help="comma-separated: sysid-boucwen, sysid-f16, expressivity (default sysid-boucwen)")
    w.add_argument("--models", default="r2dn,ren", help="comma-separated: r2dn, ren (default both)")
    w.add_argument("--kinds", default="contracting", help="comma-separated: contracting, lipschitz")
    w.add_argument("--gamma", type=float, default=10.0, help="Lipschitz bound of kind lipschitz")
    w.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    w.add_argument("--preset", default="quick", help="tiny, quick or paper (expressivity: tiny, quick, full)")
    w.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    w.add_argument("--root", default=os.path.join("runs", "sweep"),
                   help="folder of the runs' folders and the table (default runs/sweep)")
    w.add_argument("--table", action="store_true", help="only gather the finished runs into the table")
    w.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://host:8786); "
                                       "default: a local cluster")
    w.add_argument("--workers", type=int, help="processes of the local cluster (default: one per core)")
    w.add_argument("--serial", action="store_true", help="run in this process, one run after another, without Dask")
    w.add_argument("--data-dir", help="folder with F16Data_FullMSine_Level*.csv (for sysid-f16)")
    w.add_argument("--cache-dir", help="where simulated data sets are cached (default: ~/.cache/r2dn_np)")
    w.add_argument("--retries", type=int, default=1, help="retries of a run that failed (default 1)")
    w.add_argument("--interval", type=float, default=30.0, help="seconds between progress lines (default 30)")
    w.add_argument("--threads", type=int, default=None, help="BLAS threads of each run (default 1)")
    return ap


# BLAS thread pools cost more than they give on the small matrices of these models (a
# 64-sample training step ran 6 times slower with OpenBLAS's default threads on a busy 2-core
# machine): each command runs under a thread limit, 1 unless the user chose otherwise.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _thread_limit(threads):
    """``--threads``, else None (no limit) where a variable of ``_THREAD_VARS`` already chose, else 1."""
    if threads is not None:
        return threads
    return None if any(os.environ.get(v) for v in _THREAD_VARS) else 1


_PATH_FLAGS = ("out", "data_dir", "cache_dir", "params", "input", "root", "warmup")


def _check_arguments(args):
    """Argument values argparse's types let through, refused with the flag named."""
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be an integer >= 1; got {args.threads}")
    if getattr(args, "epochs", None) is not None and args.epochs < 1:
        raise UserError(f"--epochs must be >= 1; got {args.epochs}")
    if getattr(args, "refine", None) is not None and args.refine < 0:
        raise UserError(f"--refine must be an integer >= 0 (iterations; 0: none); got {args.refine}")
    if getattr(args, "seeds", None) is not None and args.seeds < 1:
        raise UserError(f"--seeds must be an integer >= 1 (the number of seeds); got {args.seeds}")
    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise UserError(f"--workers must be an integer >= 1; got {args.workers}")
    if getattr(args, "seed", None) is not None and args.seed < 0:
        raise UserError(f"--seed must be an integer >= 0; got {args.seed}")
    gamma = getattr(args, "gamma", None)
    if gamma is not None and not (np.isfinite(gamma) and gamma > 0):
        raise UserError(f"--gamma must be a positive finite number; got {gamma}")
    if args.command == "sysid":
        _resolve_sysid_arguments(args)
    params = getattr(args, "params", None)
    if params and params.startswith(train.PRETRAINED_PREFIX):  # a model shipped with the package
        try:
            args.params = train.pretrained(params[len(train.PRETRAINED_PREFIX):])
        except (ValueError, FileNotFoundError) as exc:
            raise UserError(f"--params {params}: {exc}") from None
    if args.command == "sysid" and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out}: exists and is not a folder (--out names the output folder)")
    for name in ("data_dir", "cache_dir", "root"):  # folders
        value = getattr(args, name, None)
        if value and os.path.exists(value) and not os.path.isdir(value):
            raise UserError(f"--{name.replace('_', '-')} {value}: exists and is not a folder")


def _resolve_sysid_arguments(args):
    """``--dataset`` or ``--data`` (and the options that need ``--data``); the default ``--out``."""
    if args.data and args.dataset:
        raise UserError(f"--data and --dataset {args.dataset}: give one of them (your records or a built-in data set)")
    if not args.data:
        for flag in ("val", "test", "inputs", "outputs", "record_column", "time_column", "fs"):
            if getattr(args, flag) is not None:
                raise UserError(f"--{flag.replace('_', '-')} describes your records and needs --data")
        args.dataset = args.dataset or "boucwen"
    args.fs_column = None
    if args.fs is not None:
        try:
            value = float(args.fs)
        except ValueError:  # a column's name
            args.fs_column, value = args.fs, None
        if value is not None and not (np.isfinite(value) and value > 0):
            raise UserError(f"--fs must be a positive number of Hz or a column's name; got {args.fs}")
        args.fs = value
    if (args.fs is not None or args.fs_column) and args.time_column:
        raise UserError("--fs and --time-column both give the sampling rate; give one of them")
    if args.out is None:
        args.out = sysid.default_out(args)


def _interrupted(args, argv):
    """The interrupt message: for ``r2dn sysid``, the checkpoint and the command that resumes."""
    path = os.path.join(args.out, "checkpoint.npz") if args.command == "sysid" and args.out else None
    if path is None or not os.path.exists(path):
        return f"r2dn {args.command}: interrupted"
    try:
        epoch = f" (epoch {int(io.read_arrays(path)[1]['epoch'])} done)"
    except (OSError, ValueError, KeyError, TypeError):
        epoch = ""
    refining = os.path.join(args.out, "refine_checkpoint.npz")
    if os.path.exists(refining):
        try:
            done = len(io.read_arrays(refining)[1]["history"]["loss"]) - 1
            epoch += f" and {refining} (refinement iteration {done} done)"
        except (OSError, ValueError, KeyError, TypeError):
            pass
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--out" not in argv:
        argv += ["--out", args.out]
    if "--resume" not in argv:
        argv.append("--resume")
    return f"r2dn sysid: interrupted; the checkpoint {path}{epoch} keeps the run: continue it with\n  r2dn {shlex.join(argv)}"


def _os_error_line(args, exc):
    """One line for an OS error, naming the flag whose path it concerns when there is one."""
    where = os.path.abspath(exc.filename) if exc.filename else None
    for name in _PATH_FLAGS:
        value = getattr(args, name, None)
        if value and where and (where == os.path.abspath(value)
                                or where.startswith(os.path.abspath(value) + os.sep)):
            return f"--{name.replace('_', '-')} {value}: {exc.strerror} ({exc.filename})"
    return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror


def _name_the_flag(args, message):
    """``"--params PATH: ..."`` for a message about a path that a flag gave (``"PATH: ..."``)."""
    for name in _PATH_FLAGS:
        value = getattr(args, name, None)
        flag = f"--{name.replace('_', '-')}"
        if value and message.startswith(value) and flag not in message:
            return f"{flag} {message}"
    return message


def main(argv=None):
    """The ``r2dn`` command (``argv=None`` reads ``sys.argv``). BLAS and OpenMP thread pools are
    limited to one thread while it runs (``--threads`` chooses another number; without it, a set
    ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` or ``MKL_NUM_THREADS`` is left to decide)."""
    args = _parser().parse_args(argv)
    try:
        _check_arguments(args)
        with threadpool_limits(limits=_thread_limit(args.threads)):
            if args.command == "sysid":
                return _sysid(args)
            if args.command == "simulate":
                return _simulate(args)
            if args.command == "sweep":
                return _sweep(args)
            return _verify(args)
    except (UserError, BackendError, io.FormatError, sequences.DataError, OSError, ImportError,
            ValueError, TypeError, FloatingPointError) as exc:
        if os.environ.get("R2DN_DEBUG"):  # developers: the full traceback
            raise
        message = _os_error_line(args, exc) if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"r2dn {args.command}: error: {_name_the_flag(args, message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(_interrupted(args, argv), file=sys.stderr)
        return 130
