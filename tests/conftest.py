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


