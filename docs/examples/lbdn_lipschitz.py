"""LBDN: a 2-Lipschitz feed-forward network of Sandwich layers, its gradients, and its bound.

Run: python docs/examples/lbdn_lipschitz.py   (under a second)
"""
import numpy as np

from r2dn_np import lbdn

cfg = lbdn.Config(n_in=3, n_out=2, hidden=(16, 16), activation="relu", gamma=2.0)
direct = lbdn.init(cfg, seed=0)                                   # free parameters
explicit, map_cache = lbdn.direct_to_explicit(cfg, direct)

rng = np.random.default_rng(0)
a, b = rng.standard_normal((2, 1000, 3))
ya, cache = lbdn.forward(cfg, explicit, a)
yb, _ = lbdn.forward(cfg, explicit, b)
ratio = np.linalg.norm(ya - yb, axis=1) / np.linalg.norm(a - b, axis=1)
print(f"largest |f(a) - f(b)| / |a - b| over 1000 pairs: {ratio.max():.3f} (bound {cfg.gamma})")
assert ratio.max() <= cfg.gamma

dh, d_explicit = lbdn.backward(cfg, explicit, cache, np.ones((1000, 2)))   # d loss / d input, weights
d_direct = lbdn.direct_to_explicit_vjp(cfg, map_cache, d_explicit)         # ... and free parameters
print("gradient of the first layer's XY:", d_direct.layers[0].XY.shape)
