"""Timing study of the R2DN paper, with an efficiency account and peak memory.

Batch 64, horizon 128, nu = nx = ny = 1. R2DN: nv = 16 and an LBDN of 6 hidden layers of
width nh in {8, ..., 96} (relu). REN (when ``r2dn_np.ren`` exists): nv in {20, ..., 200}
(tanh). Plus the F16 system-identification size (nu 2, nx 75, nv 75, ny 3, LBDN 3 x 87,
batch 64, T 256). For each: parameter count, forward time (map + rollout) and gradient time
(map + rollout + BPTT + map VJP), median and minimum of repeated runs after a warm-up; for
the R2DN also the analytic FLOP count (``r2dn_np.checks.flops``), the achieved GFLOP/s and its
fraction of a large matrix product's GFLOP/s measured in the same run, backend and dtype.
Times in the table are wall seconds; the rates use the fastest run's CPU time on NumPy (a
shared machine steals wall time, not CPU time) and wall time on CuPy.

    OMP_NUM_THREADS=1 taskset -c 1 python scripts/bench_timing.py --quick       # minutes
    OMP_NUM_THREADS=1 taskset -c 1 python scripts/bench_timing.py --out runs/timing
    python scripts/bench_timing.py --backend cupy --out runs/timing_gpu
    python scripts/bench_timing.py --memory --out runs/memory   # peak memory against T
    python scripts/bench_timing.py --cores --out runs/cores     # 1 vs 2 cores (no taskset)

The timing study runs each pass in one process (``workers=1``); ``--cores`` compares one core,
two cores (two processes, ``r2dn_np.loop.parallel``) and one process with two BLAS threads at the
timing-study (nh=96) and F16 sizes, each as a fraction of the large product with as many threads.

Writes ``<out>.csv`` (and ``<out>_memory.csv``) and, where matplotlib is installed,
``<out>.png``: log-log time against parameter count with fitted slopes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from r2dn_np.core import allocator, tree  # noqa: E402
from r2dn_np.checks import flops
from r2dn_np.loop import graph
from r2dn_np.training import losses
from r2dn_np import r2dn
from r2dn_np.core.backend import namespace  # noqa: E402

try:
    from r2dn_np import ren
except ImportError:
    ren = None

R2DN_WIDTHS = (8, 16, 24, 32, 48, 64, 80, 96)
REN_WIDTHS = (20, 30, 40, 60, 80, 100, 128, 200)
QUICK_R2DN, QUICK_REN = (8, 32, 96), (20, 60, 200)
F16 = dict(nu=2, nx=75, nv=75, ny=3, hidden=(87,) * 3, T=256, B=64)
MEMORY_HORIZONS, QUICK_MEMORY_HORIZONS = (64, 128, 256, 512, 1024), (64, 256)


def cases(quick, with_f16=True, ren_widths=None):
    """``(model, module, cfg, T, B, label)`` for every row of the study."""
    out = []
    for nh in QUICK_R2DN if quick else R2DN_WIDTHS:
        out.append(("r2dn", r2dn, r2dn.Config(1, 1, 16, 1, hidden=(nh,) * 6, activation="relu"),
                    128, 64, f"nh={nh}"))
    if ren is not None:
        for nv in ren_widths if ren_widths is not None else QUICK_REN if quick else REN_WIDTHS:
            out.append(("ren", ren, ren.Config(1, 1, nv, 1, activation="tanh"), 128, 64, f"nv={nv}"))
    if with_f16:
        f = dict(F16)
        T, B = f.pop("T"), f.pop("B")
        out.append(("r2dn-f16", r2dn, r2dn.Config(activation="relu", **f), T, B, "F16"))
    return out


def problem(mod, cfg, T, B, xp, dtype, seed=0):
    rng = np.random.default_rng(seed)
    direct = mod.init(cfg, seed, backend=xp, dtype=dtype)
    dt = tree.leaves(direct)[0].dtype
    put = lambda a: xp.astype(xp.asarray(a), dt)  # noqa: E731
    x0 = put(np.zeros((B, cfg.nx)))
    U = put(rng.standard_normal((T, B, cfg.nu)))
    target = put(rng.standard_normal((T, B, cfg.ny)))
    return direct, x0, U, target


def forward_pass(mod, cfg, direct, x0, U, target, workers=1):
    explicit, _ = mod.direct_to_explicit(cfg, direct)
    _, Y, _ = mod.forward(cfg, explicit, x0, U, workers=workers)
    return Y


def gradient_pass(mod, cfg, direct, x0, U, target, checkpoint_every=None, workers=1):
    """Map, rollout, loss, BPTT and map VJP; ``workers=1`` (one process) unless told otherwise."""
    explicit, map_cache = mod.direct_to_explicit(cfg, direct)
    kw = {} if checkpoint_every is None else dict(checkpoint_every=checkpoint_every)
    _, Y, cache = mod.forward(cfg, explicit, x0, U, workers=workers, **kw)
    _, dY = losses.mse(Y, target)
    d_explicit, _, _ = mod.backward(cfg, explicit, cache, dY)
    d_direct = mod.direct_to_explicit_vjp(cfg, map_cache, d_explicit)
    return tree.leaves(d_direct)[0]


def _loop(explicit, x0, U, target, *, mod, cfg):
    """Rollout, loss and BPTT as a function of arrays only, for ``graph.captured``."""
    _, Y, cache = mod.forward(cfg, explicit, x0, U, workers=1)
    value, dY = losses.mse(Y, target)
    d_explicit, _, _ = mod.backward(cfg, explicit, cache, dY)
    return value, d_explicit


def graph_gradient_pass(step, mod, cfg, direct, x0, U, target):
    """:func:`gradient_pass` with the rollout, loss and BPTT replayed as one CUDA graph
    (``step = graph.captured(_loop)``); the map and its VJP run as usual."""
    explicit, map_cache = mod.direct_to_explicit(cfg, direct)
    _, d_explicit = step(explicit, x0, U, target, mod=mod, cfg=cfg)
    return tree.leaves(mod.direct_to_explicit_vjp(cfg, map_cache, d_explicit))[0]


def gpu_seconds(fn, repeats):
    """Median GPU time of ``fn`` from CUDA events (``cupyx.profiler.benchmark``): the time the
    device was busy, beside the wall time, says whether a pass is launch- or kernel-bound."""
    from cupyx.profiler import benchmark

    res = benchmark(fn, n_repeat=repeats, n_warmup=2)
    return float(np.median(res.gpu_times[0])), float(np.median(res.cpu_times))


def timed(fn, repeats, warmup=2):
    """Wall and CPU seconds of each of ``repeats`` calls after ``warmup`` untimed ones
    (synchronised). CPU time leaves out time the process waited for a shared core."""
    for _ in range(warmup):
        flops.sync(fn())
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        flops.sync(fn())
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def run_timing(args):
    xp = namespace(args.backend)
    rows = []
    if ren is None:
        print("note: r2dn_np.ren is not importable here; REN rows skipped")
    # On a GPU the host's CPU time says nothing: rate the wall time there.
    on_cpu = args.backend == "numpy"
    clock = time.process_time if on_cpu else time.perf_counter
    for dtype in args.dtypes:
        peak = flops.matmul_gflops(args.backend, dtype, args.matmul_n, args.repeats, clock)
        print(f"\n{args.backend} {dtype}: {args.matmul_n}x{args.matmul_n} matmul {peak:.1f} GFLOP/s "
              f"({'CPU' if on_cpu else 'wall'} time)")
        print(f"{'model':9} {'size':7} {'params':>7} {'fwd med':>9} {'fwd min':>9} "
              f"{'grad med':>9} {'grad min':>9} {'GFLOP/s':>8} {'of mm':>6}")
        for model, mod, cfg, T, B, label in cases(args.quick, not args.no_f16, args.ren_widths):
            direct, x0, U, target = problem(mod, cfg, T, B, xp, dtype)
            n_params = tree.size(direct)
            fwd, fwd_cpu = timed(lambda: forward_pass(mod, cfg, direct, x0, U, target), args.repeats)
            grad, grad_cpu = timed(lambda: gradient_pass(mod, cfg, direct, x0, U, target), args.repeats)
            row = dict(
                backend=args.backend, dtype=dtype, model=model, size=label, params=n_params, T=T, B=B,
                fwd_median_s=float(np.median(fwd)), fwd_min_s=min(fwd),
                grad_median_s=float(np.median(grad)), grad_min_s=min(grad),
                fwd_cpu_min_s=min(fwd_cpu), grad_cpu_min_s=min(grad_cpu),
                grad_cpu_median_s=float(np.median(grad_cpu)), matmul_gflops=peak,
            )
            if args.backend == "cupy":
                # the same pass as one replayed CUDA graph (r2dn_np.loop.graph), and what each costs the GPU
                step = graph.captured(_loop)
                run = lambda: graph_gradient_pass(step, mod, cfg, direct, x0, U, target)  # noqa: E731
                cap, _ = timed(run, args.repeats)
                row.update(graph_median_s=float(np.median(cap)), graph_min_s=min(cap),
                           graph_captures=step.stats["captures"], graph_failed=step.stats["failed"])
                row["grad_gpu_s"], row["grad_host_s"] = gpu_seconds(
                    lambda: gradient_pass(mod, cfg, direct, x0, U, target), args.repeats)
                row["graph_gpu_s"], row["graph_host_s"] = gpu_seconds(run, args.repeats)
            if mod is r2dn:
                count = flops.r2dn_counts(cfg, T, B)
                best = row["grad_cpu_min_s"] if on_cpu else row["grad_min_s"]
                best_fwd = row["fwd_cpu_min_s"] if on_cpu else row["fwd_min_s"]
                rate = count["gradient"] / best / 1e9
                row.update(fwd_gflop=count["forward"] / 1e9, grad_gflop=count["gradient"] / 1e9,
                           fwd_gflops=count["forward"] / best_fwd / 1e9,
                           grad_gflops=rate, grad_fraction=rate / peak)
                if "graph_min_s" in row:
                    row.update(graph_gflops=count["gradient"] / row["graph_min_s"] / 1e9,
                               graph_fraction=count["gradient"] / row["graph_min_s"] / 1e9 / peak)
            rows.append(row)
            rate = f"{row['grad_gflops']:8.1f} {row['grad_fraction']:6.0%}" if "grad_gflops" in row else ""
            print(f"{model:9} {label:7} {n_params:7d} {row['fwd_median_s']:9.4f} {row['fwd_min_s']:9.4f} "
                  f"{row['grad_median_s']:9.4f} {row['grad_min_s']:9.4f} {rate}", flush=True)
            if "graph_min_s" in row:
                frac = f" = {row['graph_gflops']:.1f} GFLOP/s, {row['graph_fraction']:.1%} of mm" \
                    if "graph_gflops" in row else ""
                print(f"{'':17} CUDA graph: median {row['graph_median_s']:.4f} s, min {row['graph_min_s']:.4f} s"
                      f"{frac} (captures {row['graph_captures']}, failed {row['graph_failed']}); GPU busy "
                      f"{row['grad_gpu_s']:.4f} s of the uncaptured pass, {row['graph_gpu_s']:.4f} s of the "
                      "graph's", flush=True)
    return rows


CORE_SIZES = ("nh=96", "F16")
CORE_MODES = (  # (label, worker processes, BLAS threads per process)
    ("1 core", 1, 1),
    ("2 cores", 2, 1),
    ("2 BLAS threads", 1, 2),  # one process
)


def _load():
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run_cores(args):
    """The gradient pass on one and on two cores against the large product with as many threads.

    Every round times each mode once (fastest of ``--calls`` passes) and the large product with 1
    and 2 BLAS threads, so all see the same background load; the table keeps the best of the
    rounds. Wall time throughout (two processes share the pass)."""
    from threadpoolctl import threadpool_limits

    xp = namespace("numpy")
    rounds = args.rounds or (3 if args.quick else 7)
    by_label = {label: (mod, cfg, T, B) for model, mod, cfg, T, B, label in cases(False, True)}
    rows = []
    for dtype in args.dtypes:
        load_before = _load()
        problems = {label: problem(*by_label[label], xp, dtype) for label in CORE_SIZES}
        gemm = {1: 0.0, 2: 0.0}
        best = {}

        def grad(label, workers):
            mod, cfg, _, _ = by_label[label]
            return gradient_pass(mod, cfg, *problems[label], workers=workers)

        for label in CORE_SIZES:  # warm-up: caches, buffer pool, worker processes
            for _, workers, threads in CORE_MODES:
                with threadpool_limits(threads):
                    grad(label, workers)
        for _ in range(rounds):
            for threads in (1, 2):
                with threadpool_limits(threads):
                    gemm[threads] = max(gemm[threads], flops.matmul_gflops("numpy", dtype, args.matmul_n, 2))
            for label in CORE_SIZES:
                for mode, workers, threads in CORE_MODES:
                    with threadpool_limits(threads):
                        wall, _ = timed(lambda: grad(label, workers), args.calls, warmup=0)
                    best[label, mode] = min(best.get((label, mode), float("inf")), min(wall))
        load_after = _load()
        for label in CORE_SIZES:
            mod, cfg, T, B = by_label[label]
            gflop = flops.r2dn_counts(cfg, T, B)["gradient"] / 1e9
            for mode, workers, threads in CORE_MODES:
                cores = workers * threads
                rate = gflop / best[label, mode]
                rows.append(dict(dtype=dtype, size=label, T=T, B=B, mode=mode, workers=workers,
                                 blas_threads=threads, grad_min_s=best[label, mode], grad_gflop=gflop,
                                 grad_gflops=rate, matmul_gflops=gemm[cores], fraction=rate / gemm[cores],
                                 rounds=rounds, calls=args.calls, load_before=load_before,
                                 load_after=load_after))
    _print_cores(rows, args)
    return rows


def _print_cores(rows, args):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"\ngradient pass (map + rollout + MSE + BPTT + map VJP), numpy, {cores} cores allowed; best of "
          f"{rows[0]['rounds']} interleaved rounds x {rows[0]['calls']} calls, wall time; large product "
          f"{args.matmul_n}x{args.matmul_n} with the same number of threads, measured in the same rounds")
    print("| dtype | size | mode | ms | GFLOP/s | large product GFLOP/s (threads) | of large product |"
          " load avg 1/5/15 min before -> after |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['size']} | {r['mode']} | {1e3 * r['grad_min_s']:.1f} | {r['grad_gflops']:.1f} "
              f"| {r['matmul_gflops']:.1f} ({r['workers'] * r['blas_threads']}) | {r['fraction']:.0%} "
              f"| {r['load_before']} -> {r['load_after']} |")


def run_memory(args):
    """Peak traced memory of one gradient pass against T, plain and checkpointed (NumPy only)."""
    import tracemalloc

    if args.backend != "numpy":
        raise SystemExit("--memory traces host allocations: use --backend numpy")
    xp = namespace("numpy")
    horizons = QUICK_MEMORY_HORIZONS if args.quick else MEMORY_HORIZONS
    rows = []
    print("\npeak memory of the gradient pass (float64, batch 64, F16 size), checkpoint k")
    f = dict(F16)
    f.pop("T"), f.pop("B")
    cfg = r2dn.Config(activation="relu", **f)
    for T in horizons:
        direct, x0, U, target = problem(r2dn, cfg, T, 64, xp, "float64")
        for k in (None,) + tuple(args.checkpoint):
            _, cpu = timed(lambda: gradient_pass(r2dn, cfg, direct, x0, U, target, k), 3, warmup=1)
            allocator.release_buffers()  # pooled buffers would hide the pass's allocations
            tracemalloc.start()
            gradient_pass(r2dn, cfg, direct, x0, U, target, k)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            rows.append(dict(T=T, checkpoint_every=k or 0, peak_mib=peak / 2**20, cpu_s=min(cpu)))
            print(f"T={T:5d} k={k or '-':>4}: peak {peak / 2**20:8.1f} MiB, {min(cpu):6.3f} s CPU "
                  "(fastest of 3, untraced)", flush=True)
    return rows


def write_csv(path, rows):
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w") as fh:
        fh.write(",".join(keys) + "\n")
        for r in rows:
            fh.write(",".join(_fmt(r.get(k, "")) for k in keys) + "\n")
    print(f"wrote {path}")


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def slopes(rows, key="grad_median_s"):
    """Least-squares slope of log time against log parameter count, per (model, dtype)."""
    out = {}
    for model in ("r2dn", "ren"):
        for dtype in {r["dtype"] for r in rows}:
            pts = [(r["params"], r[key]) for r in rows if r["model"] == model and r["dtype"] == dtype]
            if len(pts) >= 2:
                p, t = np.log(np.array(pts, dtype=float)).T
                out[(model, dtype)] = float(np.polyfit(p, t, 1)[0])
    return out


def plot(path, rows):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, title in zip(axes, ("fwd_median_s", "grad_median_s"), ("forward", "gradient")):
        fits = slopes(rows, key)
        for (model, dtype), slope in sorted(fits.items()):
            pts = sorted((r["params"], r[key]) for r in rows if r["model"] == model and r["dtype"] == dtype)
            p, t = np.array(pts, dtype=float).T
            ax.loglog(p, t, "o-" if model == "r2dn" else "s--",
                      label=f"{model.upper()} {dtype} (slope {slope:.2f})")
        ax.set_xlabel("parameters")
        ax.set_title(f"{title} pass, batch 64, T 128 ({rows[0]['backend']})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("median seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three sizes per model, fewer repeats")
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 7, quick 3)")
    ap.add_argument("--matmul-n", type=int, default=2048)
    ap.add_argument("--no-f16", action="store_true", help="skip the F16-size row")
    ap.add_argument("--ren-widths", default=None, help="REN sizes nv, e.g. 20,60 (default: the study's)")
    ap.add_argument("--memory", action="store_true", help="peak memory against T instead of timing")
    ap.add_argument("--checkpoint", default="16,64", help="checkpoint intervals for --memory")
    ap.add_argument("--cores", action="store_true",
                    help="the gradient pass on 1 and 2 cores (worker processes) against the large product")
    ap.add_argument("--rounds", type=int, default=None, help="--cores: interleaved rounds (default 7, quick 3)")
    ap.add_argument("--calls", type=int, default=3, help="--cores: timed passes per mode and round")
    ap.add_argument("--out", default=None, help="path prefix for the CSV and PNG")
    args = ap.parse_args(argv)
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    args.checkpoint = [int(k) for k in args.checkpoint.split(",") if k.strip()]
    if args.ren_widths is not None:
        args.ren_widths = tuple(int(k) for k in args.ren_widths.split(",") if k.strip())
    args.repeats = args.repeats or (3 if args.quick else 7)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"cores allowed: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}")
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    if args.cores:
        rows = run_cores(args)
        if args.out:
            write_csv(args.out + "_cores.csv", rows)
        return rows
    if args.memory:
        rows = run_memory(args)
        if args.out:
            write_csv(args.out + "_memory.csv", rows)
        return rows
    rows = run_timing(args)
    for (model, dtype), s in sorted(slopes(rows).items()):
        print(f"slope of log gradient time against log parameters, {model} {dtype}: {s:.3f}")
    if args.out:
        write_csv(args.out + ".csv", rows)
        plot(args.out + ".png", rows)
    return rows


if __name__ == "__main__":
    main()
