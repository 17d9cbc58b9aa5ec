"""Sequential digit classification with the Lipschitz RNN, a plain tanh RNN baseline and a
contracting R2DN, on scikit-learn's 8x8 digits (no download; needs ``pip install 'r2dn_np[tasks]'``).

Tasks (time-major sequences, 1,347 training and 450 test images):

- ``pixel``: one pixel per step, T = 64;
- ``permuted``: the same with a fixed random permutation of the pixels;
- ``noise_padded``: the 8 image rows, then ``noise_rows`` rows of Gaussian noise drawn afresh for
  every image (``r2dn_np.data.digits``), T = 8 + noise_rows;
- ``noise_padded_fixed``: the paper's protocol for noise-padded CIFAR-10: one block of Gaussian
  noise rows, drawn once, appended to every image.

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

One model on one task, with overrides::

    python scripts/train_lipschitz_rnn.py --task pixel --model lipschitz_rnn --scheme euler --eps 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from r2dn_np import classify, lipschitz_rnn, losses, r2dn, tanh_rnn
from r2dn_np.backend import namespace, to_numpy
from r2dn_np.data import digits, perturb

TASKS = ("pixel", "permuted", "noise_padded", "noise_padded_fixed")
MODELS = ("lipschitz_rnn", "tanh_rnn", "r2dn")

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
}


class Adapter(NamedTuple):
    """What the training loop needs from a model: its parameters and two functions."""

    config: object
    params: object
    value_and_grad: Callable  # (params, X, labels) -> (loss, grads)
    predict: Callable  # (params, X) -> logits


def lipschitz_rnn_adapter(n_in, n_out, s, seed, backend):
    cfg = lipschitz_rnn.Config(
        n_in=n_in, n_units=s["n_units"], n_out=n_out, beta=s["beta"], gamma=s["gamma"],
        eps=s["eps"], alpha=s["alpha"], scheme=s["scheme"], rho=s["rho"], init_std=s["init_std"],
    )
    return Adapter(
        cfg, lipschitz_rnn.init(cfg, seed, backend=backend),
        lambda p, X, y: lipschitz_rnn.value_and_grad(cfg, p, X, y),
        lambda p, X: lipschitz_rnn.predict(cfg, p, X),
    )


def tanh_rnn_adapter(n_in, n_out, s, seed, backend):
    cfg = tanh_rnn.Config(n_in=n_in, n_units=s["n_units"], n_out=n_out, init_std=s["init_std"])
    return Adapter(
        cfg, tanh_rnn.init(cfg, seed, backend=backend),
        lambda p, X, y: tanh_rnn.value_and_grad(cfg, p, X, y),
        lambda p, X: tanh_rnn.predict(cfg, p, X),
    )


def r2dn_adapter(n_in, n_out, s, seed, backend):
    """A contracting R2DN classifying from its last output y_T; its state is as wide as the
    RNNs', its LBDN has two hidden layers of half that width. The long-memory initialisation
    (A close to I) lets it carry the digit through hundreds of noise rows."""
    width = s["n_units"]
    cfg = r2dn.Config(nu=n_in, nx=width, nv=width // 2, ny=n_out, hidden=(width // 2, width // 2),
                      init="long_memory")
    direct = r2dn.init(cfg, seed, backend=backend)
    xp = array_namespace(direct.X)

    def x0_for(X):
        return xp.zeros((int(X.shape[1]), cfg.nx), dtype=X.dtype)

    def value_and_grad(p, X, labels):
        def last_output_loss(Y):
            loss, d_logits = losses.softmax_cross_entropy(Y[-1, ...], labels)
            dY = xp.concat([xp.zeros_like(Y[:-1, ...]), d_logits[None, ...]], axis=0)
            return loss, dY
        loss, grads = r2dn.value_and_grad(cfg, p, x0_for(X), X, last_output_loss)
        return loss, grads.direct

    def predict(p, X):
        explicit, _ = r2dn.direct_to_explicit(cfg, p)
        return r2dn.forward(cfg, explicit, x0_for(X), X)[1][-1, ...]

    return Adapter(cfg, direct, value_and_grad, predict)


ADAPTERS = {"lipschitz_rnn": lipschitz_rnn_adapter, "tanh_rnn": tanh_rnn_adapter, "r2dn": r2dn_adapter}


def load_task(task, noise_rows, seed, backend, train_limit=None):
    """Time-major ``digits.Split`` for one task; ``train_limit`` keeps the first training images."""
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
        task=task, model=model, T=int(data.X_train.shape[0]), epochs=epochs, test_accuracy=acc[-1],
        best_test_accuracy=max(acc), final_train_loss=loss[-1], seconds=round(seconds, 1),
        accuracy_per_epoch=[round(a, 4) for a in acc], config=adapter.config.to_dict(),
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
    A, F = np.asarray(to_numpy(explicit.A)), np.asarray(to_numpy(explicit.F))
    lo, hi = lipschitz_rnn.eigenvalue_bounds(params.M, cfg.beta, cfg.gamma)
    rho = cfg.rho if cfg.scheme == "imex" else 0.0
    out = dict(
        prop2_interval=[lo, hi], max_re_eig_A=float(np.max(np.linalg.eigvals(A).real)),
        eps=cfg.eps, max_stable_step_euler=lipschitz_rnn.max_stable_step(A, cfg.alpha),
        max_stable_step_scheme=lipschitz_rnn.max_stable_step(A, cfg.alpha, rho),
        spectral_radius_F=float(np.max(np.abs(np.linalg.eigvals(F)))),
    )
    if out["max_re_eig_A"] < 0:
        out["lyapunov_decay_rate_A"] = lipschitz_rnn.lyapunov_certificate(A).decay_rate
    if out["spectral_radius_F"] < 1:
        out["lyapunov_decay_rate_F"] = lipschitz_rnn.lyapunov_certificate(F, discrete=True).decay_rate
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
    for key in ("n_units", "epochs", "noise_epochs", "batch_size", "noise_rows", "noise_draws"):
        ap.add_argument("--" + key.replace("_", "-"), type=int, dest=key)
    for key in ("lr", "clip_norm", "eps", "noise_eps", "beta", "gamma", "noise_gamma", "alpha", "rho", "init_std"):
        ap.add_argument("--" + key.replace("_", "-"), type=float, dest=key)
    ap.add_argument("--scheme", choices=lipschitz_rnn.SCHEMES)
    ap.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    s = dict(PRESETS[args.preset])
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
        data = load_task(task, s["noise_rows"], args.seed, backend, args.train_limit)
        for model in models:
            long = task.startswith("noise_padded")
            task_s = dict(s, eps=s["noise_eps"], gamma=s["noise_gamma"]) if long else s
            print(f"{task} / {model}: T = {int(data.X_train.shape[0])}", flush=True)
            adapter, params, run = train_one(model, task, data, task_s, args.seed, backend, log)
            results["runs"].append(run)
            print(f"{task} / {model}: test accuracy {run['test_accuracy']:.4f} "
                  f"(best {run['best_test_accuracy']:.4f}) in {run['seconds']:.1f} s", flush=True)
            if run["stability"]:
                print("    stability: " + ", ".join(f"{k} {_fmt(v)}" for k, v in run["stability"].items()), flush=True)
            if args.robustness and task == "pixel":
                flat = digits.load(seed=args.seed, backend=backend)
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
    lines = ["", "| task | T | model | test accuracy | best epoch | seconds |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results["runs"]:
        lines.append(f"| {r['task']} | {r['T']} | {r['model']} | {r['test_accuracy']:.4f} | "
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
