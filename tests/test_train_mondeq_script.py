"""Smoke test of scripts/train_mondeq.py (tiny settings; the real run is in docs/deq.md)."""

import importlib.util
import json
import pathlib

_PATH = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "train_mondeq.py"
_spec = importlib.util.spec_from_file_location("train_mondeq", _PATH)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_main_trains_sweeps_and_demonstrates(tmp_path, capsys):
    out = tmp_path / "r.json"
    results = script.main([
        "--epochs", "2", "--n", "8", "--train-limit", "120", "--sweep-rows", "16",
        "--sweep-max-iter", "300", "--alphas", "0.1", "5", "--scales", "0.5", "3",
        "--draws", "2", "--demo-max-iter", "100", "--rhos", "0.5", "0.9", "--quiet", "--out", str(out),
    ])
    t = results["training"]
    assert 0.0 <= t["test_accuracy"] <= 1.0 and len(t["train_loss"]) == 2
    assert t["iterations"]["forward"] >= 1 and t["iterations"]["backward"] >= 1
    sweep = {(r["alpha"], r["splitting"]): r for r in results["sweep"]}
    assert set(sweep) == {(a, s) for a in (0.1, 5.0) for s in ("pr", "fb")}
    # Peaceman-Rachford converges for every step
    assert all(sweep[a, "pr"]["forward"] is not None for a in (0.1, 5.0))
    assert results["fb_alpha_bound"] > 0
    demo = {r["scale"]: r for r in results["demonstration"]}
    assert set(demo) == {0.5, 3.0}
    assert all(r["mondeq_pr"] == 1.0 for r in demo.values())
    assert all(0.0 <= r["deq_fixed_point"] <= 1.0 for r in demo.values())
    solvers = {(r["rho"], r["solver"]): r for r in results["solvers"]}
    assert len(solvers) == 6 and all(r["forward"] and r["backward"] for r in solvers.values())
    assert solvers[0.9, "anderson"]["forward"] < solvers[0.9, "fixed_point"]["forward"]
    saved = json.loads(out.read_text())
    assert saved["settings"]["n"] == 8 and saved["training"]["config"]["splitting"] == "pr"
    text = capsys.readouterr().out
    assert "| alpha | PR forward | PR backward | FB forward | FB backward |" in text
    assert "| scale s | DEQ fixed-point | DEQ Anderson | monDEQ PR |" in text
    assert "| rho | fixed_point | anderson | broyden |" in text
