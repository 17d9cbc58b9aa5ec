"""``r2dn sysid`` and ``r2dn sweep`` give the numbers they gave before the experiments became
library functions (issue 27): every number of ``results.json`` and of the sweep's summaries,
times and the machine left out (``reference_numbers.VOLATILE``), to 1e-12 relative (they agree
bit for bit on the machine that recorded them).

The reference, ``tests/data/experiments_reference.json``, was recorded with the code of commit
784e338 (``git archive 784e338``) by

    python -m r2dn_np sysid --preset tiny --dataset boucwen --out OUT --cache-dir CACHE --quiet
    python -m r2dn_np sysid --preset tiny --dataset pendulum --out OUT --cache-dir CACHE --quiet
    python -m r2dn_np sysid --preset tiny --dataset pendulum --model ren --kind lipschitz --gamma 5 \\
        --refine 2 --out OUT --cache-dir CACHE --quiet
    python -m r2dn_np sweep --tasks sysid-boucwen --models r2dn,ren --seeds 1 --preset tiny --serial ...

and, for the sweep's tasks expressivity, observer and youla (which 784e338 could not run: its
sweep looked for scripts/ inside the package), with the code of commit 84f3fc7, the commit
before the move into layer folders, by

    python -m r2dn_np sweep --tasks expressivity,observer,youla --models r2dn,ren --seeds 1 \\
        --preset tiny --serial --root ROOT --cache-dir CACHE

keeping ``reference_numbers.numbers`` of each ``results.json`` and ``summary.json``.
"""

import json
import os

import pytest

from r2dn_np import cli
from reference_numbers import differences, numbers

HERE = os.path.dirname(os.path.abspath(__file__))


def _reference():
    with open(os.path.join(HERE, "data", "experiments_reference.json"), encoding="utf-8") as fh:
        return json.load(fh)


SYSID = {
    "boucwen": ["--dataset", "boucwen"],
    "pendulum": ["--dataset", "pendulum"],
    "pendulum-ren-lipschitz-refine2": ["--dataset", "pendulum", "--model", "ren", "--kind", "lipschitz",
                                       "--gamma", "5", "--refine", "2"],
}


@pytest.mark.parametrize("name", sorted(SYSID))
def test_sysid_gives_the_numbers_of_before(name, tmp_path, monkeypatch):
    monkeypatch.delenv("R2DN_WORKERS", raising=False)
    argv = ["sysid", "--preset", "tiny", *SYSID[name], "--out", str(tmp_path / "out"), "--cache-dir",
            str(tmp_path / "cache"), "--quiet"]
    assert cli.main(argv) == 0
    with open(tmp_path / "out" / "results.json", encoding="utf-8") as fh:
        got = json.load(fh)
    assert differences(numbers(got), _reference()["sysid"][name]) == []


def test_sweep_gives_the_numbers_of_before(tmp_path, monkeypatch):
    monkeypatch.delenv("R2DN_WORKERS", raising=False)
    root = tmp_path / "runs"
    argv = ["sweep", "--tasks", "sysid-boucwen,expressivity,observer,youla", "--models", "r2dn,ren", "--seeds", "1",
            "--preset", "tiny", "--serial", "--root", str(root), "--cache-dir", str(tmp_path / "cache")]
    assert cli.main(argv) == 0
    got = {}
    for folder, _, files in os.walk(root):
        if "summary.json" in files:
            with open(os.path.join(folder, "summary.json"), encoding="utf-8") as fh:
                s = json.load(fh)
            got[f"{s['settings']['task']}/{s['settings']['model']}"] = numbers(s)
    want = _reference()["sweep"]
    assert sorted(got) == sorted(want)
    assert [d for key in want for d in differences(got[key], want[key], where=key)] == []


def test_the_library_call_is_the_command(tmp_path, monkeypatch):
    """``sysid.run`` from Python gives the command's numbers and writes what it returns."""
    from r2dn_np.experiments import sysid

    monkeypatch.delenv("R2DN_WORKERS", raising=False)
    settings = sysid.SysidSettings(dataset="pendulum", preset="tiny", out=str(tmp_path / "out"),
                                   cache_dir=str(tmp_path / "cache"), quiet=True)
    lines = []
    result = sysid.run(settings, log=lines.append)
    assert differences(numbers(result.results), _reference()["sysid"]["pendulum"]) == []
    assert (tmp_path / "out" / "results.json").read_text(encoding="utf-8") == result.to_json()
    assert result.results["arguments"]["workers"] is None and result.certificate_holds
    assert lines[0].startswith("r2dn sysid: r2dn (contracting) on data set pendulum, preset tiny")
    table = result.table()
    assert "multisine" in table and "certificate (contracting): holds" in table and "3 epochs in" in table
    assert all(os.path.isfile(p) for p in result.files())
    with pytest.raises(ValueError, match="^out .*: holds a run's results .* add resume to continue"):
        sysid.run(settings)
