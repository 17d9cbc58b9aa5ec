import numpy as np
import pytest

from r2dn_np.data import f16
from r2dn_np.data.sequences import DataError


def _write(folder, name, rows, header=",".join(f16.COLUMNS)):
    path = folder / name
    np.savetxt(path, rows, delimiter=",", header=header, comments="")
    return path


@pytest.fixture
def f16_dir(tmp_path):
    rng = np.random.default_rng(0)
    for level in (1, 3):
        _write(tmp_path, f"F16Data_FullMSine_Level{level}.csv", rng.standard_normal((100, 5)) + level)
    _write(tmp_path, "F16Data_FullMSine_Level2_Validation.csv", rng.standard_normal((60, 5)))
    _write(tmp_path, "unrelated.csv", np.zeros((3, 2)), header="a,b")
    return tmp_path


def test_loads_columns_by_name(f16_dir):
    # columns in another order are found by their header names
    rows = np.arange(50.0).reshape(10, 5)
    order = ["Acceleration2", "Force", "Acceleration3", "Voltage", "Acceleration1"]
    path = _write(f16_dir, "F16Data_FullMSine_Level5.csv", rows, header=",".join(order))
    rec = f16.read_csv(path)
    np.testing.assert_array_equal(rec.u, rows[:, [1, 3]])
    np.testing.assert_array_equal(rec.y, rows[:, [4, 0, 2]])


def test_split(f16_dir):
    data = f16.load(f16_dir, val_fraction=0.25)
    assert data.fs == 400.0 and (data.nu, data.ny) == (2, 3)
    assert [r.u.shape[0] for r in data.train] == [75, 75]
    assert [r.u.shape[0] for r in data.val] == [25, 25]
    assert sorted(data.test) == ["Level2"] and data.test["Level2"].y.shape == (60, 3)
    assert data.train[1].u.mean() > 2  # level 3 file, in sorted order
    assert data.info["files"] == ["F16Data_FullMSine_Level1.csv", "F16Data_FullMSine_Level2_Validation.csv",
                                  "F16Data_FullMSine_Level3.csv"]


def test_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        f16.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        f16.load(None)


def test_no_files(tmp_path):
    with pytest.raises(DataError, match="found none"):
        f16.load(tmp_path)


def test_malformed_csv(f16_dir):
    bad = f16_dir / "F16Data_FullMSine_Level7.csv"
    bad.write_text("Force,Voltage,Acceleration1,Acceleration2,Acceleration3\n1,2,3,4,5\n1,2,x,4,5\n")
    with pytest.raises(DataError, match="Level7.csv: malformed row"):
        f16.load(f16_dir)
    bad.write_text("Force,Voltage,Acceleration1,Acceleration2,Acceleration3\n1,2,3,4,5\n1,2,3,4\n")
    with pytest.raises(DataError, match="Level7.csv: malformed row"):
        f16.load(f16_dir)
    bad.write_text("Force,Voltage,Acc1,Acc2,Acc3\n1,2,3,4,5\n1,2,3,4,5\n")
    with pytest.raises(DataError, match="lacks column 'Acceleration1'"):
        f16.load(f16_dir)
    bad.write_text("Force,Voltage,Acceleration1,Acceleration2,Acceleration3\n1,2,3,4,nan\n1,2,3,4,5\n")
    with pytest.raises(DataError, match="NaN"):
        f16.load(f16_dir)
