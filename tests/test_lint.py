"""The layer order of docs/architecture.md (import-linter contracts in .importlinter) and the lint
rules of pyproject.toml (ruff) hold for the whole repository. Both tools are in the test extra."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tool(name):
    path = shutil.which(name, path=str(pathlib.Path(sys.executable).parent)) or shutil.which(name)
    assert path, f"{name} is not installed: pip install -e '.[test]'"
    return path


def test_layers_are_respected():
    out = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_ruff_finds_nothing():
    out = subprocess.run([_tool("ruff"), "check", "--no-cache", "r2dn_np", "tests", "scripts"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


@pytest.mark.parametrize("bad, contract", [
    ("from . import losses\n", "models never import training code"),
    ("from . import r2dn\n", "no model imports another"),
])
def test_the_layer_contract_catches_a_model_importing_upwards(tmp_path, bad, contract):
    """A negative control: copy the package, make a model import what it must not, and the
    contract breaks."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "r2dn_np", copy / "r2dn_np", ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    shutil.copy(ROOT / ".importlinter", copy / ".importlinter")
    ren = copy / "r2dn_np" / "ren.py"
    ren.write_text(ren.read_text().replace("from __future__ import annotations\n",
                                           "from __future__ import annotations\n" + bad, 1))
    out = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=copy, capture_output=True, text=True,
                         env={"PYTHONPATH": str(copy), "PATH": ""})
    assert out.returncode != 0, (contract, out.stdout[-2000:])
    assert "r2dn_np.ren" in out.stdout
