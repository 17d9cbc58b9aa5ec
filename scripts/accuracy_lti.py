"""Accuracy of the R2DN with a dense against a structured LTI part at (about) equal parameter count,
on the Bouc-Wen benchmark with the ``r2dn sysid`` quick preset (``docs/sysid.md``).

Models (contracting kind, nv 32, LBDN (32,), as the quick preset): ``dense`` nx 16 (the preset's);
``diagonal_plus_lowrank`` nx 32, rank 4 and ``diagonal`` nx 32 (``docs/derivations/r2dn.md`` section 7),
chosen for a parameter count within 2 % of the dense model's. Each is trained by ``train.fit`` with the
preset's options and the same seed, then scored on the benchmark's official multisine test
(``boucwen.official_rmse``) and the test records' NRMSE. Writes a CSV.

Usage::

    OMP_NUM_THREADS=1 python scripts/accuracy_lti.py --out accuracy [--epochs 250] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from r2dn_np import certificates, r2dn, train, tree
from r2dn_np.cli import PRESETS
from r2dn_np.data import boucwen, sequences

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _rows import write_rows  # noqa: E402

MODELS = (("dense", dict(nx=16)), ("diagonal_plus_lowrank", dict(nx=32, rank=4)), ("diagonal", dict(nx=32)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="accuracy_lti")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=[m for m, _ in MODELS])
    args = parser.parse_args(argv)
    preset = PRESETS["quick"]["boucwen"]
    data = boucwen.load(boucwen.Settings(**preset.data))
    opts = dataclasses.replace(preset.options, seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    rows = []
    for lti, kw in MODELS:
        if lti not in args.models:
            continue
        cfg = r2dn.Config(nu=data.nu, nv=preset.nv, ny=data.ny, hidden=preset.hidden, lti=lti, **kw)
        t0 = time.perf_counter()
        result = train.fit(r2dn, cfg, data, opts, log=None, workers=1)
        seconds = time.perf_counter() - t0

        def model(u, cfg=cfg, result=result):
            return train.simulate(r2dn, cfg, result.params, [sequences.Record(u, u)], result.scaler)[0]

        names = list(data.test)
        preds = train.simulate(r2dn, cfg, result.params, [data.test[n] for n in names], result.scaler)
        nrmse = {n: train.evaluate([p], [data.test[n]], opts.washout)[0] for n, p in zip(names, preds)}
        explicit, cache = r2dn.direct_to_explicit(cfg, result.params)
        row = dict(lti=lti, nx=cfg.nx, rank=cfg.rank, params=tree.size(result.params), epochs=opts.epochs,
                   seed=args.seed, official_rmse_m=boucwen.official_rmse(model),
                   **{f"nrmse_{n}": v for n, v in nrmse.items()}, train_s=seconds,
                   certificate=certificates.certify(cfg, explicit, cache).holds)
        rows.append(row)
        print(row, flush=True)
    return write_rows(args.out + ".csv", rows)


if __name__ == "__main__":
    main()
