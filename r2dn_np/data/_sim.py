"""Shared pieces of the simulated benchmarks: excitation signals, a batched fixed-step RK4
integrator with the input held between samples, and the on-disk cache."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ..core import _validate
from ..interface import io

CACHE_ENV = "R2DN_CACHE_DIR"
_CACHE_VERSION = 1


def multisine(rng, n_signals, period, fs, f_min, f_max, rms):
    """Random-phase multisines, flat amplitude on every DFT bin in ``[f_min, f_max]``.

    Returns ``(n_signals, period)`` signals of exactly the given RMS; phases are drawn
    uniformly on ``[0, 2 pi)`` from ``rng``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    _validate.positive_int("n_signals", n_signals)
    _validate.positive_int("period", period)
    _validate.positive_float("fs", fs)
    _validate.real("f_min", f_min, 0)
    _validate.real("f_max", f_max, 0)
    _validate.positive_float("rms", rms)
    _validate.allocation(f"n_signals={n_signals}, period={period}", "the spectrum (complex)", (n_signals, period), 16)
    f = np.fft.rfftfreq(period, d=1.0 / fs)
    bins = np.flatnonzero((f >= f_min) & (f <= f_max))
    if bins.size == 0:
        raise ValueError(f"no DFT bin of a {period}-sample period at {fs} Hz lies in [{f_min}, {f_max}] Hz")
    spectrum = np.zeros((n_signals, f.size), dtype=np.complex128)
    spectrum[:, bins] = np.exp(2j * np.pi * rng.uniform(size=(n_signals, bins.size)))
    u = np.fft.irfft(spectrum, n=period, axis=1)
    return u * (rms / np.sqrt(np.mean(u * u, axis=1, keepdims=True)))


def sine_sweep(n, fs, f_start, f_stop, amplitude):
    """A linear sine sweep from ``f_start`` to ``f_stop`` Hz over ``n`` samples."""
    _validate.positive_int("n", n)
    _validate.positive_float("fs", fs)
    _validate.real("f_start", f_start, 0)
    _validate.real("f_stop", f_stop, 0)
    _validate.real("amplitude", amplitude)
    _validate.allocation(f"n={n}", "the sweep", (n,))
    t = np.arange(n) / fs
    duration = n / fs
    phase = 2 * np.pi * (f_start * t + 0.5 * (f_stop - f_start) * t * t / duration)
    return amplitude * np.sin(phase)


def rk4_zoh(f, s0, U, dt, substeps):
    """Integrate ``ds/dt = f(s, u)`` with the input held constant over each sample interval.

    Parameters
    ----------
    f : callable ``(s (n_state, B), u (B,)) -> ds (n_state, B)``.
    s0 : (n_state, B) initial state.
    U : (T, B) inputs; ``U[t]`` acts on ``[t dt, (t + 1) dt)``.
    dt : sampling interval; ``substeps`` classical RK4 steps per interval.

    Returns
    -------
    S : (T + 1, n_state, B) states at the sampling instants, ``S[0] = s0``.
    """
    if not callable(f):
        raise TypeError(f"f must be callable; got {type(f).__name__}")
    _validate.positive_float("dt", dt)
    _validate.positive_int("substeps", substeps)
    s0, U = np.asarray(s0, dtype=np.float64), np.asarray(U, dtype=np.float64)
    if s0.ndim != 2 or U.ndim != 2 or U.shape[1] != s0.shape[1]:
        raise ValueError(f"s0 must be (n_state, B) and U (T, B) with the same B; got {s0.shape} and {U.shape}")
    if not (np.all(np.isfinite(s0)) and np.all(np.isfinite(U))):
        raise ValueError("s0 and U must be finite; got NaN or Inf")
    T = U.shape[0]
    h = dt / substeps
    S = np.empty((T + 1,) + s0.shape)
    S[0] = s = s0
    for t in range(T):
        u = U[t]
        for _ in range(substeps):
            k1 = f(s, u)
            k2 = f(s + (0.5 * h) * k1, u)
            k3 = f(s + (0.5 * h) * k2, u)
            k4 = f(s + h * k3, u)
            s = s + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
        S[t + 1] = s
    return S


def default_cache_dir():
    """``$R2DN_CACHE_DIR``, else ``$XDG_CACHE_HOME/r2dn_np``, else ``~/.cache/r2dn_np``."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "r2dn_np")


def check_cache_dir(cache_dir):
    """``cache_dir`` of a loader: None, False or a path (``True`` or a number is refused)."""
    if cache_dir is None or cache_dir is False:
        return cache_dir
    return _validate.path("cache_dir", cache_dir)


def cached(kind, settings, generate, cache_dir):
    """Return ``generate()`` (a dict of arrays), read from or written to a cache file whose
    name is a hash of ``kind`` and ``settings``. ``cache_dir=False`` disables the cache; a
    cache file that cannot be read is regenerated and rewritten."""
    if cache_dir is False:
        return generate()
    folder = default_cache_dir() if cache_dir is None else check_cache_dir(cache_dir)
    key = json.dumps({"kind": kind, "settings": settings, "version": _CACHE_VERSION}, sort_keys=True)
    path = os.path.join(folder, f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz")
    if os.path.exists(path):
        try:
            arrays, meta = io.read_arrays(path)
            if meta.get("cache_key") == key:
                return arrays
        except io.FormatError:
            pass
    arrays = generate()
    try:
        io.write_arrays(path, arrays, {"format": io.FORMAT, "format_version": io.FORMAT_VERSION, "cache_key": key})
    except OSError:
        pass  # a read-only or full disk: the cache only saves time, the data are right without it
    return arrays
