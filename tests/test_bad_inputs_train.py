"""Bad inputs at the training, simulation, linear-baseline and data-loader entry points: each
raises ValueError/TypeError at the boundary with a message naming the argument or field. One
line per case; Hypothesis strategies at the end generate malformed records for train.fit and
train.simulate."""

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from r2dn_np import cli, r2dn, ren
from r2dn_np.training import linear, train
from r2dn_np.data import _sim, boucwen, digits, f16, mnist, pendulum, perturb, sequences
from r2dn_np.data.sequences import Record, Scaler, SysIdData

CFG = r2dn.Config(nu=1, nx=2, nv=2, ny=1, hidden=(3,))
OPTS = train.Options(epochs=1, chunk=40, window=20, batch=2, washout=5)
P = r2dn.init(CFG, seed=0)
RNG = np.random.default_rng(0)
U = RNG.standard_normal((60, 1))
REC = Record(U, 0.5 * U)
DATA = SysIdData("toy", 1.0, [REC], [REC], {}, ("u",), ("y",), {})
SCALER = Scaler(np.zeros(1), np.ones(1), np.zeros(1), np.ones(1))
NAN = float("nan")


def nan_at(a, where=0):
    a = np.array(a, dtype=float)
    a.flat[where] = NAN
    return a


def opts(**kw):
    base = dict(epochs=1, chunk=40, window=20, batch=2, washout=5)
    return lambda: train.Options(**{**base, **kw})


def fit(**kw):
    args = dict(module=r2dn, cfg=CFG, data=DATA, opts=OPTS)
    args.update(kw)
    return lambda: train.fit(args.pop("module"), args.pop("cfg"), args.pop("data"), args.pop("opts"), **args)


def data(**kw):
    return DATA._replace(**kw)


CASES = [
    # --- train.Options -------------------------------------------------------------------------
    ("opts-epochs-float", opts(epochs=2.0), TypeError, "epochs"),
    ("opts-epochs-bool", opts(epochs=True), TypeError, "epochs"),
    ("opts-epochs-str", opts(epochs="3"), TypeError, "epochs"),
    ("opts-batch-zero", opts(batch=0), ValueError, "batch"),
    ("opts-washout-neg", opts(washout=-1), ValueError, "washout"),
    ("opts-seed-neg", opts(seed=-1), ValueError, "seed"),
    ("opts-seed-float", opts(seed=0.5), TypeError, "seed"),
    ("opts-lr-nan", opts(lr=NAN), ValueError, "lr"),
    ("opts-lr-inf", opts(lr=float("inf")), ValueError, "lr"),
    ("opts-lr-str", opts(lr="0.1"), TypeError, "lr"),
    ("opts-clip-zero", opts(clip=0.0), ValueError, "clip"),
    ("opts-decay-rate-above-one", opts(decay_rate=2.0), ValueError, "decay_rate"),
    ("opts-decay-rate-zero", opts(decay_rate=0.0), ValueError, "decay_rate"),
    ("opts-min-improvement-str", opts(min_improvement="0"), TypeError, "min_improvement"),
    ("opts-min-improvement-one", opts(min_improvement=1.0), ValueError, "min_improvement"),
    ("opts-plateau-factor-bool", opts(plateau_factor=True), TypeError, "plateau_factor"),
    ("opts-plateau-factor-nan", opts(plateau_factor=NAN), ValueError, "plateau_factor"),
    ("opts-schedule", opts(schedule="cosine"), ValueError, "schedule"),
    ("opts-dtype", opts(dtype="float16"), ValueError, "dtype"),
    ("opts-window-gt-chunk", opts(window=50), ValueError, "window"),
    # --- train.fit -----------------------------------------------------------------------------
    ("fit-module", fit(module=np), TypeError, "module"),
    ("fit-cfg-other-model", fit(cfg=ren.Config(nu=1, nx=2, nv=2, ny=1)), TypeError, "cfg"),
    ("fit-opts-dict", fit(opts={"epochs": 1}), TypeError, "opts"),
    ("fit-data-tuple", fit(data=(U, U)), TypeError, "data"),
    ("fit-data-train-empty", fit(data=data(train=[])), ValueError, "data.train"),
    ("fit-data-train-rank", fit(data=data(train=[Record(U[:, 0], U)])), ValueError, "data.train[0].u"),
    ("fit-data-train-nan", fit(data=data(train=[Record(nan_at(U, 7), U)])), ValueError, "data.train[0].u"),
    ("fit-data-train-y-short", fit(data=data(train=[Record(U, U[:-1])])), ValueError, "data.train[0].y"),
    ("fit-data-train-str", fit(data=data(train=[Record(U.astype(str), U)])), TypeError, "data.train[0].u"),
    ("fit-data-train-complex", fit(data=data(train=[Record(U + 0j, U)])), TypeError, "data.train[0].u"),
    ("fit-data-val-nu", fit(data=data(val=[Record(np.hstack([U, U]), U)])), ValueError, "data.val[0].u"),
    ("fit-data-val-inf", fit(data=data(val=[Record(U, -np.inf * U)])), ValueError, "data.val[0].y"),
    ("fit-data-scale-ny", fit(data=data(scale=[Record(U, np.hstack([U, U]))])), ValueError, "data.scale[0].y"),
    ("fit-data-test-nan", fit(data=data(test={"t": Record(U, nan_at(U))})), ValueError, "data.test['t'].y"),
    ("fit-params-other-model", fit(params=ren.init(ren.Config(nu=1, nx=2, nv=2, ny=1))), TypeError, "params"),
    ("fit-params-nan", fit(params=P._replace(X=nan_at(P.X))), ValueError, "params.X"),
    ("fit-params-shape", fit(params=P._replace(X=P.X[:-1])), ValueError, "params.X"),
    ("fit-params-dtype", fit(params=r2dn.init(CFG, dtype="float32")), TypeError, "params"),
    ("fit-checkpoint-int", fit(checkpoint=3), TypeError, "checkpoint"),
    ("fit-resume-str", fit(resume="no"), TypeError, "resume"),
    ("fit-log-str", fit(log="print"), TypeError, "log"),
    ("fit-stop-after-neg", fit(stop_after=-1), ValueError, "stop_after"),
    # --- train.RefineOptions and train.refine ------------------------------------------------
    ("refine-opts-iterations-zero", lambda: train.RefineOptions(iterations=0), ValueError, "iterations"),
    ("refine-opts-iterations-float", lambda: train.RefineOptions(iterations=5.0), TypeError, "iterations"),
    ("refine-opts-memory-bool", lambda: train.RefineOptions(memory=True), TypeError, "memory"),
    ("refine-opts-ftol-neg", lambda: train.RefineOptions(ftol=-1e-9), ValueError, "ftol"),
    ("refine-opts-gtol-nan", lambda: train.RefineOptions(gtol=NAN), ValueError, "gtol"),
    ("refine-opts-max-seconds-str", lambda: train.RefineOptions(max_seconds="60"), TypeError, "max_seconds"),
    ("refine-opts-checkpoint-neg", lambda: train.RefineOptions(checkpoint_every=-2), ValueError, "checkpoint_every"),
    ("refine-opts-checkpoint-float", lambda: train.RefineOptions(checkpoint_every=8.5), TypeError,
     "checkpoint_every"),
    ("refine-opts-washout-neg", lambda: train.RefineOptions(washout=-1), ValueError, "washout"),
    ("refine-opts-records-int", lambda: train.RefineOptions(records=0), TypeError, "records"),
    ("refine-opts-records-neg", lambda: train.RefineOptions(records=(0, -1)), ValueError, "records[1]"),
    ("refine-opts-records-repeat", lambda: train.RefineOptions(records=(1, 1)), ValueError, "records"),
    ("refine-opts-val-samples", lambda: train.RefineOptions(val_samples=50, washout=50), ValueError, "val_samples"),
    ("refine-options-dict", lambda: train.refine(r2dn, CFG, P, DATA, SCALER, {"iterations": 1}), TypeError,
     "options"),
    ("refine-params-nan", lambda: train.refine(r2dn, CFG, P._replace(X=nan_at(P.X)), DATA, SCALER), ValueError,
     "params.X"),
    ("refine-data-tuple", lambda: train.refine(r2dn, CFG, P, (U, U), SCALER), TypeError, "data"),
    ("refine-data-val-empty", lambda: train.refine(r2dn, CFG, P, data(val=[]), SCALER), ValueError, "data.val"),
    ("refine-data-train-nan", lambda: train.refine(r2dn, CFG, P, data(train=[Record(nan_at(U, 3), U)]), SCALER),
     ValueError, "data.train[0].u"),
    ("refine-scaler", lambda: train.refine(r2dn, CFG, P, DATA, None), TypeError, "scaler"),
    ("refine-records-out-of-range", lambda: train.refine(r2dn, CFG, P, DATA, SCALER,
                                                         train.RefineOptions(records=(1,), washout=5)),
     ValueError, "records[0]"),
    ("refine-washout-too-long", lambda: train.refine(r2dn, CFG, P, DATA, SCALER, train.RefineOptions(washout=60)),
     ValueError, "washout"),
    ("refine-log-str", lambda: train.refine(r2dn, CFG, P, DATA, SCALER, log="print"), TypeError, "log"),
    ("refine-workers-zero", lambda: train.refine(r2dn, CFG, P, DATA, SCALER, workers=0), ValueError, "workers"),
    ("refine-checkpoint-int", lambda: train.refine(r2dn, CFG, P, DATA, SCALER, checkpoint=3), TypeError,
     "checkpoint"),
    ("refine-resume-str", lambda: train.refine(r2dn, CFG, P, DATA, SCALER, resume="yes"), TypeError, "resume"),
    # --- train.simulate, evaluate, check_input, load_model, checkpoints --------------------------
    ("simulate-params-nan", lambda: train.simulate(r2dn, CFG, P._replace(X=nan_at(P.X)), [REC], SCALER),
     ValueError, "params.X"),
    ("simulate-records-record", lambda: train.simulate(r2dn, CFG, P, REC, SCALER), TypeError, "records"),
    ("simulate-records-nu", lambda: train.simulate(r2dn, CFG, P, [Record(np.hstack([U, U]), None)], SCALER),
     ValueError, "records[0].u"),
    ("simulate-records-nan", lambda: train.simulate(r2dn, CFG, P, [Record(nan_at(U, 3), None)], SCALER),
     ValueError, "records[0].u"),
    ("simulate-scaler-dict", lambda: train.simulate(r2dn, CFG, P, [REC], SCALER._asdict()), TypeError, "scaler"),
    ("simulate-scaler-std-zero", lambda: train.simulate(r2dn, CFG, P, [REC], SCALER._replace(u_std=np.zeros(1))),
     ValueError, "scaler.u_std"),
    ("simulate-scaler-shape", lambda: train.simulate(r2dn, CFG, P, [REC], SCALER._replace(y_mean=np.zeros(2))),
     ValueError, "scaler.y_mean"),
    ("simulate-dtype", lambda: train.simulate(r2dn, CFG, P, [REC], SCALER, dtype="half"), ValueError, "dtype"),
    ("simulate-cfg", lambda: train.simulate(r2dn, None, P, [REC], SCALER), TypeError, "cfg"),
    ("evaluate-count", lambda: train.evaluate([U, U], [REC], 5), ValueError, "predictions"),
    ("evaluate-shape", lambda: train.evaluate([U[:-1]], [REC], 5), ValueError, "predictions[0]"),
    ("evaluate-broadcast", lambda: train.evaluate([U[:, 0]], [REC], 5), ValueError, "predictions[0]"),
    ("evaluate-washout-long", lambda: train.evaluate([U], [REC], 60), ValueError, "washout"),
    ("evaluate-washout-float", lambda: train.evaluate([U], [REC], 5.0), TypeError, "washout"),
    ("check-input-complex", lambda: train.check_input("u", U + 1j, 1), TypeError, "u"),
    ("check-input-nu-zero", lambda: train.check_input("u", U, 0), ValueError, "nu"),
    ("load-model-path-int", lambda: train.load_model(5), TypeError, "path"),
    # --- sequences -----------------------------------------------------------------------------
    ("chunk-offsets-count", lambda: sequences.chunk([REC], 10, offsets=[0, 1]), ValueError, "offsets"),
    ("chunk-offsets-neg", lambda: sequences.chunk([REC], 10, offsets=[-1]), ValueError, "offsets[0]"),
    ("chunk-records-nan", lambda: sequences.chunk([Record(nan_at(U), U)], 10), ValueError, "records[0].u"),
    ("fit-scaler-empty", lambda: sequences.fit_scaler([]), ValueError, "records"),
    ("nrmse-broadcast", lambda: sequences.nrmse(U, U[:, 0]), ValueError, "y_pred"),
    ("nrmse-washout-neg", lambda: sequences.nrmse(U, U, -1), ValueError, "washout"),
    ("rmse-washout-long", lambda: sequences.rmse(U, U, 60), ValueError, "washout"),
    ("rmse-true-nan", lambda: sequences.rmse(U, nan_at(U)), ValueError, "y_true"),
    # --- linear baseline -----------------------------------------------------------------------
    ("linear-val-short", lambda: linear.fit([REC], [Record(U[:5], U[:5])], max_order=1, washout=10),
     ValueError, "val[0]"),
    ("linear-train-nan", lambda: linear.fit([Record(nan_at(U), U)], [REC], max_order=1, washout=5),
     ValueError, "train[0].u"),
    ("linear-val-ny", lambda: linear.fit([REC], [Record(U, np.hstack([U, U]))], max_order=1, washout=5),
     ValueError, "val[0].y"),
    ("linear-simulate-model", lambda: linear.simulate(None, U), TypeError, "model"),
    # --- data loaders --------------------------------------------------------------------------
    ("pendulum-seed-neg", lambda: pendulum.Settings(seed=-1), ValueError, "seed"),
    ("pendulum-seed-float", lambda: pendulum.Settings(seed=1.5), TypeError, "seed"),
    ("pendulum-fmin-str", lambda: pendulum.Settings(f_min="0"), TypeError, "f_min"),
    ("pendulum-period-float", lambda: pendulum.Settings(period=100.0), TypeError, "period"),
    ("pendulum-load-settings", lambda: pendulum.load({"period": 10}), TypeError, "settings"),
    ("pendulum-load-cache-true", lambda: pendulum.load(pendulum.Settings(period=64, n_train=1, transient=8),
                                                        cache_dir=True), TypeError, "cache_dir"),
    ("pendulum-simulate-substeps", lambda: pendulum.simulate(U, substeps=0), ValueError, "substeps"),
    ("pendulum-simulate-nan", lambda: pendulum.simulate(nan_at(U)), ValueError, "U"),
    ("boucwen-seed-neg", lambda: boucwen.Settings(seed=-1), ValueError, "seed"),
    ("boucwen-noise-str", lambda: boucwen.Settings(noise_std="0"), TypeError, "noise_std"),
    ("boucwen-noise-neg", lambda: boucwen.Settings(noise_std=-1.0), ValueError, "noise_std"),
    ("boucwen-sweep-nan", lambda: boucwen.Settings(sweep_seconds=NAN), ValueError, "sweep_seconds"),
    ("boucwen-integrate-str", lambda: boucwen.integrate(np.array(["1", "2"])), TypeError, "u"),
    ("boucwen-integrate-fs", lambda: boucwen.integrate(np.ones(4), fs=0.0), ValueError, "fs"),
    ("boucwen-upsample-factor", lambda: boucwen.upsample_periodic(np.ones(4), factor=0), ValueError, "factor"),
    ("boucwen-steady-transient", lambda: boucwen.steady_state(np.ones(8), transient_periods=-1), ValueError,
     "transient_periods"),
    ("boucwen-sweep-seconds", lambda: boucwen.sweep(0.0), ValueError, "seconds"),
    ("boucwen-official-rmse-predict", lambda: boucwen.official_rmse(None), TypeError, "predict"),
    ("boucwen-load-cache-int", lambda: boucwen.load(cache_dir=0), TypeError, "cache_dir"),
    ("f16-levels-str", lambda: f16.load(".", train="13"), TypeError, "train"),
    ("f16-levels-float", lambda: f16.load(".", val=(2.5,)), TypeError, "val[0]"),
    ("f16-levels-zero", lambda: f16.load(".", test=(0,)), ValueError, "test[0]"),
    ("f16-data-dir-int", lambda: f16.load(3), TypeError, "data_dir"),
    ("f16-read-csv-path", lambda: f16.read_csv(None), TypeError, "path"),
    ("sim-multisine-rng", lambda: _sim.multisine(0, 1, 64, 1.0, 0.1, 0.4, 1.0), TypeError, "rng"),
    ("sim-multisine-period", lambda: _sim.multisine(RNG, 1, 0, 1.0, 0.1, 0.4, 1.0), ValueError, "period"),
    ("sim-sweep-n", lambda: _sim.sine_sweep(-1, 1.0, 0.1, 0.2, 1.0), ValueError, "n"),
    ("sim-rk4-substeps", lambda: _sim.rk4_zoh(lambda s, u: s, np.zeros((2, 1)), np.zeros((3, 1)), 0.1, 0),
     ValueError, "substeps"),
    ("sim-rk4-shapes", lambda: _sim.rk4_zoh(lambda s, u: s, np.zeros((2, 1)), np.zeros((3, 2)), 0.1, 1),
     ValueError, "U"),
    ("perturb-seed-neg", lambda: perturb.gaussian_noise(np.zeros(3), 0.1, seed=-1), ValueError, "seed"),
    ("perturb-sigma-str", lambda: perturb.gaussian_noise(np.zeros(3), "0.1"), TypeError, "sigma"),
    ("perturb-p-above-one", lambda: perturb.salt_and_pepper(np.zeros(3), 1.5), ValueError, "p"),
    ("perturb-high-nan", lambda: perturb.salt_and_pepper(np.zeros(3), 0.5, high=NAN), ValueError, "high"),
    ("perturb-salt-seed-float", lambda: perturb.salt_and_pepper(np.zeros(3), 0.5, seed=0.5), TypeError, "seed"),
    ("digits-seed-neg", lambda: digits.load(seed=-1), ValueError, "seed"),
    ("digits-fraction-str", lambda: digits.load(test_fraction="0.2"), TypeError, "test_fraction"),
    ("digits-dtype", lambda: digits.load(dtype="int8"), ValueError, "dtype"),
    ("digits-seq-split", lambda: digits.as_sequences((np.zeros((2, 64)),) * 4), TypeError, "split"),
    ("digits-seq-noise-rows", lambda: digits.as_sequences(digits.Split(*(np.zeros((2, 64)),) * 4), "rows",
                                                          noise_rows=-1), ValueError, "noise_rows"),
    ("digits-seq-width", lambda: digits.as_sequences(digits.Split(*(np.zeros((2, 63)),) * 4)), ValueError,
     "split.X_train"),
    ("mnist-seed-neg", lambda: mnist.load(seed=-2), ValueError, "seed"),
    ("mnist-limit-int", lambda: mnist.load(limit=5), TypeError, "limit"),
    ("mnist-permutation-seed", lambda: mnist.pixel_permutation(seed=None), TypeError, "seed"),
]


def _names_it(message, name):
    return re.search(rf"(^|[^\w.]){re.escape(name)}([^\w]|$)", message) is not None


@pytest.mark.parametrize("call, exc, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused(call, exc, text):
    with pytest.raises(exc) as info:
        call()
    assert _names_it(str(info.value), text), str(info.value)


def test_cases_are_distinct():
    assert len({c[0] for c in CASES}) == len(CASES)


def test_valid_spellings_are_accepted():
    o = train.Options(epochs=np.int64(2), chunk=40, window=20, batch=2, washout=5, lr=np.float32(0.01))
    assert type(o.epochs) is int and type(o.lr) is float  # JSON-able in checkpoints
    assert train.Options(decay_rate=1).decay_rate == 1.0
    assert sequences.nrmse(U[:, 0], U[:, 0]) == 0.0  # 1-D against 1-D is fine
    out = train.simulate(r2dn, CFG, P, [Record(U, None)], SCALER)
    assert out[0].shape == (60, 1)
    nrmse, rmse = train.evaluate([np.full_like(U, np.nan)], [REC], 5)  # a diverged model scores NaN
    assert np.isnan(nrmse) and np.isnan(rmse)


def test_sysid_out_existing_file_is_one_line(tmp_path, capsys):
    existing = tmp_path / "file"
    existing.write_text("x")
    assert cli.main(["sysid", "--out", str(existing)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--out" in err and "Traceback" not in err


# --- Hypothesis: malformed records for train.fit and train.simulate ----------------------------

def _corrupt(draw, a, time_too=True):
    """A malformed copy of ``a`` (T, n): another rank, a size off by one (of T too with ``time_too``),
    NaN/Inf, or another dtype."""
    kind = draw(st.sampled_from(["rank", "size", "nonfinite", "dtype"]))
    if kind == "rank":
        return a[:, 0] if draw(st.booleans()) else a[:, :, None]
    if kind == "size":
        axis = 0 if time_too and draw(st.booleans()) else 1
        shape = list(a.shape)
        shape[axis] += 1
        return np.zeros(shape)
    if kind == "nonfinite":
        out = a.copy()
        out.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([NAN, np.inf, -np.inf]))
        return out
    return a.astype(draw(st.sampled_from([np.complex128, "U8", object])))


@given(st.data())
def test_fit_refuses_malformed_records(data):
    where = data.draw(st.sampled_from(["train", "val"]))
    part = data.draw(st.sampled_from(["u", "y"]))
    bad = REC._replace(**{part: _corrupt(data.draw, getattr(REC, part))})
    with pytest.raises((ValueError, TypeError)) as info:
        train.fit(r2dn, CFG, DATA._replace(**{where: [bad]}), OPTS)
    # a u one sample longer is reported against its y; nu/ny off by one by the model-data size check
    assert f"data.{where}[0]." in str(info.value) or "ny=" in str(info.value) or "nu=" in str(info.value), \
        str(info.value)


@given(st.data())
def test_simulate_refuses_malformed_inputs(data):
    bad = _corrupt(data.draw, U, time_too=False)  # records of any length simulate
    with pytest.raises((ValueError, TypeError)) as info:
        train.simulate(r2dn, CFG, P, [Record(U, None), Record(bad, None)], SCALER)
    assert "records[1].u" in str(info.value), str(info.value)
