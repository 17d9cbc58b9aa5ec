"""The R2DN paper's Youla-parameterised control experiment, R2DN against REN (``r2dn_np.experiments.youla``).

    python scripts/youla.py --preset quick --out runs/youla          # 6 epochs per model
    python scripts/youla.py --preset paper --out runs/youla_paper    # 80 epochs per model

Writes ``results.json`` (per model: seconds and CPU seconds per epoch, train and test losses) and
``loss_time.png`` (test loss against training wall time, both models on one axis). ``--epochs``,
``--T``, ``--batch`` override the preset; ``--tiny`` swaps in small policies (for tests).
BLAS runs on ``--threads`` threads (default 1: CPU seconds then measure the work done).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from r2dn_np.experiments import youla  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(youla.PRESETS), default="quick")
    ap.add_argument("--models", default="r2dn,ren", help="comma-separated: r2dn, ren")
    ap.add_argument("--out", default="runs/youla")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--T", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tiny", action="store_true", help="small policies (tests)")
    args = ap.parse_args(argv)
    settings = {m: youla.YoulaSettings(m, args.preset, args.seed, args.epochs, args.T, args.batch, args.tiny)
                for m in args.models.split(",")}
    os.makedirs(args.out, exist_ok=True)
    results = {"preset": args.preset, "threads": args.threads,
               "settings": next(iter(settings.values())).schedule()}
    fits = {}
    with threadpool_limits(args.threads):
        for model, s in settings.items():
            res = youla.run(s, log=lambda line: print(line, flush=True))
            results[model] = res.to_dict()
            fits[model] = res
            print(res.table(), flush=True)
    if "r2dn" in fits and "ren" in fits:
        results["ren_over_r2dn_cpu_time_per_epoch"] = (results["ren"]["cpu_seconds_per_epoch"]
                                                       / results["r2dn"]["cpu_seconds_per_epoch"])
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for model, res in fits.items():
        ax.plot(np.concatenate([[0.0], np.cumsum(res.cpu_seconds)]), res.test_losses, label=model.upper())
    ax.set_xlabel("training CPU time (s)")
    ax.set_ylabel("test loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "loss_time.png"), dpi=120)
    plt.close(fig)
    return results


if __name__ == "__main__":
    main()
