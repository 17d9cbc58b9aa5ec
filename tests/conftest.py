"""Shared fixtures: the ``xp`` fixture runs a test on every backend this machine has."""

import os

import pytest
from hypothesis import HealthCheck, settings

from helpers import cupy_or_skip

# CI is derandomised (same examples every run); R2DN_HYPOTHESIS=dev explores new ones.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=200, print_blob=True)
settings.load_profile(os.environ.get("R2DN_HYPOTHESIS", "ci"))


@pytest.fixture(scope="session", params=["numpy", "array_api_strict", "cupy"])
def xp(request):
    """The array namespace under test: numpy, array_api_strict, and cupy where a GPU exists."""
    if request.param == "numpy":
        import array_api_compat.numpy as xp

        return xp
    if request.param == "array_api_strict":
        import array_api_strict

        return array_api_strict
    return cupy_or_skip()




# The cupy cases of every test skip for the same reason on a machine without a GPU; pytest would
# list each test's location on its own line (over a hundred). Fold them into one summary line:
# each case still skips, and says why, in the verbose output and in the count.
_CUPY_REASONS = ("CuPy is not installed", "no CUDA device on this machine")


def pytest_terminal_summary(terminalreporter):
    """Runs before pytest's short summary (which is printed after the plugins' summaries)."""
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        if isinstance(longrepr, tuple) and len(longrepr) == 3 and any(r in str(longrepr[2]) for r in _CUPY_REASONS):
            report.longrepr = (__file__, None, f"{longrepr[2]} (every CuPy case)")
