"""R2DN: a contracting recurrent model, one gradient step, and the certificate that proves it.

Run: python docs/examples/r2dn_contracting.py   (about a second)
"""
import numpy as np

from r2dn_np.checks import certificates
from r2dn_np.training import losses, optim
from r2dn_np import r2dn

cfg = r2dn.Config(nu=2, nx=8, nv=16, ny=1, hidden=(32, 32))      # kind="contracting" by default
direct = r2dn.init(cfg, seed=0)                                   # free parameters: any values are safe
rng = np.random.default_rng(0)
U = rng.standard_normal((50, 4, 2))                               # (T, B, nu), time-major
target = np.sin(np.cumsum(U[..., :1], axis=0) / 5)                # some output to fit, (T, B, ny)

loss, grads = r2dn.value_and_grad(cfg, direct, np.zeros((4, 8)), U, lambda Y: losses.mse(Y, target))
direct, _ = optim.adam_step(direct, grads.direct, optim.adam_init(direct), lr=1e-2)  # grads: (direct, x0, U)

explicit, cache = r2dn.direct_to_explicit(cfg, direct)
report = certificates.certify(cfg, explicit, cache)
print(f"loss {float(loss):.4f}; contracting after the step: {report.holds}")
assert report.holds
