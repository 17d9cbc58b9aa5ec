"""Using a trained model: ``train.load_model`` and ``r2dn simulate``."""

import json

import numpy as np
import pytest

from r2dn_np import cli, lbdn, r2dn
from r2dn_np.interface import io
from r2dn_np.training import train
from r2dn_np.data import pendulum, sequences


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``r2dn sysid --preset tiny --dataset pendulum`` in-process (about two seconds), and its data."""
    out = tmp_path_factory.mktemp("run")
    cache = out / "cache"
    argv = ["sysid", "--preset", "tiny", "--dataset", "pendulum", "--out", str(out), "--cache-dir", str(cache),
            "--quiet"]
    assert cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    data = pendulum.load(pendulum.Settings(**results["data_info"]["settings"]), cache_dir=str(cache))
    return out / "model.npz", data, results


def test_load_model_predicts_what_sysid_reported(trained):
    path, data, results = trained
    model = train.load_model(path)
    assert model.module is r2dn and model.config.nu == 1 and model.metadata["dataset"] == "pendulum"
    # the scaler read back is the one fitted on the training records, to the last bit
    fitted = sequences.fit_scaler(data.train)
    for name in sequences.Scaler._fields:
        assert np.array_equal(getattr(model.scaler, name), getattr(fitted, name)), name
    rec = data.test["multisine"]
    y = model.simulate(rec.u)
    assert y.shape == rec.y.shape and np.std(y) > 0
    nrmse, rmse = train.evaluate([y], [rec], results["washout"])
    assert nrmse == results["test"]["multisine"]["nrmse"] and rmse == results["test"]["multisine"]["rmse"]
    # the same as train.simulate on the records, a list gives a list, and (T,) is (T, 1) for nu = 1
    ref = train.simulate(r2dn, model.config, io.load(path).params, data.val + [rec], fitted)
    got = model.simulate([r.u for r in data.val] + [rec.u[:, 0]])
    assert len(got) == len(ref) and all(np.array_equal(a, b) for a, b in zip(got, ref))


def _saved(tmp_path, cfg, scaler=None, seed=0):
    path = tmp_path / "m.npz"
    io.save(path, cfg, r2dn.init(cfg, seed=seed), metadata=None if scaler is None else {"scaler": scaler.to_dict()})
    return path


CFG2 = r2dn.Config(nu=2, nx=3, nv=4, ny=2, hidden=(5,))
SCALER2 = sequences.Scaler(np.array([1.0, -2.0]), np.array([0.5, 4.0]), np.array([10.0, 0.0]), np.array([3.0, 0.1]))


def test_scaling_against_the_formula(tmp_path):
    # a model saved by the user's own code with a scaler: y = ystd * f((u - umean) / ustd) + ymean
    model = train.load_model(_saved(tmp_path, CFG2, SCALER2))
    u = np.random.default_rng(1).standard_normal((40, 2)) * 3
    explicit, _ = r2dn.direct_to_explicit(CFG2, model.params)
    _, Y, _ = r2dn.forward(CFG2, explicit, np.zeros((1, 3)), ((u - SCALER2.u_mean) / SCALER2.u_std)[:, None, :])
    np.testing.assert_allclose(model.simulate(u), Y[:, 0, :] * SCALER2.y_std + SCALER2.y_mean, rtol=1e-13, atol=0)


def test_input_errors_name_the_argument(tmp_path):
    model = train.load_model(_saved(tmp_path, CFG2, SCALER2))
    with pytest.raises(ValueError, match=r"inputs has 3 input channels \(columns\) but the model expects nu=2"):
        model.simulate(np.ones((5, 3)))
    with pytest.raises(ValueError, match=r"inputs\[1\] has 1 input channels .* nu=2"):
        model.simulate([np.ones((5, 2)), np.ones((5, 1))])
    with pytest.raises(ValueError, match=r"inputs must have shape \(T, nu=2\).*got shape \(5,\)"):
        model.simulate(np.ones(5))  # 1-D is one channel, accepted only when nu == 1
    with pytest.raises(ValueError, match=r"got shape \(0, 2\)"):
        model.simulate(np.ones((0, 2)))
    u = np.ones((6, 2))
    u[4, 1] = np.inf
    with pytest.raises(ValueError, match=r"inputs contains NaN or Inf \(first at sample 4, channel 1\)"):
        model.simulate(u)
    with pytest.raises(TypeError, match="inputs must be an array of numbers"):
        model.simulate(np.array([["a", "b"]]))


def test_files_load_model_refuses(tmp_path):
    path = _saved(tmp_path, CFG2)  # plain io.save: no scaler
    with pytest.raises(io.FormatError, match=r"m.npz: has no 'scaler' in its metadata, so it was not saved by `r2dn"):
        train.load_model(path)
    io.save(path, CFG2, r2dn.init(CFG2, seed=0), metadata={"scaler": SCALER2._replace(y_std=np.ones(3)).to_dict()})
    with pytest.raises(io.FormatError, match=r"scaler field 'y_std' must hold 2 finite number\(s\) > 0"):
        train.load_model(path)
    io.save(path, CFG2, r2dn.init(CFG2, seed=0), metadata={"scaler": {"u_mean": [0.0, 0.0]}})
    with pytest.raises(io.FormatError, match=r"the 'scaler' metadata is invalid \(KeyError"):
        train.load_model(path)
    cfg = lbdn.Config(2, 1, hidden=(3,))
    io.save(path, cfg, lbdn.init(cfg, seed=0), metadata={"scaler": SCALER2.to_dict()})
    with pytest.raises(io.FormatError, match="holds a 'lbdn' model; only r2dn and ren models"):
        train.load_model(path)


def _csv(path, rows, header=None):
    lines = ([header] if header else []) + [",".join(map(repr, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_cli_writes_csv_and_npz(trained, tmp_path, capsys):
    path, data, _ = trained
    u = data.test["multisine"].u
    T = u.shape[0]
    expected = train.load_model(path).simulate(u)
    np.savez(tmp_path / "u.npz", other=u[:, 0])  # the only array: its name does not matter, (T,) is (T, 1)
    for name, inp in [("header", _csv(tmp_path / "h.csv", u.tolist(), header="torque [N m]")),
                      ("plain", _csv(tmp_path / "p.csv", u.tolist())),
                      ("npz", tmp_path / "u.npz")]:
        out = tmp_path / f"y_{name}.csv"
        assert cli.main(["simulate", "--params", str(path), "--input", str(inp), "--out", str(out)]) == 0
        assert f"wrote {out}: {T} samples of 1 output(s)" in capsys.readouterr().out
        lines = out.read_text().splitlines()
        assert lines[0] == data.output_names[0] and len(lines) == T + 1  # names saved by sysid
        assert np.array_equal(np.loadtxt(out, delimiter=",", skiprows=1, ndmin=2), expected), name
    np.savez(tmp_path / "u2.npz", u=u, t=np.arange(float(T)))  # several arrays: the one named u
    assert cli.main(["simulate", "--params", str(path), "--input", str(tmp_path / "u2.npz"),
                     "--out", str(tmp_path / "y.npz")]) == 0
    with np.load(tmp_path / "y.npz", allow_pickle=False) as f:
        assert f.files == ["y"] and np.array_equal(f["y"], expected)


def _error(argv, capsys):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("r2dn simulate: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_errors(trained, tmp_path, capsys):
    path, _, _ = trained
    out = tmp_path / "y.csv"

    def run(inp, params=str(path), out=str(out)):
        return _error(["simulate", "--params", params, "--input", str(inp), "--out", out], capsys)

    two = _csv(tmp_path / "two.csv", [[1.0, 2.0], [3.0, 4.0]])
    assert f"--input {two} has 2 input channels (columns) but the model expects nu=1" in run(two)
    assert f"--input {tmp_path / 'nope.csv'}: no such file" in run(tmp_path / "nope.csv")
    assert "nope.npz: no such file" in run(two, params=str(tmp_path / "nope.npz"))
    bad = str(tmp_path / "bad.csv")
    (tmp_path / "bad.csv").write_text("u\n1.0\n2,0\n")
    assert f"{bad}: line 3 has 2 column(s); the first line has 1" in run(bad)
    (tmp_path / "bad.csv").write_text("u\n1.0\nabc\n")
    assert f"{bad}: line 3, column 1: 'abc' is not a finite number" in run(bad)
    (tmp_path / "bad.csv").write_text("1.0\nnan\n")
    assert f"{bad}: line 2, column 1: 'nan' is not a finite number" in run(bad)
    (tmp_path / "bad.csv").write_text("u\n")
    assert f"{bad}: no rows of numbers" in run(bad)
    np.savez(tmp_path / "nan.npz", u=np.array([1.0, np.nan]))
    assert "nan.npz contains NaN or Inf (first at sample 1, channel 0)" in run(tmp_path / "nan.npz")
    np.savez(tmp_path / "many.npz", a=np.ones(3), b=np.ones(3))
    assert "holds the arrays ['a', 'b']; name the input array 'u'" in run(tmp_path / "many.npz")
    np.save(tmp_path / "x.npy", np.ones(3))
    (tmp_path / "x.npy").rename(tmp_path / "x.npz")
    assert "x.npz: not a readable .npz file" in run(tmp_path / "x.npz")
    plain = tmp_path / "plain.npz"
    small = r2dn.Config(nu=1, nx=2, nv=2, ny=1, hidden=(3,))
    io.save(plain, small, r2dn.init(small, seed=0))
    err = run(two, params=str(plain))
    assert f"{plain}: has no 'scaler' in its metadata, so it was not saved by `r2dn sysid`" in err
    assert "--out y.txt: must end in .csv or .npz" in run(two, out="y.txt")
    assert not out.exists()  # no error left a partial output behind


def test_cli_refuses_to_overwrite_what_it_reads(trained, tmp_path, capsys):
    # --out naming the model or the input record (the same path, another spelling of it, a
    # symbolic or a hard link to it) is refused before anything is read or written
    import os
    import shutil

    params = tmp_path / "m.npz"
    shutil.copy(trained[0], params)
    inp = tmp_path / "u.csv"
    _csv(inp, [[0.1], [0.2], [0.3]])
    os.symlink(params, tmp_path / "link.npz")
    os.link(inp, tmp_path / "hard.csv")
    before = {p: p.read_bytes() for p in (params, inp)}
    cases = [(params, "--params", params), (inp, "--input", inp),
             (tmp_path / "sub" / ".." / "m.npz", "--params", params),
             (tmp_path / "link.npz", "--params", params), (tmp_path / "hard.csv", "--input", inp)]
    for out, flag, victim in cases:
        if not (tmp_path / "sub").exists():
            (tmp_path / "sub").mkdir()
        err = _error(["simulate", "--params", str(params), "--input", str(inp), "--out", str(out)], capsys)
        assert f"--out {out} is the same file as {flag} {victim}: refusing to overwrite" in err
    assert {p: p.read_bytes() for p in (params, inp)} == before
    assert train.load_model(params).config.nu == 1
    # a folder given as --input is named as such, not as a missing file
    err = _error(["simulate", "--params", str(params), "--input", str(tmp_path / "sub"),
                  "--out", str(tmp_path / "y.csv")], capsys)
    assert f"--input {tmp_path / 'sub'}: is a folder; expected a file" in err
