"""Score trained F-16 models as the REN paper scores them: NRMSE pooled over levels 2, 4 and 6.

For every ``model.npz`` under ``--runs`` (the folders ``r2dn sweep --tasks sysid-f16`` or
``r2dn sysid --dataset f16`` write), the model runs free from its zero state over the validation
records of levels 2 and 4 and the test record of level 6; the first ``--washout`` samples of each
are not scored (the sysid convention). Per output, the pooled NRMSE is the RMSE over the three
records' scored samples divided by the **standard deviation** of the true output over the same
samples; "mean" is the mean over the three outputs. Level 6 alone is scored the same way (the deep
LRU's column). Seconds per epoch come from each run's ``results.json``.

    python scripts/f16_table.py --runs runs/f16-paper --data-dir path/to/BenchmarkData

Prints a Markdown table with the published rows beside it (the REN paper's Table I reports one
pooled number per model, not per output).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from r2dn_np.training import train  # noqa: E402
from r2dn_np.data import f16  # noqa: E402

PUBLISHED = [
    ("REN paper, contracting acyclic REN (Table I)", "16.2 % pooled", ""),
    ("REN paper, gamma-Lipschitz REN, gamma = 100 (Table I)", "17.2 % pooled", ""),
    ("deep LRU [Forgione et al. 2024], level 6", "", "0.134 / 0.099 / 0.237 (mean 0.157)"),
]


def nrmse(pred, true):
    """Per-output RMSE over the rows, divided by the true output's standard deviation."""
    return np.sqrt(np.mean((pred - true) ** 2, axis=0)) / np.std(true, axis=0)


def score(model, data, washout):
    records = {"Level2": data.val[0], "Level4": data.val[1], "Level6": data.test["Level6"]}
    preds = {k: model.simulate(r.u)[washout:] for k, r in records.items()}
    trues = {k: r.y[washout:] for k, r in records.items()}
    pooled = nrmse(np.concatenate(list(preds.values())), np.concatenate(list(trues.values())))
    return pooled, nrmse(preds["Level6"], trues["Level6"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="folder searched for model.npz files")
    p.add_argument("--data-dir", required=True, help="folder with F16Data_FullMSine_Level*.csv")
    p.add_argument("--washout", type=int, default=100, help="samples not scored per record (default 100)")
    args = p.parse_args(argv)
    data = f16.load(args.data_dir)
    if [r for r in data.val] and len(data.val) != 2:
        p.error("expected the validation records of levels 2 and 4")
    rows = []
    for path in sorted(glob.glob(os.path.join(args.runs, "**", "model.npz"), recursive=True)):
        folder = os.path.dirname(path)
        model = train.load_model(path)
        results = {}
        if os.path.exists(os.path.join(folder, "results.json")):
            with open(os.path.join(folder, "results.json"), encoding="utf-8") as fh:
                results = json.load(fh)
        pooled, level6 = score(model, data, args.washout)
        cfg = model.config
        kind = cfg.kind + (f" gamma={cfg.gamma:g}" if cfg.kind == "lipschitz" else "")
        rows.append(dict(run=os.path.relpath(folder, args.runs), model=cfg.model, kind=kind,
                         seed=results.get("seed", ""), s_per_epoch=results.get("seconds_per_epoch", float("nan")),
                         epochs=results.get("epochs_run", ""), pooled=pooled, level6=level6,
                         certificate=results.get("certificate", {}).get("holds", "")))
    fmt = lambda a: " / ".join(f"{v:.3f}" for v in a) + f" (mean {np.mean(a):.3f})"  # noqa: E731
    print(f"NRMSE = RMSE / standard deviation of the true output, per output (Acceleration1/2/3), "
          f"free run from the zero state, first {args.washout} samples of each record not scored")
    print("| run | model | kind | epochs | s / epoch | pooled NRMSE, levels 2, 4, 6 | level 6 NRMSE | certificate |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['model']} | {r['kind']} | {r['epochs']} | {r['s_per_epoch']:.1f} | "
              f"{fmt(r['pooled'])} | {fmt(r['level6'])} | {r['certificate']} |")
    for name, pooled, level6 in PUBLISHED:
        print(f"| {name} | | | | | {pooled} | {level6} | |")
    print()
    print(summary(rows))
    return rows


def summary(rows):
    """Mean +- standard deviation over the runs (seeds) of each model and kind: the mean over the
    three outputs of the pooled and the level-6 NRMSE, and the seconds per epoch."""
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["kind"]), []).append(r)
    lines = ["| model | kind | runs | pooled NRMSE (mean of outputs) | level 6 NRMSE (mean of outputs) | s / epoch |",
             "|---|---|---|---|---|---|"]
    for (model, kind), rs in groups.items():
        stat = lambda a: f"{np.mean(a):.3f} +- {np.std(a):.3f}"  # noqa: E731
        lines.append(f"| {model} | {kind} | {len(rs)} | {stat([np.mean(r['pooled']) for r in rs])} | "
                     f"{stat([np.mean(r['level6']) for r in rs])} | {stat([r['s_per_epoch'] for r in rs])} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
