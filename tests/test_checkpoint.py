"""The one checkpoint module (r2dn_np.training.checkpoint): a bitwise round trip, the refusals
(another kind, another run with what differs named, truncated or corrupt files, pickles,
malformed arrays and fields), an atomic write, and checkpoints written by the code before it
(tests/data/checkpoints/) resuming as they did."""

import dataclasses
import os
import pathlib
import re
import shutil

import numpy as np
import pytest

from r2dn_np import r2dn
from r2dn_np.core import tree
from r2dn_np.data import pendulum
from r2dn_np.interface import io
from r2dn_np.training import checkpoint, optim, train

OLD = os.path.join(os.path.dirname(__file__), "data", "checkpoints")
# the run of tests/test_train.py that wrote the files of tests/data/checkpoints/
CFG = r2dn.Config(nu=1, nx=3, nv=4, ny=1, hidden=(6,), kind="contracting")
OPTS = train.Options(epochs=4, chunk=64, window=32, batch=3, lr=1e-2, washout=8, decay_epochs=2, seed=3)
REFINE = train.RefineOptions(iterations=6, washout=8)
KIND = "test checkpoint"


@pytest.fixture(scope="module")
def data():
    return pendulum.load(pendulum.Settings(period=256, n_train=2, transient=100), cache_dir=False)


def _same(a, b):
    assert type(a) is type(b)
    pa, pb = tree.paths(a), tree.paths(b)
    assert [n for n, _ in pa] == [n for n, _ in pb]
    for (name, x), (_, y) in zip(pa, pb):
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name, strict=True)


def _trees(dtype="float64"):
    params = r2dn.init(CFG, seed=1, dtype=dtype)
    adam = optim.adam_init(params)
    m = tree.map(lambda a: a * 0.5 - 0.25, params)
    return {"params": params, "adam_m": m, "adam_v": tree.map(lambda a: a * a, m),
            "theta": np.random.default_rng(0).standard_normal(7).astype(dtype)}, adam.step


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_round_trip_is_bitwise(tmp_path, dtype):
    trees, _ = _trees(dtype)
    fields = {"epoch": 3, "best_val": float("inf"), "history": {"loss": [0.1, 1 / 3]}, "rng": {"bit_generator": "PCG64"}}
    path = tmp_path / "ck.npz"
    checkpoint.write(path, KIND, {"options": {"lr": 0.1, "hidden": (6,)}}, trees, fields)
    ck = checkpoint.read(path, KIND, {"options": {"lr": 0.1, "hidden": [6]}}, trees,
                         fields={"epoch": checkpoint.count, "best_val": checkpoint.number})
    assert set(ck.trees) == set(trees)
    for name in trees:
        _same(ck.trees[name], trees[name])
    assert ck.fields == fields  # the loop's fields, inf and the float 1/3 exactly
    # the file holds the arrays under NAME.PATH and the metadata io reads; nothing pickled
    arrays, meta = io.read_arrays(path)
    assert meta["kind"] == KIND and meta["format_version"] == io.FORMAT_VERSION
    assert meta["fingerprint"] == {"options": {"lr": 0.1, "hidden": [6]}}
    assert set(arrays) == {"theta"} | {f"{name}.{p}" for name in ("params", "adam_m", "adam_v")
                                       for p, _ in tree.paths(trees["params"])}


def test_an_optional_tree_absent_reads_as_none(tmp_path):
    path = tmp_path / "ck.npz"
    checkpoint.write(path, KIND, {}, {"theta": np.ones(3), "best_theta": None}, {})
    ck = checkpoint.read(path, KIND, {}, {"theta": np.zeros(3), "best_theta": np.zeros(3)}, optional=("best_theta",))
    assert ck.trees["best_theta"] is None and ck.trees["theta"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(io.FormatError, match=re.escape(f"{path}: checkpoint array 'best_theta' is missing")):
        checkpoint.read(path, KIND, {}, {"theta": np.zeros(3), "best_theta": np.zeros(3)})


def test_another_run_is_refused_naming_what_differs(tmp_path):
    path = tmp_path / "ck.npz"
    written = {"model": "r2dn", "options": {"lr": 0.01, "seed": 3, "dtype": "float64"}, "start": "ab" * 32}
    checkpoint.write(path, KIND, written, {"theta": np.zeros(2)}, {})
    here = {"model": "r2dn", "options": {"lr": 0.5, "seed": 3, "batch": 4}, "start": "cd" * 32}
    with pytest.raises(io.FormatError) as err:
        checkpoint.read(path, KIND, here, {"theta": np.zeros(2)})
    message = str(err.value)
    assert message.startswith(f"{path}: a checkpoint of a different run (")
    assert "options.batch: absent in the file" in message
    assert "options.dtype: in the file only" in message
    assert "options.lr: 0.01 in the file, 0.5 here" in message
    assert 'start: "' + "ab" * 18 + '... in the file, "' + "cd" * 18 + '... here' in message  # long values shortened
    assert "model" not in message.split("(", 1)[1] and "seed" not in message


def test_another_kind_is_refused(tmp_path):
    path = tmp_path / "ck.npz"
    checkpoint.write(path, "other loop", {}, {"theta": np.zeros(2)}, {})
    with pytest.raises(io.FormatError, match=re.escape(f"{path}: not a {KIND} (its kind is 'other loop')")):
        checkpoint.read(path, KIND, {}, {"theta": np.zeros(2)})
    r2dn_np_model = tmp_path / "model.npz"
    io.save(r2dn_np_model, CFG, r2dn.init(CFG, seed=0))
    with pytest.raises(io.FormatError, match=re.escape(f"{r2dn_np_model}: not a {KIND} (its kind is None)")):
        checkpoint.read(r2dn_np_model, KIND, {}, {})


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "empty"])
def test_a_damaged_file_is_refused_naming_it(tmp_path, damage):
    path = tmp_path / "ck.npz"
    checkpoint.write(path, KIND, {}, {"theta": np.arange(4000.0)}, {"epoch": 1})
    raw = path.read_bytes()
    if damage == "truncated":
        raw = raw[:len(raw) // 2]
    elif damage == "corrupt":  # the middle of the array's bytes: the zip's CRC no longer matches
        raw = raw[:len(raw) // 3] + bytes(b ^ 0xFF for b in raw[len(raw) // 3:len(raw) // 3 + 64]) + raw[len(raw) // 3 + 64:]
    else:
        raw = b""
    path.write_bytes(raw)
    with pytest.raises(io.FormatError, match="^" + re.escape(f"{path}: ")):
        checkpoint.read(path, KIND, {}, {"theta": np.zeros(4000)})


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "none.npz"))):
        checkpoint.read(tmp_path / "none.npz", KIND, {}, {})


def test_a_pickled_array_is_never_loaded(tmp_path):
    path = tmp_path / "ck.npz"
    checkpoint.write(path, KIND, {}, {"theta": np.zeros(2)}, {})
    arrays = dict(np.load(path))
    arrays["theta"] = np.array([{"not": "an array"}], dtype=object)  # np.savez pickles object arrays
    np.savez(path, **arrays)
    with pytest.raises(io.FormatError, match="^" + re.escape(f"{path}: not a readable .npz file") + ".*pickle"):
        checkpoint.read(path, KIND, {}, {"theta": np.zeros(2)})


@pytest.mark.parametrize("stored, message", [
    (np.zeros(3), "checkpoint array 'theta' is float64 (3,), expected float64 (2,)"),
    (np.zeros(2, np.float32), "checkpoint array 'theta' is float32 (2,), expected float64 (2,)"),
    (np.array([0.0, np.nan]), "checkpoint array 'theta' contains NaN or Inf"),
])
def test_a_malformed_array_is_named(tmp_path, stored, message):
    path = tmp_path / "ck.npz"
    checkpoint.write(path, KIND, {}, {"theta": stored}, {})
    with pytest.raises(io.FormatError, match=re.escape(f"{path}: {message}")):
        checkpoint.read(path, KIND, {}, {"theta": np.zeros(2)})


@pytest.mark.parametrize("fields", [{}, {"epoch": -1}, {"epoch": True}, {"epoch": "2"}])
def test_a_malformed_field_is_named(tmp_path, fields):
    path = tmp_path / "ck.npz"
    checkpoint.write(path, KIND, {}, {}, fields)
    with pytest.raises(io.FormatError, match=re.escape(f"{path}: checkpoint field 'epoch' is missing or malformed")):
        checkpoint.read(path, KIND, {}, {}, fields={"epoch": checkpoint.count})


@pytest.mark.parametrize("call, error, match", [
    (lambda p: checkpoint.write(None, KIND, {}, {}, {}), TypeError, "^path"),
    (lambda p: checkpoint.write(p, "", {}, {}, {}), TypeError, "^kind"),
    (lambda p: checkpoint.write(p, KIND, [], {}, {}), TypeError, "^fingerprint must be a dict"),
    (lambda p: checkpoint.write(p, KIND, {"x": object()}, {}, {}), TypeError, "^fingerprint must hold only JSON"),
    (lambda p: checkpoint.write(p, KIND, {}, [], {}), TypeError, "^trees must be a dict"),
    (lambda p: checkpoint.write(p, KIND, {}, {"a.b": np.zeros(1)}, {}), ValueError, "^trees: name 'a.b'"),
    (lambda p: checkpoint.write(p, KIND, {}, {}, {"kind": 1}), ValueError, "^fields must not use the reserved name 'kind'"),
    (lambda p: checkpoint.write(p, KIND, {}, {}, {"rng": np.zeros(1)}), TypeError, "^fields must hold only JSON"),
    (lambda p: checkpoint.read(None, KIND, {}, {}), TypeError, "^path"),
])
def test_bad_arguments_are_named(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(tmp_path / "ck.npz")
    assert not os.listdir(tmp_path)  # refused before anything is written


def test_an_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    checkpoint.write(path, KIND, {}, {"theta": np.ones(2)}, {"epoch": 1})
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.write(path, KIND, {}, {"theta": np.zeros(2)}, {"epoch": 2})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.npz"]  # no temporary file left


def test_a_fit_checkpoint_of_the_code_before_resumes_as_an_uninterrupted_run(data, tmp_path):
    whole = train.fit(r2dn, CFG, data, OPTS)
    ck = tmp_path / "checkpoint.npz"
    shutil.copy(os.path.join(OLD, "fit_epoch2.npz"), ck)
    rest = train.fit(r2dn, CFG, data, OPTS, checkpoint=ck, resume=True)
    assert rest.resumed_from == 2 and rest.epochs_run == 4
    _same(rest.params, whole.params)
    for key in ("loss", "val_nrmse", "lr"):
        assert rest.history[key] == whole.history[key]
    # rewritten by the new code after epochs 3 and 4: the layout of the arrays is the same
    old, new = io.read_arrays(os.path.join(OLD, "fit_epoch2.npz")), io.read_arrays(ck)
    assert set(old[0]) == set(new[0]) and set(old[1]) == set(new[1]) and new[1]["epoch"] == 4


def test_a_refine_checkpoint_of_the_code_before_loads_and_resumes_as_a_new_one(data, tmp_path):
    start = train.fit(r2dn, CFG, data, dataclasses.replace(OPTS, epochs=2))
    new = tmp_path / "new.npz"
    _, cut = train.refine(r2dn, CFG, start.params, data, start.scaler, dataclasses.replace(REFINE, max_seconds=1e-9),
                          checkpoint=new)
    assert cut["iterations"] == 1
    old = tmp_path / "old.npz"
    shutil.copy(os.path.join(OLD, "refine_iteration1.npz"), old)
    # the same state bitwise: iterate, best iterate, losses and validation NRMSEs
    (a_arrays, a_meta), (b_arrays, b_meta) = io.read_arrays(old), io.read_arrays(new)
    assert set(a_arrays) == set(b_arrays)
    for key in a_arrays:
        np.testing.assert_array_equal(a_arrays[key], b_arrays[key], strict=True)
    for key in ("loss", "val_nrmse", "evaluations"):
        assert a_meta["history"][key] == b_meta["history"][key]
    assert (a_meta["kind"], a_meta["fingerprint"], a_meta["best_iteration"]) == \
        (b_meta["kind"], b_meta["fingerprint"], b_meta["best_iteration"])
    # and each continues to the same end
    p_old, h_old = train.refine(r2dn, CFG, start.params, data, start.scaler, REFINE, checkpoint=old, resume=True)
    p_new, h_new = train.refine(r2dn, CFG, start.params, data, start.scaler, REFINE, checkpoint=new, resume=True)
    assert h_old["resumed_from"] == 1 and h_old["iterations"] == 6
    assert h_old["loss"] == h_new["loss"] and h_old["val_nrmse"] == h_new["val_nrmse"]
    _same(p_old, p_new)


def test_fit_refuses_a_truncated_checkpoint_naming_it(data, tmp_path):
    ck = tmp_path / "checkpoint.npz"
    raw = pathlib.Path(OLD, "fit_epoch2.npz").read_bytes()
    ck.write_bytes(raw[:len(raw) - 100])
    with pytest.raises(io.FormatError, match="^" + re.escape(f"{ck}: not a readable .npz file")):
        train.fit(r2dn, CFG, data, OPTS, checkpoint=ck, resume=True)
