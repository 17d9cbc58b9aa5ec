"""Digit classification with a fully connected monotone operator equilibrium network (monDEQ),
iteration counts of Peaceman-Rachford against forward-backward splitting, and the failure of an
unconstrained equilibrium layer (scikit-learn's 8x8 digits, no download; needs
``pip install 'r2dn_np[tasks]'``).

Four parts:

1. **Training**: input (64 pixels) -> monDEQ layer (``n`` ReLU units) -> linear readout, Adam
   on softmax cross-entropy, Peaceman-Rachford splitting in the forward and the backward solve.
   Reports test accuracy and the mean forward/backward iterations per minibatch.
2. **Splitting sweep**: on the trained ``W`` and a test batch, the forward and backward
   iteration counts of PR and FB for a range of steps ``alpha`` ("no conv." where the solve
   hit ``max_iter``), beside FB's sufficient bound ``2 m / ||I - W||^2``.
3. **Lecture demonstration**: for several weight scales ``s`` and random draws, an
   unconstrained ReLU DEQ with ``W = s G / sqrt(n)`` (G standard normal) against a monDEQ whose
   ``A, B`` are drawn the same way; the fraction of draws whose equilibrium solve converged.
4. **DEQ solvers**: forward and adjoint iteration counts of fixed-point iteration, Anderson
   and Broyden on a tanh DEQ layer with ``W = rho Q`` (``Q`` orthogonal), as ``rho`` approaches 1.

Examples
--------
The quick preset (2 shared CPU cores, about three minutes; the numbers in docs/deq.md)::

    python scripts/train_mondeq.py --preset quick --out runs/mondeq_quick.json

Tiny settings (the smoke test)::

    python scripts/train_mondeq.py --epochs 1 --n 8 --train-limit 100 --draws 2 --quiet
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
from array_api_compat import array_namespace

from r2dn_np.training import classify, losses
from r2dn_np import deq, mondeq
from r2dn_np.core import fixed_point
from r2dn_np.core.backend import asarray, namespace
from r2dn_np.data import digits

PRESETS = {
    # 2 shared CPU cores: about three minutes in all
    "quick": dict(
        n=100, m=0.1, alpha=1.0, tol=1e-4, max_iter=1000, epochs=30, batch_size=64, lr=3e-3,
        alphas=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0), sweep_rows=256, sweep_max_iter=5000,
        scales=(0.5, 1.0, 2.0, 4.0), draws=10, demo_max_iter=500,
        rhos=(0.5, 0.9, 0.99, 0.999), solver_tol=1e-8, solver_max_iter=5000,
    ),
    "full": dict(
        n=128, m=0.1, alpha=1.0, tol=1e-5, max_iter=2000, epochs=40, batch_size=64, lr=2e-3,
        alphas=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0), sweep_rows=450, sweep_max_iter=20000,
        scales=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0), draws=50, demo_max_iter=2000,
        rhos=(0.5, 0.9, 0.99, 0.999), solver_tol=1e-10, solver_max_iter=20000,
    ),
}
_INT = ("n", "max_iter", "epochs", "batch_size", "sweep_rows", "sweep_max_iter", "draws", "demo_max_iter",
        "solver_max_iter")
_FLOAT = ("m", "alpha", "tol", "lr", "solver_tol")


def train(s, data, seed, log):
    """Train the monDEQ classifier; returns ``(cfg, direct, history, mean iteration counts)``."""
    cfg = mondeq.Config(64, s["n"], 10, m=s["m"], splitting="pr", alpha=s["alpha"],
                        tol=s["tol"], max_iter=s["max_iter"])
    xp = array_namespace(data.X_train)
    direct = mondeq.init(cfg, seed=seed, backend=xp, dtype="float64")
    counts = []

    def value_and_grad(direct, X, y):
        explicit, map_cache = mondeq.direct_to_explicit(cfg, direct)
        logits, cache = mondeq.forward(cfg, explicit, X)
        loss, dlogits = losses.softmax_cross_entropy(logits, y)
        d_explicit, _, result = mondeq.backward(cfg, explicit, cache, dlogits)
        counts.append((cache.result.iterations, result.iterations))
        return loss, mondeq.direct_to_explicit_vjp(cfg, map_cache, d_explicit)

    def predict(direct, X):
        explicit, _ = mondeq.direct_to_explicit(cfg, direct)
        return mondeq.forward(cfg, explicit, X)[0]

    direct, history = classify.train(
        value_and_grad, predict, direct, (data.X_train, data.y_train), (data.X_test, data.y_test),
        epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], seed=seed, log=log,
    )
    c = np.asarray(counts, dtype=float)
    return cfg, direct, history, dict(forward=float(c[:, 0].mean()), backward=float(c[:, 1].mean()),
                                      forward_max=int(c[:, 0].max()), backward_max=int(c[:, 1].max()))


def splitting_sweep(cfg, direct, X, y, alphas, max_iter):
    """Forward and backward iteration counts for PR and FB at every step in ``alphas``."""
    explicit, _ = mondeq.direct_to_explicit(cfg, direct)
    rows = []
    for alpha in alphas:
        for splitting in mondeq.SPLITTINGS:
            c = dataclasses.replace(cfg, splitting=splitting, alpha=alpha, max_iter=max_iter)
            row = dict(alpha=alpha, splitting=splitting, forward=None, backward=None)
            try:
                logits, cache = mondeq.forward(c, explicit, X)
                row["forward"] = cache.result.iterations
                _, dlogits = losses.softmax_cross_entropy(logits, y)
                row["backward"] = mondeq.backward(c, explicit, cache, dlogits)[2].iterations
            except fixed_point.NotConverged as exc:
                row["last_residual"] = exc.result.residuals[-1]
            rows.append(row)
    return rows, mondeq.fb_alpha_bound(cfg, explicit)


def demonstration(X, n, m, scales, draws, tol, max_iter, seed):
    """Fraction of random draws whose equilibrium solve converges: unconstrained ReLU DEQ (plain
    iteration and Anderson) against the monDEQ (PR, alpha = 1), both with Gaussian weights."""
    xp = array_namespace(X)
    n_in = int(X.shape[1])
    out = []
    for scale in scales:
        hits = {"deq_fixed_point": 0, "deq_anderson": 0, "mondeq_pr": 0}
        for k in range(draws):
            rng = np.random.default_rng([seed, k, int(1000 * scale)])
            G1, G2 = rng.standard_normal((2, n, n)) * (scale / math.sqrt(n))
            U = rng.standard_normal((n, n_in)) / math.sqrt(n_in)
            b = 0.1 * rng.standard_normal(n)
            for solver in ("fixed_point", "anderson"):
                cfg = deq.Config(n_in, n, activation="relu", solver=solver, tol=tol, max_iter=max_iter)
                layer = deq.Explicit(*(asarray(a, xp, X.dtype) for a in (G1, U, b)))
                try:
                    deq.forward(cfg, layer, X)
                    hits["deq_" + solver] += 1
                except fixed_point.NotConverged:
                    pass
            cfg = mondeq.Config(n_in, n, 1, m=m, splitting="pr", alpha=1.0, tol=tol, max_iter=max_iter)
            direct = mondeq.Direct(*(asarray(a, xp, X.dtype) for a in
                                     (G1, G2, U, b, np.zeros((1, n)), np.zeros(1))))
            explicit, _ = mondeq.direct_to_explicit(cfg, direct)
            try:
                mondeq.forward(cfg, explicit, X)
                hits["mondeq_pr"] += 1
            except fixed_point.NotConverged:
                pass
        out.append(dict(scale=scale, draws=draws, **{k: v / draws for k, v in hits.items()}))
    return out


def solver_comparison(X, n, rhos, tol, max_iter, seed):
    """Forward and adjoint iteration counts of the DEQ solvers on a tanh layer with
    ``W = rho Q``, ``Q`` a random orthogonal matrix: every eigenvalue of ``W`` has modulus
    ``rho``, the slowest case for plain iteration among contractions with factor ``rho``."""
    xp = array_namespace(X)
    n_in = int(X.shape[1])
    rng = np.random.default_rng(seed)
    G, _ = np.linalg.qr(rng.standard_normal((n, n)))
    U = rng.standard_normal((n, n_in)) / math.sqrt(n_in)
    dz = asarray(rng.standard_normal((int(X.shape[0]), n)), xp, X.dtype)
    rows = []
    for rho in rhos:
        W = rho * G
        layer = deq.Explicit(*(asarray(a, xp, X.dtype) for a in (W, U, np.zeros(n))))
        for solver in fixed_point.SOLVERS:
            cfg = deq.Config(n_in, n, activation="tanh", solver=solver, tol=tol, max_iter=max_iter)
            row = dict(rho=rho, solver=solver, forward=None, backward=None)
            try:
                _, cache = deq.forward(cfg, layer, X)
                row["forward"] = cache.result.iterations
                row["backward"] = deq.backward(cfg, layer, cache, dz)[2].iterations
            except fixed_point.NotConverged:
                pass
            rows.append(row)
    return rows


def _iters(row, key, max_iter):
    if row[key] is not None:
        return str(row[key])
    if key == "backward" and row["forward"] is None:
        return "not run"  # the backward solve needs a forward equilibrium
    return f"no conv. (>{max_iter})"


def report(results):
    s = results["settings"]
    t = results["training"]
    lines = [
        f"## monDEQ on digits (n = {s['n']}, m = {s['m']}, PR alpha = {s['alpha']}, tol = {s['tol']:g})",
        "",
        f"test accuracy {t['test_accuracy']:.4f} after {s['epochs']} epochs "
        f"({t['seconds']:.1f} s); mean iterations per minibatch: forward {t['iterations']['forward']:.1f}, "
        f"backward {t['iterations']['backward']:.1f}",
        "",
        f"## PR vs FB iterations on the trained W ({s['sweep_rows']} test rows; "
        f"FB's sufficient bound 2m/||I-W||^2 = {results['fb_alpha_bound']:.4g})",
        "",
        "| alpha | PR forward | PR backward | FB forward | FB backward |",
        "|---|---|---|---|---|",
    ]
    by = {(r["alpha"], r["splitting"]): r for r in results["sweep"]}
    cap = s["sweep_max_iter"]
    for alpha in s["alphas"]:
        pr, fb = by[alpha, "pr"], by[alpha, "fb"]
        lines.append(
            f"| {alpha:g} | {_iters(pr, 'forward', cap)} | {_iters(pr, 'backward', cap)} | "
            f"{_iters(fb, 'forward', cap)} | {_iters(fb, 'backward', cap)} |"
        )
    lines += [
        "",
        f"## Converged draws: unconstrained ReLU DEQ vs monDEQ (n = {s['n']}, {s['draws']} draws, "
        f"max_iter = {s['demo_max_iter']})",
        "",
        "| scale s | DEQ fixed-point | DEQ Anderson | monDEQ PR |",
        "|---|---|---|---|",
    ]
    for r in results["demonstration"]:
        lines.append(f"| {r['scale']:g} | {r['deq_fixed_point']:.2f} | {r['deq_anderson']:.2f} | {r['mondeq_pr']:.2f} |")
    lines += [
        "",
        f"## DEQ solvers: iterations forward / adjoint (tanh, n = {s['n']}, W = rho Q, Q orthogonal, "
        f"tol = {s['solver_tol']:g}, max_iter = {s['solver_max_iter']})",
        "",
        "| rho | " + " | ".join(fixed_point.SOLVERS) + " |",
        "|---|" + "---|" * len(fixed_point.SOLVERS),
    ]
    by = {(r["rho"], r["solver"]): r for r in results["solvers"]}
    cap = s["solver_max_iter"]
    for rho in s["rhos"]:
        cells = [f"{_iters(by[rho, k], 'forward', cap)} / {_iters(by[rho, k], 'backward', cap)}"
                 for k in fixed_point.SOLVERS]
        lines.append(f"| {rho:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default=None, help="numpy or cupy (default: $R2DN_BACKEND or numpy)")
    ap.add_argument("--train-limit", type=int, default=None, help="use only this many training images")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    for key in _INT:
        ap.add_argument("--" + key.replace("_", "-"), type=int, dest=key)
    for key in _FLOAT:
        ap.add_argument("--" + key.replace("_", "-"), type=float, dest=key)
    ap.add_argument("--alphas", type=float, nargs="+")
    ap.add_argument("--scales", type=float, nargs="+")
    ap.add_argument("--rhos", type=float, nargs="+")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    s = dict(PRESETS[args.preset])
    for key in _INT + _FLOAT + ("alphas", "scales", "rhos"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    xp = namespace(args.backend)
    data = digits.load(seed=args.seed, backend=xp)
    if args.train_limit is not None:
        data = data._replace(X_train=data.X_train[:args.train_limit], y_train=data.y_train[:args.train_limit])
    log = None if args.quiet else (lambda line: print(line, flush=True))

    start = time.perf_counter()
    cfg, direct, history, counts = train(s, data, args.seed, log)
    seconds = time.perf_counter() - start
    rows = min(s["sweep_rows"], int(data.X_test.shape[0]))
    X, y = data.X_test[:rows, ...], data.y_test[:rows]
    sweep, bound = splitting_sweep(cfg, direct, X, y, s["alphas"], s["sweep_max_iter"])
    demo = demonstration(X, s["n"], s["m"], s["scales"], s["draws"], s["tol"], s["demo_max_iter"], args.seed)
    solvers = solver_comparison(X, s["n"], s["rhos"], s["solver_tol"], s["solver_max_iter"], args.seed)

    results = dict(
        preset=args.preset, seed=args.seed, backend=xp.__name__,
        settings={k: list(v) if isinstance(v, tuple) else v for k, v in s.items()},
        training=dict(test_accuracy=history.test_accuracy[-1], train_loss=history.train_loss,
                      test_accuracy_per_epoch=history.test_accuracy, seconds=seconds, iterations=counts,
                      config=cfg.to_dict()),
        sweep=sweep, fb_alpha_bound=bound, demonstration=demo, solvers=solvers,
    )
    print(report(results))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
