"""The built-in system-identification data sets, by name: what ``r2dn sysid --dataset NAME``,
``r2dn_np.experiments.sysid.run`` and the sweep know about a data set is its entry here.

Adding a data set is one :class:`DataSet` in :data:`DATASETS` (and its presets in
``experiments/sysid.py``); ``docs/contributing.md``, "Add a data set".

Examples
--------
>>> from r2dn_np.data import registry
>>> sorted(registry.DATASETS)
['boucwen', 'f16', 'pendulum']
>>> registry.get("f16").needs_data_dir, registry.get("boucwen").benchmark is not None
(True, True)
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Callable

from ..core import _validate
from . import _sim, boucwen, f16, pendulum

__all__ = ["DataSet", "DATASETS", "get", "names"]


@dataclasses.dataclass(frozen=True)
class DataSet:
    """One data set and the facts the command line and the experiments need about it."""

    name: str
    help: str  # one phrase for ``--dataset``'s help
    # load(settings: dict, data_dir, cache_dir) -> sequences.SysIdData; ``settings`` are a preset's
    # ``data`` overrides (of a generated set's ``Settings``)
    load: Callable
    # files(data_dir, cache_dir) -> [(argument, path)]: the existing files loading may read, named by
    # the argument that gave their folder ("data_dir", "cache_dir" or "the data cache"), so that no
    # command writes over them
    files: Callable
    # describe(settings: dict) -> (what loading makes or reads, about how many CPU seconds it takes)
    describe: Callable
    needs_data_dir: bool = False  # read from the user's copy of the benchmark's files (--data-dir)
    # {test set: {model: per-output test NRMSE}}: published results printed beside ours
    published: dict = dataclasses.field(default_factory=dict)
    # benchmark(predict) -> the benchmark's own figure of merit of a model ``u -> y`` (None: none)
    benchmark: Callable | None = None
    benchmark_published: tuple = ()  # ((method, value, source), ...) beside ``benchmark``'s


def _cache_files(name):
    """The simulated data set ``name``'s cache files, as :attr:`DataSet.files`."""
    def files(data_dir, cache_dir):
        cache = cache_dir or _sim.default_cache_dir()
        flag = "cache_dir" if cache_dir else "the data cache"
        return [(flag, p) for p in glob.glob(os.path.join(cache, f"{name}-*.npz"))] if os.path.isdir(cache) else []

    return files


def _boucwen_describe(settings):
    s = boucwen.Settings(**settings)
    # measured on a quiet 2-core machine (docs/sysid.md): Newmark at 15 kHz
    seconds = (s.n_train + 1) * 0.8 * s.period / 8192 * (s.transient_periods + 1) / 2 + 6 * s.sweep_seconds / 204
    return (f"{s.n_train + 1} multisine records of {s.period} samples and a {s.sweep_seconds:g} s sine sweep, "
            "simulated at 15 kHz", seconds)


def _pendulum_describe(settings):
    s = pendulum.Settings(**settings)
    return f"{s.n_train + 1} pendulum records of {s.period} samples", 1.0


def _f16_files(data_dir, cache_dir):
    if not (data_dir and os.path.isdir(data_dir)):
        return []
    return [("data_dir", p) for p in glob.glob(os.path.join(data_dir, f16.PATTERN))]


DATASETS = {
    "boucwen": DataSet(
        "boucwen", "simulated as the benchmark makes it",
        lambda settings, data_dir, cache_dir: boucwen.load(boucwen.Settings(**settings), cache_dir=cache_dir),
        _cache_files("boucwen"), _boucwen_describe, benchmark=boucwen.official_rmse,
        benchmark_published=boucwen.PUBLISHED),
    "pendulum": DataSet(
        "pendulum", "simulated",
        lambda settings, data_dir, cache_dir: pendulum.load(pendulum.Settings(**settings), cache_dir=cache_dir),
        _cache_files("pendulum"), _pendulum_describe),
    "f16": DataSet(
        "f16", "the benchmark's files, --data-dir",
        lambda settings, data_dir, cache_dir: f16.load(data_dir),
        _f16_files, lambda settings: ("the seven F-16 records", 1.0), needs_data_dir=True,
        published=f16.PUBLISHED),
}


def names():
    """The registered data sets' names, in registration order."""
    return tuple(DATASETS)


def get(name):
    """The :class:`DataSet` named ``name``; ValueError naming ``dataset`` and the choices otherwise."""
    _validate.one_of("dataset", name, names())
    return DATASETS[name]
