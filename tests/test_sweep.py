"""r2dn sweep on a local Dask cluster of 2 processes with tiny presets: a sweep completes and its
table matches the same runs done serially, a killed worker does not stop it, a second invocation
does no work, and runs of other code are never mixed in."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from r2dn_np import cli
from r2dn_np.experiments import sweep, sweep_report

distributed = pytest.importorskip("distributed", reason="the sweep extra (pip install 'r2dn_np[sweep]')")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _text(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def _json(path):
    return json.loads(_text(path))


@pytest.fixture(scope="module")
def client():
    """A local cluster of 2 worker processes, one thread each, importing this checkout."""
    env = {"PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  env=env) as cluster, distributed.Client(cluster) as c:
        yield c


GRID = dict(tasks=["expressivity"], models=["r2dn", "ren"], seeds=2, preset="tiny")


@pytest.fixture(scope="module")
def swept(client, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    runs = sweep.grid(**GRID)
    lines = []
    report = sweep.run(runs, root, scheduler=client, log=lines.append, interval=1.0)
    return runs, root, report, lines


def test_a_sweep_completes_and_its_table_matches_serial_runs(swept, tmp_path):
    runs, root, report, lines = swept
    assert report.ran == 4 and report.skipped == 0 and not report.failed
    assert all(s is not None for s in report.summaries)
    assert lines[-1].startswith("sweep: 4/4 done") and "0 failed" in lines[-1]
    for r, s in zip(runs, report.summaries):
        folder = r.folder(str(root), sweep.code_version(r.task))
        assert _json(os.path.join(folder, "summary.json")) == s
        assert os.path.isfile(os.path.join(folder, "checkpoint.npz"))
        assert s["settings"] == r.settings() and len(s["curve"]) == s["epochs"] == 3 and s["seconds_per_epoch"] > 0
    serial = sweep.run(runs, tmp_path, serial=True, log=None)
    got, want = sweep_report.table(report.summaries), sweep_report.table(serial.summaries)
    assert [(r["model"], r["seeds"]) for r in got] == [("r2dn", [0, 1]), ("ren", [0, 1])]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g["test_metric"], w["test_metric"], rtol=1e-12)
        assert g["time_ratio"] > 0 and g["seconds_per_epoch"][0] > 0
    for a, b in zip(report.summaries, serial.summaries):
        np.testing.assert_allclose(a["curve"], b["curve"], rtol=1e-12)
    md, csv_path = sweep_report.write_table(got, tmp_path / "table")
    text = _text(md)
    assert text.count("| expressivity | tiny |") == 2 and "±" in text
    rows = _text(csv_path).splitlines()
    assert rows[0].startswith("task,preset,model,kind,seeds") and len(rows) == 3


def test_a_second_invocation_does_no_work(swept):
    runs, root, report, _ = swept
    again = sweep.run(runs, root, workers=2, log=None)  # would start a cluster if anything were left
    assert again.ran == 0 and again.skipped == 4 and again.summaries == report.summaries
    assert again.seconds < 5


def test_a_run_of_other_code_is_not_mixed_in(swept, tmp_path, monkeypatch):
    runs, root, report, _ = swept
    run = runs[0]
    real = sweep.code_version(run.task)
    monkeypatch.setattr(sweep, "code_version", lambda task: "0" * 16)
    other = sweep.run([run], tmp_path, serial=True, log=None)
    monkeypatch.undo()
    assert other.ran == 1 and other.summaries[0]["code_version"] == "0" * 16
    assert sweep.gather([run], tmp_path) == [None]  # finished, but by other code
    with pytest.raises(RuntimeError, match="code version differs"):
        sweep.run_one(run, tmp_path, code="0" * 16)  # a worker with this code refuses the other's runs
    now = sweep.run([run], tmp_path, serial=True, log=None)
    assert now.ran == 1 and now.summaries[0]["code_version"] == real
    assert len(os.listdir(os.path.dirname(run.folder(str(tmp_path), real)))) == 2  # side by side, never merged
    (row,) = sweep_report.table(sweep.gather([run], tmp_path))
    assert row["seeds"] == [run.seed] and row["test_metric"][0] == now.summaries[0]["test_metric"]
    # other settings are other runs too
    assert sweep.Run("expressivity", "tiny", "r2dn", epochs=4).fingerprint(real) != run.fingerprint(real)


def test_a_killed_worker_does_not_stop_the_sweep(client, tmp_path):
    runs = sweep.grid(["expressivity"], ["r2dn"], 2, "tiny", epochs=100)
    pids = client.run(os.getpid)
    out = {}
    thread = threading.Thread(target=lambda: out.update(report=sweep.run(runs, tmp_path, scheduler=client,
                                                                           log=None)))
    thread.start()
    checkpoints = [os.path.join(r.folder(str(tmp_path), sweep.code_version(r.task)), "checkpoint.npz") for r in runs]
    deadline = time.monotonic() + 60
    while not all(os.path.exists(p) for p in checkpoints) and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    busy = [address for address, keys in client.run(sweep._executing).items() if keys]
    assert thread.is_alive() and busy, "the runs finished before a worker could be killed: give them more epochs"
    os.kill(pids[busy[0]], signal.SIGKILL)  # mid-run: its run has a checkpoint
    thread.join(120)
    report = out["report"]
    assert not report.failed and report.ran == 2 and all(s["epochs"] == 100 for s in report.summaries)
    resumed = [s for s in report.summaries if s["resumed_from"] > 0]
    assert resumed, [s["resumed_from"] for s in report.summaries]
    # resumed from its checkpoint, it ends exactly where an uninterrupted run ends
    r = runs[report.summaries.index(resumed[0])]
    alone = sweep.run([r], tmp_path / "alone", serial=True, log=None).summaries[0]
    assert alone["test_metric"] == resumed[0]["test_metric"] and alone["curve"] == resumed[0]["curve"]


def test_sweep_cli_runs_sysid_on_an_existing_cluster_and_prints_the_table(client, tmp_path, capsys):
    args = ["sweep", "--tasks", "sysid-boucwen", "--models", "r2dn,ren", "--seeds", "1", "--preset", "tiny",
            "--root", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    assert cli.main(args + ["--scheduler", client.scheduler.address]) == 0
    out = capsys.readouterr().out
    assert "sweep: 2/2 done" in out and "| sysid-boucwen | tiny | ren | contracting | 1 |" in out
    folders = [d for d, _, files in os.walk(tmp_path / "runs") if "summary.json" in files]
    summaries = [_json(os.path.join(d, "summary.json")) for d in folders]
    assert sorted(s["settings"]["model"] for s in summaries) == ["r2dn", "ren"]
    for d, s in zip(folders, summaries):  # each run's folder is r2dn sysid's
        assert _json(os.path.join(d, "results.json"))["test"]["multisine"]["nrmse"] == s["test_metric"]
        assert os.path.isfile(os.path.join(d, "model.npz")) and s["epochs"] == 3
    assert cli.main(args + ["--table"]) == 0
    out = capsys.readouterr().out
    assert "sweep:" not in out and "REN / R2DN time" in out and (tmp_path / "runs" / "table.csv").is_file()
    assert (tmp_path / "runs" / "curves.png").stat().st_size > 1000  # matplotlib is in the test extra
    assert cli.main(args + ["--table", "--seeds", "2"]) == 1  # seed 1 never ran, for either model
    assert "2 of 4 runs have not finished" in capsys.readouterr().out


@pytest.mark.parametrize("argv, flag", [
    (["--tasks", "nope"], "--tasks"),
    (["--models", "r2dn,lstm"], "--models"),
    (["--kinds", "stable"], "--kinds"),
    (["--tasks", "expressivity", "--preset", "paper"], "--preset"),
    (["--seeds", "0"], "--seeds"),
    (["--workers", "0"], "--workers"),
    (["--serial", "--workers", "2"], "--serial"),
    (["--epochs", "0"], "--epochs"),
    (["--gamma", "-1"], "--gamma"),
])
def test_cli_errors_name_the_flag(tmp_path, capsys, argv, flag):
    assert cli.main(["sweep", "--root", str(tmp_path / "r"), "--preset", "tiny", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"r2dn sweep: error: {flag}") and err.count("\n") == 1, err


def test_sysid_f16_needs_its_data_folder(tmp_path):
    (run,) = sweep.grid(["sysid-f16"], ["r2dn"], 1, "tiny")
    report = sweep.run([run], tmp_path, serial=True, log=None)
    assert "data_dir must name the f16 data folder" in report.failed[run]
    assert "ValueError" in _text(os.path.join(run.folder(str(tmp_path), sweep.code_version(run.task)), "error.txt"))


def test_api_inputs_are_checked(tmp_path):
    with pytest.raises(ValueError, match="^tasks must be one of"):
        sweep.grid(["nope"], ["r2dn"], 1, "tiny")
    with pytest.raises(TypeError, match="^tasks must be a non-empty list"):
        sweep.grid("expressivity", ["r2dn"], 1, "tiny")
    with pytest.raises(ValueError, match="^seeds must not repeat"):
        sweep.grid(["expressivity"], ["r2dn"], [1, 1], "tiny")
    with pytest.raises(TypeError, match="^seeds must be an integer"):
        sweep.grid(["expressivity"], ["r2dn"], [1.5], "tiny")
    runs = sweep.grid(["expressivity"], ["r2dn"], 1, "tiny")
    with pytest.raises(TypeError, match="^runs must be a non-empty list"):
        sweep.run(runs[0], tmp_path)
    with pytest.raises(TypeError, match="^scheduler must be"):
        sweep.run(runs, tmp_path, scheduler=8786)
    with pytest.raises(TypeError, match="^retries must be"):
        sweep.run(runs, tmp_path, retries=1.0)
    with pytest.raises(TypeError, match="^function must be callable"):
        sweep.register("mine", None, presets=("tiny",), metric="m", curve="c")
    with pytest.raises(ValueError, match="^name must be"):
        sweep.register("my task", print, presets=("tiny",), metric="m", curve="c")


def test_dask_is_imported_by_the_sweep_only():
    code = ("import sys, r2dn_np, r2dn_np.cli, r2dn_np.training.train, r2dn_np.experiments.sweep, r2dn_np.r2dn, r2dn_np.ren; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_the_paper_experiments_run_as_sweep_tasks(tmp_path):
    """The observer and Youla tasks (tiny sizes) through the sweep, serially: one results folder per
    run and a table row per (task, model)."""
    runs = sweep.grid(["observer", "youla"], ["r2dn"], seeds=1, preset="tiny")
    report = sweep.run(runs, tmp_path, serial=True, log=lambda line: None)
    summaries = sweep.gather(runs, tmp_path)
    assert len(summaries) == 2 and None not in summaries, report
    for summary in summaries:
        assert np.isfinite(summary["test_metric"]) and summary["seconds_per_epoch"] > 0
        assert len(summary["curve"]) == summary["epochs"] >= 2
    rows = sweep_report.table(summaries)
    assert {r["task"] for r in rows} == {"observer", "youla"}


def test_an_unwritable_root_is_refused_with_its_cause(tmp_path, capsys, monkeypatch):
    # before any run starts, in one line naming --root and the reason (not a failed run per grid
    # point followed by "run the same command")
    (tmp_path / "file").write_text("x")
    argv = ["sweep", "--tasks", "expressivity", "--models", "r2dn", "--seeds", "1", "--preset", "tiny", "--serial"]
    assert cli.main([*argv, "--root", str(tmp_path / "file" / "runs")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("r2dn sweep: error: --root ") and err.count("\n") == 1, err
    assert "cannot write runs there (Not a directory; a part of the path is a file, not a folder)" in err

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sweep.tempfile, "TemporaryFile", refuse)
    assert cli.main([*argv, "--root", str(tmp_path / "ro")]) == 1
    err = capsys.readouterr().err
    assert "--root " in err and "cannot write runs there (Permission denied)" in err and "run the same" not in err
