"""Bad inputs at the public entry points of the Lipschitz RNN, the tanh RNN, the stability tools
and the generic classifier: each raises ValueError/TypeError (FloatingPointError for a diverged
training loss) with a message that names the argument, option or field. One line per case."""

import numpy as np
import pytest

from r2dn_np.training import classify, losses
from r2dn_np import lipschitz_rnn as lrnn, tanh_rnn
from r2dn_np.checks import stability

L_CFG = lrnn.Config(2, 3, 2)
L_IMEX = lrnn.Config(2, 3, 2, scheme="imex")
L_GATED = lrnn.Config(2, 3, 2, gated=True)
L_SEQ = lrnn.Config(2, 3, 2, decoder="sequence")
L_D = lrnn.init(L_CFG, seed=0)
L_E, L_MAP = lrnn.direct_to_explicit(L_CFG, L_D)
L_IMEX_E, _ = lrnn.direct_to_explicit(L_IMEX, L_D)
T_CFG = tanh_rnn.Config(2, 3, 2)
T_D = tanh_rnn.init(T_CFG, seed=0)
T, B = 4, 2
U = np.zeros((T, B, 2))
X0 = np.zeros((B, 3))
_, _, L_CACHE = lrnn.forward(L_CFG, L_E, X0, U)
_, _, T_CACHE = tanh_rnn.forward(T_CFG, T_D, X0, U)
LABELS = np.array([0, 1])
NAN = float("nan")


def nan_at(a, where=0):
    a = np.array(a, dtype=float)
    a.flat[where] = NAN
    return a


def ok_loss(Y):
    return losses.mse(Y, np.zeros_like(Y))


def lcfg(**kw):
    return lambda: lrnn.Config(**{**dict(n_in=2, n_units=3, n_out=2), **kw})


def tcfg(**kw):
    return lambda: tanh_rnn.Config(**{**dict(n_in=2, n_units=3, n_out=2), **kw})


def diverging(p, X, y):
    return np.inf, p


CASES = [
    # --- Config options: numbers that are strings, bools or not finite ---------------------------
    ("lrnn-beta-str", lcfg(beta="0.75"), TypeError, "beta"),
    ("lrnn-beta-bool", lcfg(beta=True), TypeError, "beta"),
    ("lrnn-gamma-str", lcfg(gamma="0.1"), TypeError, "gamma"),
    ("lrnn-gamma-nan", lcfg(gamma=NAN), ValueError, "gamma"),
    ("lrnn-alpha-bool", lcfg(alpha=False), TypeError, "alpha"),
    ("lrnn-alpha-inf", lcfg(alpha=float("inf")), ValueError, "alpha"),
    ("lrnn-rho-str", lcfg(rho="0.5"), TypeError, "rho"),
    ("lrnn-rho-none", lcfg(rho=None), TypeError, "rho"),
    ("lrnn-eps-str", lcfg(eps="0.1"), TypeError, "eps"),
    ("lrnn-eps-inf", lcfg(eps=float("inf")), ValueError, "eps"),
    ("lrnn-init-std-bool", lcfg(init_std=True), TypeError, "init_std"),
    ("lrnn-stable-margin-str", lcfg(stable_margin="0.1"), TypeError, "stable_margin"),
    ("lrnn-n-in-bool", lcfg(n_in=True), TypeError, "n_in"),
    ("lrnn-n-units-float", lcfg(n_units=3.0), TypeError, "n_units"),
    ("lrnn-scheme-none", lcfg(scheme=None), ValueError, "scheme"),
    ("lrnn-decoder-none", lcfg(decoder=None), ValueError, "decoder"),
    ("lrnn-gated-str", lcfg(gated="yes"), TypeError, "gated"),
    ("tanh-n-out-zero", tcfg(n_out=0), ValueError, "n_out"),
    ("tanh-init-std-str", tcfg(init_std="6"), TypeError, "init_std"),
    ("tanh-decoder", tcfg(decoder="mean"), ValueError, "decoder"),
    # --- init: the seed -----------------------------------------------------------------------
    ("lrnn-seed-neg", lambda: lrnn.init(L_CFG, seed=-1), ValueError, "seed"),
    ("lrnn-seed-float", lambda: lrnn.init(L_CFG, seed=1.5), TypeError, "seed"),
    ("lrnn-seed-none", lambda: lrnn.init(L_CFG, seed=None), TypeError, "seed"),
    ("tanh-seed-bool", lambda: tanh_rnn.init(T_CFG, seed=True), TypeError, "seed"),
    # --- direct_to_explicit: the Direct container ------------------------------------------------
    ("lrnn-direct-tuple", lambda: lrnn.direct_to_explicit(L_CFG, tuple(L_D)), TypeError, "direct"),
    ("lrnn-direct-other-model", lambda: lrnn.direct_to_explicit(L_CFG, T_D), TypeError, "direct"),
    ("lrnn-direct-M-shape", lambda: lrnn.direct_to_explicit(L_CFG, L_D._replace(M=np.zeros((3, 2)))), ValueError, "direct.M"),
    ("lrnn-direct-by-broadcast", lambda: lrnn.direct_to_explicit(L_CFG, L_D._replace(by=np.zeros((1, 2)))), ValueError, "direct.by"),
    ("lrnn-direct-C-nan", lambda: lrnn.direct_to_explicit(L_CFG, L_D._replace(C=nan_at(L_D.C))), ValueError, "direct.C"),
    ("lrnn-direct-D-int", lambda: lrnn.direct_to_explicit(L_CFG, L_D._replace(D=np.zeros((2, 3), int))), TypeError, "direct.D"),
    ("lrnn-direct-b-f32", lambda: lrnn.direct_to_explicit(L_CFG, L_D._replace(b=np.zeros(3, np.float32))), TypeError, "direct.b"),
    ("lrnn-direct-U-list", lambda: lrnn.direct_to_explicit(L_CFG, L_D._replace(U=[[0.0, 0.0]] * 3)), TypeError, "direct.U"),
    ("lrnn-direct-M-none", lambda: lrnn.direct_to_explicit(L_CFG, L_D._replace(M=None)), ValueError, "direct.M"),
    ("lrnn-direct-Ug-ungated", lambda: lrnn.direct_to_explicit(L_CFG, L_D._replace(Ug=np.zeros((3, 2)))), ValueError, "direct.Ug"),
    ("lrnn-direct-bg-missing", lambda: lrnn.direct_to_explicit(L_GATED, L_D._replace(Ug=np.zeros((3, 2)))), ValueError, "direct.bg"),
    ("tanh-direct-W-shape", lambda: tanh_rnn.direct_to_explicit(T_CFG, T_D._replace(W=np.zeros((3, 2)))), ValueError, "direct.W"),
    ("tanh-direct-by-inf", lambda: tanh_rnn.direct_to_explicit(T_CFG, T_D._replace(by=np.array([0.0, np.inf]))), ValueError, "direct.by"),
    ("tanh-direct-other-model", lambda: tanh_rnn.direct_to_explicit(T_CFG, L_D), TypeError, "direct"),
    # --- direct_to_explicit_vjp: the cotangent container ----------------------------------------
    ("lrnn-vjp-tuple", lambda: lrnn.direct_to_explicit_vjp(L_CFG, L_MAP, tuple(L_E)), TypeError, "d_explicit"),
    ("lrnn-vjp-F-shape", lambda: lrnn.direct_to_explicit_vjp(L_CFG, L_MAP, L_E._replace(F=np.zeros((2, 2)))), ValueError, "d_explicit.F"),
    ("lrnn-vjp-G-euler", lambda: lrnn.direct_to_explicit_vjp(L_CFG, L_MAP, L_E._replace(G=np.zeros((3, 3)))), ValueError, "d_explicit.G"),
    ("tanh-vjp-D-shape", lambda: tanh_rnn.direct_to_explicit_vjp(T_CFG, T_D, T_D._replace(D=np.zeros(3))), ValueError, "d_explicit.D"),
    # --- forward / step / backward: the Explicit container and the sequences ---------------------
    ("lrnn-explicit-F-nan", lambda: lrnn.forward(L_CFG, L_E._replace(F=nan_at(L_E.F)), X0, U), ValueError, "explicit.F"),
    ("lrnn-explicit-G-missing", lambda: lrnn.forward(L_IMEX, L_IMEX_E._replace(G=None), X0, U), ValueError, "explicit.G"),
    ("lrnn-explicit-W-shape", lambda: lrnn.forward(L_CFG, L_E._replace(W=np.zeros((3, 2))), X0, U), ValueError, "explicit.W"),
    ("lrnn-explicit-direct", lambda: lrnn.forward(L_CFG, L_D, X0, U), TypeError, "explicit"),
    ("lrnn-U-rank", lambda: lrnn.forward(L_CFG, L_E, X0, np.zeros((T, 2))), ValueError, "U must have shape"),
    ("lrnn-U-nu", lambda: lrnn.forward(L_CFG, L_E, X0, np.zeros((T, B, 3))), ValueError, "n_in=2"),
    ("lrnn-U-nan", lambda: lrnn.forward(L_CFG, L_E, X0, nan_at(U)), ValueError, "U contains NaN"),
    ("lrnn-x0-shape", lambda: lrnn.forward(L_CFG, L_E, np.zeros((B + 1, 3)), U), ValueError, "x0 must have shape"),
    ("lrnn-x0-f32", lambda: lrnn.forward(L_CFG, L_E, np.zeros((B, 3), np.float32), U), TypeError, "x0"),
    ("tanh-U-empty", lambda: tanh_rnn.forward(T_CFG, T_D, X0, np.zeros((0, B, 2))), ValueError, "U must have T >= 1"),
    ("tanh-explicit-b-shape", lambda: tanh_rnn.forward(T_CFG, T_D._replace(b=np.zeros(2)), X0, U), ValueError, "explicit.b"),
    ("lrnn-step-x-shape", lambda: lrnn.step(L_CFG, L_E, np.zeros((B, 2)), np.zeros((B, 2))), ValueError, "x must have shape"),
    ("lrnn-step-u-batch", lambda: lrnn.step(L_CFG, L_E, X0, np.zeros((B + 1, 2))), ValueError, "u must have shape"),
    ("tanh-step-u-nan", lambda: tanh_rnn.step(T_CFG, T_D, X0, nan_at(np.zeros((B, 2)))), ValueError, "u contains NaN"),
    ("lrnn-dY-last-shape", lambda: lrnn.backward(L_CFG, L_E, L_CACHE, np.zeros((B, 2))), ValueError, "dY must have shape"),
    ("lrnn-dY-seq-shape", lambda: lrnn.backward(L_SEQ, L_E, L_CACHE, np.zeros((1, B, 2))), ValueError, "T_out=4"),
    ("lrnn-dxT-shape", lambda: lrnn.backward(L_CFG, L_E, L_CACHE, np.zeros((1, B, 2)), np.zeros((B, 2))), ValueError, "dxT must have shape"),
    ("tanh-dY-nan", lambda: tanh_rnn.backward(T_CFG, T_D, T_CACHE, nan_at(np.zeros((1, B, 2)))), ValueError, "dY contains NaN"),
    ("tanh-explicit-backward", lambda: tanh_rnn.backward(T_CFG, T_D._replace(W=None), T_CACHE, np.zeros((1, B, 2))), ValueError, "explicit.W"),
    # --- value_and_grad: the loss callable --------------------------------------------------------
    ("lrnn-loss-not-callable", lambda: lrnn.value_and_grad(L_CFG, L_D, X0, U, "mse"), TypeError, "loss"),
    ("lrnn-loss-not-pair", lambda: lrnn.value_and_grad(L_CFG, L_D, X0, U, lambda Y: 0.0), TypeError, "loss"),
    ("lrnn-loss-dY-shape", lambda: lrnn.value_and_grad(L_CFG, L_D, X0, U, lambda Y: (0.0, Y[0])), ValueError, "dY"),
    ("tanh-loss-nan", lambda: tanh_rnn.value_and_grad(T_CFG, T_D, X0, U, lambda Y: (NAN, Y)), ValueError, "loss"),
    ("tanh-vag-direct", lambda: tanh_rnn.value_and_grad(T_CFG, T_D._replace(U=None), X0, U, ok_loss), ValueError, "direct.U"),
    # --- classify: the model, the labels, a diverged loss -------------------------------------------
    ("classify-labels-float", lambda: classify.value_and_grad(lrnn, L_CFG, L_D, U, np.zeros(B)), TypeError, "labels"),
    ("classify-labels-shape", lambda: classify.value_and_grad(lrnn, L_CFG, L_D, U, np.zeros((B, 1), int)), ValueError, "labels"),
    ("classify-labels-range", lambda: classify.value_and_grad(lrnn, L_CFG, L_D, U, np.array([0, 2])), ValueError, "labels"),
    ("classify-labels-neg", lambda: classify.value_and_grad(tanh_rnn, T_CFG, T_D, U, np.array([-1, 0])), ValueError, "labels"),
    ("classify-labels-list", lambda: classify.value_and_grad(tanh_rnn, T_CFG, T_D, U, [0, 1]), TypeError, "labels"),
    ("classify-U-shape", lambda: classify.predict(tanh_rnn, T_CFG, T_D, np.zeros((T, 2))), ValueError, "U"),
    ("classify-module", lambda: classify.predict(np, T_CFG, T_D, U), TypeError, "module"),
    ("classify-train-diverges", lambda: classify.train(diverging, None, np.zeros(2), (np.zeros((4, 2)), np.zeros(4, int)),
                                                     (np.zeros((4, 2)), np.zeros(4, int)), epochs=1, batch_size=2, lr=0.1),
     FloatingPointError, "epoch 1, batch 1"),
    # --- stability tools ---------------------------------------------------------------------------
    ("stab-beta-str", lambda: stability.eigenvalue_bounds(np.eye(2), "0.7", 0.0), TypeError, "beta"),
    ("stab-gamma-bool", lambda: stability.eigenvalue_bounds(np.eye(2), 0.7, True), TypeError, "gamma"),
    ("stab-M-nan", lambda: stability.eigenvalue_bounds(nan_at(np.eye(2)), 0.7, 0.0), ValueError, "M contains NaN"),
    ("stab-rho-nan", lambda: stability.max_stable_step(-np.eye(2), rho=NAN), ValueError, "rho"),
    ("stab-alpha-str", lambda: stability.max_stable_step(-np.eye(2), alpha="1"), TypeError, "alpha"),
    ("stab-scheme", lambda: stability.linear_update_matrix(-np.eye(2), 0.1, scheme="rk5"), ValueError, "scheme"),
    ("stab-eps-zero", lambda: stability.linear_update_matrix(-np.eye(2), 0.0), ValueError, "eps"),
    ("stab-A-list", lambda: stability.lyapunov_certificate([[-1.0]]), TypeError, "A must be an array"),
    ("stab-Q-shape", lambda: stability.lyapunov_certificate(-np.eye(2), np.eye(3)), ValueError, "Q must have the shape"),
]


@pytest.mark.parametrize("call, exc, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused(call, exc, text):
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value), str(info.value)


def test_valid_spellings_are_accepted():
    """Integer and NumPy numbers for the float options, integer-like seeds, None for x0."""
    cfg = lrnn.Config(2, 3, 2, beta=1, gamma=np.float64(0.1), rho=np.float32(0.5), alpha=2, scheme="imex")
    assert (cfg.beta, cfg.alpha, cfg.nu, cfg.nx, cfg.ny) == (1.0, 2.0, 2, 3, 2)
    direct = lrnn.init(cfg, seed=np.int64(3))
    explicit, _ = lrnn.direct_to_explicit(cfg, direct)
    assert lrnn.forward(cfg, explicit, None, U)[1].shape == (1, B, 2)
    assert tanh_rnn.Config(2, 3, 2).nx == 3
