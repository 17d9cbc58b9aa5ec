"""DEQ and monDEQ: an equilibrium layer solved by root finding, and the monotone version that
always has exactly one equilibrium, with gradients from the implicit function theorem.

Run: python docs/examples/mondeq_classifier.py   (about a second)
"""
import numpy as np

from r2dn_np import deq, mondeq
from r2dn_np.training import losses

rng = np.random.default_rng(0)
x, labels = rng.random((32, 64)), np.arange(32) % 10

# monDEQ: W = (1 - m) I - A^T A + B - B^T, so I - W is strongly monotone for every A, B
cfg = mondeq.Config(n_in=64, n=100, n_out=10, m=0.1, splitting="pr", alpha=1.0, tol=1e-4)
direct = mondeq.init(cfg, seed=0)
explicit, map_cache = mondeq.direct_to_explicit(cfg, direct)
logits, cache = mondeq.forward(cfg, explicit, x)                    # Peaceman-Rachford splitting
loss, dlogits = losses.softmax_cross_entropy(logits, labels)
d_explicit, dx, result = mondeq.backward(cfg, explicit, cache, dlogits)
grads = mondeq.direct_to_explicit_vjp(cfg, map_cache, d_explicit)
print(f"monDEQ: {cache.result.iterations} forward iterations, {result.iterations} backward; loss {float(loss):.3f}")
assert cache.result.converged and result.converged

# DEQ: an unconstrained W, Anderson acceleration; a solve that misses its tolerance raises
dcfg = deq.Config(n_in=64, n=50, solver="anderson", tol=1e-10)
dexplicit, _ = deq.direct_to_explicit(dcfg, deq.init(dcfg, seed=0))
z, dcache = deq.forward(dcfg, dexplicit, x)
print(f"DEQ: residual {float(deq.residual(dcfg, dexplicit, x, z)):.1e} after {dcache.result.iterations} iterations")
assert deq.residual(dcfg, dexplicit, x, z) < 1e-10
