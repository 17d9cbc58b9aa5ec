"""Time the REN against the R2DN on the same footing: same time loop, same backend, same dtype.

Two passes per model, both including the parameterisation (the map runs once per rollout):

- forward: ``direct_to_explicit`` + rollout;
- forward+backward: map + rollout + BPTT + map VJP (``value_and_grad`` with a mean-squared loss).

Sizes (``SIZES``): the authors' F16 models (REN nx 75, nv 150; R2DN nx 75, nv 75 with an LBDN of three
hidden layers of 87; nu 2, ny 3; batch 64, T 256), and the smallest and largest models of their
expressivity sweep (batch 64, T 128). Both models are the contracting kind; the R2DN's LBDN ends with
a Sandwich layer, as the authors build it. The two models run in turn, repeat by repeat, so they see
the same background load. Reports the median and minimum over the repeats after one warm-up run, the
parameter counts and the R2DN/REN time ratio (median of the per-repeat ratios, and ratio of the
minima), and writes a CSV.

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

from r2dn_np.training import losses
from r2dn_np import r2dn, ren
from r2dn_np.core import tree
from r2dn_np.core.backend import asarray, namespace

# name: (REN Config kwargs, R2DN Config kwargs, batch, T)
SIZES = {
    # the F16 models of the R2DN paper's system-identification comparison
    "f16": (dict(nu=2, nx=75, nv=150, ny=3, activation="relu"),
            dict(nu=2, nx=75, nv=75, ny=3, hidden=(87, 87, 87), activation="relu"), 64, 256),
    # the smallest and largest of the paper's expressivity sweep (nu = nx = ny = 1; REN tanh with nv
    # neurons, R2DN nv = 16 and four ReLU layers of nh), timed there at batch 64, horizon 128
    "expr_small": (dict(nu=1, nx=1, nv=20, ny=1, activation="tanh"),
                   dict(nu=1, nx=1, nv=16, ny=1, hidden=(8,) * 4, activation="relu"), 64, 128),
    "expr_large": (dict(nu=1, nx=1, nv=100, ny=1, activation="tanh"),
                   dict(nu=1, nx=1, nv=16, ny=1, hidden=(128,) * 4, activation="relu"), 64, 128),
    "small": (dict(nu=2, nx=8, nv=16, ny=3, activation="relu"),
              dict(nu=2, nx=8, nv=8, ny=3, hidden=(16,), activation="relu"), 32, 64),
}


def _models(size):
    ren_kw, r2dn_kw, B, T = SIZES[size]
    ren_cfg = ren.Config(**ren_kw, kind="contracting")
    r2dn_cfg = r2dn.Config(**r2dn_kw, output_layer="sandwich", kind="contracting")
    return [("REN", ren, ren_cfg), ("R2DN", r2dn, r2dn_cfg)], B, T


def _sync(xp, a):
    """Wait for the device (CuPy runs asynchronously); a no-op on the host."""
    if "cupy" in getattr(xp, "__name__", ""):
        import cupy

        cupy.cuda.Device().synchronize()
    return a


def _interleaved(fns, repeats):
    """Times of each function, run in turn (REN, R2DN, REN, ...) after one warm-up each, so
    that both see the same background load on a shared machine."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def _passes(module, cfg, backend, dtype, B, T):
    xp = namespace(backend)
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

    return tree.size(direct), {"forward": forward, "forward+backward": forward_backward}


def bench(size, dtype, backend, repeats):
    models, B, T = _models(size)
    built = [(name, cfg) + _passes(module, cfg, backend, dtype, B, T) for name, module, cfg in models]
    rows = []
    for label in ("forward", "forward+backward"):
        times = _interleaved([fns[label] for *_, fns in built], repeats)
        ratios = [b / a for a, b in zip(*times)]  # R2DN / REN, repeat by repeat
        for (name, cfg, n_params, _), ts in zip(built, times):
            rows.append(dict(size=size, model=name, dtype=dtype, backend=backend, nu=cfg.nu, nx=cfg.nx,
                             nv=cfg.nv, ny=cfg.ny, hidden=" ".join(map(str, getattr(cfg, "hidden", ()))),
                             activation=cfg.activation, batch=B, T=T, n_params=n_params, pass_=label,
                             repeats=repeats, median_s=statistics.median(ts), min_s=min(ts),
                             r2dn_over_ren_median=statistics.median(ratios),
                             r2dn_over_ren_min=min(times[1]) / min(times[0])))
            print(f"{size:>10} {dtype:>8} {name:>5} {label:>17}: median {rows[-1]['median_s'] * 1e3:9.2f} ms, "
                  f"min {rows[-1]['min_s'] * 1e3:9.2f} ms  ({n_params} parameters)", flush=True)
        print(f"{size:>10} {dtype:>8} {label:>17}: R2DN/REN time ratio {statistics.median(ratios):.3f} "
              f"(median of paired repeats), {rows[-1]['r2dn_over_ren_min']:.3f} (ratio of minima)", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the CSV")
    parser.add_argument("--quick", action="store_true", help="small sizes, two repeats (a smoke test)")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 5; quick 2)")
    args = parser.parse_args(argv)

    sizes = ["small", "expr_small"] if args.quick else ["expr_small", "expr_large", "f16"]
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
