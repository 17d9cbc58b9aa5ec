import json
import os
import subprocess
import sys

import pytest

from r2dn_np import cli, io, r2dn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``python -m r2dn_np sysid --preset tiny`` in a subprocess, as a user runs it."""
    out = tmp_path_factory.mktemp("run")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "R2DN_CLI_THREADS_SET"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "r2dn_np", "sysid", "--preset", "tiny", "--out", str(out),
         "--cache-dir", str(out / "cache")],
        capture_output=True, text=True, env=env, cwd=str(out), timeout=300,
    )
    return out, proc


def test_sysid_tiny_end_to_end(tiny_run):
    out, proc = tiny_run
    assert proc.returncode == 0, proc.stderr
    assert "val NRMSE" in proc.stdout and "certificate (contracting): holds" in proc.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"] == "boucwen" and res["preset"] == "tiny" and res["epochs_run"] == 3
    for name in ("multisine", "sweep"):
        t = res["test"][name]
        assert 0 < t["nrmse"] < 10 and 0 < t["linear_nrmse"] < 10 and t["rmse"] > 0
    assert res["certificate"]["holds"] is True
    assert res["seconds_per_epoch"] > 0
    # the command restarted itself with single-threaded BLAS
    assert res["machine"]["blas_threads"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                              "MKL_NUM_THREADS": "1"}
    loaded = io.load(out / "model.npz")
    assert isinstance(loaded.config, r2dn.Config) and loaded.config.nx == cli.PRESETS["tiny"].nx
    assert loaded.metadata["dataset"] == "boucwen"
    assert (out / "prediction.png").stat().st_size > 1000


def test_verify_on_the_trained_model(tiny_run, capsys):
    out, _ = tiny_run
    assert cli.main(["verify", "--params", str(out / "model.npz")]) == 0
    text = capsys.readouterr().out
    assert "gradient vs finite differences" in text and "contraction in metric M" in text
    assert "4 of 4 checks passed" in text


def test_verify_on_a_corrupted_file_fails_clearly(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    bad = tmp_path / "bad.npz"
    raw = bytearray((out / "model.npz").read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = b"\x00" * 64  # damage the middle of the archive
    bad.write_bytes(bytes(raw))
    assert cli.main(["verify", "--params", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("r2dn verify: error: ") and str(bad) in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_verify_fresh_models(capsys):
    assert cli.main(["verify", "--kind", "lipschitz", "--gamma", "2"]) == 0
    text = capsys.readouterr().out
    assert text.count("Lipschitz: searched gain / gamma") == len(cli.SIZES)


def test_verify_reports_a_failing_check(monkeypatch, capsys):
    # a broken backward pass must turn into a failed row and exit status 1
    real = r2dn.backward

    def wrong(cfg, explicit, cache, dY, dxT=None):
        de, dx0, dU = real(cfg, explicit, cache, dY, dxT)
        return de._replace(A=1.1 * de.A), dx0, dU

    monkeypatch.setattr(r2dn, "backward", wrong)
    assert cli.main(["verify", "--kind", "contracting"]) == 1
    assert "FAILED" in capsys.readouterr().out


def _error(argv, capsys):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_missing_data_dir(tmp_path, capsys):
    err = _error(["sysid", "--dataset", "f16", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path)], capsys)
    assert "does not exist" in err
    assert "--data-dir" in _error(["sysid", "--dataset", "f16", "--out", str(tmp_path)], capsys)


def test_malformed_csv(tmp_path, capsys):
    for name in ("F16Data_FullMSine_Level1.csv", "F16Data_FullMSine_Level2_Validation.csv"):
        (tmp_path / name).write_text("Force,Voltage,Acceleration1,Acceleration2,Acceleration3\n1,2,3,4,5\n1,2,3\n")
    err = _error(["sysid", "--dataset", "f16", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")], capsys)
    assert "malformed row" in err and "Level1.csv" in err


def test_unknown_preset(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["sysid", "--preset", "huge"])
    assert exc.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_cupy_without_gpu(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as on a machine without CuPy
    err = _error(["sysid", "--backend", "cupy", "--preset", "tiny", "--out", str(tmp_path)], capsys)
    assert "backend='cupy'" in err and "pip install" in err
    assert "backend='cupy'" in _error(["verify", "--backend", "cupy"], capsys)


def test_missing_model_module(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(io.MODELS, "ren", "r2dn_np._not_there")
    err = _error(["sysid", "--model", "ren", "--preset", "tiny", "--out", str(tmp_path)], capsys)
    assert "model 'ren' needs the module" in err


def test_without_matplotlib_says_how_to_get_the_plot(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc = cli.main(["sysid", "--preset", "tiny", "--dataset", "pendulum", "--epochs", "1", "--out", str(tmp_path),
                   "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    assert "pip install 'r2dn_np[plots]'" in capsys.readouterr().out
    assert not (tmp_path / "prediction.png").exists()
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["dataset"] == "pendulum" and "plot" not in res["files"]


def test_lipschitz_sysid_and_resume(tmp_path, capsys):
    argv = ["sysid", "--preset", "tiny", "--kind", "lipschitz", "--gamma", "5", "--out", str(tmp_path),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert cli.main(argv) == 0
    first = json.loads((tmp_path / "results.json").read_text())
    assert [c["name"] for c in first["certificate"]["checks"]][1].startswith("gamma-Lipschitz")
    assert cli.main(argv + ["--resume"]) == 0  # the checkpoint is complete: nothing left to train
    second = json.loads((tmp_path / "results.json").read_text())
    assert second["test"] == first["test"] and second["history"]["loss"] == first["history"]["loss"]
