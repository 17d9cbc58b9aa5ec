"""Time the REN against the R2DN on the same footing: same time loop, same backend, same dtype.

Two passes per model, both including the parameterisation (the map runs once per rollout):

- forward: ``direct_to_explicit`` + rollout;
- forward+backward: map + rollout + BPTT + map VJP (``value_and_grad`` with a mean-squared loss).

Sizes: the authors' F16 models (REN nx 75, nv 150; R2DN nx 75, nv 75 with an LBDN of three hidden
layers of 87; nu 2, ny 3; batch 64, T 256), and two smaller ones. Both models are the contracting
kind with ReLU, as in the authors' timing scripts. Reports the median and minimum of repeated runs
after one warm-up run, the parameter counts and the R2DN/REN time ratio, and writes a CSV.

Usage::

    OMP_NUM_THREADS=1 python scripts/bench_ren_vs_r2dn.py --out bench_out [--quick] [--backend numpy]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time

import numpy as np

from r2dn_np import losses, r2dn, ren, tree
from r2dn_np.backend import asarray, namespace

# name: (REN (nu, nx, nv, ny), R2DN (nu, nx, nv, ny, hidden), batch, T)
SIZES = {
    "f16": ((2, 75, 150, 3), (2, 75, 75, 3, (87, 87, 87)), 64, 256),
    "medium": ((2, 32, 64, 3), (2, 32, 32, 3, (40, 40)), 64, 128),
    "small": ((2, 8, 16, 3), (2, 8, 8, 3, (16,)), 32, 64),
}


def _models(size):
    (nu, nx, nv, ny), (rnu, rnx, rnv, rny, hidden), B, T = SIZES[size]
    ren_cfg = ren.Config(nu, nx, nv, ny, activation="relu", kind="contracting")
    r2dn_cfg = r2dn.Config(rnu, rnx, rnv, rny, hidden=hidden, activation="relu", output_layer="sandwich",
                           kind="contracting")
    return [("REN", ren, ren_cfg), ("R2DN", r2dn, r2dn_cfg)], B, T


def _sync(xp, a):
    """Wait for the device (CuPy runs asynchronously); a no-op on the host."""
    if hasattr(xp, "cuda") or "cupy" in getattr(xp, "__name__", ""):
        import cupy

        cupy.cuda.Device().synchronize()
    return a


def _time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def bench(size, dtype, backend, repeats):
    models, B, T = _models(size)
    xp = namespace(backend)
    rows = []
    for name, module, cfg in models:
        direct = module.init(cfg, seed=0, backend=backend, dtype=dtype)
        rng = np.random.default_rng(0)
        U = asarray(rng.standard_normal((T, B, cfg.nu)), xp, dtype)
        x0 = asarray(np.zeros((B, cfg.nx)), xp, dtype)
        target = asarray(rng.standard_normal((T, B, cfg.ny)), xp, dtype)

        def forward():
            explicit, _ = module.direct_to_explicit(cfg, direct)
            _sync(xp, module.forward(cfg, explicit, x0, U)[1])

        def forward_backward():
            _, grads = module.value_and_grad(cfg, direct, x0, U, lambda Y: losses.mse(Y, target))
            _sync(xp, grads.direct.X)

        for label, fn in (("forward", forward), ("forward+backward", forward_backward)):
            med, best = _time(fn, repeats)
            rows.append(dict(size=size, model=name, dtype=dtype, backend=backend, nu=cfg.nu, nx=cfg.nx,
                             nv=cfg.nv, ny=cfg.ny, hidden=" ".join(map(str, getattr(cfg, "hidden", ()))),
                             batch=B, T=T, n_params=tree.size(direct), pass_=label, repeats=repeats,
                             median_s=med, min_s=best))
            print(f"{size:>7} {dtype:>8} {name:>5} {label:>17}: median {med * 1e3:9.2f} ms, "
                  f"min {best * 1e3:9.2f} ms  ({tree.size(direct)} parameters)", flush=True)
    for label in ("forward", "forward+backward"):
        ren_row, r2dn_row = (r for r in rows if r["pass_"] == label)
        ratio = r2dn_row["median_s"] / ren_row["median_s"]
        for r in (ren_row, r2dn_row):
            r["r2dn_over_ren_median"] = ratio
            r["r2dn_over_ren_min"] = r2dn_row["min_s"] / ren_row["min_s"]
        print(f"{size:>7} {dtype:>8} {label:>17}: R2DN/REN time ratio {ratio:.3f} (median), "
              f"(the R2DN takes {ratio:.0%} of the REN's time)", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the CSV")
    parser.add_argument("--quick", action="store_true", help="small sizes, two repeats (a smoke test)")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 5; quick 2)")
    args = parser.parse_args(argv)

    sizes = ["small", "medium"] if args.quick else ["small", "medium", "f16"]
    repeats = args.repeats or (2 if args.quick else 5)
    rows = []
    for size in sizes:
        for dtype in args.dtypes:
            rows.extend(bench(size, dtype, args.backend, repeats))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "bench_ren_vs_r2dn.csv")
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[k if k != "pass_" else "pass" for k in rows[0]])
        writer.writeheader()
        for r in rows:
            writer.writerow({("pass" if k == "pass_" else k): v for k, v in r.items()})
    print(f"wrote {path} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")


if __name__ == "__main__":
    main()
