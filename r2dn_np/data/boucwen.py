"""The Bouc-Wen hysteretic benchmark, simulated exactly as the benchmark makes its data.

Noel & Schoukens, "Hysteretic benchmark with a dynamic nonlinearity" (Workshop on Nonlinear
System Identification Benchmarks, 2016): a mass-spring-damper with a Bouc-Wen hysteretic
restoring force,

    m y'' + c y' + k y + z = u
    z' = alpha y' - beta (gamma |y'| |z|^(nu - 1) z + delta y' |z|^nu)

with the published values m = 2 kg, c = 10 N s/m, k = 5e4 N/m, alpha = 5e4 N/m,
beta = 1e3 1/m, gamma = 0.8, delta = -1.1, nu = 1, force input ``u`` (N), displacement output
``y`` (m), sampled at 750 Hz.

How the benchmark makes a record, and so how this module does (each step checked against the
official multisine test files, which it reproduces to 3e-13 relative RMS):

1. the input is synthesised at 15 kHz (20 x 750 Hz): a multisine from its spectrum, i.e. one
   750 Hz period band-limited-interpolated by FFT zero-padding (:func:`upsample_periodic`);
   the sine sweep in closed form (:func:`sweep`);
2. the system is integrated at 15 kHz from rest with Newmark's average-acceleration scheme on
   the mechanical part and the trapezoidal rule on ``z``, each step solved implicitly
   (:func:`integrate`);
3. the displacement is low-pass filtered and decimated as MATLAB's ``decimate(y, r, 'fir')``
   (:func:`decimate`): r = 2, 2, 5 for multisines, one stage r = 20 for the sweep; the input
   is the 15 kHz input taken every 20th sample.

Multisine records are one period in periodic steady state (after ``transient_periods``
periods from rest). Training and validation records are random-phase multisines (flat
spectrum on 5-150 Hz, 50 N RMS, 8192 samples) with the benchmark's output noise (white at
750 Hz, i.e. band-limited to 0-375 Hz, 8e-6 m RMS) unless ``noise_std=0``; the test sets
are noise-free: ``"multisine"`` is the benchmark's official test record (shipped with the
package, see :func:`official_test`) and ``"sweep"`` the benchmark's sine sweep
(``40 sin(2 pi (18 t + t^2 / 12))`` N, 18 -> 52 Hz at 10 Hz/min) from rest.

Examples
--------
>>> from r2dn_np.data import boucwen
>>> s = boucwen.Settings(period=256, n_train=1, sweep_seconds=1.0, transient_periods=1)
>>> data = boucwen.load(s, cache_dir=False)
>>> data.train[0].u.shape, data.test["sweep"].u.shape, data.test["multisine"].u.shape
((256, 1), (750, 1), (8192, 1))
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import scipy.signal

from ..core import _validate
from ..interface import io
from . import _sim
from . import sequences
from .sequences import Record, SysIdData

__all__ = ["PARAMS", "FS", "OVERSAMPLE", "NOISE_STD", "PUBLISHED", "Settings", "integrate", "decimate",
           "upsample_periodic", "steady_state", "sweep", "official_test", "official_rmse", "load"]

# the benchmark's published parameters
PARAMS = dict(m=2.0, c=10.0, k=5e4, alpha=5e4, beta=1e3, gamma=0.8, delta=-1.1, nu=1.0)
FS = 750.0
OVERSAMPLE = 20  # the benchmark integrates at 15 kHz
MULTISINE_DECIMATION = (2, 2, 5)
SWEEP_DECIMATION = (20,)
NOISE_STD = 8e-6  # the benchmark's output noise, metres RMS

# Published simulation RMSE (m) on the official multisine test, all 8192 points.
PUBLISHED = (  # titles in docs/sysid.md
    ("gR-SS-NN", 7.5e-6, "Schoukens 2021"),
    ("SS-NN", 8.9e-6, "Schoukens 2021"),
    ("PNLSS", 1.25e-5, "Noel et al. 2017 (1.2e-5 to 1.3e-5)"),
    ("decoupled PNLSS", 1.9e-5, "Esfahani et al. 2018"),
    ("dynoNet", 4.5e-5, "Forgione & Piga 2021"),
)

_OFFICIAL = os.path.join(os.path.dirname(__file__), "benchmarks", "boucwen_multisine_test.npz")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to generate. Every field enters the cache key."""

    period: int = 8192  # samples per multisine period (one record)
    n_train: int = 5  # training realisations; one more validates
    f_min: float = 5.0
    f_max: float = 150.0
    rms: float = 50.0
    noise_std: float = NOISE_STD  # output noise on training and validation records (m); tests never
    transient_periods: int = 1  # periods simulated from rest and dropped before the recorded one
    sweep_seconds: float = 204.0  # the benchmark's sweep; shorter ones are its start
    seed: int = 0

    def __post_init__(self):
        _validate.positive_int("period", self.period)
        _validate.positive_int("n_train", self.n_train)
        _validate.nonnegative_int("transient_periods", self.transient_periods)
        _validate.positive_float("rms", self.rms)
        _validate.real("f_min", self.f_min)
        _validate.real("f_max", self.f_max)
        _validate.real("noise_std", self.noise_std)
        _validate.real("sweep_seconds", self.sweep_seconds)
        _validate.seed("seed", self.seed)
        if not 0 <= self.f_min < self.f_max < FS / 2:
            raise ValueError(f"need 0 <= f_min < f_max < {FS / 2}; got f_min={self.f_min}, f_max={self.f_max}")
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0; got {self.noise_std!r}")
        if not (isinstance(self.sweep_seconds, (int, float)) and 2 / FS <= self.sweep_seconds <= 3600):
            raise ValueError(f"sweep_seconds must be in [{2 / FS:.4f}, 3600]; got {self.sweep_seconds!r}")
        # the 15 kHz input and output of one record, integrated over transient_periods + 1 periods
        _validate.allocation(f"period={self.period}", "one record at 15 kHz (4 such arrays)",
                             (4, self.period * OVERSAMPLE * (self.transient_periods + 1)))


def integrate(u, fs=FS * OVERSAMPLE, params=PARAMS, tol=1e-13):
    """Displacement of the Bouc-Wen system at rest at t = 0 under the force samples ``u``.

    Newmark's average-acceleration scheme (gamma_N = 1/2, beta_N = 1/4) on the mechanical part
    and the trapezoidal rule on ``z``, step ``1 / fs``. The new acceleration enters linearly,
    so each step reduces to one scalar equation in the new ``z``, solved by Newton's method
    to a relative step of ``tol``.

    Parameters
    ----------
    u : (N,) force samples at rate ``fs`` (the benchmark's 15 kHz by default).

    params : dict with the keys of :data:`PARAMS`, finite numbers (``m > 0``, ``nu = 1``).

    Returns
    -------
    y : (N,) displacement, ``y[n]`` at time ``n / fs``.
    """
    _validate.positive_float("fs", fs)
    _validate.positive_float("tol", tol)
    u = _validate.host_array("u", u, 1)
    params = _check_params(params)
    m, c, k, al = params["m"], params["c"], params["k"], params["alpha"]
    bg, bd = params["beta"] * params["gamma"], params["beta"] * params["delta"]
    h = 1.0 / fs
    h2, hh4 = 0.5 * h, 0.25 * h * h
    m_eff = m + c * h2 + k * hh4
    q = h2 / m_eff  # v_{n+1} = p - q z_{n+1}
    # A scalar Python loop: ~1.7 us a step, tens of times faster than NumPy on size-1 arrays.
    seq = u.tolist()
    out = [0.0] * len(seq)
    y = v = z = 0.0
    a = seq[0] / m
    for n in range(1, len(seq)):
        y_pred = y + h * v + hh4 * a
        v_pred = v + h2 * a
        f_now = al * v - bg * abs(v) * z - bd * v * abs(z)
        a_lin = (seq[n] - c * v_pred - k * y_pred) / m_eff  # a_{n+1} = a_lin - z_{n+1} / m_eff
        p = v_pred + h2 * a_lin
        z_rhs = z + h2 * f_now
        z1 = z + h * f_now  # explicit Euler guess
        for _ in range(50):
            v1 = p - q * z1
            av, az = abs(v1), abs(z1)
            g = z1 - z_rhs - h2 * (al * v1 - bg * av * z1 - bd * v1 * az)
            sv = (v1 > 0) - (v1 < 0)
            sz = (z1 > 0) - (z1 < 0)
            dfdz = -al * q - bg * (av - q * sv * z1) - bd * (v1 * sz - q * az)
            step = g / (1.0 - h2 * dfdz)
            z1 -= step
            if abs(step) <= tol * abs(z1) + 1e-300:
                break
        a = a_lin - z1 / m_eff
        y, v, z = y_pred + hh4 * a, v_pred + h2 * a, z1
        out[n] = y
    return np.asarray(out)


def _check_params(params):
    params = _validate.number_dict("params", params, tuple(PARAMS))
    if params["nu"] != 1.0:
        raise ValueError(f"integrate implements the benchmark's nu = 1; got params['nu']={params['nu']!r}")
    if params["m"] <= 0:
        raise ValueError(f"params['m'] (the mass) must be > 0; got {params['m']!r}")
    return params


def decimate(x, r):
    """MATLAB's ``decimate(x, r, 'fir')``: a 30th-order Hamming-window FIR low-pass with cutoff
    ``1 / r`` of Nyquist, run forward over ``x`` extended at both ends by odd reflection about
    its end samples (so the filter starts and stops without a transient), its 15-sample delay
    compensated, every ``r``-th sample kept from the first. In the interior this is a
    zero-phase FIR filter. ``x`` is 1-D with at least 32 samples; returns ``ceil(len(x) / r)``
    samples."""
    _validate.positive_int("r", r)
    x = _validate.host_array("x", x, 1, 32, text="1-D (at least 32 samples)")
    b = scipy.signal.firwin(31, 1.0 / r, window="hamming")  # = MATLAB's fir1(30, 1/r)
    extended = np.concatenate([2 * x[0] - x[31:0:-1], x, 2 * x[-1] - x[-2:-33:-1]])
    filtered = scipy.signal.lfilter(b, 1.0, extended)
    return filtered[31 + 15 + r * np.arange(-(-x.size // r))]


def upsample_periodic(u, factor=OVERSAMPLE):
    """One period of a periodic signal at ``factor`` times its rate, by FFT zero-padding
    (the band-limited interpolation that synthesises a multisine from its spectrum):
    ``upsample_periodic(u)[::factor] == u`` to rounding."""
    _validate.positive_int("factor", factor)
    u = _validate.host_array("u", u, None)
    _validate.allocation(f"factor={factor}", "the upsampled signal", u.shape[:-1] + (u.shape[-1] * factor,))
    n = u.shape[-1]
    spectrum = np.fft.rfft(u)
    if n % 2 == 0:  # split the Nyquist bin between +- f so the result stays real and exact
        spectrum[..., -1] *= 0.5
    padded = np.zeros(u.shape[:-1] + (n * factor // 2 + 1,), dtype=np.complex128)
    padded[..., :spectrum.shape[-1]] = spectrum
    return np.fft.irfft(padded, n=n * factor) * factor


def steady_state(u, transient_periods=1, params=PARAMS):
    """The benchmark's multisine record: the steady-state displacement over one period of the
    periodic input ``u`` (one period at 750 Hz, 1-D).

    The input is upsampled to 15 kHz, the system integrated from rest over
    ``transient_periods + 1`` periods, and the last period decimated by 2, 2 and 5 as
    :func:`decimate` would in the middle of a long periodic record (the benchmark's data are
    such interior samples, not the last ones, whose filter sees the reflected end).
    """
    _validate.nonnegative_int("transient_periods", transient_periods)
    u = _validate.host_array("u", u, 1, text="1-D (one period)")
    params = _check_params(params)
    _validate.allocation(f"transient_periods={transient_periods}", "the 15 kHz input",
                         (u.size * OVERSAMPLE * (transient_periods + 1),))
    fast = upsample_periodic(u)
    y = integrate(np.tile(fast, transient_periods + 1), params=params)[-fast.size:]
    y = np.tile(y, 3)  # the periodic continuation on both sides
    for r in MULTISINE_DECIMATION:
        y = decimate(y, r)
    return y[u.size:2 * u.size]


def sweep(seconds=204.0, params=PARAMS):
    """The benchmark's sine sweep ``40 sin(2 pi (18 t + t^2 / 12))`` N from rest, ``seconds``
    long. Returns ``(u, y)`` at 750 Hz, 1-D."""
    _validate.real("seconds", seconds, 2 / FS, 3600)
    params = _check_params(params)
    n = int(round(seconds * FS)) * OVERSAMPLE
    t = np.arange(n) / (FS * OVERSAMPLE)
    u_fast = 40.0 * np.sin(2 * np.pi * (18.0 * t + t * t / 12.0))
    y = integrate(u_fast, params=params)
    for r in SWEEP_DECIMATION:
        y = decimate(y, r)
    return u_fast[::OVERSAMPLE].copy(), y


def official_test():
    """The benchmark's official multisine test record (8192 samples, steady state, noise-free),
    as published (``uval_multisine.mat``, ``yval_multisine.mat``; see the README beside the
    shipped file for its source)."""
    arrays, _ = io.read_arrays(_OFFICIAL)
    return Record(arrays["u"][:, None], arrays["y"][:, None])


def official_rmse(predict, record=None):
    """The benchmark's figure of merit: simulation RMSE (m) over all samples of the official
    multisine test record (or ``record``).

    ``predict`` maps an input ``u (T, 1)`` (N) to a free-run output ``(T, 1)`` (m) from the
    model's rest state. The test input is periodic and its output in steady state, so the
    model is run over two periods and the second is scored: every sample counts and none is
    spent on the model's own start-up.

    Raises
    ------
    ValueError
        ``predict`` returned an array of another shape, or NaN or Inf (a diverged model has no
        RMSE to rank; the error says where its output first stopped being finite).
    """
    if not callable(predict):
        raise TypeError(f"predict must be callable (u -> y); got {type(predict).__name__}")
    if record is None:
        record = official_test()
    else:
        sequences.check_records("record", [record])
    T = record.u.shape[0]
    out = predict(np.concatenate([record.u, record.u]))
    try:
        y = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"predict must return a real array of shape {(2 * T, record.y.shape[1])}; "
                        f"got {type(out).__name__}") from None
    if y.shape != (2 * T, record.y.shape[1]):
        raise ValueError(f"predict must return shape {(2 * T, record.y.shape[1])}; got {y.shape}")
    if not np.all(np.isfinite(y)):
        first = int(np.argwhere(~np.isfinite(y))[0][0])
        raise ValueError(f"predict returned NaN or Inf (first at sample {first} of {2 * T}); "
                         "the model diverged on the test input")
    e = y[T:] - record.y
    return float(np.sqrt(np.mean(e * e)))


def _generate(s):
    rng = np.random.default_rng(s.seed)
    U = _sim.multisine(rng, s.n_train + 1, s.period, FS, s.f_min, s.f_max, s.rms)
    Y = np.stack([steady_state(u, s.transient_periods) for u in U])
    Y = Y + s.noise_std * rng.standard_normal(Y.shape)
    u_sweep, y_sweep = sweep(s.sweep_seconds)
    return {"u": U, "y": Y, "u_sweep": u_sweep, "y_sweep": y_sweep}


def load(settings=None, cache_dir=None):
    """The Bouc-Wen data set as a :class:`~r2dn_np.data.sequences.SysIdData`: ``n_train``
    training multisines, one validation multisine, and the test sets ``"multisine"`` (the
    official record) and ``"sweep"``.

    Parameters
    ----------
    settings : Settings, default ``Settings()``.
    cache_dir : folder for the cache file; None uses ``r2dn_np.data._sim.default_cache_dir()``,
        False generates without caching. Generating the default data set takes about 11 s.
    """
    settings = Settings() if settings is None else settings
    if not isinstance(settings, Settings):
        raise TypeError(f"settings must be a boucwen.Settings; got {type(settings).__name__}")
    _sim.check_cache_dir(cache_dir)
    key = dict(dataclasses.asdict(settings), generator="newmark-15kHz")
    arrays = _sim.cached("boucwen", key, lambda: _generate(settings), cache_dir)
    U, Y = arrays["u"], arrays["y"]
    rec = lambda i: Record(U[i][:, None].copy(), Y[i][:, None].copy())  # noqa: E731
    n = settings.n_train
    return SysIdData(
        name="boucwen",
        fs=FS,
        train=[rec(i) for i in range(n)],
        val=[rec(n)],
        test={"multisine": official_test(),
              "sweep": Record(arrays["u_sweep"][:, None], arrays["y_sweep"][:, None])},
        input_names=("force [N]",),
        output_names=("displacement [m]",),
        info={"settings": dataclasses.asdict(settings), "params": dict(PARAMS),
              "test_sources": {"multisine": "official benchmark file", "sweep": "simulated, benchmark procedure"}},
    )
