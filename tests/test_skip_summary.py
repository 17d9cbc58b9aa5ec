"""The CuPy cases skipped on a machine without a GPU are summarised in one line (tests/conftest.py)."""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here: nothing is skipped")
def test_cupy_skips_fold_into_one_line():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_losses.py",
                           "tests/test_linalg.py"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stdout[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if "CuPy is not installed" in ln]
    assert len(lines) == 1 and lines[0].startswith("SKIPPED [15] tests/conftest.py: cupy backend"), lines
    assert "15 skipped" in proc.stdout  # each case is still skipped and counted
