"""The Bouc-Wen hysteretic benchmark, simulated (no download).

Noel & Schoukens, "Hysteretic benchmark with a dynamic nonlinearity" (Workshop on Nonlinear
System Identification Benchmarks, 2016): a mass-spring-damper with a Bouc-Wen hysteretic
restoring force,

    m y'' + c y' + k y + z = u
    z' = alpha y' - beta (gamma |y'| |z|^(nu - 1) z + delta y' |z|^nu)

with the published values m = 2 kg, c = 10 N s/m, k = 5e4 N/m, alpha = 5e4 N/m,
beta = 1e3 1/m, gamma = 0.8, delta = -1.1, nu = 1, force input ``u`` (N), displacement output
``y`` (m), sampled at 750 Hz. The input is held between samples and the equations are
integrated with classical RK4 on ``substeps`` sub-steps per sample. The default 10
(7.5 kHz) is within 5e-4 of the output's standard deviation of a 50-sub-step solution;
20 gives the benchmark's 15 kHz rate.

Excitation, as in the benchmark: random-phase multisines with a flat spectrum on 5-150 Hz
and an RMS of 50 N, one period of 8192 samples, preceded by the last ``transient`` samples
of the same period, whose response is discarded (4096 samples are 5.5 s, about 14 time
constants of the linear damping ``2 m / c``), so records are in periodic steady state. Training uses
``n_train`` realisations, validation one more, and the tests are a further multisine and a
linear sine sweep over the same band with the same RMS, started from rest (the sweep is our
choice; the benchmark's own sweep file is not reproduced here).

Generation is seeded and deterministic, all signals are integrated as one batch, and the
result is cached on disk keyed by every setting.

Examples
--------
>>> from r2dn_np.data import boucwen
>>> data = boucwen.load(boucwen.Settings(period=256, n_train=1, transient=64, substeps=2), cache_dir=False)
>>> data.train[0].u.shape, data.nu, data.ny, sorted(data.test)
((256, 1), 1, 1, ['multisine', 'sweep'])
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import _validate
from . import _sim
from .sequences import Record, SysIdData

__all__ = ["PARAMS", "Settings", "rhs", "simulate", "load"]

# the benchmark's published parameters
PARAMS = dict(m=2.0, c=10.0, k=5e4, alpha=5e4, beta=1e3, gamma=0.8, delta=-1.1, nu=1.0)
FS = 750.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to generate. Every field enters the cache key."""

    period: int = 8192
    n_train: int = 5
    transient: int = 4096
    f_min: float = 5.0
    f_max: float = 150.0
    rms: float = 50.0
    substeps: int = 10
    noise_std: float = 0.0  # white output noise in metres (0: noise-free)
    seed: int = 0

    def __post_init__(self):
        _validate.positive_int("period", self.period)
        _validate.positive_int("n_train", self.n_train)
        _validate.nonnegative_int("transient", self.transient)
        if self.transient > self.period:
            raise ValueError(f"transient must not exceed period ({self.period}); got {self.transient}")
        _validate.positive_int("substeps", self.substeps)
        _validate.positive_float("rms", self.rms)
        if not 0 <= self.f_min < self.f_max <= FS / 2:
            raise ValueError(f"need 0 <= f_min < f_max <= {FS / 2}; got f_min={self.f_min}, f_max={self.f_max}")
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0; got {self.noise_std!r}")


def rhs(s, u, p=PARAMS):
    """Time derivative of the state ``s = (y, y', z)`` (first axis) under force ``u``."""
    v, z = s[1], s[2]
    if p["nu"] == 1.0:
        hyst = p["gamma"] * np.abs(v) * z + p["delta"] * v * np.abs(z)
    else:
        az = np.abs(z)
        hyst = p["gamma"] * np.abs(v) * az ** (p["nu"] - 1) * z + p["delta"] * v * az ** p["nu"]
    a = (u - p["c"] * v - p["k"] * s[0] - z) / p["m"]
    return np.stack([v, a, p["alpha"] * v - p["beta"] * hyst])


def simulate(U, substeps=10, fs=FS, params=PARAMS):
    """Displacement of the Bouc-Wen system at rest at t = 0 under force ``U : (T, B)``.

    Returns ``Y : (T, B)``: ``Y[t]`` is the displacement at time ``t / fs``, before the
    input ``U[t]`` has acted (the benchmark's output has no direct feedthrough).
    """
    U = np.asarray(U, dtype=np.float64)
    if U.ndim == 1:
        return simulate(U[:, None], substeps, fs, params)[:, 0]
    S = _sim.rk4_zoh(lambda s, u: rhs(s, u, params), np.zeros((3, U.shape[1])), U, 1.0 / fs, substeps)
    return S[:-1, 0, :]


def _generate(settings):
    s = settings
    rng = np.random.default_rng(s.seed)
    n_ms = s.n_train + 2  # training realisations, validation, multisine test
    ms = _sim.multisine(rng, n_ms, s.period, FS, s.f_min, s.f_max, s.rms)
    # a periodic input: its last samples lead into the recorded period seamlessly
    U = np.concatenate([ms[:, s.period - s.transient:], ms], axis=1)
    sweep = _sim.sine_sweep(s.period, FS, s.f_min, s.f_max, s.rms * np.sqrt(2.0))
    # zeros before the sweep keep the system at rest: the sweep starts from rest
    U = np.concatenate([U, np.concatenate([np.zeros(s.transient), sweep])[None, :]], axis=0)
    Y = simulate(U.T, s.substeps).T[:, s.transient:]
    U = U[:, s.transient:]
    if s.noise_std > 0:
        Y = Y + s.noise_std * rng.standard_normal(Y.shape)
    return {"u": U, "y": Y}


def load(settings=None, cache_dir=None):
    """The Bouc-Wen data set as a :class:`~r2dn_np.data.sequences.SysIdData`.

    Parameters
    ----------
    settings : Settings, default ``Settings()`` (the benchmark's sizes).
    cache_dir : folder for the cache file; None uses ``r2dn_np.data._sim.default_cache_dir()``,
        False generates without caching.
    """
    settings = Settings() if settings is None else settings
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a boucwen.Settings; got {type(settings).__name__}")
    arrays = _sim.cached("boucwen", dataclasses.asdict(settings), lambda: _generate(settings), cache_dir)
    U, Y = arrays["u"], arrays["y"]
    rec = lambda i: Record(U[i][:, None].copy(), Y[i][:, None].copy())  # noqa: E731
    n = settings.n_train
    return SysIdData(
        name="boucwen",
        fs=FS,
        train=[rec(i) for i in range(n)],
        val=[rec(n)],
        test={"multisine": rec(n + 1), "sweep": rec(n + 2)},
        input_names=("force [N]",),
        output_names=("displacement [m]",),
        info={"settings": dataclasses.asdict(settings), "params": dict(PARAMS)},
    )
