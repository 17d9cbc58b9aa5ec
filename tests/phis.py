"""1-Lipschitz maps other than the LBDN, to plug into ``feedback`` as ``phi`` in tests.

MaxMin has an orthogonal Jacobian almost everywhere, which makes it the hardest case for the
Lipschitz certificates (docs/guarantees.md, "How each guarantee is checked"); a linear orthogonal map is the smooth extreme.
Their parameters are fixed (no weight gradients).
"""

import numpy as np
from array_api_compat import array_namespace

from r2dn_np.core.static_map import Phi

from helpers import put


def _orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def maxmin_params(xp, rng, n, bias_scale=1.0):
    return (put(xp, _orthogonal(rng, n)), put(xp, _orthogonal(rng, n)), put(xp, bias_scale * rng.standard_normal(n)))


def _maxmin_forward(params, v):
    Q1, Q2, b = params
    xp = array_namespace(v)
    z = v @ Q2.mT + b
    h = int(z.shape[1]) // 2
    a, c = z[:, :h], z[:, h:2 * h]
    mask = xp.astype(a >= c, z.dtype)
    m = xp.concat([xp.maximum(a, c), xp.minimum(a, c), z[:, 2 * h:]], axis=1)
    return m @ Q1.mT, (mask,)


def _maxmin_backward(params, cache, dw):
    Q1, Q2, _ = params
    xp = array_namespace(dw)
    (mask,) = cache
    dm = dw @ Q1
    h = int(mask.shape[1])
    dmax, dmin = dm[:, :h], dm[:, h:2 * h]
    da = mask * dmax + (1.0 - mask) * dmin
    dc = (1.0 - mask) * dmax + mask * dmin
    dz = xp.concat([da, dc, dm[:, 2 * h:]], axis=1)
    return dz @ Q2, ()


MAXMIN = Phi(_maxmin_forward, _maxmin_backward, lambda params, cache, g: None)


def orthogonal_params(xp, rng, n):
    return put(xp, _orthogonal(rng, n))


ORTHOGONAL = Phi(
    lambda Q, v: (v @ Q.mT, ()),
    lambda Q, cache, dw: (dw @ Q, ()),
    lambda Q, cache, g: None,
)
