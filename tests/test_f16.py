import csv
import os

import numpy as np
import pytest

from r2dn_np.data import f16
from r2dn_np.data.sequences import DataError

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "data", "f16")  # header + first 200 rows of three published files
REAL = os.path.join(HERE, "..", "..", "shared", "data", "f16")  # the full benchmark, beside the clone in CI
HEADER = '"Force","Voltage","Acceleration1","Acceleration2","Acceleration3","Fs",'


def _name(level):
    return f"F16Data_FullMSine_Level{level}{'_Validation' if level % 2 == 0 else ''}.csv"


def _write_published(folder, level, rows, fs="400"):
    """A file in the published format: a comma ends every line, Fs only in the first data row."""
    lines = [HEADER] + [",".join(repr(float(v)) for v in row) + (f",{fs}," if i == 0 else ",,")
                        for i, row in enumerate(rows)]
    path = folder / _name(level)
    path.write_text("\n".join(lines) + "\n\n")  # the published files end with an empty line
    return path


def _write_plain(path, rows, header=",".join(f16.COLUMNS)):
    np.savetxt(path, rows, delimiter=",", header=header, comments="")
    return path


@pytest.fixture
def f16_dir(tmp_path):
    """All seven levels; level n's values are offset by 10 n so a record shows where it came from."""
    rng = np.random.default_rng(0)
    for level in range(1, 8):
        _write_published(tmp_path, level, rng.standard_normal((100 + level, 5)) + 10 * level)
    _write_plain(tmp_path / "unrelated.csv", np.zeros((3, 2)), header="a,b")
    return tmp_path


def _level(record):
    return int(round(record.u.mean() / 10))


def test_reads_the_published_format(tmp_path):
    rows = np.arange(15.0).reshape(3, 5) - 7.25
    rec = f16.read_csv(_write_published(tmp_path, 1, rows))
    np.testing.assert_array_equal(rec.u, rows[:, :2])
    np.testing.assert_array_equal(rec.y, rows[:, 2:])


def test_loads_columns_by_name(tmp_path):
    # columns in another order are found by their header names; no Fs column, no trailing comma
    rows = np.arange(50.0).reshape(10, 5)
    order = ["Acceleration2", "Force", "Acceleration3", "Voltage", "Acceleration1"]
    rec = f16.read_csv(_write_plain(tmp_path / "F16Data_FullMSine_Level5.csv", rows, header=",".join(order)))
    np.testing.assert_array_equal(rec.u, rows[:, [1, 3]])
    np.testing.assert_array_equal(rec.y, rows[:, [4, 0, 2]])


def test_fs_must_be_400(tmp_path):
    path = _write_published(tmp_path, 3, np.ones((4, 5)), fs="200")
    with pytest.raises(DataError, match=r"Level3.csv: column Fs says 200 Hz; the benchmark is sampled at 400 Hz"):
        f16.read_csv(path)


def test_the_paper_split(f16_dir):
    data = f16.load(f16_dir)
    assert data.fs == 400.0 and (data.nu, data.ny) == (2, 3)
    assert [_level(r) for r in data.train] == [1, 3, 5, 7]
    assert [_level(r) for r in data.val] == [2, 4]
    assert list(data.test) == ["Level6"] and _level(data.test["Level6"]) == 6
    assert [r.u.shape[0] for r in data.train] == [101, 103, 105, 107]
    assert [_level(r) for r in data.scale] == [4]  # standardised with level 4, as the authors' code
    assert data.info["levels"] == {"train": [1, 3, 5, 7], "val": [2, 4], "test": [6], "scale": [4]}
    assert data.info["files"] == [_name(n) for n in range(1, 8)]


def test_another_split(f16_dir):
    data = f16.load(f16_dir, train=(5, 1), val=(3,), test=(2, 4), scale=None)
    assert [_level(r) for r in data.train] == [5, 1]
    assert [_level(r) for r in data.val] == [3]
    assert sorted(data.test) == ["Level2", "Level4"]
    assert [_level(r) for r in data.scale] == [5, 1]  # None: the training levels


def test_bad_splits(f16_dir):
    (f16_dir / _name(5)).unlink()
    with pytest.raises(DataError, match=r"no file for level\(s\) \[5\]"):
        f16.load(f16_dir)
    with pytest.raises(ValueError, match="only one of train, val and test"):
        f16.load(f16_dir, train=(1, 3), val=(3,))
    with pytest.raises(ValueError, match="val must list at least one level"):
        f16.load(f16_dir, train=(1,), val=())


def test_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        f16.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        f16.load(None)


def test_no_files(tmp_path):
    with pytest.raises(DataError, match="found none"):
        f16.load(tmp_path)


def test_malformed_csv(f16_dir):
    bad = f16_dir / _name(7)
    bad.write_text(HEADER + "\n1,2,3,4,5,400,\n1,2,x,4,5,,\n")
    with pytest.raises(DataError, match="Level7.csv: malformed row"):
        f16.load(f16_dir)
    bad.write_text(HEADER + "\n1,2,3,4,5,400,\n1,2,3,4\n")
    with pytest.raises(DataError, match="Level7.csv: malformed row"):
        f16.load(f16_dir)
    bad.write_text(HEADER + "\n1,2,3,4,5,400,\n1,2,3,4,5,6,,\n1,2,3,4,5,,\n")  # a field too many
    with pytest.raises(DataError, match="Level7.csv: malformed row 3: 8 fields, more than the header's 7"):
        f16.load(f16_dir)
    bad.write_text("Force,Voltage,Acc1,Acc2,Acc3\n1,2,3,4,5\n1,2,3,4,5\n")
    with pytest.raises(DataError, match="lacks column 'Acceleration1'"):
        f16.load(f16_dir)
    bad.write_text(HEADER + "\n1,2,3,4,nan,400,\n1,2,3,4,5,,\n")
    with pytest.raises(DataError, match="NaN"):
        f16.load(f16_dir)
    bad.write_text(HEADER + "\n1,2,3,4,5,400,\n")
    with pytest.raises(DataError, match="Level7.csv: expected at least 2 rows"):
        f16.load(f16_dir)


# Cut from the published files: the format itself is tested without ../shared.
def test_fixtures_cut_from_the_published_files():
    with open(os.path.join(FIXTURES, _name(1))) as fh:
        assert fh.readline().rstrip("\n") == HEADER
    data = f16.load(FIXTURES, train=(1,), val=(4,), test=(6,))
    np.testing.assert_array_equal(data.train[0].u[0], [0.95714, -0.00045788])
    np.testing.assert_array_equal(data.train[0].y[0], [-0.018392, -0.049607, -0.046328])
    np.testing.assert_array_equal(data.val[0].u[1], [-18.8521, 0.046739])
    np.testing.assert_array_equal(data.test["Level6"].y[-1], [0.85875, 0.16855, 0.027749])
    assert [r.u.shape for r in data.train + data.val] == [(200, 2), (200, 2)]
    assert data.test["Level6"].y.shape == (200, 3)
    assert data.scale[0] is data.val[0]


def _real_or_skip():
    if not os.path.isdir(REAL):
        pytest.skip(f"the F-16 benchmark files are absent ({os.path.normpath(REAL)}, beside the clone in CI)")
    return REAL


def _rows(path, which):
    """Rows of a file by an independent parser (the csv module), as floats, first 5 fields."""
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r][1:]
    return [[float(v) for v in rows[i][:5]] for i in which]


def test_real_files():
    folder = _real_or_skip()
    data = f16.load(folder)
    assert [r.u.shape for r in data.train] == [(73728, 2)] * 4 and [r.y.shape for r in data.val] == [(73728, 3)] * 2
    assert list(data.test) == ["Level6"] and data.test["Level6"].u.shape == (73728, 2)
    assert data.input_names == ("Force", "Voltage")
    assert data.output_names == ("Acceleration1", "Acceleration2", "Acceleration3")
    records = dict(zip([1, 3, 5, 7, 2, 4, 6], data.train + data.val + [data.test["Level6"]]))
    for level, rec in records.items():
        which = [0, 36863, 73727]
        expect = np.array(_rows(os.path.join(folder, _name(level)), which))
        np.testing.assert_array_equal(np.hstack([rec.u, rec.y])[which], expect, err_msg=f"level {level}")
    np.testing.assert_array_equal(data.scale[0].y, records[4].y)
    # the excitation level grows with the level number
    assert np.std(records[1].u[:, 0]) < np.std(records[4].u[:, 0]) < np.std(records[7].u[:, 0])


def test_fixtures_are_verbatim_prefixes_of_the_real_files():
    folder = _real_or_skip()
    for name in sorted(os.listdir(FIXTURES)):
        with open(os.path.join(FIXTURES, name), "rb") as fh:
            cut = fh.read()
        with open(os.path.join(folder, name), "rb") as fh:
            assert fh.read(len(cut)) == cut, name
