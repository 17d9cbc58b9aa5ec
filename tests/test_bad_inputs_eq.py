"""Bad inputs at every public entry point of fixed_point, deq and mondeq: each raises TypeError or
ValueError at the boundary, before any arithmetic, with a message that names the argument (or
the container field). One line per case."""

import re

import numpy as np
import pytest

from r2dn_np import deq, mondeq
from r2dn_np.core import fixed_point
from r2dn_np.training import losses

NAN, INF = float("nan"), float("inf")
D_CFG = deq.Config(2, 3)
D_D = deq.init(D_CFG, seed=0)
D_E, D_MAP = deq.direct_to_explicit(D_CFG, D_D)
M_CFG = mondeq.Config(2, 3, 2)
M_FB = mondeq.Config(2, 3, 2, splitting="fb", alpha=0.1)
M_D = mondeq.init(M_CFG, seed=0)
M_E, M_MAP = mondeq.direct_to_explicit(M_CFG, M_D)
X = np.ones((4, 2))
_, D_CACHE = deq.forward(D_CFG, D_E, X)
_, M_CACHE = mondeq.forward(M_CFG, M_E, X)
_, M_FB_CACHE = mondeq.forward(M_FB, M_E, X)
DZ, DL = np.ones((4, 3)), np.ones((4, 2))
Z0 = np.zeros((1, 2))


def nan_at(a, where=0):
    a = np.array(a, dtype=float)
    a.flat[where] = NAN
    return a


def ok(out):
    return losses.mse(out, np.zeros_like(out))


CASES = [
    # --- Config: sizes, solver options (finite, in range, true ints) -----------------------------
    ("deq-n-in-0", lambda: deq.Config(0, 3), ValueError, "n_in"),
    ("deq-n-bool", lambda: deq.Config(2, True), TypeError, "n"),
    ("deq-n-float", lambda: deq.Config(2, 3.0), TypeError, "n"),
    ("deq-solver", lambda: deq.Config(2, 3, solver="newton"), ValueError, "solver"),
    ("deq-activation", lambda: deq.Config(2, 3, activation=None), ValueError, "activation"),
    ("deq-tol-0", lambda: deq.Config(2, 3, tol=0.0), ValueError, "tol"),
    ("deq-tol-1", lambda: deq.Config(2, 3, tol=1.0), ValueError, "tol"),
    ("deq-tol-nan", lambda: deq.Config(2, 3, tol=NAN), ValueError, "tol"),
    ("deq-tol-inf", lambda: deq.Config(2, 3, tol=INF), ValueError, "tol"),
    ("deq-tol-none", lambda: deq.Config(2, 3, tol=None), TypeError, "tol"),
    ("deq-max-iter-0", lambda: deq.Config(2, 3, max_iter=0), ValueError, "max_iter"),
    ("deq-max-iter-bool", lambda: deq.Config(2, 3, max_iter=True), TypeError, "max_iter"),
    ("deq-max-iter-np-float", lambda: deq.Config(2, 3, max_iter=np.float64(5)), TypeError, "max_iter"),
    ("deq-anderson-m-0", lambda: deq.Config(2, 3, anderson_m=0), ValueError, "anderson_m"),
    ("deq-anderson-m-float", lambda: deq.Config(2, 3, anderson_m=2.0), TypeError, "anderson_m"),
    ("deq-anderson-beta-0", lambda: deq.Config(2, 3, anderson_beta=0.0), ValueError, "anderson_beta"),
    ("deq-anderson-beta-big", lambda: deq.Config(2, 3, anderson_beta=1.5), ValueError, "anderson_beta"),
    ("deq-anderson-beta-str", lambda: deq.Config(2, 3, anderson_beta="1"), TypeError, "anderson_beta"),
    ("deq-from-dict-extra", lambda: deq.Config.from_dict({"n_in": 2, "n": 3, "m": 0.1}), TypeError, "m"),
    ("mondeq-n-out-float", lambda: mondeq.Config(2, 3, 1.5), TypeError, "n_out"),
    ("mondeq-m-0", lambda: mondeq.Config(2, 3, 2, m=0.0), ValueError, "m"),
    ("mondeq-m-inf", lambda: mondeq.Config(2, 3, 2, m=INF), ValueError, "m"),
    ("mondeq-alpha-inf", lambda: mondeq.Config(2, 3, 2, alpha=INF), ValueError, "alpha"),
    ("mondeq-alpha-str", lambda: mondeq.Config(2, 3, 2, alpha="1"), TypeError, "alpha"),
    ("mondeq-splitting", lambda: mondeq.Config(2, 3, 2, splitting=None), ValueError, "splitting"),
    ("mondeq-activation", lambda: mondeq.Config(2, 3, 2, activation="sigmoid"), ValueError, "activation"),
    ("mondeq-tol-2", lambda: mondeq.Config(2, 3, 2, tol=2.0), ValueError, "tol"),
    ("mondeq-tol-nan", lambda: mondeq.Config(2, 3, 2, tol=NAN), ValueError, "tol"),
    ("mondeq-max-iter-float", lambda: mondeq.Config(2, 3, 2, max_iter=100.0), TypeError, "max_iter"),
    ("mondeq-max-iter-neg", lambda: mondeq.Config(2, 3, 2, max_iter=-1), ValueError, "max_iter"),
    # --- init: cfg, seed, backend, dtype ----------------------------------------------------------
    ("deq-init-cfg", lambda: deq.init(M_CFG), TypeError, "cfg"),
    ("deq-init-seed-float", lambda: deq.init(D_CFG, seed=1.5), TypeError, "seed"),
    ("deq-init-seed-none", lambda: deq.init(D_CFG, seed=None), TypeError, "seed"),
    ("deq-init-dtype", lambda: deq.init(D_CFG, dtype="float16"), ValueError, "dtype"),
    ("deq-init-backend", lambda: deq.init(D_CFG, backend="torch"), ValueError, "backend"),
    ("mondeq-init-cfg", lambda: mondeq.init(D_CFG), TypeError, "cfg"),
    ("mondeq-init-seed-neg", lambda: mondeq.init(M_CFG, seed=-1), ValueError, "seed"),
    ("mondeq-init-seed-str", lambda: mondeq.init(M_CFG, seed="0"), TypeError, "seed"),
    ("mondeq-init-dtype", lambda: mondeq.init(M_CFG, dtype="int32"), ValueError, "dtype"),
    # --- direct_to_explicit: the direct container --------------------------------------------------
    ("deq-d2e-cfg", lambda: deq.direct_to_explicit(M_CFG, D_D), TypeError, "cfg"),
    ("deq-d2e-tuple", lambda: deq.direct_to_explicit(D_CFG, tuple(D_D)), TypeError, "direct"),
    ("deq-d2e-mondeq-direct", lambda: deq.direct_to_explicit(D_CFG, M_D), TypeError, "direct"),
    ("deq-d2e-W-shape", lambda: deq.direct_to_explicit(D_CFG, D_D._replace(W=np.zeros((3, 2)))), ValueError,
     "direct.W"),
    ("deq-d2e-U-nan", lambda: deq.direct_to_explicit(D_CFG, D_D._replace(U=nan_at(D_D.U))), ValueError, "direct.U"),
    ("deq-d2e-b-none", lambda: deq.direct_to_explicit(D_CFG, D_D._replace(b=None)), ValueError, "direct.b"),
    ("deq-d2e-b-list", lambda: deq.direct_to_explicit(D_CFG, D_D._replace(b=[0.0, 0.0, 0.0])), TypeError,
     "direct.b"),
    ("deq-d2e-b-float32", lambda: deq.direct_to_explicit(D_CFG, D_D._replace(b=np.zeros(3, np.float32))),
     TypeError, "direct.b"),
    ("mondeq-d2e-cfg", lambda: mondeq.direct_to_explicit(D_CFG, M_D), TypeError, "cfg"),
    ("mondeq-d2e-B-shape", lambda: mondeq.direct_to_explicit(M_CFG, M_D._replace(B=np.zeros((3, 4)))),
     ValueError, "direct.B"),
    ("mondeq-d2e-C-inf", lambda: mondeq.direct_to_explicit(M_CFG, M_D._replace(C=M_D.C + INF)), ValueError,
     "direct.C"),
    ("mondeq-d2e-c-none", lambda: mondeq.direct_to_explicit(M_CFG, M_D._replace(c=None)), ValueError, "direct.c"),
    ("mondeq-d2e-deq-direct", lambda: mondeq.direct_to_explicit(M_CFG, D_D), TypeError, "direct"),
    # --- direct_to_explicit_vjp: the map cache and the cotangent container -------------------------
    ("deq-vjp-cache", lambda: deq.direct_to_explicit_vjp(D_CFG, M_MAP, D_E), TypeError, "cache"),
    ("deq-vjp-W-shape", lambda: deq.direct_to_explicit_vjp(D_CFG, D_MAP, D_E._replace(W=np.zeros((2, 2)))),
     ValueError, "d_explicit.W"),
    ("deq-vjp-U-nan", lambda: deq.direct_to_explicit_vjp(D_CFG, D_MAP, D_E._replace(U=nan_at(D_E.U))),
     ValueError, "d_explicit.U"),
    ("deq-vjp-mondeq-explicit", lambda: deq.direct_to_explicit_vjp(D_CFG, D_MAP, M_E), TypeError, "d_explicit"),
    ("mondeq-vjp-cache-none", lambda: mondeq.direct_to_explicit_vjp(M_CFG, None, M_E), ValueError, "cache"),
    ("mondeq-vjp-cache-A-shape", lambda: mondeq.direct_to_explicit_vjp(M_CFG, M_MAP._replace(A=np.zeros((2, 2))),
                                                                       M_E), ValueError, "cache.A"),
    ("mondeq-vjp-deq-explicit", lambda: mondeq.direct_to_explicit_vjp(M_CFG, M_MAP, D_E), TypeError, "d_explicit"),
    ("mondeq-vjp-c-nan", lambda: mondeq.direct_to_explicit_vjp(M_CFG, M_MAP, M_E._replace(c=nan_at(M_E.c))),
     ValueError, "d_explicit.c"),
    # --- forward: cfg, explicit, x, z0 -------------------------------------------------------------
    ("deq-fwd-cfg", lambda: deq.forward(M_CFG, D_E, X), TypeError, "cfg"),
    ("deq-fwd-b-shape", lambda: deq.forward(D_CFG, D_E._replace(b=np.zeros((1, 3))), X), ValueError, "explicit.b"),
    ("deq-fwd-other-size", lambda: deq.forward(deq.Config(2, 4), D_E, X), ValueError, "explicit.W"),
    ("deq-fwd-x-1d", lambda: deq.forward(D_CFG, D_E, np.ones(2)), ValueError, "x"),
    ("deq-fwd-x-list", lambda: deq.forward(D_CFG, D_E, [[1.0, 2.0]]), TypeError, "x"),
    ("deq-fwd-x-int", lambda: deq.forward(D_CFG, D_E, np.ones((4, 2), int)), TypeError, "x"),
    ("deq-fwd-x-float32", lambda: deq.forward(D_CFG, D_E, np.ones((4, 2), np.float32)), TypeError, "x"),
    ("deq-fwd-x-inf", lambda: deq.forward(D_CFG, D_E, X - INF), ValueError, "x"),
    ("deq-fwd-z0-rows", lambda: deq.forward(D_CFG, D_E, X, z0=np.zeros((3, 3))), ValueError, "z0"),
    ("deq-fwd-z0-nan", lambda: deq.forward(D_CFG, D_E, X, z0=nan_at(np.zeros((4, 3)))), ValueError, "z0"),
    ("mondeq-fwd-cfg", lambda: mondeq.forward(D_CFG, M_E, X), TypeError, "cfg"),
    ("mondeq-fwd-deq-explicit", lambda: mondeq.forward(M_CFG, D_E, X), TypeError, "explicit"),
    ("mondeq-fwd-W-nan", lambda: mondeq.forward(M_CFG, M_E._replace(W=nan_at(M_E.W)), X), ValueError, "explicit.W"),
    ("mondeq-fwd-x-cols", lambda: mondeq.forward(M_CFG, M_E, np.ones((4, 3))), ValueError, "x"),
    ("mondeq-fwd-x-nan", lambda: mondeq.forward(M_CFG, M_E, nan_at(X)), ValueError, "x"),
    ("mondeq-fwd-z0-cols", lambda: mondeq.forward(M_CFG, M_E, X, z0=np.zeros((4, 2))), ValueError, "z0"),
    ("mondeq-fwd-z0-float32", lambda: mondeq.forward(M_CFG, M_E, X, z0=np.zeros((4, 3), np.float32)), TypeError,
     "z0"),
    # --- backward: cache, dout ---------------------------------------------------------------------
    ("deq-bwd-cfg", lambda: deq.backward(M_CFG, D_E, D_CACHE, DZ), TypeError, "cfg"),
    ("deq-bwd-cache-none", lambda: deq.backward(D_CFG, D_E, None, DZ), TypeError, "cache"),
    ("deq-bwd-mondeq-cache", lambda: deq.backward(D_CFG, D_E, M_CACHE, DZ), TypeError, "cache"),
    ("deq-bwd-cache-x", lambda: deq.backward(D_CFG, D_E, D_CACHE._replace(x=np.ones((4, 5))), DZ), ValueError,
     "cache.x"),
    ("deq-bwd-cache-s", lambda: deq.backward(D_CFG, D_E, D_CACHE._replace(s=np.ones((3, 3))), DZ), ValueError,
     "cache.s"),
    ("deq-bwd-dout-shape", lambda: deq.backward(D_CFG, D_E, D_CACHE, np.ones((4, 2))), ValueError, "dout"),
    ("deq-bwd-dout-nan", lambda: deq.backward(D_CFG, D_E, D_CACHE, nan_at(DZ)), ValueError, "dout"),
    ("deq-bwd-dout-float32", lambda: deq.backward(D_CFG, D_E, D_CACHE, DZ.astype(np.float32)), TypeError, "dout"),
    ("deq-bwd-explicit-nan", lambda: deq.backward(D_CFG, D_E._replace(b=nan_at(D_E.b)), D_CACHE, DZ), ValueError,
     "explicit.b"),
    ("mondeq-bwd-cache-none", lambda: mondeq.backward(M_CFG, M_E, None, DL), TypeError, "cache"),
    ("mondeq-bwd-deq-cache", lambda: mondeq.backward(M_CFG, M_E, D_CACHE, DL), TypeError, "cache"),
    ("mondeq-bwd-fb-cache-pr-cfg", lambda: mondeq.backward(M_CFG, M_E, M_FB_CACHE, DL), ValueError, "cache.V"),
    ("mondeq-bwd-cache-V-shape", lambda: mondeq.backward(M_CFG, M_E, M_CACHE._replace(V=np.eye(2)), DL),
     ValueError, "cache.V"),
    ("mondeq-bwd-dout-shape", lambda: mondeq.backward(M_CFG, M_E, M_CACHE, DZ), ValueError, "dout"),
    ("mondeq-bwd-dout-inf", lambda: mondeq.backward(M_CFG, M_E, M_CACHE, DL + INF), ValueError, "dout"),
    ("mondeq-bwd-C-shape", lambda: mondeq.backward(M_CFG, M_E._replace(C=np.ones((3, 3))), M_CACHE, DL),
     ValueError, "explicit.C"),
    # --- value_and_grad: direct, x, the loss and what it returns ---------------------------------
    ("deq-vg-cfg", lambda: deq.value_and_grad(M_CFG, D_D, X, ok), TypeError, "cfg"),
    ("deq-vg-loss-none", lambda: deq.value_and_grad(D_CFG, D_D, X, None), TypeError, "loss"),
    ("deq-vg-loss-one-value", lambda: deq.value_and_grad(D_CFG, D_D, X, lambda z: 0.0), TypeError, "loss"),
    ("deq-vg-loss-nan", lambda: deq.value_and_grad(D_CFG, D_D, X, lambda z: (NAN, z)), ValueError, "loss"),
    ("deq-vg-loss-vector", lambda: deq.value_and_grad(D_CFG, D_D, X, lambda z: (z[0], z)), TypeError, "loss"),
    ("deq-vg-loss-dz-shape", lambda: deq.value_and_grad(D_CFG, D_D, X, lambda z: (0.0, z[:2])), ValueError,
     "loss"),
    ("deq-vg-loss-dz-nan", lambda: deq.value_and_grad(D_CFG, D_D, X, lambda z: (0.0, z * NAN)), ValueError,
     "loss"),
    ("deq-vg-direct-nan", lambda: deq.value_and_grad(D_CFG, D_D._replace(W=nan_at(D_D.W)), X, ok), ValueError,
     "direct.W"),
    ("deq-vg-x-shape", lambda: deq.value_and_grad(D_CFG, D_D, np.ones((4, 3)), ok), ValueError, "x"),
    ("mondeq-vg-loss-str", lambda: mondeq.value_and_grad(M_CFG, M_D, X, "xent"), TypeError, "loss"),
    ("mondeq-vg-loss-str-value", lambda: mondeq.value_and_grad(M_CFG, M_D, X, lambda o: ("0", o)), TypeError,
     "loss"),
    ("mondeq-vg-loss-dlogits-list", lambda: mondeq.value_and_grad(M_CFG, M_D, X, lambda o: (0.0, [0.0])),
     TypeError, "loss"),
    ("mondeq-vg-loss-inf", lambda: mondeq.value_and_grad(M_CFG, M_D, X, lambda o: (INF, o)), ValueError, "loss"),
    ("mondeq-vg-direct-A-shape", lambda: mondeq.value_and_grad(M_CFG, M_D._replace(A=np.zeros(3)), X, ok),
     ValueError, "direct.A"),
    ("mondeq-vg-x-nan", lambda: mondeq.value_and_grad(M_CFG, M_D, nan_at(X), ok), ValueError, "x"),
    # --- residual, fb_alpha_bound, resolvent --------------------------------------------------------
    ("deq-residual-z-shape", lambda: deq.residual(D_CFG, D_E, X, np.ones((4, 2))), ValueError, "z"),
    ("deq-residual-x-nan", lambda: deq.residual(D_CFG, D_E, nan_at(X), DZ), ValueError, "x"),
    ("mondeq-residual-z-nan", lambda: mondeq.residual(M_CFG, M_E, X, nan_at(DZ)), ValueError, "z"),
    ("mondeq-bound-explicit", lambda: mondeq.fb_alpha_bound(M_CFG, M_E._replace(W=np.ones((2, 2)))), ValueError,
     "explicit.W"),
    ("mondeq-bound-cfg", lambda: mondeq.fb_alpha_bound(D_CFG, M_E), TypeError, "cfg"),
    ("mondeq-resolvent-U-none", lambda: mondeq.resolvent(M_CFG, M_E._replace(U=None)), ValueError, "explicit.U"),
    ("mondeq-resolvent-W-nan", lambda: mondeq.resolvent(M_CFG, M_E._replace(W=nan_at(M_E.W))), ValueError,
     "explicit.W"),
    # --- fixed_point --------------------------------------------------------------------------------
    ("fp-solve-F", lambda: fixed_point.solve(None, Z0), TypeError, "F"),
    ("fp-solve-z0-1d", lambda: fixed_point.solve(lambda z: z, np.zeros(2)), ValueError, "z0"),
    ("fp-solve-z0-nan", lambda: fixed_point.solve(lambda z: z, nan_at(Z0)), ValueError, "z0"),
    ("fp-solve-z0-list", lambda: fixed_point.solve(lambda z: z, [[0.0]]), TypeError, "z0"),
    ("fp-solve-solver", lambda: fixed_point.solve(lambda z: z, Z0, solver="newton"), ValueError, "solver"),
    ("fp-solve-tol-big", lambda: fixed_point.solve(lambda z: z, Z0, tol=1.5), ValueError, "tol"),
    ("fp-solve-tol-nan", lambda: fixed_point.solve(lambda z: z, Z0, tol=NAN), ValueError, "tol"),
    ("fp-solve-max-iter-float", lambda: fixed_point.solve(lambda z: z, Z0, max_iter=2.0), TypeError, "max_iter"),
    ("fp-solve-anderson-m-0", lambda: fixed_point.solve(lambda z: z, Z0, anderson_m=0), ValueError, "anderson_m"),
    ("fp-solve-beta-big", lambda: fixed_point.solve(lambda z: z, Z0, anderson_beta=2.0), ValueError,
     "anderson_beta"),
    ("fp-solve-scale-neg", lambda: fixed_point.solve(lambda z: z, Z0, scale=-1.0), ValueError, "scale"),
    ("fp-solve-scale-nan", lambda: fixed_point.solve(lambda z: z, Z0, scale=NAN), ValueError, "scale"),
    ("fp-solve-scale-str", lambda: fixed_point.solve(lambda z: z, Z0, scale="1"), TypeError, "scale"),
    ("fp-solve-F-shape", lambda: fixed_point.solve(lambda z: z[:, :1], Z0), ValueError, "F(z0)"),
    ("fp-solve-F-list", lambda: fixed_point.solve(lambda z: [0.0, 0.0], Z0), TypeError, "F(z0)"),
    ("fp-solve-F-float32", lambda: fixed_point.solve(lambda z: z.astype(np.float32), Z0), TypeError, "F(z0)"),
    ("fp-residual-shape", lambda: fixed_point.relative_residual(np.zeros((1, 3)), Z0), ValueError, "fz"),
    ("fp-residual-z-list", lambda: fixed_point.relative_residual(Z0, [[0.0, 0.0]]), TypeError, "z"),
    ("fp-residual-scale-inf", lambda: fixed_point.relative_residual(Z0, Z0, scale=INF), ValueError, "scale"),
    ("fp-norm-list", lambda: fixed_point.frobenius_norm([3.0, 4.0]), TypeError, "a"),
    ("fp-norm-int", lambda: fixed_point.frobenius_norm(np.ones(2, int)), TypeError, "a"),
    ("fp-raise-result", lambda: fixed_point.raise_unless_converged(None, "x", 1e-8, 10), TypeError, "result"),
    ("fp-check-stopping", lambda: fixed_point.check_stopping(1e-8, 0), ValueError, "max_iter"),
]


@pytest.mark.parametrize("call, exc, name", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_naming_the_argument(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    # the argument as a word of the message, not a substring of another name
    assert re.search(r"(?<![\w.])" + re.escape(name) + r"(?![\w(])", str(info.value)), str(info.value)


def test_every_public_name_is_covered():
    """Each public callable of the three modules has at least one case above."""
    ids = " ".join(c[0] for c in CASES)
    short = {"direct_to_explicit": "d2e", "direct_to_explicit_vjp": "vjp", "forward": "fwd", "backward": "bwd",
             "value_and_grad": "vg", "fb_alpha_bound": "bound", "relative_residual": "residual",
             "frobenius_norm": "norm", "raise_unless_converged": "raise", "check_options": "solve"}
    for prefix, module in (("deq", deq), ("mondeq", mondeq), ("fp", fixed_point)):
        for name in module.__all__:
            obj = getattr(module, name)
            if not callable(obj) or isinstance(obj, type) or name in ("Config",):
                continue
            assert f"{prefix}-{short.get(name, name.split('_')[0])}" in ids, (prefix, name)
