"""(Q, S, R): an R2DN that is incrementally dissipative for a sector supply rate, certified and
searched for a counterexample.

Run: python docs/examples/qsr_sector.py   (a few seconds)
"""
import numpy as np

from r2dn_np.checks import certificates, verify
from r2dn_np import r2dn
from r2dn_np.core import supply

Q, S, R = -np.eye(2), 0.5 * np.eye(2), np.eye(2)          # s = -|dy|^2 + du.dy + |du|^2
cfg = r2dn.Config(nu=2, nx=4, nv=8, ny=2, hidden=(16,), kind="qsr", Q=Q.tolist(), S=S.tolist(), R=R.tolist())
direct = r2dn.init(cfg, seed=0)
explicit, cache = r2dn.direct_to_explicit(cfg, direct)
report = certificates.certify(cfg, explicit, cache)
worst = verify.supply_search(r2dn, cfg, explicit, Q, S, R, np.random.default_rng(0), steps=10)
print(f"certificate holds: {report.holds}; smallest supply found by the search: {worst:.3e} (>= 0)")
assert report.holds and worst >= 0
print("a random valid supply for other sizes:", [np.shape(m) for m in supply.example(3, 1, 0)])
