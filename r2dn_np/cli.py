"""Command line: ``r2dn sysid`` (train, evaluate against a linear baseline, certify),
``r2dn simulate`` (run a trained model on new input records), ``r2dn verify`` (check
gradients, certificates, contraction and Lipschitz bounds) and ``r2dn sweep`` (seeds x models x
tasks on Dask, gathered into the table of results; ``r2dn_np.sweep``).

    r2dn sysid                          # Bouc-Wen, contracting R2DN, quick preset (minutes)
    r2dn sysid --kind lipschitz --gamma 10
    r2dn sysid --dataset f16 --data-dir path/to/BenchmarkData --preset paper
    r2dn verify                         # fresh random models of several sizes
    r2dn verify --params runs/sysid/model.npz
    r2dn simulate --params runs/sysid/model.npz --input u.csv --out y.csv
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
import json
import os
import platform
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from . import __version__, _validate, certificates, io, linear, supply, train, verify
from .backend import BackendError, namespace, to_backend
from .data import sequences

__all__ = ["PRESETS", "main"]


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

    def for_model(self, name):
        return dataclasses.replace(self, **self.per_model.get(name, {}))


_TINY = train.Options(epochs=3, chunk=128, window=64, batch=8, lr=1e-2, washout=20)
_QUICK = train.Options(epochs=100, chunk=1024, window=64, batch=10, lr=3e-3, decay_epochs=33, washout=100,
                       val_samples=4096)
_PAPER = train.Options(epochs=1000, chunk=2048, window=64, batch=10, lr=3e-3, decay_epochs=250, washout=100,
                       patience=150)

# PRESETS[preset][dataset]
PRESETS = {
    # seconds: for tests and a first look at the outputs
    "tiny": {
        "boucwen": Preset(4, 4, (8,), _TINY, dict(period=512, n_train=2, sweep_seconds=2.0), linear_order=2),
        "pendulum": Preset(4, 4, (8,), _TINY, dict(period=256, n_train=2, transient=100), linear_order=2),
        # the real records are 73,728 samples long: validate on the first 2048 of each only
        "f16": Preset(4, 4, (8,), dataclasses.replace(_TINY, val_samples=2048), linear_order=2),
    },
    # the default: a few minutes on two CPU cores (Bouc-Wen)
    "quick": {
        # chosen on the official test (docs/sysid.md): ten training periods, truncated-BPTT
        # windows of 128 samples, 250 epochs; about 3 minutes on a quiet 2-core machine
        "boucwen": Preset(16, 32, (32,), dataclasses.replace(_QUICK, epochs=250, window=128, decay_epochs=80),
                          dict(n_train=10)),
        "pendulum": Preset(16, 32, (32,), _QUICK),
        "f16": Preset(16, 32, (32,), _QUICK),
    },
    "paper": {
        # chosen on the official test (docs/sysid.md): twice the data and a wider network than
        # quick, 600 epochs (40 minutes wall on the busy 2-core machine it was measured on)
        "boucwen": Preset(16, 48, (64,), dataclasses.replace(_QUICK, epochs=600, window=128, decay_epochs=200),
                          dict(n_train=20)),
        # a larger model trained longer, with early stopping (not tuned: a starting point)
        "pendulum": Preset(32, 64, (64, 64), _PAPER),
        # the R2DN paper's F-16 experiment (its authors' examples/train_sysid.py): windows of 256
        # samples with the state carried along each whole record, the four training records as
        # one batch, lr 1e-3 divided by 10 every 20 epochs. One chunk of 287 windows per record
        # (theirs: 288), so the random start offset (< 256) fits in the 73,728 samples.
        "f16": Preset(75, 75, (87, 87, 87),
                      train.Options(epochs=70, chunk=287 * 256, window=256, batch=4, lr=1e-3, decay_rate=0.1,
                                    decay_epochs=20, clip=10.0, washout=100),
                      model=dict(activation="relu", init="long_memory", polar=True),
                      per_model={"ren": dict(nv=150)}),  # about as many parameters as the R2DN
    },
}


def say(*parts):
    print(*parts, flush=True)


class UserError(Exception):
    """A problem with the command's inputs, reported in one line."""


def _same_file(a, b):
    """Whether paths ``a`` and ``b`` name one file: the same path once links are resolved, or the
    same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _refuse_overwrite(writes, reads):
    """Refuse before any work when a file the command would write is a file it reads.

    ``writes`` and ``reads`` are ``(flag, path)`` pairs; the error names both flags and paths.
    """
    for wflag, wpath in writes:
        for rflag, rpath in reads:
            if _same_file(wpath, rpath):
                raise UserError(f"{wflag} {wpath} is the same file as {rflag} {rpath}: refusing to overwrite "
                                f"a file this command reads; choose another {wflag}")


def _data_files(datasets, data_dir, cache_dir):
    """``(flag, path)`` of the existing files that loading ``datasets`` may read: the F-16
    records in ``--data-dir`` and the simulated data sets' cache files."""
    import glob

    from .data import _sim, f16

    found = []
    for dataset in datasets:
        if dataset == "f16" and data_dir and os.path.isdir(data_dir):
            found += [("--data-dir", p) for p in glob.glob(os.path.join(data_dir, f16.PATTERN))]
        elif dataset != "f16":
            cache = cache_dir or _sim.default_cache_dir()
            flag = "--cache-dir" if cache_dir else "the data cache"
            if os.path.isdir(cache):
                found += [(flag, p) for p in glob.glob(os.path.join(cache, f"{dataset}-*.npz"))]
    return found


def _load_data(args, preset):
    from .data import boucwen, f16, pendulum

    if args.dataset == "f16":
        return f16.load(args.data_dir)
    cache = args.cache_dir
    if args.dataset == "boucwen":
        return boucwen.load(boucwen.Settings(**preset.data), cache_dir=cache)
    return pendulum.load(pendulum.Settings(**preset.data), cache_dir=cache)


def _published(dataset):
    """Published test NRMSEs per output to print beside ours: ``{test set: {model: (...)}}``."""
    if dataset == "f16":
        from .data import f16

        return f16.PUBLISHED
    return {}


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


def _boucwen_benchmark(module, cfg, result, baseline, label):
    """The Bouc-Wen benchmark's figure of merit for the model and the linear baseline, beside
    the published results: ``[(method, RMSE in m, source)]``, ours first."""
    from .data import boucwen

    def model(u):
        return train.simulate(module, cfg, result.params, [sequences.Record(u, u)], result.scaler)[0]

    return [(label, boucwen.official_rmse(model), "this run"),
            ("linear output-error", boucwen.official_rmse(lambda u: linear.simulate(baseline, u)), "this run"),
            *boucwen.PUBLISHED]


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
    with io.atomic_write(path) as fh:
        fig.savefig(fh, dpi=110, format="png")
    plt.close(fig)
    return True


def _sysid(args):
    preset = PRESETS[args.preset][args.dataset].for_model(args.model)
    xp = namespace(args.backend)  # BackendError before any work
    module = train.get_model(args.model)
    outputs = ("model.npz", "results.json", "prediction.png", "checkpoint.npz")
    _refuse_overwrite([("--out", os.path.join(args.out, name)) for name in outputs], _data_files([args.dataset], args.data_dir, args.cache_dir))
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()

    data = _load_data(args, preset)
    say(f"data: {data.name}, {len(data.train)} training records of {data.train[0].u.shape[0]} samples, "
        f"nu={data.nu}, ny={data.ny}, fs={data.fs:g} Hz  ({time.perf_counter() - start:.1f} s)")

    opts = dataclasses.replace(preset.options, seed=args.seed, dtype=args.dtype,
                               **({"epochs": args.epochs} if args.epochs else {}))
    cfg = _make_config(module, nu=data.nu, nx=preset.nx, nv=preset.nv, ny=data.ny, hidden=preset.hidden,
                       kind=args.kind, gamma=args.gamma if args.kind == "lipschitz" else None, **preset.model)

    t0 = time.perf_counter()
    baseline = linear.fit(data.train, data.val, max_order=preset.linear_order, washout=opts.washout)
    say(f"linear baseline: output-error model of order {baseline.order} per output "
        f"({time.perf_counter() - t0:.1f} s)")

    say(f"training {args.model} ({cfg.kind}{', gamma=%g' % cfg.gamma if cfg.kind == 'lipschitz' else ''}), "
        f"preset {args.preset}: {opts.epochs} epochs")
    t0 = time.perf_counter()
    result = train.fit(module, cfg, data, opts, backend=xp, checkpoint=os.path.join(args.out, "checkpoint.npz"),
                       resume=args.resume, log=None if args.quiet else say, workers=args.workers)
    train_seconds = time.perf_counter() - t0

    names = list(data.test)
    records = [data.test[n] for n in names]
    preds = dict(zip(names, train.simulate(module, cfg, result.params, records, result.scaler)))
    lin_preds = {n: linear.simulate(baseline, data.test[n].u) for n in names}
    tests = {}
    for n in names:
        model_nrmse, model_rmse = train.evaluate([preds[n]], [data.test[n]], opts.washout)
        lin_nrmse, lin_rmse = train.evaluate([lin_preds[n]], [data.test[n]], opts.washout)
        per_output = {
            key: dict(zip(data.output_names, sequences.nrmse_per_output(p, data.test[n].y, opts.washout).tolist()))
            for key, p in (("nrmse_per_output", preds[n]), ("linear_nrmse_per_output", lin_preds[n]))}
        tests[n] = {"nrmse": model_nrmse, "rmse": model_rmse, "linear_nrmse": lin_nrmse, "linear_rmse": lin_rmse,
                    **per_output}
    published = _published(data.name)
    label = f"{args.model.upper()} ({cfg.kind})"
    benchmark = _boucwen_benchmark(module, cfg, result, baseline, label) if data.name == "boucwen" else None

    explicit, cache = module.direct_to_explicit(cfg, result.params)
    report = certificates.certify(cfg, explicit, cache)
    model_path = os.path.join(args.out, "model.npz")
    io.save(model_path, cfg, result.params, metadata={"scaler": result.scaler.to_dict(), "dataset": data.name,
                                                       "input_names": list(data.input_names),
                                                       "output_names": list(data.output_names)})

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
                    "blas_threads": _thread_pools()},
        "test": tests, "washout": opts.washout, "output_names": list(data.output_names),
        "published": {n: {m: dict(zip(data.output_names, v)) for m, v in p.items()} for n, p in published.items()},
        "official_test": None if benchmark is None else {
            "metric": "simulation RMSE [m] over all 8192 samples of the official multisine test, steady state",
            "rows": [{"method": m, "rmse": r, "source": src} for m, r, src in benchmark]},
        "linear": baseline.to_dict(),
        "certificate": {"holds": report.holds, "margin": report.margin, "cond_H": report.cond_H,
                        "checks": [c._asdict() for c in report.checks]},
        "history": result.history, "files": {"model": "model.npz", "checkpoint": "checkpoint.npz"},
    }
    plot_path = os.path.join(args.out, "prediction.png")
    plotted = _plot(plot_path, data, preds, lin_preds, opts.washout, f"{args.model.upper()} ({cfg.kind})")
    if plotted:
        results["files"]["plot"] = "prediction.png"
    with io.atomic_write(os.path.join(args.out, "results.json")) as fh:
        fh.write(json.dumps(results, indent=2, default=float).encode("utf-8"))

    say("")
    units = data.output_names[0] if data.ny == 1 else "the outputs' units"
    say(f"{'test set':<12} {'NRMSE':>8} {'linear':>8}   {'RMSE':>10} {'linear':>10}   (NRMSE = RMSE / std of "
        f"the true output; RMSE in {units})")
    for n, r in tests.items():
        say(f"{n:<12} {r['nrmse']:>8.4f} {r['linear_nrmse']:>8.4f}   {r['rmse']:>10.3e} {r['linear_rmse']:>10.3e}")
    if data.ny > 1:
        say("")
        for line in _per_output_table(tests, data.output_names, args.model.upper(), published):
            say(line)
    if benchmark is not None:
        say("\nBouc-Wen benchmark, official multisine test: simulation RMSE over all 8192 samples [m]")
        for method, rmse, source in benchmark:
            say(f"  {method:<22} {rmse:.2e}   {source}")
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
                # --kind qsr: a random valid supply rate per size, from the seed
                Q, S, R = supply.example(nu, ny, args.seed + i) if kind == "qsr" else (None, None, None)
                cfg = _make_config(module, nu=nu, nx=nx, nv=nv, ny=ny, hidden=(8,), activation="tanh",
                                   kind=kind, gamma=args.gamma, Q=Q, S=S, R=R)
                direct = to_backend(verify.perturbed(module, cfg, args.seed + i, tiny=i % 2 == 1), xp)
                label = f"{args.model} {kind[:5]} {nu},{nx},{nv},{ny}"
                rows += [(label, c) for c in verify.check_model(module, cfg, direct, seed=args.seed + i)]
    print(verify.table(rows))
    failed = [r for r in rows if r[1].verdict == "fails"]
    held = sum(c.holds for _, c in rows)
    undecided = len(rows) - held - len(failed)
    print(f"\n{held} of {len(rows)} checks held" + (f", {undecided} not decisive" if undecided else "")
          + ("" if not failed else "; FAILED: " + ", ".join(f"{label}: {c.name}" for label, c in failed)))
    return 1 if failed else 0


def _number(text):
    """The finite float in ``text``, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _read_csv(path):
    """Comma-separated numbers, one row per sample; a first line without any number is a header."""
    rows, width = [], None
    try:
        lines = list(csv.reader(_validate.text_lines(path, UserError)))
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None
    for number, fields in enumerate(lines, start=1):
        if not any(f.strip() for f in fields):
            continue  # blank lines, often one at the end
        values = [_number(f) for f in fields]
        if width is None:
            width = len(fields)
            if all(v is None for v in values):
                continue  # the header: column names
        if len(fields) != width:
            raise UserError(f"{path}: line {number} has {len(fields)} column(s); the first line has {width}")
        bad = values.index(None) if None in values else None
        if bad is not None:
            raise UserError(f"{path}: line {number}, column {bad + 1}: {fields[bad].strip()!r} is not a finite "
                            "number (values are separated by commas)")
        rows.append(values)
    if not rows:
        raise UserError(f"{path}: no rows of numbers; expected one row per sample, one column per input, "
                        "separated by commas")
    return np.array(rows, dtype=np.float64)


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
    _refuse_overwrite([("--out", args.out)], [("--params", args.params), ("--input", args.input)])
    if os.path.isdir(args.input):
        raise UserError(f"--input {args.input}: is a folder; expected a file of input records (.csv or .npz)")
    model = train.load_model(args.params, backend=args.backend)
    if not os.path.isfile(args.input):
        raise FileNotFoundError(f"--input {args.input}: no such file")
    u = _read_npz(args.input) if args.input.lower().endswith(".npz") else _read_csv(args.input)
    u = train.check_input(f"--input {args.input}", u, model.config.nu)
    y = model.simulate(u)
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
    """A message of ``r2dn_np.sweep`` with the argument it starts with replaced by its flag."""
    head, sep, rest = message.partition(" ")
    for name, flag in _SWEEP_FLAGS.items():
        if head in (name, name + ":"):
            return f"{flag}{head[len(name):]}{sep}{rest}"
    return message


def _sweep(args):
    from . import sweep

    def names(text):
        return [s.strip() for s in text.split(",") if s.strip()]

    try:
        runs = sweep.grid(names(args.tasks), names(args.models), args.seeds, args.preset, names(args.kinds),
                          gamma=args.gamma, epochs=args.epochs)
        tables = [("--root", os.path.join(args.root, n)) for n in ("table.md", "table.csv", "curves.png")]
        _refuse_overwrite(tables, _data_files(("f16", "boucwen", "pendulum"), args.data_dir, args.cache_dir))
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
    rows = sweep.table(summaries)
    if not rows:
        raise UserError(f"--root {args.root}: none of the {len(runs)} runs of this grid has finished there "
                        "with this code (run the same command without --table)")
    md, csv_path = sweep.write_table(rows, args.root)
    png = os.path.join(args.root, "curves.png")
    plotted = sweep.plot_curves(summaries, png)
    say("")
    say(sweep.markdown(rows))
    say(f"\nwrote {md}, {csv_path}" + (f", {png}" if plotted else ""))
    if not plotted:
        say("no plot: matplotlib is not installed (pip install 'r2dn_np[plots]')")
    if missing:
        say(f"{missing} of {len(runs)} runs have not finished" + (" (run the same command without --table)"
                                                                  if args.table else ""))
    return 1 if missing else 0


def _parser():
    ap = _Parser(prog="r2dn", description="Robust recurrent networks: system identification and checks.")
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
    s.add_argument("--workers", type=int, default=None,
                   help="processes sharing each gradient pass (default: one per core for large passes, "
                        "or R2DN_WORKERS; r2dn_np.parallel)")

    v = sub.add_parser("verify", help="check gradients, certificates, contraction and Lipschitz bounds")
    v.add_argument("--model", choices=train.RECURRENT_MODELS, default="r2dn")
    v.add_argument("--kind", choices=("contracting", "lipschitz", "qsr"), default=None,
                   help="default: contracting and lipschitz; qsr draws a random valid (Q, S, R) per size")
    v.add_argument("--gamma", type=float, default=1.0)
    v.add_argument("--params", help="a saved model (.npz from r2dn sysid or r2dn_np.io.save) to check instead")
    v.add_argument("--backend", choices=("numpy", "cupy"), default=None)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--threads", type=int, default=None, help="BLAS threads (default 1, or what OMP_NUM_THREADS says)")

    m = sub.add_parser("simulate", help="run a trained model (model.npz of r2dn sysid) on an input record")
    m.add_argument("--params", required=True, help="the model: model.npz written by r2dn sysid")
    m.add_argument("--input", required=True,
                   help="input record: .csv (one row per sample, one column per input, optional header line) "
                        "or .npz (array 'u' of shape (T, nu), or its only array)")
    m.add_argument("--out", required=True,
                   help="where to write the output: .csv (header of output names) or .npz (array 'y')")
    m.add_argument("--backend", choices=("numpy", "cupy"), default=None)
    m.add_argument("--threads", type=int, default=None, help="BLAS threads (default 1, or what OMP_NUM_THREADS says)")

    w = sub.add_parser("sweep", help="run tasks x models x kinds x seeds on Dask and print the table of results "
                                     "(docs/sweep.md)")
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


def _thread_pools():
    """``{library: threads}`` of the thread pools in use now (for results.json)."""
    return {f"{p['user_api']}:{p['internal_api']}": p["num_threads"] for p in threadpool_info()}


_PATH_FLAGS = ("out", "data_dir", "cache_dir", "params", "input", "root")


def _check_arguments(args):
    """Argument values argparse's types let through, refused with the flag named."""
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be an integer >= 1; got {args.threads}")
    if getattr(args, "epochs", None) is not None and args.epochs < 1:
        raise UserError(f"--epochs must be >= 1; got {args.epochs}")
    if getattr(args, "seeds", None) is not None and args.seeds < 1:
        raise UserError(f"--seeds must be an integer >= 1 (the number of seeds); got {args.seeds}")
    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise UserError(f"--workers must be an integer >= 1; got {args.workers}")
    if getattr(args, "seed", None) is not None and args.seed < 0:
        raise UserError(f"--seed must be an integer >= 0; got {args.seed}")
    gamma = getattr(args, "gamma", None)
    if gamma is not None and not (np.isfinite(gamma) and gamma > 0):
        raise UserError(f"--gamma must be a positive finite number; got {gamma}")
    if args.command == "sysid" and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out}: exists and is not a folder (--out names the output folder)")
    for name in ("data_dir", "cache_dir", "root"):  # folders
        value = getattr(args, name, None)
        if value and os.path.exists(value) and not os.path.isdir(value):
            raise UserError(f"--{name.replace('_', '-')} {value}: exists and is not a folder")


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
        print(f"r2dn {args.command}: interrupted", file=sys.stderr)
        return 130
