"""Accuracy of model variants on the Bouc-Wen benchmark with the ``r2dn sysid`` quick preset
(``docs/sysid.md``): the R2DN with a dense against a structured LTI part at (about) equal parameter
count, and the REN with its acyclic against its full equilibrium layer.

``--set lti`` (default), contracting kind, nv 32, LBDN (32,), as the quick preset: ``dense`` nx 16 (the
preset's); ``diagonal_plus_lowrank`` nx 32, rank 4 and ``diagonal`` nx 32 (``docs/derivations/r2dn.md``
section 7), chosen for a parameter count within 2 % of the dense model's. ``--set ren-layer``: the REN,
contracting kind, nx 16, nv 32, tanh, ``layer="acyclic"`` and ``"full"`` (``docs/derivations/ren.md``
section 7), the same seed, so they differ only in Y2. Each model is trained by ``train.fit`` with the
preset's options (``--epochs`` overrides) and the same seed, then scored on the benchmark's official
multisine test (``boucwen.official_rmse``) and the test records' NRMSE. Writes a CSV.

Usage::

    OMP_NUM_THREADS=1 python scripts/accuracy_variants.py --out accuracy [--set lti|ren-layer] [--epochs 250]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from r2dn_np.checks import certificates
from r2dn_np import r2dn, ren
from r2dn_np.training import train
from r2dn_np.core import tree
from r2dn_np.cli import PRESETS
from r2dn_np.data import boucwen, sequences

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _rows import write_rows  # noqa: E402

# set -> ((name, module, Config kwargs beyond nu, nv, ny), ...)
SETS = {
    "lti": (("dense", r2dn, dict(nx=16, hidden=(32,))),
            ("diagonal_plus_lowrank", r2dn, dict(nx=32, hidden=(32,), lti="diagonal_plus_lowrank", rank=4)),
            ("diagonal", r2dn, dict(nx=32, hidden=(32,), lti="diagonal"))),
    "ren-layer": (("acyclic", ren, dict(nx=16, activation="tanh")),
                  ("full", ren, dict(nx=16, activation="tanh", layer="full"))),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="accuracy_variants")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", choices=tuple(SETS), default="lti")
    parser.add_argument("--models", nargs="+", default=None, help="names within the set (default all)")
    args = parser.parse_args(argv)
    preset = PRESETS["quick"]["boucwen"]
    data = boucwen.load(boucwen.Settings(**preset.data))
    opts = dataclasses.replace(preset.options, seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    rows = []
    for name, module, kw in SETS[args.set]:
        if args.models is not None and name not in args.models:
            continue
        cfg = module.Config(nu=data.nu, nv=preset.nv, ny=data.ny, **kw)
        t0 = time.perf_counter()
        result = train.fit(module, cfg, data, opts, log=None, workers=1)
        seconds = time.perf_counter() - t0

        def model(u, module=module, cfg=cfg, result=result):
            return train.simulate(module, cfg, result.params, [sequences.Record(u, u)], result.scaler)[0]

        names = list(data.test)
        preds = train.simulate(module, cfg, result.params, [data.test[n] for n in names], result.scaler)
        nrmse = {n: train.evaluate([p], [data.test[n]], opts.washout)[0] for n, p in zip(names, preds)}
        explicit, cache = module.direct_to_explicit(cfg, result.params)
        row = dict(model=cfg.model, variant=name, nx=cfg.nx, params=tree.size(result.params), epochs=opts.epochs,
                   seed=args.seed, official_rmse_m=boucwen.official_rmse(model),
                   **{f"nrmse_{n}": v for n, v in nrmse.items()}, train_s=seconds,
                   certificate=certificates.certify(cfg, explicit, cache).holds)
        rows.append(row)
        print(row, flush=True)
    return write_rows(args.out + ".csv", rows)


if __name__ == "__main__":
    main()
