"""The expressivity experiment as a library call: the target map, one tiny run, a run resumed
from its checkpoint ending where an uninterrupted one ends, and its settings' checks."""

import json
import re

import numpy as np
import pytest

from r2dn_np.experiments import expressivity
from r2dn_np.interface import io


def test_the_target_map():
    # at x = u = 0 only 0.05 cos(0) survives; at u = -x the sines of x + u vanish
    assert expressivity.target_map(np.zeros(1), np.zeros(1))[0] == pytest.approx(0.05)
    x = np.array([1.3])
    want = 0.2 * np.sin(x) + 0.05 + 0.05 * x - x
    np.testing.assert_allclose(expressivity.target_map(x, -x), want, rtol=1e-15)


def test_a_tiny_run_and_its_result():
    result = expressivity.run(expressivity.ExpressivitySettings("ren", preset="tiny", size=4, epochs=2))
    assert (result.model, result.size, result.epochs, result.steps) == ("ren", "nv=4", 2, 4)
    assert np.isfinite(result.nrmse) and result.nrmse > 0 and len(result.seconds) == 2
    assert json.loads(result.to_json())["curve"] == result.curve
    assert result.table().startswith("ren   nv=4")


def test_a_resumed_run_ends_where_an_uninterrupted_one_ends(tmp_path):
    settings = expressivity.ExpressivitySettings("r2dn", preset="tiny", size=4, epochs=3)
    path = str(tmp_path / "checkpoint.npz")

    def stop_after_two(line):
        if " epoch 2:" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        expressivity.run(settings, checkpoint=path, log=stop_after_two)
    resumed = expressivity.run(settings, checkpoint=path)
    alone = expressivity.run(settings)
    assert resumed.resumed_from == 2 and resumed.curve == alone.curve and resumed.nrmse == alone.nrmse
    other = expressivity.ExpressivitySettings("r2dn", preset="tiny", size=4, epochs=3, seed=1)
    with pytest.raises(io.FormatError, match=r"checkpoint of a different run \(seed: 0 in the file, 1 here\); delete it"):
        expressivity.run(other, checkpoint=path)


def test_a_checkpoint_of_the_format_before_is_refused(tmp_path):
    # the layout run() wrote before r2dn_np.training.checkpoint: settings, no kind
    settings = expressivity.ExpressivitySettings("r2dn", preset="tiny", size=4, epochs=3)
    path = tmp_path / "checkpoint.npz"
    io.write_arrays(path, {"params.X": np.zeros(1)}, {"format": io.FORMAT, "format_version": io.FORMAT_VERSION,
                                                      "settings": {}, "epoch": 1, "step": 2, "history": {}})
    want = f"{path}: not a r2dn_np.experiments.expressivity checkpoint (its kind is None); delete it"
    with pytest.raises(io.FormatError, match=re.escape(want)):
        expressivity.run(settings, checkpoint=path)


@pytest.mark.parametrize("fields, error, match", [
    (dict(model="lstm"), ValueError, "^model must be one of"),
    (dict(model="r2dn", preset="huge"), ValueError, "^preset must be one of"),
    (dict(model="r2dn", size=0), ValueError, "^size must be an integer >= 1"),
    (dict(model="r2dn", epochs=1.5), TypeError, "^epochs must be an integer"),
    (dict(model="r2dn", dtype="float16"), ValueError, "^dtype must be one of"),
])
def test_settings_name_the_bad_field(fields, error, match):
    with pytest.raises(error, match=match):
        expressivity.ExpressivitySettings(**fields)
