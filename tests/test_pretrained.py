"""The models shipped in r2dn_np/data/pretrained: each loads by name, keeps its certificate, and
re-scores to the number its README row gives (so a change of the code that moves a shipped model's
predictions is noticed)."""

import os
import pathlib
import re

import numpy as np
import pytest

from r2dn_np.training import train
from r2dn_np.data import boucwen, f16

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


def test_boucwen_best_scores_what_its_row_says():
    model = train.load_model("pretrained:boucwen_best")
    report = model.certify()
    assert report.holds, report.table()
    # README row: official multisine RMSE 1.032e-5 m in steady state
    assert boucwen.official_rmse(model.simulate) == pytest.approx(1.032e-5, rel=1e-3)


# the F-16 benchmark's files, beside the clone in CI (as in tests/test_f16.py)
F16 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "f16")


def _f16_nrmse(model, washout=100):
    """Per-output RMSE / std of the true output, free run from rest, the first ``washout`` samples
    of each record not scored: pooled over levels 2, 4 and 6, and level 6 alone (docs/sysid.md)."""
    if not os.path.isdir(F16):
        pytest.skip(f"the F-16 benchmark files are absent ({os.path.normpath(F16)}, beside the clone in CI)")
    data = f16.load(F16)
    records = [*data.val, data.test["Level6"]]
    preds = [model.simulate(r.u)[washout:] for r in records]
    trues = [r.y[washout:] for r in records]

    def nrmse(p, t):
        return np.sqrt(np.mean((p - t) ** 2, axis=0)) / np.std(t, axis=0)

    return nrmse(np.concatenate(preds), np.concatenate(trues)), nrmse(preds[-1], trues[-1])


@pytest.mark.parametrize("name, pooled, level6", [
    # README rows (three decimals)
    ("f16_paper_r2dn", (0.169, 0.114, 0.266), (0.186, 0.120, 0.302)),
    ("f16_best", (0.165, 0.102, 0.250), (0.181, 0.108, 0.283)),
])
def test_f16_models_score_what_their_rows_say(name, pooled, level6):
    model = train.load_model(f"pretrained:{name}")
    report = model.certify()
    assert report.holds, report.table()
    got_pooled, got_level6 = _f16_nrmse(model)
    np.testing.assert_allclose(got_pooled, pooled, atol=6e-4)
    np.testing.assert_allclose(got_level6, level6, atol=6e-4)
