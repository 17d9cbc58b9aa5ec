"""System identification on your own records in one call: ``fit(u, y)`` trains a robust model
with a preset of ``r2dn sysid`` and returns it ready to use (``.simulate``, ``.save``,
``.certify``); ``r2dn sysid --data FILE`` is the same from the command line.

Examples
--------
>>> import numpy as np
>>> from r2dn_np import sysid
>>> rng = np.random.default_rng(0)
>>> u = rng.standard_normal((600, 1))
>>> y = np.convolve(u[:, 0], 0.5 ** np.arange(10))[:600, None]    # a first-order system
>>> model = sysid.fit(u, y, preset="tiny")                        # seconds
>>> model.simulate(u).shape, model.certify().holds
((600, 1), True)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _validate, train
from .data import files, sequences

__all__ = ["fit", "settings"]


def settings(preset, data, model="r2dn", epochs=None, seed=0, dtype="float64"):
    """The preset's sizes and training options for a data set of the user's, with the chunk,
    window and washout shortened to fit its records. Returns ``(Preset, train.Options, notes)``."""
    from .cli import PRESETS

    _validate.one_of("preset", preset, tuple(PRESETS))
    p = PRESETS[preset]["files"].for_model(model)
    o = p.options
    longest = max(r.u.shape[0] for r in data.train)
    shortest_val = min(r.u.shape[0] for r in data.val)
    chunk = min(o.chunk, longest)
    window = min(o.window, chunk)
    washout = min(o.washout, chunk // 4, shortest_val // 4)
    val_samples = o.val_samples if o.val_samples and shortest_val > o.val_samples else 0
    notes = []
    if (chunk, window, washout) != (o.chunk, o.window, o.washout):
        notes.append(f"records are short for preset {preset}: chunk {chunk}, window {window}, washout {washout} "
                     f"samples (preset: {o.chunk}, {o.window}, {o.washout})")
    opts = dataclasses.replace(o, chunk=chunk, window=window, washout=washout, val_samples=val_samples, seed=seed,
                               dtype=dtype, **({"epochs": epochs} if epochs else {}))
    return p, opts, notes


def _records(name, u, y):
    if u is None:
        return None
    us = [u] if hasattr(u, "shape") else list(u)
    ys = [y] if hasattr(y, "shape") else list(y)
    if len(us) != len(ys):
        raise ValueError(f"{name}: {len(us)} input records but {len(ys)} output records")
    out = []
    for i, (a, b) in enumerate(zip(us, ys)):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        out.append(sequences.check_record(f"{name}[{i}]", a[:, None] if a.ndim == 1 else a,
                                          b[:, None] if b.ndim == 1 else b))
    return out


def fit(u, y, *, u_val=None, y_val=None, fs=None, model="r2dn", kind="contracting", gamma=10.0, preset="quick",
        epochs=None, seed=0, dtype="float64", backend=None, input_names=None, output_names=None, log=None):
    """Train a robust recurrent model on input-output records.

    Parameters
    ----------
    u, y : ``(T, nu)`` and ``(T, ny)`` arrays (``(T,)`` for one channel), or lists of them (one
        record each).
    u_val, y_val : validation records (the epoch with the best validation NRMSE is kept);
        default: the last record, or the last fifth of the only one.
    fs : sampling rate in Hz (metadata only).
    model, kind, gamma : ``"r2dn"`` or ``"ren"``; ``"contracting"`` or ``"lipschitz"`` (with bound
        ``gamma`` in standardised units).
    preset : ``"tiny"`` (seconds), ``"quick"``, ``"paper"`` or ``"best"`` (paper, then whole-record
        refinement; ``r2dn sysid --help``).
    log : callable receiving one progress line per epoch (``print``, say).

    Returns
    -------
    train.Model, with ``simulate(u)``, ``save(path)``, ``certify()`` and, in ``metadata``, the
    training history.
    """
    train_recs = _records("u, y", u, y)
    val_recs = _records("u_val, y_val", u_val, y_val) if u_val is not None or y_val is not None else None
    nu, ny = train_recs[0].u.shape[1], train_recs[0].y.shape[1]
    inputs = tuple(input_names or (f"u{j + 1}" for j in range(nu)))
    outputs = tuple(output_names or (f"y{j + 1}" for j in range(ny)))
    labels = [f"record {i}" for i in range(len(train_recs))]
    train_set = files.Records(train_recs, labels, inputs, outputs, fs)
    val_set = None if val_recs is None else files.Records(val_recs, [f"validation {i}" for i in range(len(val_recs))],
                                                         inputs, outputs, fs)
    data, _ = files.dataset("user", train_set, val_set, fs=fs)
    module = train.get_model(model)
    p, opts, _ = settings(preset, data, model, epochs, seed, dtype)
    from .cli import _make_config

    cfg = _make_config(module, nu=nu, nx=p.nx, nv=p.nv, ny=ny, hidden=p.hidden, kind=kind,
                       gamma=gamma if kind == "lipschitz" else None, **p.model)
    result = train.fit(module, cfg, data, opts, backend=backend, log=log)
    meta = {"dataset": "user", "input_names": list(inputs), "output_names": list(outputs), "fs": fs,
            "preset": preset, "best_epoch": result.best_epoch, "best_val_nrmse": result.best_val_nrmse,
            "history": result.history}
    params = result.params
    if p.refine is not None:  # preset best: whole-record refinement, scored as the Adam stage scored
        refine = dataclasses.replace(p.refine, washout=opts.washout, val_samples=opts.val_samples)
        params, meta["refine"] = train.refine(module, cfg, params, data, result.scaler, refine, log=log)
    return train.Model(module, cfg, params, result.scaler, meta)
