"""Your own records: ``r2dn sysid --data``, ``r2dn_np.experiments.sysid.fit``, the strict CSV reader
(``r2dn_np.data.files``), output folders that are never shared, and ``simulate --periodic`` /
``--warmup``."""

import argparse
import dataclasses
import json
import os
import shlex

import numpy as np
import pytest

from r2dn_np import cli
from r2dn_np.interface import io
from r2dn_np.experiments import sysid
from r2dn_np.training import train
from r2dn_np.data import files, pendulum
from r2dn_np.data.sequences import DataError

HERE = os.path.dirname(os.path.abspath(__file__))
F16 = os.path.join(HERE, "..", "..", "shared", "data", "f16", "F16Data_FullMSine_Level1.csv")


def toy(u):
    """A small nonlinear system: x+ = 0.8 x + 0.5 tanh(u), y = x + 0.1 x^2."""
    x, y = 0.0, np.empty_like(u)
    for t, ut in enumerate(u):
        x = 0.8 * x + 0.5 * np.tanh(ut)
        y[t] = x + 0.1 * x * x
    return y


def write_record(path, T, seed, fs=50.0):
    u = np.random.default_rng(seed).standard_normal(T)
    y = toy(u)
    lines = ["time [s],force [N],position [m]"] + [f"{t / fs!r},{float(u[t])!r},{float(y[t])!r}" for t in range(T)]
    path.write_text("\n".join(lines) + "\n")
    return u, y


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    recs = {name: write_record(folder / f"{name}.csv", T, seed)
            for name, T, seed in (("train", 1200, 0), ("val", 400, 1), ("test", 400, 2))}
    return folder, recs


README = os.path.join(HERE, "..", "README.md")


def readme_commands():
    """The README's third example: its ``r2dn sysid --data``, ``simulate`` and ``verify`` lines."""
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    block = next(b for b in text.split("```bash\n")[1:] if "r2dn sysid --data" in b).split("```")[0]
    return [shlex.split(line)[1:] for line in block.strip().splitlines()]  # without .venv/bin/r2dn


@pytest.fixture(scope="module")
def user_run(user_files):
    """The README's third example's training command, as written there, in the folder of the
    files the test wrote (with the tiny preset, for seconds)."""
    folder, _ = user_files
    sysid_argv = readme_commands()[0]
    here = os.getcwd()
    os.chdir(folder)
    try:
        assert cli.main(sysid_argv + ["--preset", "tiny", "--quiet"]) == 0
    finally:
        os.chdir(here)
    return folder / "runs" / "sysid-train-r2dn", sysid_argv


def test_sysid_on_user_csv_files_end_to_end(user_files, user_run, capsys, monkeypatch):
    folder, recs = user_files
    out, _ = user_run
    res = json.loads((out / "results.json").read_text())
    assert res["fs"] == 50.0 and res["output_names"] == ["position [m]"]
    assert list(res["test"]) == ["test"] and res["data_info"]["train"] == ["train"]
    assert 0 < res["test"]["test"]["nrmse"] < 2 and res["certificate"]["holds"] is True
    assert "from the model's zero state" in res["conventions"]["test"]
    for png in ("prediction_test.png", "loss.png"):
        assert (out / png).stat().st_size > 1000
    # the README's simulate and verify lines, as written, on the test input (u.csv)
    monkeypatch.chdir(folder)
    (folder / "u.csv").write_text("force [N]\n" + "\n".join(repr(float(v)) for v in recs["test"][0]) + "\n")
    simulate_argv, verify_argv = readme_commands()[1:]
    capsys.readouterr()
    assert cli.main(simulate_argv) == 0
    text = (folder / "y.csv").read_text().splitlines()
    assert text[0] == "position [m]"  # the trained column's name
    model = train.load_model(out / "model.npz")
    np.testing.assert_array_equal(np.array(text[1:], dtype=float), model.simulate(recs["test"][0])[:, 0])
    nrmse, _ = train.evaluate([model.simulate(recs["test"][0])], [train.sequences.Record(
        recs["test"][0][:, None], recs["test"][1][:, None])], res["washout"])
    assert nrmse == res["test"]["test"]["nrmse"]
    capsys.readouterr()
    assert cli.main(verify_argv) == 0
    assert "4 of 4 checks held" in capsys.readouterr().out
    # the checkpoint beside it is not a model, and says so
    assert cli.main(["simulate", "--params", str(out / "checkpoint.npz"), "--input", "u.csv",
                     "--out", "y2.csv"]) == 1
    assert "is a training checkpoint, not a model; use the model.npz beside it" in capsys.readouterr().err


def test_zoom_shows_the_largest_error_after_the_start_up():
    from r2dn_np.experiments import plots

    e = np.zeros(2000)
    e[150] = 10.0  # the start-up transient, after a washout of 100
    e[1500] = 1.0
    z = plots.zoom_window(e, 100)
    assert z.start <= 1500 < z.stop and z.stop - z.start == 200
    assert plots.zoom_window(e[:150], 100) == slice(100, 150)  # a short record: all it has after the washout


def test_default_folder_names_data_and_model_and_is_never_shared(user_files, tmp_path, monkeypatch, capsys):
    folder, _ = user_files
    monkeypatch.chdir(tmp_path)
    argv = ["sysid", "--data", str(folder / "train.csv"), "--time-column", "time [s]", "--preset", "tiny",
            "--epochs", "1", "--quiet"]
    assert cli.main(argv) == 0
    run = tmp_path / "runs" / "sysid-train-r2dn"
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert {"results.json", "model.npz", "checkpoint.npz"} <= set(before)
    capsys.readouterr()
    assert cli.main(argv) == 1  # a second run into the same folder is refused ...
    err = capsys.readouterr().err
    assert "--out runs/sysid-train-r2dn: holds a run's results" in err and "--overwrite" in err and "--resume" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # ... and changes nothing
    assert cli.main(argv + ["--resume"]) == 0  # the same run, resumed: nothing left to train
    assert "0 epochs in" in capsys.readouterr().out
    assert cli.main(argv + ["--overwrite", "--seed", "1"]) == 0
    assert json.loads((run / "results.json").read_text())["seed"] == 1
    # other models and kinds get their own folders
    assert cli.main(argv + ["--kind", "lipschitz"]) == 0
    assert (tmp_path / "runs" / "sysid-train-r2dn-lipschitz" / "model.npz").exists()
    args = argparse.Namespace(data=None, dataset="f16", kind="contracting", model="ren")
    assert sysid.default_out(args) == os.path.join("runs", "sysid-f16-ren")


def test_resume_of_another_run_is_refused_before_data_generation(tmp_path, monkeypatch, capsys):
    argv = ["sysid", "--dataset", "pendulum", "--preset", "tiny", "--epochs", "1", "--out", str(tmp_path / "o"),
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert cli.main(argv) == 0

    def no_data(*a, **k):
        raise AssertionError("data generated before the checkpoint was checked")

    monkeypatch.setattr(pendulum, "load", no_data)
    assert cli.main(argv + ["--seed", "3", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "checkpoint of a different run (seed differ)" in err and "--overwrite" in err


def test_interrupt_names_the_checkpoint_and_the_resume_command(user_files, tmp_path, monkeypatch, capsys):
    folder, _ = user_files
    real_fit = train.fit

    def interrupted(*a, **k):
        real_fit(*a, **dict(k, stop_after=1))
        raise KeyboardInterrupt

    argv = ["sysid", "--data", str(folder / "train.csv"), "--preset", "tiny", "--out", str(tmp_path / "o"), "--quiet"]
    monkeypatch.setattr(train, "fit", interrupted)
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert f"checkpoint {tmp_path / 'o' / 'checkpoint.npz'} (epoch 1 done)" in err
    command = err.strip().splitlines()[-1].strip()
    assert command.startswith("r2dn sysid ") and command.endswith("--resume")
    monkeypatch.setattr(train, "fit", real_fit)
    assert cli.main(shlex.split(command)[1:]) == 0
    out = capsys.readouterr().out
    assert "2 epochs in" in out and "resumed after epoch 1 (3 in all)" in out
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert (res["epochs_this_run"], res["resumed_from"], res["epochs_run"]) == (2, 1, 3)


def test_python_api_fit_simulate_save_certify(tmp_path):
    rng = np.random.default_rng(0)
    u = rng.standard_normal((800, 1))
    y = toy(u[:, 0])[:, None]
    model = sysid.fit(u, y, preset="tiny", fs=50.0, output_names=["position [m]"])
    assert model.config.nu == 1 and len(model.metadata["history"]["loss"]) == 3
    report = model.certify()
    assert report.holds and "contraction" in report.table()
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = train.load_model(path)
    np.testing.assert_array_equal(loaded.simulate(u), model.simulate(u))
    assert loaded.metadata["output_names"] == ["position [m]"]
    # several records as a list; the validation record given
    two = sysid.fit([u[:400], u[400:]], [y[:400], y[400:]], u_val=u[:200], y_val=y[:200], preset="tiny", epochs=1)
    assert two.simulate([u[:10], u[:20]])[1].shape == (20, 1)
    with pytest.raises(ValueError, match="2 input records but 1 output records"):
        sysid.fit([u, u], [y], preset="tiny")


def test_python_api_best_preset_refines(monkeypatch):
    """A preset with a ``refine`` (best's; here on the tiny sizes) refines after Adam."""
    tiny = sysid.PRESETS["tiny"]["files"]
    monkeypatch.setitem(sysid.PRESETS["best"], "files", dataclasses.replace(tiny, refine=train.RefineOptions(iterations=3)))
    rng = np.random.default_rng(1)
    u = rng.standard_normal((800, 1))
    model = sysid.fit(u, toy(u[:, 0])[:, None], preset="best", epochs=1)
    h = model.metadata["refine"]
    assert h["iterations"] == 3 and h["loss"][-1] <= h["loss"][0] and model.certify().holds
    assert h["val_nrmse"][0] == pytest.approx(model.metadata["best_val_nrmse"], rel=1e-12)


def test_simulate_periodic_and_warmup_against_the_long_run(user_run, tmp_path):
    out, _ = user_run
    model = train.load_model(out / "model.npz")
    rng = np.random.default_rng(5)
    u, w = rng.standard_normal((50, 1)), rng.standard_normal((30, 1))
    np.testing.assert_array_equal(model.simulate(u, periodic=True), model.simulate(np.concatenate([u, u]))[50:])
    np.testing.assert_array_equal(model.simulate(u, warmup=w), model.simulate(np.concatenate([w, u]))[30:])
    np.testing.assert_array_equal(model.simulate(u, warmup=w, periodic=True),
                                  model.simulate(np.concatenate([w, u, u]))[80:])
    assert not np.array_equal(model.simulate(u, warmup=w), model.simulate(u))  # the start matters
    # the command line: --periodic and --warmup write the same numbers
    np.savez(tmp_path / "u.npz", u=u)
    (tmp_path / "w.csv").write_text("\n".join(repr(float(v)) for v in w[:, 0]) + "\n")
    assert cli.main(["simulate", "--params", str(out / "model.npz"), "--input", str(tmp_path / "u.npz"),
                     "--warmup", str(tmp_path / "w.csv"), "--periodic", "--out", str(tmp_path / "y.npz")]) == 0
    np.testing.assert_array_equal(io.read_npz(tmp_path / "y.npz")["y"], model.simulate(u, warmup=w, periodic=True))


def _csv(tmp_path, text, name="r.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_reader_refuses_what_it_cannot_read_exactly(tmp_path):
    def refused(text, match):
        with pytest.raises(DataError, match=match):
            files.read_csv(_csv(tmp_path, text)).numbers()

    # a blank line inside the data would shift every later sample
    refused("u\n1\n2\n\n3\n", r"r.csv: line 4 is blank, between rows of data")
    # a first line of NaN is data (and refused as such), not a header
    refused("nan\n1\n2\n", r"line 1, column 1: 'nan' is not a finite number")
    refused("u,nan\n1,2\n", r"line 1 mixes column names and numbers .* \('nan' does\)")
    refused("u,1.5\n1,2\n", r"line 1 mixes column names and numbers")
    # a delimiter other than the first line's
    refused("1;2\n3,4\n5;6\n", r"line 2 contains ',', but line 1 separates its fields with ';'")
    refused("u,y\n1,2\n3;4\n", r"line 3 contains ';', but line 1 separates its fields with ','")
    refused("u\n", "no rows of numbers")
    refused("", "no data")
    with pytest.raises(DataError, match="line 1 must be a header naming the columns"):
        files.read_csv(_csv(tmp_path, "1,2\n3,4\n"), header=True)
    # what it reads: blank lines at either end, ';' and tab delimiters, a header of names
    for text in ("\nu;y\n1;2\n3;4\n\n\n", "u\ty\n1\t2\n3\t4\n", "1,2\n3,4\n"):
        t = files.read_csv(_csv(tmp_path, text))
        np.testing.assert_array_equal(t.numbers(), [[1.0, 2.0], [3.0, 4.0]])
    assert files.read_csv(_csv(tmp_path, "u;y\n1;2\n")).names == ("u", "y")
    assert files.read_csv(_csv(tmp_path, '"force [N]","y, m"\n1,2\n')).names == ("force [N]", "y, m")  # quoted


def test_load_records_columns_records_and_rate(tmp_path):
    text = "run,t,a,b,c\n" + "".join(f"{r},{k * 0.1:.1f},{k},{2 * k},{3 * k}\n" for r in (7, 8) for k in range(4))
    path = _csv(tmp_path, text)
    got = files.load_records([path], inputs=["a", "b"], outputs=["c"], record_column="run", time_column="t")
    assert got.names == ["r:7", "r:8"] and got.input_names == ("a", "b") and got.output_names == ("c",)
    assert got.fs == pytest.approx(10.0)
    np.testing.assert_array_equal(got.records[1].y[:, 0], [0, 3, 6, 9])
    # defaults: the last free column is the output, the others inputs
    got = files.load_records([path], record_column="run", time_column="t")
    assert got.input_names == ("a", "b") and got.output_names == ("c",)
    with pytest.raises(DataError, match=r"--outputs 'd': .* has no such column; its columns are 'run', 't'"):
        files.load_records([path], outputs=["d"])
    with pytest.raises(DataError, match="record 7 of --record-column 'run' appears again"):
        files.load_records([_csv(tmp_path, "run,a,b\n7,1,2\n7,1,2\n8,1,2\n8,1,2\n7,1,2\n7,1,2\n", "x.csv")],
                           record_column="run")
    gap = "t,a,b\n0,1,2\n0.1,1,2\n0.3,1,2\n0.4,1,2\n"
    with pytest.raises(DataError, match=r"line 4: --time-column 't' steps by 0.2 s .* \(a missing row\?\)"):
        files.load_records([_csv(tmp_path, gap, "g.csv")], time_column="t")
    fs_text = "a,b,Fs\n1,2,50\n1,2,\n1,2,60\n"
    with pytest.raises(DataError, match=r"line 4, column 3 \('Fs'\): '60'; --fs Fs expects 50 Hz as on line 2"):
        files.load_records([_csv(tmp_path, fs_text, "f.csv")], inputs=["a"], outputs=["b"], fs_column="Fs")
    with pytest.raises(DataError, match=r"--data .*nope.csv: no such file"):
        files.load_records([str(tmp_path / "nope.csv")])


def test_npz_records(tmp_path):
    u, y = np.arange(10.0), np.arange(10.0) ** 2
    np.savez(tmp_path / "r.npz", u=u, y=y, fs=np.array(250.0))
    got = files.load_records([str(tmp_path / "r.npz")])
    assert got.fs == 250.0 and got.input_names == ("u",)
    np.testing.assert_array_equal(got.records[0].y[:, 0], y)
    np.savez(tmp_path / "n.npz", force=u, disp=y)
    got = files.load_records([str(tmp_path / "n.npz")], inputs=["force"], outputs=["disp"])
    np.testing.assert_array_equal(got.records[0].u[:, 0], u)
    with pytest.raises(DataError, match="name the input and output arrays with --inputs and --outputs"):
        files.load_records([str(tmp_path / "n.npz")])


def test_sysid_argument_errors(tmp_path, capsys):
    def err(argv):
        assert cli.main(argv) == 1
        return capsys.readouterr().err

    assert "--data and --dataset f16: give one of them" in err(["sysid", "--data", "a.csv", "--dataset", "f16"])
    assert "--inputs describes your records and needs --data" in err(["sysid", "--inputs", "u"])
    assert "--fs must be a positive number of Hz or a column's name" in err(["sysid", "--data", "a.csv", "--fs", "0"])
    assert "--fs and --time-column both give" in err(["sysid", "--data", "a.csv", "--fs", "Fs", "--time-column", "t"])
    bad = _csv(tmp_path, "u,y\n1,2\n\n3,4\n")
    assert f"{bad}: line 3 is blank" in err(["sysid", "--data", bad, "--out", str(tmp_path / "o")])


@pytest.mark.skipif(not os.path.exists(F16), reason="the F-16 benchmark files are not beside the clone")
def test_reads_the_real_f16_file_as_the_f16_loader_does():
    from r2dn_np.data import f16

    got = files.load_records([F16], inputs=["Force", "Voltage"],
                             outputs=["Acceleration1", "Acceleration2", "Acceleration3"])
    ref = f16.read_csv(F16)
    np.testing.assert_array_equal(got.records[0].u, ref.u)
    np.testing.assert_array_equal(got.records[0].y, ref.y)
    assert got.fs is None
    # the rate from the file's own Fs column (filled in the first row only)
    assert files.load_records([F16], inputs=["Force", "Voltage"], outputs=["Acceleration1"], fs_column="Fs").fs == 400


def test_every_flag_of_every_command_has_help_with_its_default():
    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"sysid", "verify", "simulate", "sweep"}
    for name, sub in commands.items():
        text = sub.format_help()
        for action in sub._actions:
            if not action.option_strings or action.option_strings == ["-h", "--help"]:
                continue
            flag = action.option_strings[-1]
            assert action.help, (name, flag)
            if action.default is not None and action.default is not False:  # 0 is a default to state
                assert "default" in cli._Help(name)._get_help_string(action), (name, flag)
        assert "(default: " in text, name
    text = commands["sysid"].format_help()
    for preset, per in sysid.PRESETS.items():  # the presets explained: sizes, epochs, time
        assert f"  {preset}: " in text and f"{per['boucwen'].options.epochs} epochs" in text
    assert "minutes" in text and "--data" in text and "runs/sysid-boucwen-r2dn" in text
    assert "order (default: 0)" in " ".join(text.split())  # --seed's default, 0, is stated too


def test_the_python_example_of_docs_sysid_runs(capsys):
    import pathlib
    import re

    text = (pathlib.Path(HERE).parent / "docs" / "sysid.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "sysid.fit(" in b)
    namespace = {}
    exec(compile(block, "docs/sysid.md", "exec"), namespace)
    assert capsys.readouterr().out.strip() == "True" and namespace["y_hat"].shape == (800, 1)
