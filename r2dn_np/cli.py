"""Command line: ``r2dn sysid`` (train, evaluate against a linear baseline, certify) and
``r2dn verify`` (check gradients, certificates, contraction and Lipschitz bounds).

    r2dn sysid                          # Bouc-Wen, contracting R2DN, quick preset (minutes)
    r2dn sysid --kind lipschitz --gamma 10
    r2dn sysid --dataset f16 --data-dir path/to/BenchmarkData --preset paper
    r2dn verify                         # fresh random models of several sizes
    r2dn verify --params runs/sysid/model.npz

Errors a user can cause (a missing folder, a malformed file, no GPU) print one line and exit
with status 1 (``R2DN_DEBUG=1`` shows the traceback instead); ``r2dn sysid`` exits with status 1
when the trained model's certificate fails and ``r2dn verify`` when any check fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import numpy as np

from . import __version__, certificates, io, linear, train, verify
from .backend import BackendError, namespace, to_backend
from .data import sequences

__all__ = ["PRESETS", "main"]


@dataclasses.dataclass(frozen=True)
class Preset:
    nx: int
    nv: int
    hidden: tuple
    options: train.Options
    boucwen: dict  # overrides of boucwen.Settings
    pendulum: dict  # overrides of pendulum.Settings
    linear_order: int = 6


PRESETS = {
    # seconds: for tests and a first look at the outputs
    "tiny": Preset(4, 4, (8,), train.Options(epochs=3, chunk=128, window=64, batch=8, lr=1e-2, washout=20),
                   dict(period=512, n_train=2, transient=256, substeps=2),
                   dict(period=256, n_train=2, transient=100), linear_order=2),
    # the default: a few minutes on two CPU cores
    "quick": Preset(16, 32, (32,), train.Options(epochs=100, chunk=1024, window=64, batch=10, lr=3e-3,
                                                 decay_epochs=33, washout=100, val_samples=4096),
                    {}, {}),
    # a larger model trained longer, with early stopping (not tuned: a starting point)
    "paper": Preset(32, 64, (64, 64), train.Options(epochs=1000, chunk=2048, window=64, batch=10, lr=3e-3,
                                                    decay_epochs=250, washout=100, patience=150),
                    {}, {}),
}


def say(*parts):
    print(*parts, flush=True)


class UserError(Exception):
    """A problem with the command's inputs, reported in one line."""


def _load_data(args, preset):
    from .data import boucwen, f16, pendulum

    if args.dataset == "f16":
        return f16.load(args.data_dir)
    cache = args.cache_dir
    if args.dataset == "boucwen":
        return boucwen.load(boucwen.Settings(**preset.boucwen), cache_dir=cache)
    return pendulum.load(pendulum.Settings(**preset.pendulum), cache_dir=cache)


def _make_config(module, **kw):
    """``module.Config`` from the options it has (a REN has no ``hidden``, say)."""
    fields = {f.name for f in dataclasses.fields(module.Config)}
    return module.Config(**{k: v for k, v in kw.items() if k in fields and v is not None})


def _plot(path, data, predictions, linear_predictions, washout, label):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(data.test)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 3.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        rec = data.test[name]
        T = rec.y.shape[0]
        sl = slice(washout, min(T, washout + 600))  # a window long enough to see the waveform
        t = np.arange(T)[sl] / data.fs
        ax.plot(t, rec.y[sl, 0], "k", lw=1.5, label="true")
        ax.plot(t, predictions[name][sl, 0], "C0", lw=1, label=label)
        ax.plot(t, linear_predictions[name][sl, 0], "C1--", lw=1, label="linear")
        ax.set_title(f"{data.name}: test '{name}' ({data.output_names[0]})")
        ax.set_xlabel("time [s]")
        ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _sysid(args):
    preset = PRESETS[args.preset]
    xp = namespace(args.backend)  # BackendError before any work
    module = train.get_model(args.model)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()

    data = _load_data(args, preset)
    say(f"data: {data.name}, {len(data.train)} training records of {data.train[0].u.shape[0]} samples, "
        f"nu={data.nu}, ny={data.ny}, fs={data.fs:g} Hz  ({time.perf_counter() - start:.1f} s)")

    opts = dataclasses.replace(preset.options, seed=args.seed, dtype=args.dtype,
                               **({"epochs": args.epochs} if args.epochs else {}))
    cfg = _make_config(module, nu=data.nu, nx=preset.nx, nv=preset.nv, ny=data.ny, hidden=preset.hidden,
                       kind=args.kind, gamma=args.gamma if args.kind == "lipschitz" else None)

    t0 = time.perf_counter()
    baseline = linear.fit(data.train, data.val, max_order=preset.linear_order, washout=opts.washout)
    say(f"linear baseline: output-error model of order {baseline.order} per output "
        f"({time.perf_counter() - t0:.1f} s)")

    say(f"training {args.model} ({cfg.kind}{', gamma=%g' % cfg.gamma if cfg.kind == 'lipschitz' else ''}), "
        f"preset {args.preset}: {opts.epochs} epochs")
    t0 = time.perf_counter()
    result = train.fit(module, cfg, data, opts, backend=xp, checkpoint=os.path.join(args.out, "checkpoint.npz"),
                       resume=args.resume, log=None if args.quiet else say)
    train_seconds = time.perf_counter() - t0

    names = list(data.test)
    records = [data.test[n] for n in names]
    preds = dict(zip(names, train.simulate(module, cfg, result.params, records, result.scaler)))
    lin_preds = {n: linear.simulate(baseline, data.test[n].u) for n in names}
    tests = {}
    for n in names:
        model_nrmse, model_rmse = train.evaluate([preds[n]], [data.test[n]], opts.washout)
        lin_nrmse, lin_rmse = train.evaluate([lin_preds[n]], [data.test[n]], opts.washout)
        tests[n] = {"nrmse": model_nrmse, "rmse": model_rmse, "linear_nrmse": lin_nrmse, "linear_rmse": lin_rmse}

    explicit, cache = module.direct_to_explicit(cfg, result.params)
    report = certificates.certify(cfg, explicit, cache)
    model_path = os.path.join(args.out, "model.npz")
    io.save(model_path, cfg, result.params, metadata={"scaler": result.scaler.to_dict(), "dataset": data.name})

    seconds = result.history["seconds"]
    results = {
        "r2dn_np_version": __version__,
        "arguments": vars(args),
        "dataset": data.name, "data_info": data.info, "fs": data.fs,
        "model": args.model, "config": cfg.to_dict(), "preset": args.preset,
        "options": dataclasses.asdict(opts), "backend": args.backend or "numpy", "dtype": args.dtype,
        "seed": args.seed, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early, "best_val_nrmse": result.best_val_nrmse,
        "seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
        "train_seconds": train_seconds, "total_seconds": time.perf_counter() - start,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "blas_threads": {v: os.environ.get(v) for v in _THREAD_VARS}},
        "test": tests, "washout": opts.washout, "linear": baseline.to_dict(),
        "certificate": {"holds": report.holds, "margin": report.margin, "cond_H": report.cond_H,
                        "checks": [c._asdict() for c in report.checks]},
        "history": result.history, "files": {"model": "model.npz", "checkpoint": "checkpoint.npz"},
    }
    plot_path = os.path.join(args.out, "prediction.png")
    plotted = _plot(plot_path, data, preds, lin_preds, opts.washout, f"{args.model.upper()} ({cfg.kind})")
    if plotted:
        results["files"]["plot"] = "prediction.png"
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2, default=float)

    say("")
    units = data.output_names[0] if data.ny == 1 else "the outputs' units"
    say(f"{'test set':<12} {'NRMSE':>8} {'linear':>8}   {'RMSE':>10} {'linear':>10}   (NRMSE = RMSE / std of "
        f"the true output; RMSE in {units})")
    for n, r in tests.items():
        say(f"{n:<12} {r['nrmse']:>8.4f} {r['linear_nrmse']:>8.4f}   {r['rmse']:>10.3e} {r['linear_rmse']:>10.3e}")
    say(f"\ncertificate ({cfg.kind}): {'holds' if report.holds else 'FAILS'}")
    say(report.table())
    say(f"\n{result.epochs_run} epochs in {train_seconds:.0f} s ({results['seconds_per_epoch']:.2f} s/epoch), "
        f"best validation NRMSE {result.best_val_nrmse:.4f} at epoch {result.best_epoch}")
    say(f"wrote {os.path.join(args.out, 'results.json')}, {model_path}"
        + (f", {plot_path}" if plotted else ""))
    if not plotted:
        say("no plot: matplotlib is not installed (pip install 'r2dn_np[plots]')")
    return 0 if report.holds else 1


SIZES = [(1, 2, 3, 1), (2, 4, 6, 2), (3, 8, 8, 1)]


def _verify(args):
    xp = namespace(args.backend)
    rows = []
    if args.params:
        loaded = io.load(args.params, backend=args.backend)
        cfg = loaded.config
        if cfg.model not in train.RECURRENT_MODELS:
            raise UserError(f"{args.params}: holds a {cfg.model!r} model; r2dn verify checks r2dn and ren models")
        module = train.get_model(cfg.model)
        label = f"{cfg.model} {cfg.kind} (file)"
        rows += [(label, c) for c in verify.check_model(module, cfg, loaded.params, seed=args.seed)]
    else:
        module = train.get_model(args.model)
        kinds = [args.kind] if args.kind else ["contracting", "lipschitz"]
        for kind in kinds:
            for i, (nu, nx, nv, ny) in enumerate(SIZES):
                cfg = _make_config(module, nu=nu, nx=nx, nv=nv, ny=ny, hidden=(8,), activation="tanh",
                                   kind=kind, gamma=args.gamma)
                direct = to_backend(verify.perturbed(module, cfg, args.seed + i, tiny=i % 2 == 1), xp)
                label = f"{args.model} {kind[:5]} {nu},{nx},{nv},{ny}"
                rows += [(label, c) for c in verify.check_model(module, cfg, direct, seed=args.seed + i)]
    print(verify.table(rows))
    failed = [r for r in rows if not r[1].holds]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} checks passed" + ("" if not failed else "; FAILED: "
          + ", ".join(f"{label}: {c.name}" for label, c in failed)))
    return 1 if failed else 0


def _parser():
    ap = argparse.ArgumentParser(prog="r2dn", description="Robust recurrent networks: system identification and checks.")
    ap.add_argument("--version", action="version", version=f"r2dn_np {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sysid", help="train a model on an identification benchmark, compare with a linear model, certify it")
    s.add_argument("--dataset", choices=("boucwen", "pendulum", "f16"), default="boucwen")
    s.add_argument("--data-dir", help="folder with F16Data_FullMSine_Level*.csv (for --dataset f16)")
    s.add_argument("--cache-dir", help="where simulated data sets are cached (default: ~/.cache/r2dn_np)")
    s.add_argument("--model", choices=train.RECURRENT_MODELS, default="r2dn")
    s.add_argument("--kind", choices=("contracting", "lipschitz"), default="contracting")
    s.add_argument("--gamma", type=float, default=10.0, help="Lipschitz bound for --kind lipschitz (standardised units)")
    s.add_argument("--preset", choices=tuple(PRESETS), default="quick")
    s.add_argument("--epochs", type=int, help="override the preset's number of epochs")
    s.add_argument("--backend", choices=("numpy", "cupy"), default=None)
    s.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=os.path.join("runs", "sysid"), help="output folder (default runs/sysid)")
    s.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz if it is there")
    s.add_argument("--quiet", action="store_true", help="no progress line per epoch")

    s.add_argument("--threads", type=int, default=None, help="BLAS threads (default 1, or what OMP_NUM_THREADS says)")

    v = sub.add_parser("verify", help="check gradients, certificates, contraction and Lipschitz bounds")
    v.add_argument("--model", choices=train.RECURRENT_MODELS, default="r2dn")
    v.add_argument("--kind", choices=("contracting", "lipschitz"), default=None, help="default: both")
    v.add_argument("--gamma", type=float, default=1.0)
    v.add_argument("--params", help="a saved model (.npz from r2dn sysid or r2dn_np.io.save) to check instead")
    v.add_argument("--backend", choices=("numpy", "cupy"), default=None)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--threads", type=int, default=None, help="BLAS threads (default 1, or what OMP_NUM_THREADS says)")
    return ap


# BLAS thread pools cost more than they give on the small matrices of these models (a
# 64-sample training step ran 6 times slower with OpenBLAS's default threads on a busy 2-core
# machine); the variables must be set before NumPy loads, so the command restarts itself once.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_CHILD = "R2DN_CLI_THREADS_SET"


def _restart_with_threads(threads):
    env = dict(os.environ)
    for var in _THREAD_VARS:
        if threads is not None:
            env[var] = str(threads)
        else:
            env.setdefault(var, "1")
    if all(env.get(v) == os.environ.get(v) for v in _THREAD_VARS):
        return
    env[_CHILD] = "1"
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "r2dn_np", *sys.argv[1:]], env)


def main(argv=None):
    """The ``r2dn`` command. ``argv=None`` reads ``sys.argv`` and, the first time, restarts the
    process with single-threaded BLAS (``--threads`` chooses another number)."""
    args = _parser().parse_args(argv)
    if args.threads is not None and args.threads < 1:
        print(f"r2dn {args.command}: error: --threads must be >= 1; got {args.threads}", file=sys.stderr)
        return 1
    if argv is None and not os.environ.get(_CHILD):
        _restart_with_threads(args.threads)
    try:
        if args.command == "sysid":
            if args.epochs is not None and args.epochs < 1:
                raise UserError(f"--epochs must be >= 1; got {args.epochs}")
            return _sysid(args)
        return _verify(args)
    except (UserError, BackendError, io.FormatError, sequences.DataError, FileNotFoundError, ImportError,
            ValueError, TypeError, FloatingPointError) as exc:
        if os.environ.get("R2DN_DEBUG"):  # developers: the full traceback
            raise
        print(f"r2dn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"r2dn {args.command}: interrupted", file=sys.stderr)
        return 130
