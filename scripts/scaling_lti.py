"""Scaling study: the R2DN's gradient pass against the state dimension nx, dense LTI part against
the structured ones (``r2dn.Config(lti=...)``, section 7 of ``docs/derivations/r2dn.md``).

For each nx and each LTI part (``dense``; ``diagonal``; ``diagonal_plus_lowrank`` with rank 8),
contracting kind, nu 2, nv 16, ny 1, an LBDN of one hidden layer of 32, batch B and horizon T:

- ``map_s``: ``direct_to_explicit`` alone (fastest of the repeats);
- ``grad_s``: ``value_and_grad`` (map + rollout + BPTT + map VJP, mean-squared loss, ``workers=1``),
  median and minimum of the repeats after one warm-up;

both in CPU seconds of this process (``time.process_time``; run with ``OMP_NUM_THREADS=1``), which a
machine shared with other work disturbs far less than wall time. The structured parts' time loop
steps with A factored, O(nx r) per step (``docs/derivations/r2dn.md`` (T8));
- ``peak_mib``: peak traced memory of one ``value_and_grad`` (``tracemalloc``: NumPy's buffers are
  traced), parameters and inputs excluded;
- ``params``: free parameters.

Dense runs stop at ``--dense-max`` (its map is O(nx^3) and takes minutes beyond nx ~ 1024 on one core).

Usage::

    OMP_NUM_THREADS=1 python scripts/scaling_lti.py --out scaling [--nx 16 64 256 1024 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

from r2dn_np.training import losses
from r2dn_np import r2dn
from r2dn_np.core import tree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _rows import write_rows  # noqa: E402

LTIS = (("dense", 0), ("diagonal", 0), ("diagonal_plus_lowrank", 8))


def config(nx, lti, rank):
    return r2dn.Config(nu=2, nx=nx, nv=16, ny=1, hidden=(32,), activation="relu", lti=lti, rank=rank)


def measure(nx, lti, rank, B, T, repeats):
    cfg = config(nx, lti, rank)
    direct = r2dn.init(cfg, seed=0)
    rng = np.random.default_rng(0)
    U = rng.standard_normal((T, B, cfg.nu))
    target = rng.standard_normal((T, B, cfg.ny))

    def loss(Y):
        return losses.mse(Y, target)

    def grad():
        return r2dn.value_and_grad(cfg, direct, None, U, loss, workers=1)

    map_times, grad_times = [], []
    grad()  # warm-up (and NumPy's buffer reuse, as in training)
    for _ in range(repeats):
        t0 = time.process_time()
        r2dn.direct_to_explicit(cfg, direct)
        map_times.append(time.process_time() - t0)
        t0 = time.process_time()
        grad()
        grad_times.append(time.process_time() - t0)
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    grad()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return dict(nx=nx, lti=lti, rank=rank, params=tree.size(direct), B=B, T=T, map_s=min(map_times),
                grad_median_s=statistics.median(grad_times), grad_min_s=min(grad_times),
                peak_mib=peak / 2**20)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="scaling_lti")
    parser.add_argument("--nx", type=int, nargs="+", default=[16, 64, 256, 1024, 4096])
    parser.add_argument("--dense-max", type=int, default=1024)
    parser.add_argument("--B", type=int, default=8)
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    print(f"{'nx':>5} {'lti':<22} {'params':>9} {'map s':>9} {'grad med s':>10} {'grad min s':>10} {'peak MiB':>9}"
          "  (CPU seconds)",
          flush=True)
    for nx in args.nx:
        for lti, rank in LTIS:
            if lti == "dense" and nx > args.dense_max:
                continue
            r = measure(nx, lti, rank, args.B, args.T, args.repeats)
            rows.append(r)
            print(f"{nx:>5} {lti + (f' r={rank}' if rank else ''):<22} {r['params']:>9} {r['map_s']:>9.4f} "
                  f"{r['grad_median_s']:>10.4f} {r['grad_min_s']:>10.4f} {r['peak_mib']:>9.2f}", flush=True)
    return write_rows(args.out + ".csv", rows)


if __name__ == "__main__":
    main()
