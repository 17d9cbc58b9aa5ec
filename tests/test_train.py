import dataclasses

import numpy as np
import pytest

from r2dn_np.interface import io
from r2dn_np import r2dn
from r2dn_np.training import train
from r2dn_np.core import tree
from r2dn_np.checks.testing import check_vjp
from r2dn_np.data import pendulum, sequences


@pytest.fixture(scope="module")
def data():
    return pendulum.load(pendulum.Settings(period=256, n_train=2, transient=100), cache_dir=False)


CFG = r2dn.Config(nu=1, nx=3, nv=4, ny=1, hidden=(6,), kind="contracting")
OPTS = train.Options(epochs=4, chunk=64, window=32, batch=3, lr=1e-2, washout=8, decay_epochs=2, seed=3)


def test_tiny_training_lowers_the_loss(data):
    res = train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, epochs=6))
    h = res.history
    assert len(h["loss"]) == 6 and res.epochs_run == 6
    assert h["loss"][-1] < 0.7 * h["loss"][0]
    assert min(h["val_nrmse"]) < h["val_nrmse"][0]
    assert res.best_val_nrmse == min(h["val_nrmse"])  # decreasing enough here for min_improvement
    assert h["lr"] == [1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3, 2.5e-3]
    # the returned parameters are those of the best validation epoch
    pred = train.simulate(r2dn, CFG, res.params, data.val, res.scaler)
    assert train.evaluate(pred, data.val, OPTS.washout)[0] == pytest.approx(res.best_val_nrmse, rel=1e-12)


def _same(a, b):
    for (na, x), (nb, y) in zip(tree.paths(a), tree.paths(b)):
        assert na == nb
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=na)


@pytest.mark.parametrize("schedule", ["exponential", "plateau"])
def test_resume_equals_uninterrupted_bit_for_bit(data, tmp_path, schedule):
    opts = dataclasses.replace(OPTS, schedule=schedule, plateau_patience=1)
    whole = train.fit(r2dn, CFG, data, opts)
    ck = tmp_path / "ck.npz"
    part = train.fit(r2dn, CFG, data, opts, checkpoint=ck, stop_after=2)
    assert part.epochs_run == 2
    rest = train.fit(r2dn, CFG, data, opts, checkpoint=ck, resume=True)
    assert rest.epochs_run == 4
    _same(whole.params, rest.params)
    assert whole.history["loss"] == rest.history["loss"]
    assert whole.history["val_nrmse"] == rest.history["val_nrmse"]
    assert whole.history["lr"] == rest.history["lr"]
    # resuming needs the optimiser state: restarting Adam from scratch gives other numbers
    fresh = train.fit(r2dn, CFG, data, dataclasses.replace(opts, epochs=2), params=part.params)
    assert fresh.history["loss"] != whole.history["loss"][2:]


def test_checkpoint_of_another_run_is_refused(data, tmp_path):
    ck = tmp_path / "ck.npz"
    train.fit(r2dn, CFG, data, OPTS, checkpoint=ck, stop_after=1)
    with pytest.raises(io.FormatError, match=r"different run \(options\.lr: 0\.01 in the file, 0\.5 here\)"):
        train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, lr=0.5), checkpoint=ck, resume=True)


def test_washout_longer_than_a_window(data):
    # the first two windows of each chunk lie in the washout: fewer Adam steps, still learning
    res = train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, washout=40, epochs=3))
    assert res.history["loss"][-1] < res.history["loss"][0]


def test_early_stopping(data):
    # a learning rate so small that validation cannot improve for long
    opts = dataclasses.replace(OPTS, epochs=50, lr=1e-9, patience=2)
    res = train.fit(r2dn, CFG, data, opts)
    assert res.stopped_early and res.epochs_run < 50
    assert res.epochs_run - res.best_epoch == 2


def test_float32_training(data):
    res = train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, epochs=2, dtype="float32"))
    assert all(leaf.dtype == np.float32 for leaf in tree.leaves(res.params))
    assert np.isfinite(res.best_val_nrmse)


def test_progress_line(data):
    lines = []
    train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, epochs=2), log=lines.append)
    assert len(lines) == 2
    for key in ("epoch    1/2", "loss", "val NRMSE", "lr 1.00e-02", "s/epoch", "left"):
        assert key in lines[0]


def test_lipschitz_kind_trains(data):
    cfg = dataclasses.replace(CFG, kind="lipschitz", gamma=5.0)
    res = train.fit(r2dn, cfg, data, dataclasses.replace(OPTS, epochs=3))
    assert res.history["loss"][-1] < res.history["loss"][0]


def test_bad_options_and_data(data):
    with pytest.raises(ValueError, match="window"):
        train.Options(chunk=10, window=20)
    with pytest.raises(ValueError, match="washout"):
        train.Options(chunk=20, window=10, washout=20)
    with pytest.raises(ValueError, match="schedule"):
        train.Options(schedule="cosine")
    with pytest.raises(ValueError, match="chunk"):
        train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, chunk=4096, window=32))
    with pytest.raises(ValueError, match="nu=2"):
        train.fit(r2dn, dataclasses.replace(CFG, nu=2), data, OPTS)
    with pytest.raises(ValueError, match="model must be one of"):
        train.get_model("lstm")


def test_window_loss_ignores_washout():
    Y = np.arange(12.0).reshape(4, 3, 1)
    value, dY = train._window_loss(Y, np.zeros_like(Y), 2)
    assert float(value) == pytest.approx(np.mean(Y[2:] ** 2))
    np.testing.assert_array_equal(dY[:2], 0.0)
    np.testing.assert_allclose(dY[2:], 2 * Y[2:] / 6)


def test_simulate_runs_records_of_one_length_together(data):
    params = r2dn.init(CFG, seed=1)
    scaler = sequences.fit_scaler(data.train)
    u = data.val[0].u
    records = [sequences.Record(u, None), sequences.Record(u[:100], None),
               sequences.Record(-u, None)]
    together = train.simulate(r2dn, CFG, params, records, scaler)
    alone = [train.simulate(r2dn, CFG, params, [r], scaler)[0] for r in records]
    assert [p.shape for p in together] == [(u.shape[0], 1), (100, 1), (u.shape[0], 1)]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert not np.allclose(together[0], together[2])  # each record keeps its own stream


def test_data_scale_sets_the_standardisation(data):
    other = sequences.Record(3 * data.val[0].u + 1, 2 * data.val[0].y - 5)
    res = train.fit(r2dn, CFG, data._replace(scale=[other]), dataclasses.replace(OPTS, epochs=1))
    np.testing.assert_allclose(res.scaler.u_mean, other.u.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(res.scaler.y_std, other.y.std(axis=0), rtol=1e-12)
    assert train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, epochs=1)).scaler.y_std != pytest.approx(
        res.scaler.y_std)


@pytest.mark.parametrize("washout, window, chunk, expect", [
    (25, 10, 50, [5, 0, 0]),  # windows 0 and 1 only carry the state; window 2 skips its first 5 samples
    (8, 32, 64, [8, 0]),
    (0, 16, 64, [0, 0, 0, 0]),
])
def test_the_epoch_loop_skips_the_washout_in_the_right_window(data, washout, window, chunk, expect):
    """Inside ``train``'s epoch loop (not ``_window_loss`` with a given skip): per chunk, the loss
    windows and the samples each skips, and the states carried through the washout windows."""
    opts = dataclasses.replace(OPTS, chunk=chunk, window=window, washout=washout, batch=2)
    calls = []

    def recording(explicit, x, U, Yt, **kw):
        calls.append((kw["skip"], np.array(x), np.array(U)))
        return train._window_grad(explicit, x, U, Yt, **kw)

    params = r2dn.init(CFG, seed=0)
    state = train._State(params, train.optim.adam_init(params), params, 0,
                         np.random.default_rng(0).bit_generator.state, train.optim.plateau_init(1e-2),
                         float("inf"), 0, 0, {})
    records = [sequences.Record(r.u, r.y) for r in data.train]
    train._epoch(r2dn, CFG, state, records, opts, np, 0.0, window_grad=recording)
    n_win = opts.chunk // window
    per_batch = [s for s, _, _ in calls][:len(expect)]
    assert per_batch == expect and len(calls) % len(expect) == 0
    # the first loss window of a batch starts from the state the washout windows carried
    first = n_win - len(expect)
    _, x, U = calls[0]
    explicit, _ = r2dn.direct_to_explicit(CFG, params)
    if first:
        rng = np.random.default_rng(0)
        rng.bit_generator.state = state.rng
        offsets = rng.integers(0, window, size=len(records))
        Uall, _ = sequences.chunk(records, opts.chunk, offsets)
        idx = rng.permutation(Uall.shape[1])[:opts.batch]
        x_ref, _, _ = r2dn.forward(CFG, explicit, np.zeros((len(idx), CFG.nx)), Uall[:first * window, idx, :])
        np.testing.assert_allclose(x, x_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(U, Uall[first * window:(first + 1) * window, idx, :])
    else:
        np.testing.assert_array_equal(x, 0.0)


# --- whole-record refinement ---------------------------------------------------------------------


def _ragged(data):
    """Training records of two lengths (refined as two batches) and a validation record."""
    return data._replace(train=[data.train[0], sequences.Record(data.train[1].u[:200], data.train[1].y[:200])])


@pytest.mark.parametrize("model, checkpoint_every", [("r2dn", None), ("r2dn", 0), ("r2dn", 7), ("ren", None)])
def test_whole_record_gradient_matches_finite_differences(data, model, checkpoint_every):
    """The refinement's flat gradient, mapped back onto the parameters field by field, against
    central differences of its loss: exact through whole records of two lengths, the washout
    skipped, with and without checkpointed BPTT."""
    module = train.get_model(model)
    # tanh: smooth, no kink within a step
    cfg = module.Config(nu=1, nx=3, nv=4, ny=1, activation="tanh", **({"hidden": (6,)} if model == "r2dn" else {}))
    data = _ragged(data)
    params = module.init(cfg, seed=2)
    opts = train.RefineOptions(washout=8, checkpoint_every=checkpoint_every)
    theta0, loss_and_grad, unflatten = train._whole_record_loss(module, cfg, params, data,
                                                                 sequences.fit_scaler(data.train), opts, np, {})
    np.testing.assert_array_equal(unflatten(theta0).X, params.X)

    def flat(p):
        return np.concatenate([np.ravel(a) for a in tree.leaves(p)])

    check_vjp(lambda p: np.asarray(loss_and_grad(flat(p))[0]),
              lambda p, c: tree.map(lambda g: c * g, unflatten(loss_and_grad(flat(p))[1])), params, rtol=1e-6)


def test_whole_record_loss_is_the_training_loss_over_whole_records(data):
    """The objective is the training MSE of the standardised output after the washout, from
    the zero state, pooled over all scored samples of all records (two lengths here)."""
    data = _ragged(data)
    params = r2dn.init(CFG, seed=4)
    scaler = sequences.fit_scaler(data.train)
    theta0, loss_and_grad, _ = train._whole_record_loss(r2dn, CFG, params, data, scaler,
                                                        train.RefineOptions(washout=8), np, {})
    pred = train.simulate(r2dn, CFG, params, data.train, scaler)
    errors = np.concatenate([(scaler.y(p) - scaler.y(r.y))[8:].ravel() for p, r in zip(pred, data.train)])
    assert loss_and_grad(theta0)[0] == pytest.approx(np.mean(errors ** 2), rel=1e-10)


@pytest.fixture(scope="module")
def refined(data):
    start = train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, epochs=2))
    lines = []
    params, history = train.refine(r2dn, CFG, start.params, _ragged(data), start.scaler,
                                   train.RefineOptions(iterations=15, washout=8), log=lines.append)
    return start, params, history, lines


def test_refinement_lowers_the_training_loss_and_keeps_the_best_on_validation(data, refined):
    start, params, h, lines = refined
    assert h["iterations"] == len(h["loss"]) - 1 == len(h["val_nrmse"]) - 1 == len(lines) >= 5
    # L-BFGS-B's line search accepts only decreasing steps: no iterate is worse than the start
    assert all(b <= a for a, b in zip(h["loss"], h["loss"][1:]))
    assert h["loss"][-1] < 0.9 * h["loss"][0]
    assert h["val_nrmse"][0] == pytest.approx(start.best_val_nrmse, rel=1e-12)  # the same validation as fit
    assert h["best_val_nrmse"] == min(h["val_nrmse"]) < h["val_nrmse"][0]
    assert h["val_nrmse"][h["best_iteration"]] == h["best_val_nrmse"]
    pred = train.simulate(r2dn, CFG, params, data.val, start.scaler)
    assert train.evaluate(pred, data.val, 8)[0] == pytest.approx(h["best_val_nrmse"], rel=1e-12)
    assert h["evaluations"][-1] >= h["iterations"] and h["message"]
    for key in ("refine    1/15", "loss", "val NRMSE", "passes", "s/iteration", "left"):
        assert key in lines[0]


@pytest.mark.parametrize("model, kind", [("r2dn", "contracting"), ("r2dn", "lipschitz"), ("ren", "contracting"),
                                         ("ren", "lipschitz")])
def test_refined_model_keeps_its_certificate(data, model, kind):
    from r2dn_np.checks import certificates

    module = train.get_model(model)
    cfg = module.Config(nu=1, nx=3, nv=4, ny=1, kind=kind, **({"hidden": (6,)} if model == "r2dn" else {}),
                        **({"gamma": 2.0} if kind == "lipschitz" else {}))
    start = train.fit(module, cfg, data, dataclasses.replace(OPTS, epochs=1))
    params, h = train.refine(module, cfg, start.params, data, start.scaler, train.RefineOptions(iterations=8, washout=8))
    assert h["best_iteration"] > 0 and h["loss"][-1] < h["loss"][0]  # a moved model is certified, not the start
    explicit, cache = module.direct_to_explicit(cfg, params)
    assert certificates.certify(cfg, explicit, cache).holds


def test_refinement_returns_the_start_when_validation_never_improves(data):
    """Validation records whose outputs are the starting model's own: no iterate can beat it."""
    start = train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, epochs=2))
    own = train.simulate(r2dn, CFG, start.params, data.val, start.scaler)
    val = [sequences.Record(r.u, y) for r, y in zip(data.val, own)]
    params, h = train.refine(r2dn, CFG, start.params, data._replace(val=val), start.scaler,
                             train.RefineOptions(iterations=4, washout=8))
    assert h["best_iteration"] == 0 and params is start.params
    assert h["val_nrmse"][0] < 1e-12 < min(h["val_nrmse"][1:]) and h["loss"][-1] < h["loss"][0]


def test_refinement_options_records_dtype_and_time_limit(data):
    start = train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, epochs=1, dtype="float32"))
    params, h = train.refine(r2dn, CFG, start.params, data, start.scaler,
                             train.RefineOptions(iterations=50, washout=8, records=(1,), max_seconds=1e-9))
    assert h["iterations"] == 1 and "max_seconds" in h["message"]
    assert all(leaf.dtype == np.float32 for leaf in tree.leaves(params))
    opts = train.RefineOptions(records=[1, 0], checkpoint_every=np.int64(4))
    assert opts.records == (1, 0) and type(opts.checkpoint_every) is int


def test_refinement_resumes_from_its_checkpoint(data, tmp_path):
    start = train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, epochs=2))
    ck = tmp_path / "refine.npz"
    opts = train.RefineOptions(iterations=6, washout=8)
    # interrupted after one iteration (the time limit), then continued to six
    _, cut = train.refine(r2dn, CFG, start.params, data, start.scaler,
                          dataclasses.replace(opts, max_seconds=1e-9), checkpoint=ck)
    assert cut["iterations"] == 1 and ck.exists()
    params, h = train.refine(r2dn, CFG, start.params, data, start.scaler, opts, checkpoint=ck, resume=True)
    assert h["resumed_from"] == 1 and h["iterations"] == 6 and len(h["val_nrmse"]) == 7
    assert h["loss"][:2] == cut["loss"] and h["val_nrmse"][:2] == cut["val_nrmse"]
    assert all(b <= a for a, b in zip(h["loss"], h["loss"][1:]))  # the restart starts where it stopped
    # nothing left: the same best iterate, no pass run; more iterations extend the run
    again, h2 = train.refine(r2dn, CFG, start.params, data, start.scaler, opts, checkpoint=ck, resume=True)
    assert h2["iterations"] == 6 and h2["evaluations"] == h["evaluations"] and "resumed" in h2["message"]
    _same(again, params)
    _, h3 = train.refine(r2dn, CFG, start.params, data, start.scaler, dataclasses.replace(opts, iterations=8),
                         checkpoint=ck, resume=True)
    assert h3["iterations"] == 8 and h3["loss"][:7] == h["loss"]
    # a checkpoint of another refinement is refused: other options, another start
    with pytest.raises(io.FormatError, match=r"different run \(options\.memory: 100 in the file, 3 here\)"):
        train.refine(r2dn, CFG, start.params, data, start.scaler, dataclasses.replace(opts, memory=3),
                     checkpoint=ck, resume=True)
    with pytest.raises(io.FormatError, match=r'different run \(start: "'):
        train.refine(r2dn, CFG, r2dn.init(CFG, seed=9), data, start.scaler, opts, checkpoint=ck, resume=True)
    train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, epochs=1), checkpoint=tmp_path / "fit.npz")
    with pytest.raises(io.FormatError, match=r"not a r2dn_np\.training\.train refinement checkpoint \(its kind is "
                                             r"'r2dn_np\.training\.train checkpoint'\)"):
        train.refine(r2dn, CFG, start.params, data, start.scaler, opts, checkpoint=tmp_path / "fit.npz",
                     resume=True)
