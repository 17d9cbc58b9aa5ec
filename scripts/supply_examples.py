"""Three worked supply rates for docs/supply_rates.md: for each, an R2DN and a REN with that
(Q, S, R), their certificate tables, and the incremental supply measured on sampled and searched
input pairs from equal initial states.

1. l2 gain gamma = 2:            (Q, S, R) = (-I/2, 0, 2 I)
2. a sector (output-strict passivity-like, Q < 0): (Q, S, R) = (-I, I/2, I),
   i.e. s = -|y|^2 + u^T y + |u|^2 (an incremental sector condition between -0.62 and 1.62)
3. a frequency-independent weighted gain: |W_y dy| <= |W_u du| with W_y = diag(1, 3),
   W_u = diag(2, 0.5): (Q, S, R) = (-W_y^T W_y, 0, W_u^T W_u)

Usage: python scripts/supply_examples.py [--seed N]
"""

import argparse

import numpy as np

from r2dn_np.checks import certificates, verify
from r2dn_np import r2dn, ren
from r2dn_np.core import supply

EXAMPLES = {
    "l2 gain 2": ((-np.eye(2) / 2.0), np.zeros((2, 2)), 2.0 * np.eye(2)),
    "sector (-I, I/2, I)": (-np.eye(2), 0.5 * np.eye(2), np.eye(2)),
    "weighted gain": (-np.diag([1.0, 9.0]), np.zeros((2, 2)), np.diag([4.0, 0.25])),
}


def run(seed=0, steps=30):
    rows = []
    for name, (Q, S, R) in EXAMPLES.items():
        for module in (r2dn, ren):
            extra = dict(hidden=(16,)) if module is r2dn else {}
            cfg = module.Config(nu=2, nx=4, nv=8, ny=2, activation="tanh", kind="qsr", d22="free",
                                Q=Q.tolist(), S=S.tolist(), R=R.tolist(), **extra)
            direct = verify.perturbed(module, cfg, seed)
            explicit, cache = module.direct_to_explicit(cfg, direct)
            report = certificates.certify(cfg, explicit, cache)
            worst = verify.supply_search(module, cfg, explicit, Q, S, R, np.random.default_rng(seed), steps=steps)
            rows.append((name, cfg.model, report, worst))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name, model, report, worst in run(args.seed):
        print(f"\n## {name}, {model.upper()}: certificate {'holds' if report.holds else 'FAILS'}")
        print(report.table())
        print(f"smallest measured sum_t s(dy_t, du_t) / sum_t |du_t|^2 over sampled and searched pairs: {worst:.4g}")
    Q, S, R = supply.check(2, 2, *(m.tolist() for m in EXAMPLES["sector (-I, I/2, I)"]))
    f = supply.host_factors(Q, S, R)
    print(f"\nsector example: L_Q^-1 = {f.LQinv.diagonal()}, L_R = {f.LR.diagonal()}, "
          f"shift (-Q)^-1 S^T = {f.shift.diagonal()}")


if __name__ == "__main__":
    main()
