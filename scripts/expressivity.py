"""Expressivity experiment of the R2DN paper: fit a scalar one-step map as a state update.

The target is

    x+ = 0.2 sin x + 0.05 cos(2(x+u)) + 0.05 sin(3(x+u)) + 0.075 sin(4(x+u)) atan(0.1 (x+u)^2)
         + 0.05 x + u

with x ~ U(-30, 30) and u ~ U(-1, 1). Each model has nu = nx = ny = 1 and is trained so that
its state update from (x, u) gives x+ (one time-step, MSE on the next state). Models: the
R2DN of the timing study (nv 16, LBDN 6 x nh, relu) and, where ``r2dn_np.ren`` exists, the
REN (nv, tanh). Reported: test NRMSE on 2048 points (x evenly spaced on [-30, 30], u = 1)
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
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from array_api_compat import array_namespace  # noqa: E402

from r2dn_np.training import losses, optim  # noqa: E402
from r2dn_np import r2dn
from r2dn_np.core import tree
from r2dn_np.core.backend import namespace, to_numpy  # noqa: E402

try:
    from r2dn_np import ren
except ImportError:
    ren = None

PRESETS = {
    "quick": dict(epochs=30, batches=32, batch=512, lr=3e-3, decay_every=20, seeds=1,
                  r2dn=(8, 32, 96), ren=(20, 60, 200)),
    "full": dict(epochs=1500, batches=128, batch=512, lr=1e-3, decay_every=500, seeds=5,
                 r2dn=(8, 16, 24, 32, 48, 64, 80, 96), ren=(20, 30, 40, 60, 80, 100, 128, 200)),
}


def target_map(x, u):
    """The one-step map to learn (NumPy, elementwise)."""
    s = x + u
    return (0.2 * np.sin(x) + 0.05 * np.cos(2 * s) + 0.05 * np.sin(3 * s)
            + 0.075 * np.sin(4 * s) * np.arctan(0.1 * s**2) + 0.05 * x + u)


def models(p):
    out = [("r2dn", r2dn, r2dn.Config(1, 1, 16, 1, hidden=(nh,) * 6, activation="relu"), f"nh={nh}")
           for nh in p["r2dn"]]
    if ren is not None:
        out += [("ren", ren, ren.Config(1, 1, nv, 1, activation="tanh"), f"nv={nv}") for nv in p["ren"]]
    return out


def next_state(mod, cfg, explicit, x, u):
    """``x+`` from ``x, u : (N, 1)`` with one step of the model; also its cache."""
    xT, Y, cache = mod.forward(cfg, explicit, x, u[None, ...])
    return xT, Y, cache


def loss_and_grads(mod, cfg, direct, x, u, x_next):
    explicit, map_cache = mod.direct_to_explicit(cfg, direct)
    xT, Y, cache = next_state(mod, cfg, explicit, x, u)
    value, dxT = losses.mse(xT, x_next)
    d_explicit, _, _ = mod.backward(cfg, explicit, cache, array_namespace(Y).zeros_like(Y), dxT)
    return value, mod.direct_to_explicit_vjp(cfg, map_cache, d_explicit)


def nrmse(mod, cfg, direct, put):
    x = np.linspace(-30.0, 30.0, 2048)[:, None]
    u = np.ones_like(x)
    explicit, _ = mod.direct_to_explicit(cfg, direct)
    pred = np.asarray(to_numpy(next_state(mod, cfg, explicit, put(x), put(u))[0]))
    truth = target_map(x, u)
    return float(np.sqrt(np.mean((pred - truth) ** 2)) / np.sqrt(np.mean(truth**2)))


def train(mod, cfg, seed, p, xp, dtype):
    rng = np.random.default_rng(1000 + seed)
    direct = mod.init(cfg, seed, backend=xp, dtype=dtype)
    dt = tree.leaves(direct)[0].dtype
    put = lambda a: xp.astype(xp.asarray(a), dt)  # noqa: E731
    state = optim.adam_init(direct)
    wall = cpu = 0.0
    history = []
    step = 0
    for epoch in range(p["epochs"]):
        lr = optim.exponential_decay(epoch, p["lr"], 0.1, p["decay_every"])
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(p["batches"]):
            x = rng.uniform(-30.0, 30.0, (p["batch"], 1))
            u = rng.uniform(-1.0, 1.0, (p["batch"], 1))
            value, grads = loss_and_grads(mod, cfg, direct, put(x), put(u), put(target_map(x, u)))
            direct, state = optim.adam_step(direct, grads, state, lr=lr)
            step += 1
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        history.append(float(value))
    return direct, dict(train_wall_s=wall, train_cpu_s=cpu, final_loss=history[-1],
                        nrmse=nrmse(mod, cfg, direct, put), steps=step)


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
    p = dict(PRESETS["quick" if args.quick else args.preset])
    if args.epochs:
        p["epochs"] = args.epochs
    if args.seeds:
        p["seeds"] = args.seeds
    if args.decay_every:
        p["decay_every"] = args.decay_every
    xp = namespace(args.backend)
    if ren is None:
        print("note: r2dn_np.ren is not importable here; REN rows skipped")
    print(f"preset {p}")
    rows = []
    wanted = {m.strip() for m in args.models.split(",")}
    for model, mod, cfg, label in [m for m in models(p) if m[0] in wanted]:
        for seed in range(p["seeds"]):
            direct, stats = train(mod, cfg, seed, p, xp, args.dtype)
            row = dict(model=model, size=label, params=tree.size(direct), seed=seed, **stats)
            rows.append(row)
            print(f"{model:5} {label:7} params {row['params']:7d} seed {seed}: NRMSE {row['nrmse']:.4f} "
                  f"loss {row['final_loss']:.2e}  {row['train_cpu_s']:7.1f} s CPU "
                  f"({row['train_wall_s']:.1f} s wall)", flush=True)
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
