"""Figures of ``r2dn sysid``: predicted against true test output (whole record, a labelled zoom
and the error, every output, the linear model beside the network) and the learning curves.
Each function returns False without writing when matplotlib is not installed
(``pip install 'r2dn_np[plots]'``)."""

from __future__ import annotations

import numpy as np

__all__ = ["prediction", "loss_curve", "zoom_window"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(fig, path):
    """Write the figure through a temporary file renamed over ``path`` (a failed write leaves an
    earlier figure intact) and close it."""
    from ..interface import io

    try:
        with io.atomic_write(path) as fh:
            fig.savefig(fh, dpi=90, format="png")
    finally:
        plt = _pyplot()
        plt.close(fig)


def _ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def zoom_window(e, washout, n=200):
    """``slice`` of ``n`` samples (fewer in a short record) centred on the largest ``|e|`` after
    the washout and the first tenth of the record: where the model is worst once its start-up
    transient (the zero state's, docs/sysid.md) has died out."""
    T = e.shape[0]
    skip = min(max(washout, T // 10), T - 1)
    n = min(n, T - washout)
    worst = skip + int(np.argmax(np.abs(e[skip:])))
    a = min(max(washout, worst - n // 2), T - n)
    return slice(a, a + n)


def prediction(path, title, y, y_model, y_linear, fs, washout, output_names, label, time_unit="s"):
    """One figure for one test record: per output, the whole record and a zoom (true, model,
    linear) above the error of the model and of the linear model. The washout (not scored) is
    shaded; the error axes are scaled to the scored part.

    ``y, y_model, y_linear : (T, ny)``; ``fs`` in Hz (``time_unit="samples"``: fs is 1)."""
    plt = _pyplot()
    if plt is None:
        return False
    T, ny = y.shape
    t = np.arange(T) / fs
    fig, axes = plt.subplots(2 * ny, 2, figsize=(13, 2.4 * 2 * ny + 0.5), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1]})
    for j in range(ny):
        name = output_names[j]
        sig, err = axes[2 * j], axes[2 * j + 1]
        e_model, e_lin = y_model[:, j] - y[:, j], y_linear[:, j] - y[:, j]
        std = np.std(y[washout:, j])
        z = zoom_window(e_model, washout)

        def score(e):
            r = float(np.sqrt(np.mean(e[washout:] ** 2)))
            return f"RMSE {r:.3g}, NRMSE {r / std:.3f}" if std > 0 else f"RMSE {r:.3g}"

        for col, sl in ((0, slice(0, T)), (1, z)):
            ax = sig[col]
            ax.plot(t[sl], y[sl, j], color="k", lw=1.2, label="true")
            ax.plot(t[sl], y_linear[sl, j], color="C1", lw=0.9, ls="--", label="linear")
            ax.plot(t[sl], y_model[sl, j], color="C0", lw=0.9, label=label)
            ax.set_ylabel(name)
            ax.set_xlabel(f"time [{time_unit}]")
        if washout:
            sig[0].axvspan(t[0], t[min(washout, T - 1)], color="0.85", zorder=0)
        pad = max(0.0, (T / 150 - (z.stop - z.start)) / 2) / fs  # a band wide enough to see on a long record
        sig[0].axvspan(t[z.start] - pad, t[z.stop - 1] + pad, color="C2", alpha=0.3, zorder=0)
        sig[0].set_title(f"{name}: {label} {score(e_model)}; linear {score(e_lin)}", fontsize=9)
        sig[1].set_title(f"zoom (green band): {t[z.start]:.5g}-{t[z.stop - 1]:.5g} {time_unit},\n"
                         f"around the largest error after the first tenth", fontsize=9)
        scale = 1.15 * max(np.max(np.abs(e_model[washout:])), np.max(np.abs(e_lin[washout:])), 1e-300)
        # the larger error behind, so that the smaller one stays visible
        traces = sorted([(e_lin, dict(color="C1", ls="--")), (e_model, dict(color="C0"))],
                        key=lambda p: -float(np.mean(p[0][washout:] ** 2)))
        for col, sl in ((0, slice(0, T)), (1, z)):
            ax = err[col]
            for e, style in traces:
                ax.plot(t[sl], e[sl], lw=0.8, **style)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_ylim(-scale, scale)
            ax.set_ylabel(f"error, {name}")
            ax.set_xlabel(f"time [{time_unit}]")
        if washout:
            err[0].axvspan(t[0], t[min(washout, T - 1)], color="0.85", zorder=0)
        err[0].set_title(f"error of {name} (grey: washout, not scored; axis scaled to the scored part)", fontsize=9)
        err[1].set_title("error, zoom", fontsize=9)
    true, lin, model = axes[0, 0].get_lines()[:3]
    h = fig.get_figheight()  # title, legend and panels placed in inches from the top, whatever the height
    fig.suptitle(title, fontsize=10, y=1 - 0.08 / h, va="top")
    fig.legend([true, lin, model], ["true", "linear model (its error below in the same colour)", label],
               loc="upper center", ncol=3, fontsize=9, bbox_to_anchor=(0.5, 1 - 0.3 / h), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / h))
    _save(fig, path)
    return True


def loss_curve(path, history, title, best_epoch=None):
    """Training loss and validation NRMSE per epoch (log scale), learning-rate drops as dotted
    vertical lines and the kept (best validation) epoch marked."""
    plt = _pyplot()
    if plt is None:
        return False
    loss = np.asarray(history["loss"], dtype=np.float64)
    val = np.asarray(history["val_nrmse"], dtype=np.float64)
    lr = np.asarray(history["lr"], dtype=np.float64)
    epochs = np.arange(1, len(loss) + 1)
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5.6), sharex=True)
    a.plot(epochs, loss, color="C0", marker="." if len(loss) < 30 else None)
    a.set_ylabel("training loss\n(MSE, standardised output)")
    b.plot(epochs, val, color="C3", marker="." if len(val) < 30 else None)
    b.set_ylabel("validation NRMSE\n(free run, zero state)")
    b.set_xlabel("epoch")
    for ax, v in ((a, loss), (b, val)):
        if np.all(v > 0) and v.max() > 5 * v.min():  # a log axis only where it spans enough to be read
            ax.set_yscale("log")
            ticker = _ticker()
            ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))  # 1, 2, 5 per decade
            for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis(ticker.FormatStrFormatter("%g"))  # 0.05, not 5 x 10^-2
        ax.grid(alpha=0.3)
    b.xaxis.set_major_locator(_ticker().MaxNLocator(integer=True))
    drops = [int(e) + 1 for e in np.flatnonzero(lr[1:] < lr[:-1]) + 1]
    for k, e in enumerate(drops):
        for ax in (a, b):
            ax.axvline(e - 0.5, color="0.4", ls=":", lw=1, label="learning rate drops" if k == 0 else None)
        a.annotate(f"lr {lr[e - 1]:.1e}", (e - 0.5, 1), xycoords=("data", "axes fraction"), fontsize=7,
                   ha="left", va="top", rotation=90, color="0.3")
    if best_epoch:
        b.plot([best_epoch], [val[best_epoch - 1]], "k*", ms=10, label=f"kept: epoch {best_epoch}")
    if drops or best_epoch:
        b.legend(fontsize=8)
    a.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True
