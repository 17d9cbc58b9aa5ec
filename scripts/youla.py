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

from r2dn_np import r2dn, ren  # noqa: E402
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
    p = dict(youla.PRESETS[args.preset])
    for key in ("epochs", "T", "batch"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    os.makedirs(args.out, exist_ok=True)
    results = {"preset": args.preset, "threads": args.threads,
               "settings": {k: v for k, v in p.items() if k not in ("r2dn", "ren")}}
    fits = {}
    with threadpool_limits(args.threads):
        for model in args.models.split(","):
            if args.tiny:
                cfg = (r2dn.Config(nu=1, nx=3, nv=4, ny=1, hidden=(8,), activation="tanh", init="long_memory")
                       if model == "r2dn" else ren.Config(nu=1, nx=3, nv=8, ny=1, activation="tanh",
                                                          init="long_memory"))
            else:
                cfg = youla.model_config(model, args.preset)
            res = youla.fit(cfg, p["epochs"], batch=p["batch"], T=p["T"], segments=p["segments"], lr=p["lr"],
                            decay_epochs=p["decay_epochs"], clip=p["clip"], seed=args.seed,
                            log=lambda e, tr, te, s, m=model: print(
                                f"{m} epoch {e + 1}: train {tr:.4f}, test (before) {te:.4f} ({s:.2f} s)", flush=True))
            later = res.seconds[1:] or res.seconds
            later_cpu = res.cpu_seconds[1:] or res.cpu_seconds
            results[model] = dict(
                config=cfg.to_dict(), train_losses=res.train_losses, test_losses=res.test_losses,
                seconds=res.seconds, cpu_seconds=res.cpu_seconds, seconds_per_epoch=float(np.mean(later)),
                cpu_seconds_per_epoch=float(np.mean(later_cpu)), final_test_loss=res.test_losses[-1])
            fits[model] = res
            print(f"{model}: {results[model]['seconds_per_epoch']:.2f} s/epoch "
                  f"({results[model]['cpu_seconds_per_epoch']:.2f} CPU s), final test loss "
                  f"{res.test_losses[-1]:.4f}", flush=True)
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
