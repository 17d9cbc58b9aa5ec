"""CPU seconds of one F-16 paper-preset training epoch, compiled and array-API loops.

The preset of ``r2dn sysid --dataset f16 --preset paper`` (its model sizes and training options,
batch 4, windows of 256, 287 windows per record), one epoch of ``train.fit`` including its
validation simulation, one BLAS thread, for the R2DN and the REN, each with ``R2DN_JIT=1`` and
``R2DN_JIT=0`` in a fresh process (so neither path warms the other's caches):

    python scripts/bench_f16_epoch.py --data-dir path/to/BenchmarkData [--models r2dn,ren]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def one(model, data_dir):
    """Prints the CPU and wall seconds of one epoch in this process."""
    import dataclasses

    from threadpoolctl import threadpool_limits

    from r2dn_np.experiments import sysid
    from r2dn_np.training import train
    from r2dn_np.data import f16

    preset = sysid.PRESETS["paper"]["f16"].for_model(model)
    module = train.get_model(model)
    cfg = sysid.make_config(module, nu=2, ny=3, nx=preset.nx, nv=preset.nv, hidden=preset.hidden, **preset.model)
    data = f16.load(data_dir)
    opts = dataclasses.replace(preset.options, epochs=1)
    with threadpool_limits(1):
        t0, c0 = time.perf_counter(), time.process_time()
        train.fit(module, cfg, data, opts, workers=1)
        print(f"{time.process_time() - c0:.2f} {time.perf_counter() - t0:.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder with F16Data_FullMSine_Level*.csv")
    p.add_argument("--models", default="r2dn,ren", help="comma-separated (default r2dn,ren)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        return one(args.one, args.data_dir)
    print("| model | loop | CPU s / epoch | wall s / epoch |")
    print("|---|---|---|---|")
    for model in args.models.split(","):
        for jit in ("1", "0"):
            out = subprocess.run([sys.executable, __file__, "--data-dir", args.data_dir, "--one", model],
                                 env=dict(os.environ, R2DN_JIT=jit), capture_output=True, text=True, check=True)
            cpu, wall = out.stdout.split()[-2:]
            print(f"| {model} | {'compiled' if jit == '1' else 'array-API'} | {cpu} | {wall} |", flush=True)


if __name__ == "__main__":
    main()
