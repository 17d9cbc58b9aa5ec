"""REN: a 1-Lipschitz recurrent equilibrium network, and its gain measured on random input pairs.

Run: python docs/examples/ren_lipschitz.py   (about a second)
"""
import numpy as np

from r2dn_np.checks import certificates
from r2dn_np import ren

cfg = ren.Config(nu=2, nx=8, nv=16, ny=1, kind="lipschitz", gamma=1.0)
direct = ren.init(cfg, seed=0)
explicit, cache = ren.direct_to_explicit(cfg, direct)
print(certificates.certify(cfg, explicit, cache).table())

rng = np.random.default_rng(0)
x0 = np.zeros((8, 8))
Ua, Ub = rng.standard_normal((2, 40, 8, 2))                          # 8 pairs of 40-step inputs
_, Ya, _ = ren.forward(cfg, explicit, x0, Ua)
_, Yb, _ = ren.forward(cfg, explicit, x0, Ub)
gain = np.sqrt(((Ya - Yb) ** 2).sum(axis=(0, 2)) / ((Ua - Ub) ** 2).sum(axis=(0, 2))).max()
print(f"largest gain over 8 random pairs: {gain:.3f} (bound {cfg.gamma})")
assert gain <= cfg.gamma
