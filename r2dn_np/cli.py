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
import json
import os
import platform
import shlex
import sys
import textwrap
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from . import __version__
from .checks import certificates, verify
from .interface import io, registry
from .training import linear, train
from .core import supply
from .experiments import sysid
from .core.backend import BackendError, namespace, to_backend
from .data import files, sequences

__all__ = ["main"]


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


def _sysid_writes(out):
    """``(flag, path)`` of the files ``r2dn sysid`` writes into ``out``, the plots per test set
    included (as they exist there now)."""
    import glob

    fixed = [os.path.join(out, name) for name in _RUN_FILES + ("loss.png",)]
    return [("--out", p) for p in fixed + glob.glob(os.path.join(out, "prediction_*.png"))]


def _sysid_reads(args):
    """``(flag, path)`` of the files ``r2dn sysid`` reads: the user's records, or the data set's."""
    if args.data:
        return [(flag, p) for flag, paths in (("--data", args.data), ("--val", args.val), ("--test", args.test))
                for p in paths or ()]
    return _data_files([args.dataset], args.data_dir, args.cache_dir)


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


def _plot(folder, data, predictions, linear_predictions, washout, label):
    """``prediction_<test set>.png`` per test set; ``{test set: file name}``, empty without matplotlib."""
    from .experiments import plots

    written = {}
    unit = "s" if data.info.get("fs_given", True) else "samples"
    for name, rec in data.test.items():
        file = f"prediction_{_safe_name(name)}.png"
        title = (f"{data.name}, test '{name}': free run from the zero state, {rec.y.shape[0]} samples; "
                 f"scores after a washout of {washout} samples")
        if not plots.prediction(os.path.join(folder, file), title, rec.y, predictions[name], linear_predictions[name],
                                data.fs, washout, data.output_names, label, unit):
            return {}
        written[name] = file
    return written


def _safe_name(text):
    """``text`` with only letters, digits, ``-``, ``_`` and ``.`` (for file and folder names)."""
    out = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)).strip("-.")
    return out or "data"


# what r2dn sysid writes; a folder holding one of them holds a run's results
_RUN_FILES = ("results.json", "model.npz", "checkpoint.npz", "refine_checkpoint.npz")


def _default_out(args):
    """``runs/sysid-<data set>-<model>[-<kind>]``: runs on other data or models never share a folder."""
    name = args.dataset if not args.data else os.path.splitext(os.path.basename(args.data[0]))[0]
    kind = "" if args.kind == "contracting" else f"-{args.kind}"
    return os.path.join("runs", f"sysid-{_safe_name(name)}-{args.model}{kind}")


def _check_out_folder(args):
    """Refuse to write into a folder holding another run's results (unless --overwrite or --resume)."""
    held = [f for f in _RUN_FILES if os.path.exists(os.path.join(args.out, f))]
    if held and not (args.overwrite or args.resume):
        raise UserError(f"--out {args.out}: holds a run's results ({', '.join(held)}); choose another --out, add "
                        "--resume to continue that run, or --overwrite to replace it")


def _check_resumable(path, model, opts, fields):
    """With --resume, refuse a checkpoint of another run before any data are generated."""
    if not os.path.exists(path):
        return
    try:
        fingerprint = io.read_arrays(path)[1].get("fingerprint") or {}
    except (io.FormatError, OSError) as exc:
        raise UserError(f"{path}: cannot be resumed ({exc}); choose another --out or --overwrite") from None
    config = fingerprint.get("config") or {}
    differ = [k for k, v in fields.items() if v is not None and k in config and config[k] != json.loads(json.dumps(v))]
    if fingerprint.get("model") != model:
        differ.insert(0, "model")
    elif fingerprint.get("options") != json.loads(json.dumps(dataclasses.asdict(opts))):
        theirs = fingerprint.get("options") or {}
        differ += [k for k, v in dataclasses.asdict(opts).items() if theirs.get(k) != v]
    if differ:
        raise UserError(f"--resume: {path} is a checkpoint of a different run ({', '.join(differ[:4])} differ); "
                        "choose another --out, or --overwrite to start again there")


def _expected_seconds(dataset, preset):
    """What generating ``dataset`` under ``preset`` makes and roughly how long it takes (CPU)."""
    d = preset.data
    if dataset == "boucwen":
        from .data import boucwen

        s = boucwen.Settings(**d)
        seconds = (s.n_train + 1) * 0.8 * s.period / 8192 * (s.transient_periods + 1) / 2 + 6 * s.sweep_seconds / 204
        return (f"{s.n_train + 1} multisine records of {s.period} samples and a {s.sweep_seconds:g} s sine sweep, "
                f"simulated at 15 kHz", seconds)
    from .data import pendulum

    s = pendulum.Settings(**d)
    return f"{s.n_train + 1} pendulum records of {s.period} samples", 1.0


def _load_data(args, preset):
    from .data import boucwen, f16, pendulum

    if args.data:
        read = {"inputs": _names(args.inputs), "outputs": _names(args.outputs), "record_column": args.record_column,
                "time_column": args.time_column, "fs_column": args.fs_column}
        parts = [files.load_records(paths, flag=flag, **read) if paths else None
                 for paths, flag in ((args.data, "--data"), (args.val, "--val"), (args.test, "--test"))]
        data, notes = files.dataset(_safe_name(os.path.splitext(os.path.basename(args.data[0]))[0]), *parts,
                                    fs=args.fs)
        for note in notes:
            say(f"  {note}")
        return data
    if args.dataset == "f16":
        if args.data_dir:
            say(f"data: reading the seven F-16 records from {args.data_dir} (about a second)")
        return f16.load(args.data_dir)
    cache = args.cache_dir
    what, seconds = _expected_seconds(args.dataset, preset)
    say(f"data: {what}; generating takes about {max(1, round(seconds))} s of CPU the first time (more on a busy "
        f"machine), then it is read from the cache ({cache or _sim_cache_dir()})")
    if args.dataset == "boucwen":
        return boucwen.load(boucwen.Settings(**preset.data), cache_dir=cache)
    return pendulum.load(pendulum.Settings(**preset.data), cache_dir=cache)


def _sim_cache_dir():
    from .data import _sim

    return _sim.default_cache_dir()


def _names(text):
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


CONVENTIONS = {
    "test": "free run from the model's zero state over the whole test record; the first {washout} samples "
            "(washout) are not scored",
    "official_test": "steady state: the periodic test input is run twice from the zero state and the second "
                     "period scored, all 8192 samples (the benchmark's figure of merit)",
    "from_rest": "test rmse_from_rest: free run from the model's zero state over the whole test record, every "
                 "sample scored (no washout)",
}


def _sysid(args):
    files_mode = bool(args.data)
    preset = sysid.PRESETS[args.preset]["files" if files_mode else args.dataset].for_model(args.model)
    xp = namespace(args.backend)  # BackendError before any work
    module = train.get_model(args.model)
    what = f"your records ({', '.join(args.data)})" if files_mode else f"data set {args.dataset}"
    kind = args.kind + (f", gamma={args.gamma:g}" if args.kind == "lipschitz" else "")
    say(f"r2dn sysid: {args.model} ({kind}) on {what}, preset {args.preset}; results in {args.out}")
    _refuse_overwrite(_sysid_writes(args.out), _sysid_reads(args))  # even with --overwrite
    _check_out_folder(args)
    os.makedirs(args.out, exist_ok=True)  # an unwritable folder fails here, before any work
    checkpoint = os.path.join(args.out, "checkpoint.npz")
    start = time.perf_counter()

    fields = dict(nx=preset.nx, nv=preset.nv, hidden=preset.hidden, kind=args.kind,
                  gamma=args.gamma if args.kind == "lipschitz" else None, **preset.model)
    if not files_mode:
        opts = dataclasses.replace(preset.options, seed=args.seed, dtype=args.dtype,
                                   **({"epochs": args.epochs} if args.epochs else {}))
        if args.resume and not args.overwrite:
            _check_resumable(checkpoint, args.model, opts, fields)
    data = _load_data(args, preset)
    if files_mode:
        preset, opts, notes = sysid.settings(args.preset, data, args.model, args.epochs, args.seed, args.dtype)
        for note in notes:
            say(f"  {note}")
        if args.resume and not args.overwrite:
            _check_resumable(checkpoint, args.model, opts, fields)
    rate = f"fs={data.fs:g} Hz" if data.info.get("fs_given", True) else "fs unknown (times in samples)"
    say(f"data: {data.name}, {len(data.train)} training record(s) of {data.train[0].u.shape[0]} samples, "
        f"{len(data.val)} validation, {len(data.test)} test; inputs {', '.join(data.input_names)}; outputs "
        f"{', '.join(data.output_names)}; {rate}  ({time.perf_counter() - start:.1f} s)")

    cfg = sysid.make_config(module, nu=data.nu, ny=data.ny, **fields)

    t0 = time.perf_counter()
    say(f"linear baseline: fitting output-error models of orders 1 to {preset.linear_order} ...")
    baseline = linear.fit(data.train, data.val, max_order=preset.linear_order, washout=opts.washout)
    say(f"linear baseline: order {baseline.order} per output (best on validation; {time.perf_counter() - t0:.1f} s)")

    say(f"training {args.model} ({kind}), preset {args.preset}: {opts.epochs} epochs"
        f"{' (resuming from ' + checkpoint + ' if it is there)' if args.resume else ''}")
    t0 = time.perf_counter()
    result = train.fit(module, cfg, data, opts, backend=xp, checkpoint=checkpoint,
                       resume=args.resume and not args.overwrite, log=None if args.quiet else say,
                       workers=args.workers)
    train_seconds = time.perf_counter() - t0
    refined = _refine(args, module, cfg, preset, opts, data, result)
    if refined is not None:
        result = result._replace(params=refined["params"])

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
                    "rmse_from_rest": sequences.rmse(preds[n], data.test[n].y),
                    "linear_rmse_from_rest": sequences.rmse(lin_preds[n], data.test[n].y), **per_output}
    published = _published(data.name)
    label = f"{args.model.upper()} ({cfg.kind})"
    benchmark = _boucwen_benchmark(module, cfg, result, baseline, label) if data.name == "boucwen" else None

    explicit, cache = module.direct_to_explicit(cfg, result.params)
    report = certificates.certify(cfg, explicit, cache)
    model_path = os.path.join(args.out, "model.npz")
    io.save(model_path, cfg, result.params, metadata={"scaler": result.scaler.to_dict(), "dataset": data.name,
                                                       "input_names": list(data.input_names),
                                                       "output_names": list(data.output_names),
                                                       "fs": data.fs, "washout": opts.washout})

    seconds = result.history["seconds"]
    done = result.epochs_run - result.resumed_from
    here = seconds[result.resumed_from:]
    results = {
        "r2dn_np_version": __version__,
        "arguments": vars(args),
        "dataset": data.name, "data_info": data.info, "fs": data.fs,
        "model": args.model, "config": cfg.to_dict(), "preset": args.preset,
        "options": dataclasses.asdict(opts), "backend": args.backend or "numpy", "dtype": args.dtype,
        "seed": args.seed, "epochs_run": result.epochs_run, "epochs_this_run": done,
        "resumed_from": result.resumed_from, "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early, "best_val_nrmse": result.best_val_nrmse,
        "seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
        "train_seconds": train_seconds, "total_seconds": time.perf_counter() - start,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "blas_threads": _thread_pools()},
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
        "refine": None if refined is None else _refine_summary(refined, module, cfg, data, opts, tests, benchmark),
    }
    plotted = _plot(args.out, data, preds, lin_preds, opts.washout, label)
    if plotted:
        results["files"]["plots"] = plotted
        from .experiments import plots

        plots.loss_curve(os.path.join(args.out, "loss.png"), result.history,
                         f"{data.name}: {label}, preset {args.preset}, seed {args.seed}", result.best_epoch)
        results["files"]["loss_plot"] = "loss.png"
    with io.atomic_write(os.path.join(args.out, "results.json")) as fh:
        fh.write(json.dumps(results, indent=2, default=float).encode("utf-8"))

    say("")
    units = data.output_names[0] if data.ny == 1 else "the outputs' units"
    say(f"test: {results['conventions']['test']}")
    w = max(12, *(len(n) for n in tests))
    say(f"{'test set':<{w}} {'NRMSE':>8} {'linear':>8}   {'RMSE':>10} {'linear':>10}   (NRMSE = RMSE / std of "
        f"the true output; RMSE in {units})")
    for n, r in tests.items():
        say(f"{n:<{w}} {r['nrmse']:>8.4f} {r['linear_nrmse']:>8.4f}   {r['rmse']:>10.3e} {r['linear_rmse']:>10.3e}")
    if data.ny > 1:
        say("")
        for line in _per_output_table(tests, data.output_names, args.model.upper(), published):
            say(line)
    if benchmark is not None:
        say("\nBouc-Wen benchmark, official multisine test: simulation RMSE over all 8192 samples [m], in steady "
            "state\n(the input run twice from the zero state, the second period scored; so it differs from the "
            "multisine row above)")
        for method, rmse, source in benchmark:
            say(f"  {method:<22} {rmse:.2e}   {source}")
        say("from rest (the input run once from the zero state, every sample scored): RMSE [m] "
            + "; ".join(f"{n} {r['rmse_from_rest']:.2e} (linear {r['linear_rmse_from_rest']:.2e})"
                        for n, r in tests.items()))
    if refined is not None:
        _say_refined(results["refine"], results["official_test"])
    say(f"\ncertificate ({cfg.kind}): {'holds' if report.holds else 'FAILS'}")
    say(report.table())
    mean_here = f"{float(np.mean(here)):.2f} s/epoch" if here else "no epoch left to run"
    say(f"\n{done} epoch{'' if done == 1 else 's'} in {train_seconds:.0f} s ({mean_here})"
        + (f", resumed after epoch {result.resumed_from} ({result.epochs_run} in all)" if result.resumed_from else "")
        + f"; best validation NRMSE {result.best_val_nrmse:.4f} at epoch {result.best_epoch}")
    written = [os.path.join(args.out, "results.json"), model_path]
    if plotted:
        written += [os.path.join(args.out, f) for f in plotted.values()] + [os.path.join(args.out, "loss.png")]
    say(f"wrote {', '.join(written)}")
    if not plotted:
        say("no plots: matplotlib is not installed (pip install 'r2dn_np[plots]')")
    return 0 if report.holds else 1


def _refine_options(args, preset, opts):
    """The refinement of this run (the preset's, or ``--refine N`` iterations), or None."""
    refine = preset.refine
    if args.refine is not None:
        refine = None if args.refine == 0 else dataclasses.replace(refine or train.RefineOptions(),
                                                                   iterations=args.refine)
    # the loss and the validation of the Adam stage, so the start is scored as Adam scored it
    return None if refine is None else dataclasses.replace(refine, washout=opts.washout,
                                                           val_samples=opts.val_samples)


def _refine(args, module, cfg, preset, opts, data, result):
    """Whole-record refinement after Adam, when the preset or ``--refine`` asks for it:
    ``{"params", "adam_params", "scaler", "history", "seconds", "options"}``, or None."""
    options = _refine_options(args, preset, opts)
    if options is None:
        return None
    say(f"whole-record refinement: L-BFGS-B, at most {options.iterations} iterations on the simulation error of "
        f"whole training records (the Adam result is iteration 0)")
    t0 = time.perf_counter()
    params, history = train.refine(module, cfg, result.params, data, result.scaler, options,
                                   log=None if args.quiet else say, workers=args.workers,
                                   checkpoint=os.path.join(args.out, "refine_checkpoint.npz"),
                                   resume=args.resume and not args.overwrite)
    return {"params": params, "adam_params": result.params, "scaler": result.scaler, "history": history,
            "seconds": time.perf_counter() - t0, "options": options}


def _refine_summary(refined, module, cfg, data, opts, tests, benchmark):
    """``results.json``'s ``refine``: options, history, time, and the Adam result's test scores
    beside the refined model's (and the Bouc-Wen figure of merit)."""
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
        from .data import boucwen

        out["official_rmse_before"] = boucwen.official_rmse(lambda u: train.simulate(
            module, cfg, refined["adam_params"], [sequences.Record(u, u)], refined["scaler"])[0])
        out["official_rmse_after"] = benchmark[0][1]
    return out


def _say_refined(summary, official):
    h = summary["history"]
    say(f"\nwhole-record refinement: {h['iterations']} L-BFGS-B iterations, {h['evaluations'][-1]} loss-and-gradient "
        f"passes in {summary['seconds']:.0f} s ({h['message']}); training loss {h['loss'][0]:.4e} -> "
        f"{h['loss'][-1]:.4e}, validation NRMSE {h['val_nrmse'][0]:.4f} -> {h['best_val_nrmse']:.4f} (iteration "
        f"{h['best_iteration']} kept)")
    for n, before in summary["test_before"].items():
        after = summary["test_after"][n]
        say(f"  test {n}: NRMSE {before['nrmse']:.4f} after Adam -> {after['nrmse']:.4f} refined")
    if official is not None:
        say(f"  official multisine test (steady state): RMSE {summary['official_rmse_before']:.3e} m after Adam -> "
            f"{summary['official_rmse_after']:.3e} m refined")


SIZES = [(1, 2, 3, 1), (2, 4, 6, 2), (3, 8, 8, 1)]


def _verify(args):
    xp = namespace(args.backend)
    rows = []
    if args.params:
        loaded = io.load(args.params, backend=args.backend)
        cfg = loaded.config
        if cfg.model not in registry.names(feedback=True):
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
    _refuse_overwrite([("--out", args.out)], [("--params", args.params), ("--input", args.input)]
                      + ([("--warmup", args.warmup)] if args.warmup else []))
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
    from .experiments import sweep

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
    s.add_argument("--dataset", choices=("boucwen", "pendulum", "f16"), default=None,
                   help="built-in data set: boucwen (simulated as the benchmark makes it), pendulum (simulated), "
                        "f16 (the benchmark's files, --data-dir) (default: boucwen, unless --data is given)")
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
    s.add_argument("--model", choices=registry.names(feedback=True), default="r2dn",
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
                   help="processes sharing each gradient pass (default: one per core for large passes, "
                        "or R2DN_WORKERS; r2dn_np.loop.parallel)")

    v = sub.add_parser("verify", help="check gradients, certificates, contraction and Lipschitz bounds",
                       formatter_class=_Help)
    v.add_argument("--model", choices=registry.names(feedback=True), default="r2dn",
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


def _thread_pools():
    """``{library: threads}`` of the thread pools in use now (for results.json)."""
    return {f"{p['user_api']}:{p['internal_api']}": p["num_threads"] for p in threadpool_info()}


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
        args.out = _default_out(args)


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
