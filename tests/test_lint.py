"""The layer order of docs/architecture.md (import-linter contracts in .importlinter) and the lint
rules of pyproject.toml (ruff) hold for the whole repository. Both tools are in the test extra."""

import configparser
import pathlib
import re
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


def _layers():
    """The module and folder names of the layer contracts in .importlinter."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    names = set()
    for section in config.sections():
        if config.get(section, "type", fallback="") == "layers":
            for line in config.get(section, "layers").split("\n"):
                names.update(n.strip() for n in re.split(r"[|:]", line) if n.strip())
    return names


def _modules():
    package = ROOT / "r2dn_np"
    for path in package.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_module_is_in_a_layer():
    """A module left out of the layer contract escapes it: every module of the package is a layer
    or lies in a folder that is one."""
    layers = _layers()
    orphans = [m for m in _modules() if m != "r2dn_np"
               and not any(m == name or m.startswith(name + ".") for name in layers)]
    assert not orphans, f"modules in no layer of .importlinter: {orphans}"


def test_the_layer_check_sees_a_new_top_level_module(tmp_path, monkeypatch):
    """A negative control for the check above: a new module at the top of the package is in no layer."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "r2dn_np", copy / "r2dn_np", ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    shutil.copy(ROOT / ".importlinter", copy / ".importlinter")
    (copy / "r2dn_np" / "helpers.py").write_text("X = 1\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", copy)
    with pytest.raises(AssertionError, match="r2dn_np.helpers"):
        test_every_module_is_in_a_layer()


@pytest.mark.parametrize("module, bad, contract", [
    ("ren.py", "from .training import losses\n", "models never import training code"),
    ("ren.py", "from . import r2dn\n", "no model imports another"),
    ("loop/feedback.py", "from .. import ren\n", "the time loop never imports a model"),
    ("core/linalg.py", "import cupy\n", "CuPy only in the backend and the CuPy-specific kernels"),
])
def test_the_contracts_catch_a_forbidden_import(tmp_path, module, bad, contract):
    """A negative control: copy the package, make a module import what it must not, and a
    contract breaks."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "r2dn_np", copy / "r2dn_np", ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    shutil.copy(ROOT / ".importlinter", copy / ".importlinter")
    path = copy / "r2dn_np" / module
    path.write_text(path.read_text().replace("from __future__ import annotations\n",
                                             "from __future__ import annotations\n" + bad, 1))
    out = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=copy, capture_output=True, text=True,
                         env={"PYTHONPATH": str(copy), "PATH": ""})
    assert out.returncode != 0, (contract, out.stdout[-2000:])
    assert "r2dn_np." + module[:-3].replace("/", ".") in out.stdout, out.stdout[-2000:]
