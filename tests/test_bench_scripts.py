"""The benchmark scripts run end to end on tiny sizes and write what they promise."""

import csv
import importlib.util
import os

import numpy as np
import pytest

from r2dn_np import r2dn
from r2dn_np.core import tree
from r2dn_np.experiments import expressivity

SCRIPTS = os.path.join(os.path.dirname(__file__), "..", "scripts")


def _read(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(SCRIPTS, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_timing_quick(tmp_path, monkeypatch):
    bench = _load("bench_timing")
    monkeypatch.setattr(bench, "QUICK_R2DN", (2, 3))
    monkeypatch.setattr(bench, "ren", None)
    out = str(tmp_path / "t")
    bench.main(["--quick", "--no-f16", "--dtypes", "float32", "--repeats", "1", "--matmul-n", "64",
                "--out", out])
    rows = _read(out + ".csv")
    assert [r["size"] for r in rows] == ["nh=2", "nh=3"]
    cfg = r2dn.Config(1, 1, 16, 1, hidden=(3,) * 6)
    assert int(rows[1]["params"]) == tree.size(r2dn.init(cfg, 0))
    for r in rows:
        assert float(r["grad_min_s"]) <= float(r["grad_median_s"])
        assert 0 < float(r["grad_fraction"]) and np.isfinite(float(r["grad_gflops"]))


def test_bench_memory_shows_the_checkpoint_saving(tmp_path, monkeypatch):
    bench = _load("bench_timing")
    monkeypatch.setattr(bench, "QUICK_MEMORY_HORIZONS", (64,))
    monkeypatch.setattr(bench, "F16", dict(nu=1, nx=4, nv=8, ny=1, hidden=(32,), T=0, B=0))
    out = str(tmp_path / "m")
    bench.main(["--memory", "--quick", "--checkpoint", "8", "--out", out])
    rows = {int(r["checkpoint_every"]): float(r["peak_mib"]) for r in _read(out + "_memory.csv")}
    assert rows[8] < rows[0]


def test_expressivity_target_and_tiny_run(tmp_path, monkeypatch):
    ex = _load("expressivity")
    # at x = u = 0 only 0.05 cos(0) survives
    assert expressivity.target_map(np.zeros(1), np.zeros(1))[0] == pytest.approx(0.05)
    monkeypatch.setitem(ex.PRESETS, "quick", dict(ex.PRESETS["quick"], epochs=2, batches=3, batch=64, r2dn=(4,)))
    rows = ex.main(["--quick", "--models", "r2dn", "--out", str(tmp_path / "e")])
    assert len(rows) == 1 and rows[0]["steps"] == 6
    assert np.isfinite(rows[0]["nrmse"]) and rows[0]["nrmse"] > 0
    assert os.path.exists(str(tmp_path / "e.csv"))


def test_bench_cores_table(tmp_path, monkeypatch, capsys):
    bench = _load("bench_timing")
    monkeypatch.setattr(bench, "R2DN_WIDTHS", (3,))
    monkeypatch.setattr(bench, "CORE_SIZES", ("nh=3", "F16"))
    monkeypatch.setattr(bench, "F16", dict(nu=1, nx=2, nv=3, ny=1, hidden=(4,), T=5, B=4))
    monkeypatch.setattr(bench, "ren", None)
    out = str(tmp_path / "c")
    bench.main(["--cores", "--dtypes", "float64", "--rounds", "1", "--calls", "1", "--matmul-n", "64",
                "--out", out])
    rows = _read(out + "_cores.csv")
    assert [(r["size"], r["mode"]) for r in rows] == [
        (s, m) for s in ("nh=3", "F16") for m in ("1 core", "2 cores", "2 BLAS threads")]
    for r in rows:
        assert 0 < float(r["fraction"]) and np.isfinite(float(r["grad_gflops"]))
    assert "| float64 | F16 | 2 cores |" in capsys.readouterr().out


def test_bench_ren_layer_quick(tmp_path, monkeypatch):
    bench = _load("bench_ren_layer")
    monkeypatch.setattr(bench, "SIZES", {"small": (dict(nu=1, nx=2, nv=3, ny=1, activation="tanh"), 2, 3)})
    monkeypatch.setattr(bench.equilibrium_full, "_iterate", bench.equilibrium_full._iterate)  # restored after
    out = str(tmp_path / "r")
    bench.main(["--quick", "--repeats", "1", "--out", out])
    rows = _read(out + ".csv")
    assert [r["layer"] for r in rows] == ["acyclic", "full-anderson", "full-pr"]
    assert float(rows[0]["iterations_per_step"]) == 0 and float(rows[2]["iterations_per_step"]) >= 1
    for r in rows:
        assert 0 < float(r["min_ms"]) <= float(r["median_ms"])


def test_scaling_lti_quick(tmp_path):
    bench = _load("scaling_lti")
    out = str(tmp_path / "s")
    bench.main(["--nx", "4", "8", "--dense-max", "4", "--repeats", "1", "--B", "2", "--T", "3", "--out", out])
    rows = _read(out + ".csv")
    assert [(r["nx"], r["lti"]) for r in rows] == [
        ("4", "dense"), ("4", "diagonal"), ("4", "diagonal_plus_lowrank"),
        ("8", "diagonal"), ("8", "diagonal_plus_lowrank")]
    for r in rows:
        assert 0 < float(r["grad_min_s"]) <= float(r["grad_median_s"]) and float(r["peak_mib"]) > 0
        cfg = bench.config(int(r["nx"]), r["lti"], int(r["rank"]))
        assert int(r["params"]) == tree.size(r2dn.init(cfg, 0))
