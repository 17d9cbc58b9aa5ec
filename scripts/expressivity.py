"""Expressivity experiment of the R2DN paper: fit a scalar one-step map as a state update.

The target is

    x+ = 0.2 sin x + 0.05 cos(2(x+u)) + 0.05 sin(3(x+u)) + 0.075 sin(4(x+u)) atan(0.1 (x+u)^2)
         + 0.05 x + u

with x ~ U(-30, 30) and u ~ U(-1, 1). Each model has nu = nx = ny = 1 and is trained so that
its state update from (x, u) gives x+ (one time-step, MSE on the next state). Models: the
R2DN of the timing study (nv 16, LBDN 6 x nh, relu) and the REN (nv, tanh); the training and
the scoring are ``r2dn_np.experiments.expressivity`` (one size, one seed per call). Reported: test NRMSE on 2048 points (x evenly spaced on [-30, 30], u = 1)
against parameter count and against training time; NRMSE = RMS error / RMS of the target.

    python scripts/expressivity.py --quick --out runs/expressivity        # minutes
    python scripts/expressivity.py --preset full --out runs/expressivity_full

The full preset is the paper's schedule: Adam at 1e-3, multiplied by 0.1 every 500 epochs,
1500 epochs of 128 batches of 512 fresh samples, 5 seeds, all sizes (many CPU hours).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from r2dn_np.experiments import expressivity  # noqa: E402

PRESETS = expressivity.PRESETS


def plot(path, rows):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, label in zip(axes, ("params", "train_cpu_s"), ("parameters", "training CPU seconds")):
        for model, style in (("r2dn", "o-"), ("ren", "s--")):
            pts = sorted((r[key], r["nrmse"]) for r in rows if r["model"] == model)
            if pts:
                a, b = np.array(pts).T
                ax.loglog(a, b, style, label=model.upper())
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("test NRMSE (u = 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    ap.add_argument("--quick", action="store_true", help="same as --preset quick")
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--epochs", type=int, default=None, help="override the preset")
    ap.add_argument("--seeds", type=int, default=None, help="override the preset")
    ap.add_argument("--decay-every", type=int, default=None, help="override the preset (epochs)")
    ap.add_argument("--models", default="r2dn,ren", help="comma-separated subset of r2dn,ren")
    ap.add_argument("--out", default=None, help="path prefix for the CSV and PNG")
    args = ap.parse_args(argv)
    preset = "quick" if args.quick else args.preset
    p = PRESETS[preset]
    print(f"preset {dict(p, **{k: v for k, v in vars(args).items() if k in ('epochs', 'seeds', 'decay_every') and v})}")
    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        for size in p[model]:
            for seed in range(args.seeds or p["seeds"]):
                settings = expressivity.ExpressivitySettings(model, preset=preset, size=size, seed=seed,
                                                             epochs=args.epochs, decay_every=args.decay_every,
                                                             backend=args.backend, dtype=args.dtype)
                r = expressivity.run(settings)
                rows.append(dict(model=model, size=r.size, params=r.params, seed=seed,
                                 train_wall_s=float(sum(r.seconds)), train_cpu_s=float(sum(r.cpu_seconds)),
                                 final_loss=r.curve[-1], nrmse=r.nrmse, steps=r.steps))
                print(r.table(), flush=True)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        keys = list(rows[0])
        with open(args.out + ".csv", "w") as fh:
            fh.write(",".join(keys) + "\n")
            for r in rows:
                fh.write(",".join(f"{r[k]:.6g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + "\n")
        print(f"wrote {args.out}.csv")
        plot(args.out + ".png", rows)
    return rows


if __name__ == "__main__":
    main()
