"""Bad inputs at the data generators, the tasks (observer, Youla), io and the model sizes: each
is refused at the boundary with a message naming the argument, field, key, file or line. One line
per case, as tests/test_bad_inputs_train.py; the examples of issue 29 first."""

import re
import warnings

import numpy as np
import pytest

from r2dn_np.core import _validate, supply, tree
from r2dn_np.training import classify, optim
from r2dn_np import cli, lbdn, r2dn, ren
from r2dn_np.checks import flops, verify
from r2dn_np.interface import io
from r2dn_np.data import _sim, boucwen, digits, f16, pendulum, perturb
from r2dn_np.data.sequences import DataError, Record
from r2dn_np.experiments import observer, youla

NAN = float("nan")
OBS = r2dn.Config(nu=2, nx=5, nv=3, ny=5, hidden=(4,), identity_output=True)
OBS_P = r2dn.init(OBS, seed=0)
POL = r2dn.Config(nu=1, nx=2, nv=3, ny=1, hidden=(4,), activation="tanh")
SMALL = lbdn.Config(2, 1, hidden=(3,))
REC = Record(np.zeros((40, 1)), np.zeros((40, 1)))


def _chunk(y_width=2):
    return observer.Chunk(np.zeros((3, 5)), np.zeros((3, y_width)), np.zeros((3, 5)))


CASES = [
    # --- silent NaN / Inf ----------------------------------------------------------------------
    ("boucwen-integrate-param-nan", lambda: boucwen.integrate(np.ones(4), params=dict(boucwen.PARAMS, k=NAN)),
     ValueError, "params['k']"),
    ("boucwen-decimate-nan", lambda: boucwen.decimate(np.r_[np.zeros(40), NAN], 2), ValueError, "x"),
    ("boucwen-official-rmse-nan", lambda: boucwen.official_rmse(lambda u: np.full(u.shape, NAN), REC),
     ValueError, "predict"),
    ("boucwen-steady-nan", lambda: boucwen.steady_state(np.r_[0.0, NAN, 0.0]), ValueError, "u"),
    ("observer-pde-step-nan", lambda: observer.pde_step(np.r_[0.0, NAN, 0.0], np.zeros(1)), ValueError, "xi"),
    ("observer-pde-step-b-inf", lambda: observer.pde_step(np.zeros(3), np.array([np.inf])), ValueError, "b"),
    ("observer-nrmse-zero", lambda: observer.nrmse(np.zeros((4, 3)), np.ones((4, 3))), ValueError, "Xi"),
    ("observer-nrmse-nan", lambda: observer.nrmse(np.full((4, 3), NAN), np.ones((4, 3))), ValueError, "Xi"),
    ("observer-measure-nan", lambda: observer.measure(np.full((4, 3), NAN), np.zeros((4, 1))), ValueError, "Xi"),
    ("pendulum-param-nan", lambda: pendulum.simulate(np.zeros(3), params=dict(pendulum.PARAMS, g=NAN)),
     ValueError, "params['g']"),
    # --- accepted but wrong --------------------------------------------------------------------
    ("observer-model-config-nodes-2", lambda: observer.model_config("r2dn", nodes=2), ValueError, "nodes"),
    ("observer-model-config-nodes-float", lambda: observer.model_config("ren", nodes=5.0), TypeError, "nodes"),
    ("observer-simulate-nodes-2", lambda: observer.simulate(5, nodes=2), ValueError, "nodes"),
    ("youla-initial-state-float16", lambda: youla.initial_state(POL, 2, dtype="float16"), ValueError, "dtype"),
    ("youla-initial-state-int32", lambda: youla.initial_state(POL, 2, dtype="int32"), ValueError, "dtype"),
    ("observer-make-data-dtype", lambda: observer.make_data(T=20, chunks=2, nodes=5, dtype="int32"),
     ValueError, "dtype"),
    ("observer-estimate-y-width", lambda: observer.estimate(OBS, OBS_P, np.zeros((4, 1, 3))), ValueError, "y"),
    ("observer-estimate-x0", lambda: observer.estimate(OBS, OBS_P, np.zeros((4, 2, 2)), np.zeros((2, 4))),
     ValueError, "x0"),
    ("observer-loss-chunk-y-width", lambda: observer.loss_and_grad(OBS, OBS_P, _chunk(3)), ValueError, "chunk.y"),
    ("observer-validate-nodes", lambda: observer.validate(OBS, OBS_P, T=5, nodes=7), ValueError, "nodes"),
    ("boucwen-integrate-m-zero", lambda: boucwen.integrate(np.ones(4), params=dict(boucwen.PARAMS, m=0.0)),
     ValueError, "params['m']"),
    ("pendulum-param-l-neg", lambda: pendulum.simulate(np.zeros(3), params=dict(pendulum.PARAMS, l=-1.0)),
     ValueError, "params['l']"),
    # --- vague -------------------------------------------------------------------------------------
    ("r2dn-nx-absurd", lambda: r2dn.Config(nu=1, nx=10**12, nv=2, ny=1), ValueError, "nx=1000000000000"),
    ("r2dn-hidden-absurd", lambda: r2dn.Config(nu=1, nx=2, nv=2, ny=1, hidden=(10**9,)), ValueError,
     "hidden[0]=1000000000"),
    ("ren-nv-absurd", lambda: ren.Config(nu=1, nx=2, nv=10**12, ny=1), ValueError, "nv=1000000000000"),
    ("lbdn-n-in-absurd", lambda: lbdn.Config(10**12, 1), ValueError, "n_in=1000000000000"),
    ("observer-simulate-T-absurd", lambda: observer.simulate(10**14, nodes=5), ValueError, "T=100000000000000"),
    ("youla-disturbances-absurd", lambda: youla.disturbances(np.random.default_rng(0), 10**8, 10**8),
     ValueError, "T=100000000, B=100000000"),
    ("boucwen-settings-absurd", lambda: boucwen.Settings(period=10**13), ValueError, "period=10000000000000"),
    ("pendulum-settings-absurd", lambda: pendulum.Settings(period=10**13), ValueError, "period=10000000000000"),
    ("boucwen-upsample-absurd", lambda: boucwen.upsample_periodic(np.ones(4), factor=10**15), ValueError,
     "factor=1000000000000000"),
    ("boucwen-integrate-params-key", lambda: boucwen.integrate(np.ones(4), params={"m": 2.0}), ValueError,
     "params"),
    ("boucwen-integrate-params-extra", lambda: boucwen.integrate(np.ones(4), params=dict(boucwen.PARAMS, x=1)),
     ValueError, "params"),
    ("boucwen-integrate-params-type", lambda: boucwen.integrate(np.ones(4), params=[1.0]), TypeError, "params"),
    ("boucwen-sweep-params-str", lambda: boucwen.sweep(1.0, params=dict(boucwen.PARAMS, c="10")), TypeError,
     "params['c']"),
    ("boucwen-official-rmse-none", lambda: boucwen.official_rmse(lambda u: None, REC), ValueError, "predict"),
    # --- found beyond the examples -------------------------------------------------------------
    ("sim-multisine-absurd", lambda: _sim.multisine(np.random.default_rng(0), 10**6, 10**7, 1.0, 0.1, 0.4, 1.0),
     ValueError, "n_signals=1000000, period=10000000"),
    ("sim-sweep-absurd", lambda: _sim.sine_sweep(10**13, 1.0, 0.1, 0.2, 1.0), ValueError, "n=10000000000000"),
    ("perturb-noise-nan", lambda: perturb.gaussian_noise(np.array([1.0, NAN]), 0.1), ValueError, "X"),
    ("perturb-noise-float16", lambda: perturb.gaussian_noise(np.ones(3, np.float16), 0.1), TypeError, "X"),
    ("perturb-salt-int", lambda: perturb.salt_and_pepper(np.ones(3, np.int32), 0.1), TypeError, "X"),
    ("supply-example-nu-0", lambda: supply.example(0, 1), ValueError, "nu"),
    ("supply-example-seed-neg", lambda: supply.example(1, 1, seed=-1), ValueError, "seed"),
    ("supply-example-kind", lambda: supply.example(1, 1, kind="passive"), ValueError, "kind"),
    ("adam-lr-nan", lambda: optim.adam_step(np.ones(2), np.ones(2), optim.adam_init(np.ones(2)), NAN),
     ValueError, "lr"),
    ("adam-b2-one", lambda: optim.adam_step(np.ones(2), np.ones(2), optim.adam_init(np.ones(2)), 0.1, b2=1.0),
     ValueError, "b2"),
    ("validate-array-float16", lambda: _validate.array("x", np.zeros(2, np.float16), [None]), TypeError, "x"),
    ("validate-container-float16", lambda: io.save("m.npz", SMALL, tree.map(lambda a: a.astype(np.float16),
                                                                            lbdn.init(SMALL))), TypeError, "params"),
    ("classify-evaluate-nan", lambda: classify.evaluate(lambda p, X: X, None, np.full((3, 2), NAN), np.zeros(3, int)),
     ValueError, "X"),
    ("classify-evaluate-labels", lambda: classify.evaluate(lambda p, X: X, None, np.ones((3, 2)), np.zeros(2, int)),
     ValueError, "y"),
    ("verify-check-model-cfg", lambda: verify.check_model(r2dn, None, None), TypeError, "cfg"),
    ("flops-matmul-absurd", lambda: flops.matmul_gflops(n=10**7, repeats=1), ValueError, "n=10000000"),
    ("io-save-path-int", lambda: io.save(3, SMALL, lbdn.init(SMALL)), TypeError, "path"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused(case):
    _, call, exc, name = case
    with pytest.raises(exc, match=rf"(^|[^\w.]){re.escape(name)}([^\w]|$)"):  # the name as a whole word
        call()


def test_cases_are_distinct():
    assert len({c[0] for c in CASES}) == len(CASES)


def test_absurd_size_message_says_why():
    with pytest.raises(ValueError) as info:
        r2dn.Config(nu=1, nx=10**12, nv=2, ny=1)
    assert str(info.value).startswith("nx=1000000000000 is too large: a nx x nx float64 matrix would need 8e+24 "
                                      "bytes, more than this machine's memory")


def test_official_rmse_names_the_first_non_finite_sample():
    def predict(u):
        y = np.zeros(u.shape)
        y[57] = np.inf
        return y

    with pytest.raises(ValueError, match=r"^predict returned NaN or Inf \(first at sample 57 of 80\)"):
        boucwen.official_rmse(predict, REC)


def test_observer_nrmse_of_a_diverged_estimate_is_nan_by_design():
    Xi = np.ones((4, 3))
    assert np.isnan(observer.nrmse(Xi, np.full((4, 3), NAN)))
    assert observer.nrmse(Xi, Xi) == 0.0


def test_io_save_metadata_not_json_names_the_entry(tmp_path):
    with pytest.raises(TypeError, match=r"metadata\['run'\]\['scale'\] is a ndarray .*\.tolist\(\)"):
        io.save(tmp_path / "m.npz", SMALL, lbdn.init(SMALL), metadata={"run": {"scale": np.ones(2)}})
    with pytest.raises(TypeError, match=r"metadata\['seen'\]\[1\] is a object"):
        io.save(tmp_path / "m.npz", SMALL, lbdn.init(SMALL), metadata={"seen": [1, object()]})
    assert not (tmp_path / "m.npz").exists()


def test_io_save_under_a_file_names_it(tmp_path):
    (tmp_path / "f").write_text("x")
    target = tmp_path / "f" / "sub" / "m.npz"
    with pytest.raises(NotADirectoryError, match=f"cannot write {re.escape(str(target))}: "
                                                 f"{re.escape(str(tmp_path / 'f'))} is a file, not a folder"):
        io.save(target, SMALL, lbdn.init(SMALL))
    assert (tmp_path / "f").read_text() == "x"


def test_f16_latin1_file_names_file_and_line(tmp_path):
    path = tmp_path / "F16Data_FullMSine_Level1.csv"
    path.write_bytes('"Force","Voltage","Acceleration1","Acceleration2","Acceleration3"\n1,2,3,4,5\n'
                     '1,2,3,4,5 # caf\u00e9\n'.encode("latin-1"))
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: line 3, column 16: byte 0xe9 is not UTF-8"):
        f16.read_csv(path)


def test_cli_input_latin1_names_file_and_line(tmp_path, capsys):
    model = tmp_path / "m.npz"
    cfg = r2dn.Config(nu=1, nx=2, nv=2, ny=1, hidden=(3,))
    io.save(model, cfg, r2dn.init(cfg), metadata={"scaler": {"u_mean": [0.0], "u_std": [1.0], "y_mean": [0.0],
                                                             "y_std": [1.0]}})
    (tmp_path / "u.csv").write_bytes("u\n1.0\n\xb5\n".encode("latin-1"))
    assert cli.main(["simulate", "--params", str(model), "--input", str(tmp_path / "u.csv"),
                     "--out", str(tmp_path / "y.csv")]) == 1
    err = capsys.readouterr().err
    assert "u.csv: line 3, column 1: byte 0xb5 is not UTF-8 text" in err and err.count("\n") == 1


def test_f16_header_only_file_is_one_line_without_a_warning(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    header = '"Force","Voltage","Acceleration1","Acceleration2","Acceleration3","Fs",\n'
    for level in range(1, 8):
        name = f"F16Data_FullMSine_Level{level}{'_Validation' if level % 2 == 0 else ''}.csv"
        (folder / name).write_text(header)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loadtxt's "input contained no data" would be one
        assert cli.main(["sysid", "--dataset", "f16", "--data-dir", str(folder), "--out", str(tmp_path / "o"),
                         "--preset", "tiny"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Level1.csv: expected at least 2 rows of data; got 0" in err
    assert "Warning" not in err and "site-packages" not in err


@pytest.mark.parametrize("argv, line", [
    (["verify", "--params", "{dir}"], "--params {dir}: is a folder, not a .npz file"),
    (["simulate", "--params", "{dir}", "--input", "{file}", "--out", "{tmp}/y.csv"],
     "--params {dir}: is a folder, not a .npz file"),
    (["sysid", "--dataset", "f16", "--data-dir", "{file}", "--out", "{tmp}/o"],
     "--data-dir {file}: exists and is not a folder"),
    (["sysid", "--dataset", "pendulum", "--cache-dir", "{file}", "--out", "{tmp}/o"],
     "--cache-dir {file}: exists and is not a folder"),
    (["sweep", "--root", "{file}", "--table"], "--root {file}: exists and is not a folder"),
    (["sweep", "--tasks", "sysid-f16", "--data-dir", "{tmp}/none", "--serial", "--root", "{tmp}/r", "--preset",
      "tiny"], "--data-dir {tmp}/none: no such folder"),
])
def test_cli_folder_and_file_flags_say_which_is_wrong(tmp_path, capsys, argv, line):
    """A folder where a file belongs, or a file where a folder belongs: one line naming the flag,
    before any work (not "not a zip archive", "does not exist", a silently unused cache, or one
    failed sweep run per grid point)."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    names = {"dir": tmp_path / "dir", "file": tmp_path / "file", "tmp": tmp_path}
    assert cli.main([a.format(**names) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and line.format(**names) in err, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "o").exists()


def test_a_dtype_mismatch_names_what_it_was_compared_with():
    # the state is compared with the disturbance w, not with "the model parameters"
    state = youla.initial_state(POL, 2, dtype="float32")
    with pytest.raises(TypeError, match="^state.x has dtype float32 but w is float64; cast one of them$"):
        youla.rollout(POL, r2dn.init(POL), state, np.zeros((5, 2, 1)))
    with pytest.raises(ValueError, match="noise_rows=1000000000000 is too large"):
        digits.as_sequences(digits.Split(*(np.zeros((2, 64)), np.zeros(2, int)) * 2), "noise_padded",
                            noise_rows=10**12)
