"""The models shipped in r2dn_np/data/pretrained: each loads by name, keeps its certificate, and
re-scores to the number its README row gives (so a change of the code that moves a shipped model's
predictions is noticed)."""

import pathlib
import re

import pytest

from r2dn_np.training import train
from r2dn_np.data import boucwen

README = pathlib.Path(train.PRETRAINED_DIR) / "README.md"


def test_every_shipped_model_has_its_readme_row():
    rows = re.findall(r"^\| `([\w.-]+)\.npz` \|", README.read_text(), re.M)
    assert sorted(rows) == sorted(train.pretrained())


def test_boucwen_quick_refined_scores_what_its_row_says():
    model = train.load_model("pretrained:boucwen_quick_refined")
    report = model.certify()
    assert report.holds, report.table()
    # README row: official multisine RMSE 1.343e-5 m in steady state
    assert boucwen.official_rmse(model.simulate) == pytest.approx(1.343e-5, rel=1e-3)
