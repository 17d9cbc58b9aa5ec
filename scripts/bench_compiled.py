"""The compiled time loops against the array-API loops, at the sizes people train with.

Each row times the gradient pass (map, rollout, loss, BPTT, map VJP; ``value_and_grad``'s work)
on both paths, side by side in one process, in interleaved rounds (every round times each path
once, the fastest of ``--calls`` passes), one BLAS thread, CPU time (a shared machine steals wall
time, not CPU time), and keeps the best round: the
Bouc-Wen quick preset's size (batch 10), the F-16 paper preset's R2DN and REN (batch 4, T 256),
and the R2DN paper's timing study (batch 64, T 128: R2DN with an LBDN of 6 x nh, REN with nv
neurons). R2DN rows also give the fraction of the same run's 2048 x 2048 product rate on one core
(``r2dn_np.checks.flops`` counts the pass's multiply-adds; the REN has no such count).

    python scripts/bench_compiled.py                  # paths side by side (minutes)
    python scripts/bench_compiled.py --quick          # fewer sizes and rounds
    python scripts/bench_compiled.py --defaults       # default environment vs 1 thread vs 2 workers
    python scripts/bench_compiled.py --latency        # one step at batch 1, microseconds
    python scripts/bench_compiled.py --out runs/compiled   # also writes runs/compiled.csv

``--defaults`` times the compiled pass as a user gets it (no thread setting: BLAS free to use
every core outside the time loop, ``workers=None``: automatic sharding), against one BLAS thread
in one process and one BLAS thread in each of two processes (``workers=2``).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from r2dn_np.loop import compiled, parallel  # noqa: E402
from r2dn_np.checks import flops
from r2dn_np.training import losses
from r2dn_np import r2dn, ren
from r2dn_np.core import tree

F16 = dict(nu=2, nx=75, ny=3, activation="relu", init="long_memory", polar=True)


def sizes(quick):
    """``(label, module, cfg, T, B)`` of every row."""
    rows = [
        ("Bouc-Wen quick", r2dn, r2dn.Config(1, 16, 32, 1, hidden=(32,)), 128, 10),
        ("F-16 paper R2DN", r2dn, r2dn.Config(nv=75, hidden=(87,) * 3, **F16), 256, 4),
        ("F-16 paper REN", ren, ren.Config(nv=150, **F16), 256, 4),
    ]
    for nh in (8, 96) if quick else (8, 16, 32, 48, 64, 96):
        rows.append((f"study R2DN nh={nh}", r2dn, r2dn.Config(1, 1, 16, 1, hidden=(nh,) * 6), 128, 64))
    for nv in (20, 200) if quick else (20, 60, 100, 200):
        rows.append((f"study REN nv={nv}", ren, ren.Config(1, 1, nv, 1, activation="tanh"), 128, 64))
    return rows


def setup(module, cfg, T, B, seed=0):
    rng = np.random.default_rng(seed)
    direct = module.init(cfg, seed)
    U = rng.standard_normal((T, B, cfg.nu))
    target = rng.standard_normal((T, B, cfg.ny))
    return direct, U, target


def gradient_pass(module, cfg, direct, U, target, jit, workers=1):
    value, grads = module.value_and_grad(cfg, direct, None, U, lambda Y: losses.mse(Y, target),
                                         workers=workers, jit=jit)
    return tree.leaves(grads.direct)[0]


def best_of(fn, calls, clock=time.perf_counter):
    best = float("inf")
    for _ in range(calls):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def gflop(module, cfg, T, B):
    return flops.r2dn_counts(cfg, T, B)["gradient"] / 1e9 if module is r2dn else None


def run_paths(args):
    rows = []
    cases = [(label, m, c, T, B, setup(m, c, T, B)) for label, m, c, T, B in sizes(args.quick)]
    best = {}
    gemm = 0.0
    with threadpool_limits(1):
        for label, m, c, T, B, p in cases:  # warm-up: compilation, buffer pool
            for jit in (True, False):
                gradient_pass(m, c, *p, jit=jit)
        for _ in range(args.rounds):
            gemm = max(gemm, flops.matmul_gflops("numpy", "float64", 2048, 2, clock=time.process_time))
            for label, m, c, T, B, p in cases:
                for jit in (True, False):
                    t = best_of(lambda: gradient_pass(m, c, *p, jit=jit), args.calls, time.process_time)
                    best[label, jit] = min(best.get((label, jit), float("inf")), t)
    for label, m, c, T, B, _ in cases:
        g = gflop(m, c, T, B)
        fast, ref = best[label, True], best[label, False]
        rows.append(dict(size=label, T=T, B=B, array_api_ms=1e3 * ref, compiled_ms=1e3 * fast, speedup=ref / fast,
                         compiled_fraction_of_gemm="" if g is None else g / fast / gemm,
                         array_api_fraction_of_gemm="" if g is None else g / ref / gemm, gemm_gflops=gemm))
    print(f"one BLAS thread, CPU time, best of {args.rounds} rounds x {args.calls} passes; 2048^2 product "
          f"{gemm:.1f} GFLOP/s; load average {os.getloadavg()[0]:.1f}")
    print("| size | T | B | array-API ms | compiled ms | speedup | compiled % of product | array-API % |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        pct = lambda v: "" if v == "" else f"{100 * v:.0f}%"  # noqa: E731
        print(f"| {r['size']} | {r['T']} | {r['B']} | {r['array_api_ms']:.2f} | {r['compiled_ms']:.2f} | "
              f"{r['speedup']:.2f}x | {pct(r['compiled_fraction_of_gemm'])} | {pct(r['array_api_fraction_of_gemm'])} |")
    return rows


MODES = (("default environment", None, None), ("1 BLAS thread", 1, 1), ("1 BLAS thread, 2 workers", 1, 2))


def run_defaults(args):
    """The compiled pass as a user gets it, against the settings it could have chosen."""
    rows = []
    cases = [(label, m, c, T, B, setup(m, c, T, B)) for label, m, c, T, B in sizes(args.quick)]
    best = {}

    def timed(label, m, c, p, threads, workers):
        with threadpool_limits(threads):
            return best_of(lambda: gradient_pass(m, c, *p, jit=None, workers=workers), args.calls)

    try:
        for label, m, c, T, B, p in cases:
            for _, threads, workers in MODES:
                timed(label, m, c, p, threads, workers)
        for _ in range(args.rounds):
            for label, m, c, T, B, p in cases:
                for mode, threads, workers in MODES:
                    t = timed(label, m, c, p, threads, workers)
                    best[label, mode] = min(best.get((label, mode), float("inf")), t)
    finally:
        parallel.shutdown()
    print(f"compiled pass (jit=None), best of {args.rounds} rounds x {args.calls} passes")
    print("| size | " + " | ".join(f"{mode} ms" for mode, _, _ in MODES) + " | default / best |")
    print("|---|" + "---|" * (len(MODES) + 1))
    for label, m, c, T, B, _ in cases:
        times = [best[label, mode] for mode, _, _ in MODES]
        ratio = times[0] / min(times)
        rows.append(dict(size=label, T=T, B=B, **{f"{mode} ms": 1e3 * t for (mode, _, _), t in zip(MODES, times)},
                         default_over_best=ratio))
        print(f"| {label} | " + " | ".join(f"{1e3 * t:.2f}" for t in times) + f" | {ratio:.2f} |")
    return rows


def run_latency(args):
    """One ``step`` at batch 1 with the weights' container reused, as a controller runs it."""
    rows = []
    for label, m, c in (("F-16 paper R2DN", r2dn, r2dn.Config(nv=75, hidden=(87,) * 3, **F16)),
                        ("F-16 paper REN", ren, ren.Config(nv=150, **F16)),
                        ("Bouc-Wen quick R2DN", r2dn, r2dn.Config(1, 16, 32, 1, hidden=(32,)))):
        explicit, _ = m.direct_to_explicit(c, m.init(c, 0))
        rng = np.random.default_rng(0)
        x, u = rng.standard_normal((1, c.nx)), rng.standard_normal((1, c.nu))
        out = {}
        with threadpool_limits(1):
            for jit in (True, False):
                m.step(c, explicit, x, u, jit=jit)
                n = 2000
                best = float("inf")
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    for _ in range(n):
                        m.step(c, explicit, x, u, jit=jit)
                    best = min(best, (time.perf_counter() - t0) / n)
                out[jit] = best
        rows.append(dict(size=label, compiled_us=1e6 * out[True], array_api_us=1e6 * out[False],
                         speedup=out[False] / out[True]))
    print(f"one step at batch 1 (model.step, weights' container reused), best of {args.rounds} x 2000 steps")
    print("| model | array-API us | compiled us | speedup |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['array_api_us']:.1f} | {r['compiled_us']:.1f} | {r['speedup']:.1f}x |")
    return rows


def write_csv(path, rows):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer sizes (default: all)")
    p.add_argument("--defaults", action="store_true", help="default environment vs thread/process settings")
    p.add_argument("--latency", action="store_true", help="one step at batch 1")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5, 2 with --quick)")
    p.add_argument("--calls", type=int, default=3, help="passes per round and path; the fastest counts (default 3)")
    p.add_argument("--out", help="write OUT.csv (default: print only)")
    args = p.parse_args(argv)
    if not compiled.available():
        p.error("Numba is not installed: pip install 'r2dn_np[fast]'")
    args.rounds = args.rounds or (2 if args.quick else 5)
    rows = run_latency(args) if args.latency else run_defaults(args) if args.defaults else run_paths(args)
    if args.out:
        write_csv(args.out + ".csv", rows)
    return rows


if __name__ == "__main__":
    main()
