"""Bad inputs at the seams the model protocol added: the shared feedback-model functions, the Flax
interop module and the allocator. One line per case: the exception type and a word the message
must contain (the argument's name)."""

import numpy as np
import pytest

from r2dn_np.core import allocator
from r2dn_np.interface import flax_interop
from r2dn_np import lipschitz_rnn, r2dn, ren

R = r2dn.Config(1, 2, 3, 1, hidden=(4,))
R_FLAX = r2dn.Config(1, 2, 3, 1, hidden=(4,), output_layer="sandwich")
N = ren.Config(1, 2, 3, 1)
R_D, N_D = r2dn.init(R, 0), ren.init(N, 0)
R_E, R_MAP = r2dn.direct_to_explicit(R, R_D)
N_E, _ = ren.direct_to_explicit(N, N_D)
U = np.ones((4, 2, 1))
_, Y, CACHE = r2dn.forward(R, R_E, None, U)


def mse(Y):
    return float(np.mean(Y * Y)), 2 * Y / Y.size


CASES = [
    ("ren-cfg-to-r2dn-map", lambda: r2dn.direct_to_explicit(N, N_D), TypeError, "cfg"),
    ("r2dn-cfg-to-ren-forward", lambda: ren.forward(R, N_E, None, U), TypeError, "cfg"),
    ("dict-as-cfg", lambda: r2dn.step({"nu": 1}, R_E, np.zeros((2, 2)), np.zeros((2, 1))), TypeError, "cfg"),
    ("ren-explicit-to-r2dn", lambda: r2dn.forward(R, N_E, None, U), TypeError, "explicit"),
    ("vjp-cotangent-shape", lambda: r2dn.direct_to_explicit_vjp(R, R_MAP, R_E._replace(B2=np.zeros((2, 2)))),
     ValueError, "d_explicit.B2"),
    ("vjp-cotangent-type", lambda: r2dn.direct_to_explicit_vjp(R, R_MAP, N_E), TypeError, "d_explicit"),
    ("vjp-cotangent-dtype", lambda: r2dn.direct_to_explicit_vjp(R, R_MAP, R_E._replace(A=np.zeros((2, 2), np.int64))),
     TypeError, "d_explicit.A"),
    ("backward-cache-type", lambda: r2dn.backward(R, R_E, (U, None), Y), TypeError, "cache"),
    ("backward-dY-shape", lambda: r2dn.backward(R, R_E, CACHE, Y[:3]), ValueError, "dY"),
    ("backward-dxT-shape", lambda: r2dn.backward(R, R_E, CACHE, Y, np.zeros((2, 3))), ValueError, "dxT"),
    ("checkpoint-zero", lambda: r2dn.forward(R, R_E, None, U, checkpoint_every=0), ValueError, "checkpoint_every"),
    ("checkpoint-float", lambda: ren.value_and_grad(N, N_D, None, U, mse, checkpoint_every=2.0), TypeError,
     "checkpoint_every"),
    ("x0-none-bad-U", lambda: r2dn.forward(R, R_E, None, U[..., :0]), ValueError, "U"),
    ("loss-not-callable", lambda: ren.value_and_grad(N, N_D, None, U, "mse"), TypeError, "loss"),
    ("flax-cfg-type", lambda: flax_interop.to_flax(lipschitz_rnn.Config(1, 2, 1), R_D), TypeError, "cfg"),
    ("flax-lipschitz-r2dn", lambda: flax_interop.to_flax(r2dn.Config(1, 2, 3, 1, kind="lipschitz"), R_D),
     ValueError, "kind"),
    ("flax-not-sandwich", lambda: flax_interop.from_flax(R, {}), ValueError, "output_layer"),
    ("flax-tree-type", lambda: flax_interop.from_flax(N, [1, 2]), TypeError, "tree"),
    ("flax-tree-missing", lambda: flax_interop.from_flax(R_FLAX, {"params": {"X": np.eye(4)}}), KeyError, "p"),
    ("flax-nan-direct", lambda: flax_interop.to_flax(R_FLAX, r2dn.init(R_FLAX, 0)._replace(bx=np.full(2, np.nan))),
     ValueError, "direct.bx"),
    ("flax-qsr", lambda: flax_interop.to_flax(ren.Config(1, 2, 3, 1, kind="qsr", Q=[[-1.0]], S=[[0.0]], R=[[1.0]]),
                                              ren.init(ren.Config(1, 2, 3, 1, kind="qsr", Q=[[-1.0]], S=[[0.0]],
                                                                  R=[[1.0]]), 0)), ValueError, "kind"),
    ("flax-learned-gamma", lambda: flax_interop.from_flax(ren.Config(1, 2, 3, 1, kind="lipschitz", learn_gamma=True),
                                                          {}), ValueError, "learn_gamma"),
    ("allocator-flag", lambda: allocator.reuse_buffers(1), TypeError, "enabled"),
]


@pytest.mark.parametrize("call, exc, word", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_by_name(call, exc, word):
    with pytest.raises(exc) as info:
        call()
    assert word in str(info.value), str(info.value)
