"""Time the REN's acyclic equilibrium layer against the full (cyclic) one, same model otherwise.

For each size, three layers: ``acyclic`` (exact row-by-row solve), ``full`` solved by plain
Peaceman-Rachford (``layer_solver="pr"``, the default) and by its Anderson acceleration
(``"anderson"``). Each pass is ``value_and_grad`` (map + rollout + BPTT + map VJP, mean-squared loss), the
contracting kind, at the same seed (so every field but the full layer's ``Y2`` is the same). The
layers run in turn, repeat by repeat, after one warm-up; prints and writes the median and minimum, and
the mean number of splitting iterations per time step (forward solve) of the full layers.

Usage::

    OMP_NUM_THREADS=1 python scripts/bench_ren_layer.py --out bench_out [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from r2dn_np.layers import equilibrium_full
from r2dn_np.training import losses
from r2dn_np import ren

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _rows import write_rows  # noqa: E402

# name: (Config kwargs, batch, T)
SIZES = {
    "small": (dict(nu=2, nx=8, nv=16, ny=3, activation="tanh"), 32, 64),
    "f16_nv150": (dict(nu=2, nx=75, nv=150, ny=3, activation="relu"), 64, 64),
}
LAYERS = (("acyclic", {}), ("full-anderson", dict(layer="full", layer_solver="anderson")),
          ("full-pr", dict(layer="full", layer_solver="pr")))


def _count_iterations():
    """Wrap equilibrium_full._iterate to record the evaluations of each forward solve."""
    counts = []
    inner = equilibrium_full._iterate

    def counted(T, u0, scale, tol, max_iter, solver):
        result = inner(T, u0, scale, tol, max_iter, solver)
        counts.append(result.iterations)
        return result

    equilibrium_full._iterate = counted
    return counts


def run(size, repeats):
    kw, B, T = SIZES[size]
    rng = np.random.default_rng(0)
    U = rng.standard_normal((T, B, kw["nu"]))
    target = rng.standard_normal((T, B, kw["ny"]))
    loss = lambda Y: losses.mse(Y, target)  # noqa: E731
    models = []
    for name, extra in LAYERS:
        cfg = ren.Config(**kw, **extra)
        models.append((name, cfg, ren.init(cfg, seed=0)))
    counts = _count_iterations()
    times = {name: [] for name, _, _ in models}
    iters = {}
    for rep in range(repeats + 1):
        for name, cfg, direct in models:
            del counts[:]
            t0 = time.perf_counter()
            ren.value_and_grad(cfg, direct, None, U, loss, workers=1)
            dt = time.perf_counter() - t0
            if rep:
                times[name].append(dt)
            # forward solves are the first T of the pass; backward solves follow
            iters[name] = float(np.mean(counts[:T])) if counts else 0.0
    rows = []
    for name, _, _ in models:
        rows.append(dict(size=size, layer=name, B=B, T=T, median_ms=1e3 * statistics.median(times[name]),
                         min_ms=1e3 * min(times[name]), iterations_per_step=iters[name]))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_ren_layer")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="the small size only")
    args = parser.parse_args(argv)
    rows = []
    for size in (["small"] if args.quick else list(SIZES)):
        rows += run(size, args.repeats)
    print(f"{'size':<10} {'layer':<14} {'median ms':>10} {'min ms':>10} {'iters/step':>10}")
    for r in rows:
        print(f"{r['size']:<10} {r['layer']:<14} {r['median_ms']:>10.1f} {r['min_ms']:>10.1f} "
              f"{r['iterations_per_step']:>10.1f}")
    return write_rows(args.out + ".csv", rows)


if __name__ == "__main__":
    main()
