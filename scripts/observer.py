"""The R2DN paper's PDE observer experiment, R2DN against REN (``r2dn_np.experiments.observer``).

    python scripts/observer.py --preset quick --out runs/observer          # a few minutes
    python scripts/observer.py --preset paper --out runs/observer_paper    # 200 epochs per model

Writes ``results.json`` (per model: seconds and CPU seconds per epoch, losses, validation NRMSE),
``loss_time.png`` (training loss against wall time, both models on one axis) and
``convergence.png`` (the estimate's error from several wrong initial guesses, which a contracting
observer forgets). ``--epochs``, ``--T`` and ``--chunks`` override the preset (tests use tiny ones).
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

from r2dn_np.experiments import observer  # noqa: E402


def main(argv=None):
    with threadpool_limits(_threads(argv)):
        return _main(argv)


def _threads(argv):
    argv = sys.argv[1:] if argv is None else argv
    return int(argv[argv.index("--threads") + 1]) if "--threads" in argv else 1


def _main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(observer.PRESETS), default="quick")
    ap.add_argument("--models", default="r2dn,ren", help="comma-separated: r2dn, ren")
    ap.add_argument("--out", default="runs/observer")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--T", type=int)
    ap.add_argument("--chunks", type=int)
    ap.add_argument("--val-T", type=int)
    ap.add_argument("--nodes", type=int, default=51)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    settings = {m: observer.ObserverSettings(m, args.preset, args.seed, args.epochs, args.T, args.chunks, args.val_T,
                                             args.nodes) for m in args.models.split(",")}
    p = next(iter(settings.values())).schedule()
    os.makedirs(args.out, exist_ok=True)
    data = observer.make_data(p["T"], p["chunks"], seed=args.seed, nodes=args.nodes)  # one data set for all
    results = {"preset": args.preset, "settings": p}
    fits = {}
    for model, s in settings.items():
        res = observer.run(s, data=data, log=lambda line: print(line, flush=True))
        results[model] = res.to_dict()
        fits[model] = res
        print(res.table(), flush=True)
    if "r2dn" in fits and "ren" in fits:
        results["ren_over_r2dn_cpu_time_per_epoch"] = (results["ren"]["cpu_seconds_per_epoch"]
                                                       / results["r2dn"]["cpu_seconds_per_epoch"])
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    if not args.no_plots:
        plots(args.out, fits, args.seed, p["val_T"])
    return results


def plots(out, fits, seed, val_T):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for model, res in fits.items():
        ax.plot(np.cumsum(res.cpu_seconds), res.losses, label=model.upper())
    ax.set_xlabel("training CPU time (s)")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss_time.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    rng = np.random.default_rng(seed)
    for model, res in fits.items():
        cfg = res.cfg
        for k in range(3):
            x0 = np.zeros((1, cfg.nx)) if k == 0 else rng.uniform(-1, 2, (1, cfg.nx))
            Xi, Xhat, _ = observer.validate(cfg, res.direct, T=val_T, seed=seed + 1, x0=x0, nodes=cfg.nx)
            err = np.sqrt(np.mean((Xhat - Xi) ** 2, axis=1))
            ax.plot(err, color="C0" if model == "r2dn" else "C1", alpha=0.8,
                    label=f"{model.upper()}" if k == 0 else None)
    ax.set_xlabel("time step")
    ax.set_ylabel("RMS estimation error")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "convergence.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
