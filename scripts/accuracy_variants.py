"""Accuracy of model variants at (about) equal parameter count: the R2DN with a dense against a
structured LTI part, and the REN with its acyclic against its full equilibrium layer, on Bouc-Wen
(the ``r2dn sysid`` quick preset, ``docs/sysid.md``) or on F-16 (the paper preset).

Bouc-Wen (``--dataset boucwen``, default). ``--set lti`` (default), contracting kind, nv 32, LBDN
(32,), as the quick preset: ``dense`` nx 16 (the preset's); ``diagonal_plus_lowrank`` nx 32, rank 4
and ``diagonal`` nx 32 (``docs/derivations/r2dn.md`` section 7), chosen for a parameter count within
2 % of the dense model's. ``--set ren-layer``: the REN, contracting kind, nx 16, nv 32, tanh,
``layer="acyclic"`` and ``"full"`` (``docs/derivations/ren.md`` section 7), the same seed, so they
differ only in Y2. Scored on the benchmark's official multisine test (``boucwen.official_rmse``) and
the test records' NRMSE.

F-16 (``--dataset f16 --data-dir DIR``): the paper preset (``experiments.sysid.PRESETS["paper"]
["f16"]``: windows of 256 with the state carried along each record, ReLU, polar, contracting kind).
``--set lti``: ``dense`` nx 75 (the preset's, 97 406 parameters) against ``diagonal_plus_lowrank``
nx 200, rank 16 (95 780; the structured init is ``random``, the preset's ``long_memory`` init draws a
dense A). ``--set ren-layer``: the preset's REN (nx 75, nv 150, ReLU), acyclic (96 985) against full
(119 485: Y2 adds nv^2 parameters). Each model is saved as ``<out>/<set>-<variant>/model.npz`` with
a ``results.json`` (seconds per epoch), so ``scripts/f16_table.py --runs <out>`` scores it (pooled
NRMSE of levels 2, 4, 6). ``--grad-passes N`` instead times N gradient passes (map, rollout, BPTT,
map VJP) on one training batch of F-16 windows, the models in turn, and writes no model.

Each model is trained by ``train.fit`` with the preset's options (``--epochs`` overrides), the same
seed and ``workers=1``. Writes a CSV.

Usage::

    OMP_NUM_THREADS=1 python scripts/accuracy_variants.py --out accuracy [--set lti|ren-layer] [--epochs 250]
    OMP_NUM_THREADS=1 python scripts/accuracy_variants.py --dataset f16 --data-dir DIR --out runs/f16 \\
        --set ren-layer --epochs 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

import numpy as np

from r2dn_np import r2dn, ren
from r2dn_np.checks import certificates
from r2dn_np.core import tree
from r2dn_np.data import boucwen, f16, sequences
from r2dn_np.experiments.sysid import PRESETS
from r2dn_np.interface import io
from r2dn_np.training import losses, train

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _rows import write_rows  # noqa: E402

_F16 = dict(activation="relu", polar=True)
# dataset -> set -> ((name, module, Config kwargs beyond nu, ny), ...)
SETS = {
    "boucwen": {
        "lti": (("dense", r2dn, dict(nx=16, nv=32, hidden=(32,))),
                ("diagonal_plus_lowrank", r2dn, dict(nx=32, nv=32, hidden=(32,), lti="diagonal_plus_lowrank", rank=4)),
                ("diagonal", r2dn, dict(nx=32, nv=32, hidden=(32,), lti="diagonal"))),
        "ren-layer": (("acyclic", ren, dict(nx=16, nv=32, activation="tanh")),
                      ("full", ren, dict(nx=16, nv=32, activation="tanh", layer="full"))),
    },
    "f16": {
        "lti": (("dense", r2dn, dict(nx=75, nv=75, hidden=(87, 87, 87), init="long_memory", **_F16)),
                ("diagonal_plus_lowrank", r2dn, dict(nx=200, nv=75, hidden=(87, 87, 87),
                                                     lti="diagonal_plus_lowrank", rank=16, **_F16))),
        "ren-layer": (("acyclic", ren, dict(nx=75, nv=150, init="long_memory", **_F16)),
                      ("full", ren, dict(nx=75, nv=150, init="long_memory", layer="full", **_F16))),
    },
}


def _time_grad_passes(models, data, opts, passes):
    """Seconds per gradient pass on one batch of training windows, the models in turn per repeat
    (so a load change on the shared machine hits all of them alike)."""
    U, Y = sequences.chunk(data.train, opts.window, [0] * len(data.train))
    U, Y = U[:, :opts.batch, :], Y[:, :opts.batch, :]
    times = {name: [] for name, _, _, _ in models}
    for rep in range(passes + 1):  # the first pass warms up
        for name, module, cfg, params in models:
            t0 = time.process_time()
            module.value_and_grad(cfg, params, None, U, lambda Yp: losses.mse(Yp, Y), workers=1)
            if rep:
                times[name].append(time.process_time() - t0)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="accuracy_variants")
    parser.add_argument("--dataset", choices=tuple(SETS), default="boucwen")
    parser.add_argument("--data-dir", default=None, help="F-16 benchmark folder (--dataset f16)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", choices=("lti", "ren-layer"), default="lti")
    parser.add_argument("--models", nargs="+", default=None, help="names within the set (default all)")
    parser.add_argument("--grad-passes", type=int, default=0,
                        help="F-16: time this many gradient passes per model (CPU seconds) instead of training")
    args = parser.parse_args(argv)
    if args.dataset == "f16":
        if args.data_dir is None:
            parser.error("--dataset f16 needs --data-dir")
        preset = PRESETS["paper"]["f16"]
        data = f16.load(args.data_dir)
    else:
        preset = PRESETS["quick"]["boucwen"]
        data = boucwen.load(boucwen.Settings(**preset.data))
    opts = dataclasses.replace(preset.options, seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    models = []
    for name, module, kw in SETS[args.dataset][args.set]:
        if args.models is None or name in args.models:
            cfg = module.Config(nu=data.nu, ny=data.ny, **kw)
            models.append((name, module, cfg, module.init(cfg, seed=args.seed)))
    if args.grad_passes:
        times = _time_grad_passes(models, data, opts, args.grad_passes)
        rows = [dict(model=cfg.model, variant=name, nx=cfg.nx, params=tree.size(params), B=opts.batch,
                     T=opts.window, cpu_s_median=statistics.median(times[name]), cpu_s_min=min(times[name]),
                     passes=args.grad_passes) for name, _, cfg, params in models]
        for row in rows:
            print(row, flush=True)
        return write_rows(args.out + ".csv", rows)
    rows = []
    for name, module, cfg, _ in models:
        t0 = time.perf_counter()
        result = train.fit(module, cfg, data, opts, log=print, workers=1)
        seconds = time.perf_counter() - t0
        names = list(data.test)
        preds = train.simulate(module, cfg, result.params, [data.test[n] for n in names], result.scaler)
        nrmse = {n: train.evaluate([p], [data.test[n]], opts.washout)[0] for n, p in zip(names, preds)}
        explicit, cache = module.direct_to_explicit(cfg, result.params)
        holds = bool(certificates.certify(cfg, explicit, cache).holds)
        row = dict(model=cfg.model, variant=name, nx=cfg.nx, params=tree.size(result.params), epochs=opts.epochs,
                   seed=args.seed, **{f"nrmse_{n}": v for n, v in nrmse.items()}, train_s=seconds,
                   s_per_epoch=float(np.mean(result.history["seconds"])), certificate=holds)
        if args.dataset == "boucwen":
            def model(u, module=module, cfg=cfg, result=result):
                return train.simulate(module, cfg, result.params, [sequences.Record(u, u)], result.scaler)[0]

            row["official_rmse_m"] = boucwen.official_rmse(model)
        else:  # the layout scripts/f16_table.py scores
            folder = os.path.join(args.out, f"{args.set}-{name}")
            os.makedirs(folder, exist_ok=True)
            io.save(os.path.join(folder, "model.npz"), cfg, result.params,
                    metadata={"scaler": result.scaler.to_dict(), "dataset": data.name,
                              "input_names": list(data.input_names), "output_names": list(data.output_names),
                              "fs": data.fs, "washout": opts.washout})
            with open(os.path.join(folder, "results.json"), "w", encoding="utf-8") as fh:
                json.dump(dict(seed=args.seed, seconds_per_epoch=row["s_per_epoch"], epochs_run=result.epochs_run,
                               certificate={"holds": holds}, variant=name, options=dataclasses.asdict(opts)), fh,
                          indent=2, default=float)
        rows.append(row)
        print(row, flush=True)
    return write_rows(os.path.join(args.out, f"{args.set}.csv") if args.dataset == "f16" else args.out + ".csv",
                      rows)


if __name__ == "__main__":
    main()
