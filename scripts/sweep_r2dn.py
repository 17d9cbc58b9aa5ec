"""Sweep random R2DNs and report the worst case of every guarantee check (docs/guarantees.md).

For each draw: the hand-written gradient against finite differences (every free parameter,
x0 and U), the balanced largest eigenvalue of the explicit certificates, the implicit form,
contraction in the metric M on sampled trajectories, and the Lipschitz ratio under random
pairs, Jacobian power iteration and gradient ascent, with MaxMin and linear orthogonal phis
as well as the model's own LBDN. Half the draws use a tiny polar scale (nearly tight LMI).

    python scripts/sweep_r2dn.py --draws 4          # about a minute
    python scripts/sweep_r2dn.py --draws 24 --out runs/sweep.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time

import numpy as np

from r2dn_np.checks import certificates, empirical, verify
from r2dn_np import r2dn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import phis  # noqa: E402  (MaxMin and orthogonal test maps)

import array_api_compat.numpy as xp  # noqa: E402

SIZES = [(1, 1, 2, 1), (2, 3, 4, 2), (3, 2, 5, 1), (1, 4, 3, 3), (4, 5, 6, 2)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=4, help="seeds per (size, gamma, d22) cell")
    ap.add_argument("--out", default=None, help="write the summary as JSON here")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    worst = dict(grad_rel_err=0.0, explicit_eig_cond_le_1e6=-math.inf, implicit_min=math.inf,
                 contraction_step=-math.inf, lipschitz_ratio=0.0, lipschitz_ratio_tight=0.0,
                 certificates_failed=0, n=0)
    by_family = {}
    for (sizes, gamma, d22, kind), seed in itertools.product(
        itertools.product(SIZES, (0.1, 1.0, 10.0), ("zero", "free"), ("contracting", "lipschitz")),
        range(args.draws),
    ):
        if kind == "contracting" and (d22 == "free" or gamma != 1.0):
            continue
        tiny = seed % 2 == 1
        cfg = r2dn.Config(*sizes, hidden=(4,), activation="tanh", kind=kind, gamma=gamma, d22=d22)
        direct = verify.perturbed(r2dn, cfg, seed, tiny)
        rng = np.random.default_rng(1000 + seed)
        worst["n"] += 1
        worst["grad_rel_err"] = np.nanmax([worst["grad_rel_err"], verify.gradient_error(r2dn, cfg, direct, rng)])
        explicit, cache = r2dn.direct_to_explicit(cfg, direct)
        report = certificates.certify(cfg, explicit, cache)
        worst["certificates_failed"] += not report.holds
        worst["implicit_min"] = min(worst["implicit_min"], report.checks[-1].value)
        if report.cond_H <= 1e6:
            worst["explicit_eig_cond_le_1e6"] = max(
                worst["explicit_eig_cond_le_1e6"], *(c.value for c in report.checks[:-1]))
        M = certificates.metric(cache)
        nu, nx, nv, ny = sizes
        for family in ("lbdn", "maxmin", "orthogonal"):
            if family == "lbdn":
                phi, e = r2dn.phi(cfg), explicit
            elif family == "maxmin":
                phi, e = phis.MAXMIN, explicit._replace(phi=phis.maxmin_params(xp, rng, nv))
            else:
                phi, e = phis.ORTHOGONAL, explicit._replace(phi=phis.orthogonal_params(xp, rng, nv))
            U = 3 * rng.standard_normal((40, 4, nu))
            V = empirical.contraction_trace(e, phi, M, 10 * rng.standard_normal((4, nx)),
                                            10 * rng.standard_normal((4, nx)), U)
            live = V[:-1] > 1e-16 * V[0]
            rel = np.divide(V[1:], V[:-1], out=np.zeros_like(V[1:]), where=live) - 1
            worst["contraction_step"] = max(worst["contraction_step"], float(rel.max()))
            if kind != "lipschitz":
                continue
            f = empirical.feedback_map(e, phi, np.zeros((4, nx)))
            ratio = empirical.random_pair_search(f, (12, 4, nu), xp, xp.float64, rng)
            ratio = max(ratio, empirical.jacobian_gain(empirical.feedback_map(e, phi, np.zeros((1, nx))),
                                                       rng.standard_normal((12, 1, nu)), rng))
            U1 = rng.standard_normal((12, 4, nu))
            ratio = max(ratio, empirical.ascend_pair_ratio(f, U1, U1 + 0.1 * rng.standard_normal(U1.shape), steps=30))
            ratio /= gamma
            worst["lipschitz_ratio"] = max(worst["lipschitz_ratio"], ratio)
            if tiny:
                worst["lipschitz_ratio_tight"] = max(worst["lipschitz_ratio_tight"], ratio)
            by_family[family] = max(by_family.get(family, 0.0), ratio)
    worst["lipschitz_ratio_by_phi"] = by_family
    worst["seconds"] = round(time.perf_counter() - start, 1)
    for k, v in worst.items():
        print(f"{k:<28} {v}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(worst, fh, indent=2, default=float)
    ok = worst["certificates_failed"] == 0 and worst["lipschitz_ratio"] <= 1 + 1e-9 and worst["contraction_step"] <= 1e-9
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
