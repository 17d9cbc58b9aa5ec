"""A damped pendulum driven by a torque, angle measured: a small nonlinear second task.

    m l^2 theta'' = u - b theta' - m g l sin(theta)

with m = 1 kg, l = 1 m, g = 9.81 m/s^2, b = 1 N m s (damping ratio about 0.16 at the
small-angle natural frequency of 0.5 Hz), torque input ``u`` (N m), angle output (rad),
sampled at 20 Hz and integrated with RK4 on sub-steps, the input held between samples.
The excitation is a random-phase multisine on 0.02-2 Hz with an RMS of 4 N m, which swings
the pendulum well into the nonlinear range of ``sin`` (static torque for 90 degrees: 9.81 N m).
Training, validation and a multisine test record, in periodic steady state, as for
``r2dn_np.data.boucwen``.

Examples
--------
>>> from r2dn_np.data import pendulum
>>> data = pendulum.load(pendulum.Settings(period=128, n_train=1, transient=40), cache_dir=False)
>>> data.train[0].y.shape, sorted(data.test)
((128, 1), ['multisine'])
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core import _validate
from . import _sim
from .sequences import Record, SysIdData

__all__ = ["PARAMS", "Settings", "rhs", "simulate", "load"]

PARAMS = dict(m=1.0, l=1.0, g=9.81, b=1.0)
FS = 20.0


@dataclasses.dataclass(frozen=True)
class Settings:
    period: int = 2048
    n_train: int = 4
    transient: int = 400
    f_min: float = 0.02
    f_max: float = 2.0
    rms: float = 4.0
    substeps: int = 10
    seed: int = 0

    def __post_init__(self):
        _validate.positive_int("period", self.period)
        _validate.positive_int("n_train", self.n_train)
        _validate.nonnegative_int("transient", self.transient)
        _validate.positive_int("substeps", self.substeps)
        _validate.positive_float("rms", self.rms)
        _validate.real("f_min", self.f_min)
        _validate.real("f_max", self.f_max)
        _validate.seed("seed", self.seed)
        if self.transient > self.period:
            raise ValueError(f"transient must not exceed period ({self.period}); got {self.transient}")
        if not 0 <= self.f_min < self.f_max <= FS / 2:
            raise ValueError(f"need 0 <= f_min < f_max <= {FS / 2}; got f_min={self.f_min}, f_max={self.f_max}")
        _validate.allocation(f"period={self.period}", "the records (with substeps)",
                             (self.n_train + 2, self.period + self.transient, self.substeps))


def rhs(s, u, p=PARAMS):
    """Time derivative of ``s = (theta, theta')`` under torque ``u``."""
    inertia = p["m"] * p["l"] ** 2
    acc = (u - p["b"] * s[1] - p["m"] * p["g"] * p["l"] * np.sin(s[0])) / inertia
    return np.stack([s[1], acc])


def simulate(U, substeps=10, fs=FS, params=PARAMS):
    """Angle of the pendulum hanging at rest at t = 0 under torque ``U : (T, B)``; ``(T, B)``.
    ``params``: a dict with the keys of :data:`PARAMS`, finite, ``m`` and ``l`` > 0."""
    _validate.positive_int("substeps", substeps)
    _validate.positive_float("fs", fs)
    params = _validate.number_dict("params", params, tuple(PARAMS))
    for key in ("m", "l"):
        if params[key] <= 0:
            raise ValueError(f"params[{key!r}] must be > 0; got {params[key]!r}")
    U = np.asarray(U)
    if U.dtype.kind not in "biuf" or U.ndim not in (1, 2) or U.shape[0] < 1 or not np.all(np.isfinite(U)):
        raise ValueError(f"U must be a finite real array of shape (T, B) or (T,); got dtype {U.dtype}, "
                         f"shape {U.shape}")
    U = np.asarray(U, dtype=np.float64)
    if U.ndim == 1:
        return simulate(U[:, None], substeps, fs, params)[:, 0]
    S = _sim.rk4_zoh(lambda s, u: rhs(s, u, params), np.zeros((2, U.shape[1])), U, 1.0 / fs, substeps)
    return S[:-1, 0, :]


def _generate(s):
    rng = np.random.default_rng(s.seed)
    ms = _sim.multisine(rng, s.n_train + 2, s.period, FS, s.f_min, s.f_max, s.rms)
    U = np.concatenate([ms[:, s.period - s.transient:], ms], axis=1)
    Y = simulate(U.T, s.substeps).T
    return {"u": U[:, s.transient:], "y": Y[:, s.transient:]}


def load(settings=None, cache_dir=None):
    """The pendulum data set (see ``boucwen.load`` for ``cache_dir``)."""
    settings = Settings() if settings is None else settings
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a pendulum.Settings; got {type(settings).__name__}")
    _sim.check_cache_dir(cache_dir)
    arrays = _sim.cached("pendulum", dataclasses.asdict(settings), lambda: _generate(settings), cache_dir)
    U, Y = arrays["u"], arrays["y"]
    rec = lambda i: Record(U[i][:, None].copy(), Y[i][:, None].copy())  # noqa: E731
    n = settings.n_train
    return SysIdData(
        name="pendulum", fs=FS, train=[rec(i) for i in range(n)], val=[rec(n)],
        test={"multisine": rec(n + 1)}, input_names=("torque [N m]",), output_names=("angle [rad]",),
        info={"settings": dataclasses.asdict(settings), "params": dict(PARAMS)},
    )
