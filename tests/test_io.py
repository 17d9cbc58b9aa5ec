import json

import numpy as np
import pytest

from r2dn_np.interface import io
from r2dn_np import lbdn
from r2dn_np.core import tree
from r2dn_np.core.backend import to_numpy

from helpers import host


@pytest.fixture
def model():
    cfg = lbdn.Config(3, 2, hidden=(4, 5), activation="tanh", output_layer="sandwich",
                      gamma=2.5, learn_gamma=True)
    rng = np.random.default_rng(0)
    params = tree.map(lambda a: a + rng.standard_normal(a.shape), lbdn.init(cfg, 1))
    return cfg, params


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_bit_exact(xp, tmp_path, dtype):
    cfg = lbdn.Config(3, 2, hidden=(4,), learn_gamma=True)
    params = lbdn.init(cfg, 3, backend=xp, dtype=dtype)
    path = tmp_path / "m.npz"
    io.save(path, cfg, params, metadata={"note": "hello", "epochs": 3})
    loaded = io.load(path, backend=xp)
    assert loaded.config == cfg
    assert loaded.metadata == {"note": "hello", "epochs": 3}
    assert type(loaded.params) is type(params)
    for (n1, a), (n2, b) in zip(tree.paths(params), tree.paths(loaded.params)):
        assert n1 == n2
        assert a.dtype == b.dtype
        assert host(a).tobytes() == host(b).tobytes(), n1


def test_round_trip_random_values(tmp_path, model):
    cfg, params = model
    io.save(tmp_path / "m.npz", cfg, params)
    loaded = io.load(tmp_path / "m.npz")
    for (n, a), (_, b) in zip(tree.paths(params), tree.paths(loaded.params)):
        assert np.array_equal(to_numpy(a), to_numpy(b)), n
    assert loaded.params.layers[-1].d is not None  # sandwich output keeps its d


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        io.load(tmp_path / "nope.npz")


def _rewrite(path, edit_arrays=None, edit_meta=None):
    arrays, meta = io.read_arrays(path)
    if edit_arrays:
        edit_arrays(arrays)
    if edit_meta:
        edit_meta(meta)
    io.write_arrays(path, arrays, meta)


def test_missing_field(tmp_path, model):
    cfg, params = model
    path = tmp_path / "m.npz"
    io.save(path, cfg, params)
    _rewrite(path, edit_arrays=lambda a: a.pop("layers.1.XY"))
    with pytest.raises(io.FormatError, match=r"m.npz: missing field 'layers.1.XY'"):
        io.load(path)


def test_unexpected_field(tmp_path, model):
    cfg, params = model
    path = tmp_path / "m.npz"
    io.save(path, cfg, params)
    _rewrite(path, edit_arrays=lambda a: a.__setitem__("layers.9.XY", np.ones(2)))
    with pytest.raises(io.FormatError, match="unexpected field 'layers.9.XY'"):
        io.load(path)


def test_wrong_shape_and_dtype(tmp_path, model):
    cfg, params = model
    path = tmp_path / "m.npz"
    io.save(path, cfg, params)
    _rewrite(path, edit_arrays=lambda a: a.__setitem__("layers.0.b", np.ones(7)))
    with pytest.raises(io.FormatError, match=r"field 'layers.0.b' has shape \(7,\), expected \(4,\)"):
        io.load(path)
    io.save(path, cfg, params)
    _rewrite(path, edit_arrays=lambda a: a.__setitem__("layers.0.b", a["layers.0.b"].astype(np.float32)))
    with pytest.raises(io.FormatError, match="field 'layers.0.b' has dtype float32, expected float64"):
        io.load(path)


def test_non_finite_field(tmp_path, model):
    cfg, params = model
    path = tmp_path / "m.npz"
    io.save(path, cfg, params)
    _rewrite(path, edit_arrays=lambda a: a["layers.0.XY"].__setitem__((0, 0), np.nan))
    with pytest.raises(io.FormatError, match="field 'layers.0.XY' contains NaN"):
        io.load(path)


def test_wrong_kind_and_bad_config(tmp_path, model):
    cfg, params = model
    path = tmp_path / "m.npz"
    io.save(path, cfg, params)
    _rewrite(path, edit_meta=lambda m: m.__setitem__("model", "transformer"))
    with pytest.raises(io.FormatError, match="unknown model kind 'transformer'"):
        io.load(path)
    io.save(path, cfg, params)
    _rewrite(path, edit_meta=lambda m: m["config"].__setitem__("gamma", -1.0))
    with pytest.raises(io.FormatError, match="field 'config' is invalid.*gamma"):
        io.load(path)
    io.save(path, cfg, params)
    _rewrite(path, edit_meta=lambda m: m.__setitem__("format_version", 99))
    with pytest.raises(io.FormatError, match="format_version 99"):
        io.load(path)


def test_corrupt_and_truncated_files(tmp_path, model):
    cfg, params = model
    path = tmp_path / "m.npz"
    io.save(path, cfg, params)
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(io.FormatError, match="trunc.npz: not a readable .npz"):
        io.load(tmp_path / "trunc.npz")
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file at all")
    with pytest.raises(io.FormatError, match="junk.npz"):
        io.load(tmp_path / "junk.npz")
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(io.FormatError, match="flip.npz"):
        io.load(tmp_path / "flip.npz")


def test_plain_npz_without_metadata_is_refused(tmp_path):
    np.savez(tmp_path / "plain.npz", x=np.ones(3))
    with pytest.raises(io.FormatError, match="missing the '__meta__'"):
        io.load(tmp_path / "plain.npz")


def test_never_unpickles(tmp_path):
    """An object array (which would need pickle) is refused, not executed."""
    path = tmp_path / "evil.npz"
    np.savez(path, __meta__=np.frombuffer(json.dumps({"format": "r2dn_np"}).encode(), np.uint8),
             x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(io.FormatError, match="evil.npz"):
        io.load(path)


def test_interrupted_save_keeps_previous_file(tmp_path, model, monkeypatch):
    cfg, params = model
    path = tmp_path / "m.npz"
    io.save(path, cfg, params)
    before = path.read_bytes()

    def boom(fh, **arrays):
        fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        io.save(path, cfg, params)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temp file left behind
