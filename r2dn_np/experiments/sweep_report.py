"""The sweep's report: the paper's table (mean +- std over seeds of seconds per epoch and of the
test metric, with the REN/R2DN time ratio) as Markdown and CSV, and a plot of learning curves,
from the summaries of finished runs (``r2dn_np.experiments.sweep.gather``).

Examples
--------
>>> from r2dn_np.experiments import sweep_report
>>> s = {"settings": {"task": "expressivity", "preset": "tiny", "model": "r2dn", "kind": "contracting", "seed": 0},
...      "seconds_per_epoch": 0.5, "test_metric": 0.25}
>>> [(r["model"], r["seeds"], r["test_metric"][0]) for r in sweep_report.table([s, None])]
[('r2dn', [0], 0.25)]
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..core import _validate
from ..interface import io
from .sweep import TASKS

__all__ = ["table", "markdown", "write_table", "plot_curves"]


def _mean_std(values):
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def table(summaries):
    """Rows of the paper's table from run summaries (:func:`gather`; None entries are skipped):
    one per task, preset, model and kind, with ``seeds``, ``seconds_per_epoch`` and
    ``test_metric`` as (mean, std over seeds; std NaN for one seed), and ``time_ratio`` (the
    REN's mean seconds per epoch over the R2DN's of the same task, preset and kind; None
    without both)."""
    if not isinstance(summaries, (list, tuple)):
        raise TypeError(f"summaries must be a list of run summaries (sweep.gather); got {type(summaries).__name__}")
    groups = {}
    for i, s in enumerate(summaries):
        if s is None:
            continue
        if not isinstance(s, dict) or not isinstance(s.get("settings"), dict):
            raise TypeError(f"summaries[{i}] must be a run summary (a dict with 'settings'); got {type(s).__name__}")
        st = s["settings"]
        groups.setdefault((st["task"], st["preset"], st["model"], st["kind"]), []).append(s)
    rows = []
    for (task, preset, model, kind), group in groups.items():
        metric = TASKS[task].metric if task in TASKS else "test metric"
        rows.append({"task": task, "preset": preset, "model": model, "kind": kind,
                     "seeds": sorted(s["settings"]["seed"] for s in group), "metric": metric,
                     "seconds_per_epoch": _mean_std([s["seconds_per_epoch"] for s in group]),
                     "test_metric": _mean_std([s["test_metric"] for s in group]), "time_ratio": None})
    for row in rows:
        ref = {r["model"]: r["seconds_per_epoch"][0] for r in rows
               if (r["task"], r["preset"], r["kind"]) == (row["task"], row["preset"], row["kind"])}
        if "ren" in ref and "r2dn" in ref:
            row["time_ratio"] = ref["ren"] / ref["r2dn"]
    return rows


def _pm(mean, std, fmt):
    return f"{mean:{fmt}}" + ("" if math.isnan(std) else f" ± {std:{fmt}}")


def markdown(rows):
    """The rows of :func:`table` as a Markdown table."""
    lines = ["| task | preset | model | kind | seeds | s / epoch | REN / R2DN time | metric | test metric |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = "" if r["time_ratio"] is None else f"{r['time_ratio']:.2f}"
        lines.append(f"| {r['task']} | {r['preset']} | {r['model']} | {r['kind']} | {len(r['seeds'])} | "
                     f"{_pm(*r['seconds_per_epoch'], '.3g')} | {ratio} | {r['metric']} | "
                     f"{_pm(*r['test_metric'], '.4g')} |")
    return "\n".join(lines)


_CSV_COLUMNS = ("task", "preset", "model", "kind", "seeds", "seconds_per_epoch_mean", "seconds_per_epoch_std",
                "time_ratio_ren_r2dn", "metric", "test_metric_mean", "test_metric_std")


def write_table(rows, folder):
    """Write ``table.md`` and ``table.csv`` into ``folder``; returns their paths."""
    folder = _validate.path("folder", folder)
    os.makedirs(folder, exist_ok=True)
    md, csv_path = os.path.join(folder, "table.md"), os.path.join(folder, "table.csv")
    _write_text(md, markdown(rows) + "\n")
    out = [",".join(_CSV_COLUMNS)]
    for r in rows:
        values = (r["task"], r["preset"], r["model"], r["kind"], " ".join(map(str, r["seeds"])),
                  *r["seconds_per_epoch"], "" if r["time_ratio"] is None else r["time_ratio"], r["metric"],
                  *r["test_metric"])
        out.append(",".join(f'"{v}"' if isinstance(v, str) and ("," in v or " " in v) else
                            ("" if isinstance(v, float) and math.isnan(v) else repr(v) if isinstance(v, float)
                             else str(v)) for v in values))
    _write_text(csv_path, "\n".join(out) + "\n")
    return md, csv_path


def _write_text(path, text):
    with io.atomic_write(path) as fh:
        fh.write(text.encode("utf-8"))


def plot_curves(summaries, path):
    """Learning curves, mean and band (min to max) over seeds, one panel per task and preset.
    Returns False without writing when matplotlib is not installed (``r2dn_np[plots]``)."""
    path = _validate.path("path", path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    groups = {}
    for s in summaries:
        if s is not None and s.get("curve"):
            st = s["settings"]
            groups.setdefault((st["task"], st["preset"]), {}).setdefault(f"{st['model']}-{st['kind']}", []).append(
                s["curve"])
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(5 * max(len(groups), 1), 3.6), squeeze=False)
    for ax, ((task, preset), curves) in zip(axes[0], sorted(groups.items())):
        for label, group in sorted(curves.items()):
            n = min(len(c) for c in group)
            a = np.array([c[:n] for c in group], dtype=np.float64)
            epochs = np.arange(1, n + 1)
            line, = ax.plot(epochs, a.mean(axis=0), label=f"{label} ({len(group)} seeds)")
            ax.fill_between(epochs, a.min(axis=0), a.max(axis=0), color=line.get_color(), alpha=0.25)
        ax.set_yscale("log")
        ax.set_title(f"{task}, {preset}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(TASKS[task].curve if task in TASKS else "curve")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
