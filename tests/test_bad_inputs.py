"""Bad inputs at every public entry point: each raises ValueError/TypeError at the boundary,
with a message that names the argument or field. One line per case; Hypothesis strategies at
the end generate malformed arrays (wrong rank, a size off by one, NaN/Inf, wrong dtype) for
the core entry points."""

import math
import os
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from r2dn_np.checks import certificates, verify
from r2dn_np.training import classify, linear, losses
from r2dn_np import cli, deq, lbdn, mondeq, r2dn, ren, tanh_rnn
from r2dn_np.interface import flax_interop, io
from r2dn_np.data.sequences import Record

R_CFG = r2dn.Config(nu=2, nx=3, nv=4, ny=1, hidden=(5,))
R_LIP = r2dn.Config(nu=2, nx=3, nv=4, ny=1, hidden=(5,), kind="lipschitz", d22="free")
R_FLAX = r2dn.Config(nu=2, nx=3, nv=4, ny=1, hidden=(5,), output_layer="sandwich")
N_CFG = ren.Config(nu=2, nx=3, nv=4, ny=1)
L_CFG = lbdn.Config(2, 3, hidden=(4,))
T, B = 6, 2

R_D = r2dn.init(R_CFG, seed=0)
R_E, R_CACHE = r2dn.direct_to_explicit(R_CFG, R_D)
N_D = ren.init(N_CFG, seed=0)
N_E, N_CACHE = ren.direct_to_explicit(N_CFG, N_D)
L_D = lbdn.init(L_CFG, seed=0)
L_E, _ = lbdn.direct_to_explicit(L_CFG, L_D)
D_CFG = deq.Config(2, 3)
D_D = deq.init(D_CFG, seed=0)
D_E, _ = deq.direct_to_explicit(D_CFG, D_D)
M_CFG = mondeq.Config(2, 3, 2)
M_D = mondeq.init(M_CFG, seed=0)
M_E, _ = mondeq.direct_to_explicit(M_CFG, M_D)
U = np.zeros((T, B, 2))
X0 = np.zeros((B, 3))
Y_OK = np.zeros((T, B, 1))
NAN = float("nan")


def ok_loss(Y):
    return losses.mse(Y, np.zeros_like(Y))


def nan_at(a, where=0):
    a = np.array(a, dtype=float)
    a.flat[where] = NAN
    return a


def quiet(call):
    """Run ``call`` with NumPy's overflow warnings off (pytest turns warnings into errors)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return call()


def set_layer(direct, k, **fields):
    layers = list(direct.phi.layers)
    layers[k] = layers[k]._replace(**fields)
    return direct._replace(phi=direct.phi._replace(layers=tuple(layers)))


def flax_tree(**changes):
    params = flax_interop.to_flax(R_FLAX, r2dn.init(R_FLAX, seed=0))["params"]
    params.update(changes)
    return {"params": params}


def vg(direct=R_D, x0=X0, U_=U, loss=ok_loss, cfg=R_CFG):
    return lambda: r2dn.value_and_grad(cfg, direct, x0, U_, loss)


# (id, call, exception, text the message must contain)
CASES = [
    # --- configs ---------------------------------------------------------------------------
    ("r2dn-hidden-float", lambda: r2dn.Config(1, 2, 3, 1, hidden=(2.5,)), TypeError, "hidden[0]"),
    ("r2dn-hidden-str", lambda: r2dn.Config(1, 2, 3, 1, hidden="16"), TypeError, "hidden"),
    ("r2dn-hidden-bool", lambda: r2dn.Config(1, 2, 3, 1, hidden=(True,)), TypeError, "hidden[0]"),
    ("r2dn-hidden-zero", lambda: r2dn.Config(1, 2, 3, 1, hidden=(4, 0)), ValueError, "hidden[1]"),
    ("r2dn-hidden-int", lambda: r2dn.Config(1, 2, 3, 1, hidden=4), TypeError, "hidden"),
    ("r2dn-hidden-set", lambda: r2dn.Config(1, 2, 3, 1, hidden={4}), TypeError, "hidden"),
    ("r2dn-nx-float", lambda: r2dn.Config(1, 2.5, 3, 1), TypeError, "nx"),
    ("r2dn-nx-true", lambda: r2dn.Config(1, True, 3, 1), TypeError, "nx"),
    ("r2dn-nv-str", lambda: r2dn.Config(1, 2, "16", 1), TypeError, "nv"),
    ("r2dn-ny-zero", lambda: r2dn.Config(1, 2, 3, 0), ValueError, "ny"),
    ("r2dn-gamma-str", lambda: r2dn.Config(1, 2, 3, 1, gamma="2"), TypeError, "gamma"),
    ("r2dn-gamma-bool", lambda: r2dn.Config(1, 2, 3, 1, gamma=True), TypeError, "gamma"),
    ("r2dn-gamma-nan", lambda: r2dn.Config(1, 2, 3, 1, gamma=NAN), ValueError, "gamma"),
    ("r2dn-gamma-inf", lambda: r2dn.Config(1, 2, 3, 1, gamma=math.inf), ValueError, "gamma"),
    ("r2dn-gamma-neg", lambda: r2dn.Config(1, 2, 3, 1, gamma=-1.0), ValueError, "gamma"),
    ("r2dn-eps-zero", lambda: r2dn.Config(1, 2, 3, 1, eps=0.0), ValueError, "eps"),
    ("r2dn-kind", lambda: r2dn.Config(1, 2, 3, 1, kind="stable"), ValueError, "kind"),
    ("r2dn-d22", lambda: r2dn.Config(1, 2, 3, 1, d22=0), ValueError, "d22"),
    ("r2dn-polar-int", lambda: r2dn.Config(1, 2, 3, 1, polar=1), TypeError, "polar"),
    ("r2dn-activation", lambda: r2dn.Config(1, 2, 3, 1, activation="gelu"), ValueError, "activation"),
    ("ren-nx-float", lambda: ren.Config(1, 2.0, 3, 1), TypeError, "nx"),
    ("ren-abar-big", lambda: ren.Config(1, 2, 3, 1, abar=1.5), ValueError, "abar"),
    ("ren-abar-str", lambda: ren.Config(1, 2, 3, 1, abar="0.9"), TypeError, "abar"),
    ("ren-gamma-inf", lambda: ren.Config(1, 2, 3, 1, gamma=math.inf), ValueError, "gamma"),
    ("lbdn-hidden-float", lambda: lbdn.Config(2, 3, hidden=(4.0,)), TypeError, "hidden[0]"),
    ("lbdn-hidden-str", lambda: lbdn.Config(2, 3, hidden="44"), TypeError, "hidden"),
    ("lbdn-gamma-str", lambda: lbdn.Config(2, 3, gamma="1"), TypeError, "gamma"),
    ("lbdn-learn-gamma", lambda: lbdn.Config(2, 3, learn_gamma="yes"), TypeError, "learn_gamma"),
    ("lbdn-eps-nan", lambda: lbdn.Config(2, 3, eps_n=NAN), ValueError, "eps_n"),
    ("deq-tol-str", lambda: deq.Config(2, 3, tol="1e-8"), TypeError, "tol"),
    ("deq-max-iter-float", lambda: deq.Config(2, 3, max_iter=10.0), TypeError, "max_iter"),
    ("mondeq-m-nan", lambda: mondeq.Config(2, 3, 2, m=NAN), ValueError, "m"),
    ("config-from-dict-extra", lambda: r2dn.Config.from_dict({"nu": 1, "nx": 2, "nv": 3, "ny": 1, "x": 1}),
     TypeError, "x"),
    ("config-from-dict-list", lambda: r2dn.Config.from_dict([1, 2, 3, 1]), TypeError, "dict"),
    # --- seeds -----------------------------------------------------------------------------
    ("r2dn-seed-neg", lambda: r2dn.init(R_CFG, seed=-1), ValueError, "seed"),
    ("r2dn-seed-float", lambda: r2dn.init(R_CFG, seed=1.5), TypeError, "seed"),
    ("r2dn-seed-none", lambda: r2dn.init(R_CFG, seed=None), TypeError, "seed"),
    ("ren-seed-neg", lambda: ren.init(N_CFG, seed=-3), ValueError, "seed"),
    ("lbdn-seed-str", lambda: lbdn.init(L_CFG, seed="0"), TypeError, "seed"),
    ("deq-seed-neg", lambda: deq.init(deq.Config(2, 3), seed=-1), ValueError, "seed"),
    ("mondeq-seed-bool", lambda: mondeq.init(mondeq.Config(2, 3, 2), seed=True), TypeError, "seed"),
    ("tanh-rnn-seed-neg", lambda: tanh_rnn.init(tanh_rnn.Config(1, 3, 2), seed=-1), ValueError, "seed"),
    ("verify-seed-neg", lambda: verify.perturbed(r2dn, R_CFG, -1), ValueError, "seed"),
    ("classify-seed-neg", lambda: classify.train(None, None, None, (np.zeros((4, 2)), np.zeros(4, int)),
                                                 (np.zeros((4, 2)), np.zeros(4, int)), epochs=1, batch_size=2,
                                                 lr=0.1, seed=-1), ValueError, "seed"),
    # --- parameter containers: r2dn --------------------------------------------------------
    ("r2dn-bias-shape-1", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(bx=np.zeros(1))), ValueError,
     "direct.bx"),
    ("r2dn-bias-scalar", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(bv=np.float64(0.0))), ValueError,
     "direct.bv"),
    ("r2dn-bias-python-float", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(by=0.0)), TypeError,
     "direct.by"),
    ("r2dn-X-transposed-shape", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(B1=R_D.B1.T)), ValueError,
     "direct.B1"),
    ("r2dn-p-shape-1", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(p=np.ones(1))), ValueError,
     "direct.p"),
    ("r2dn-missing-D12", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(D12=None)), ValueError,
     "direct.D12"),
    ("r2dn-extra-U12", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(U12=np.zeros((4, 2)))), ValueError,
     "direct.U12"),
    ("r2dn-contracting-for-lipschitz", lambda: r2dn.direct_to_explicit(R_LIP, R_D), ValueError, "direct."),
    ("r2dn-ren-params", lambda: r2dn.direct_to_explicit(R_CFG, N_D), TypeError, "direct"),
    ("r2dn-dict-params", lambda: r2dn.direct_to_explicit(R_CFG, R_D._asdict()), TypeError, "direct"),
    ("r2dn-nan-X", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(X=nan_at(R_D.X, 5))), ValueError,
     "direct.X"),
    ("r2dn-inf-bx", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(bx=R_D.bx + np.inf)), ValueError,
     "direct.bx"),
    ("r2dn-plus-minus-inf", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(Y=np.array(R_D.Y) * np.inf)),
     ValueError, "direct.Y"),
    ("r2dn-sum-overflows", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(B1=np.full((3, 4), 1e308))), None,
     None),
    ("r2dn-nan-p", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(p=np.asarray(NAN))), ValueError,
     "direct.p"),
    ("r2dn-nan-phi", lambda: r2dn.direct_to_explicit(R_CFG, set_layer(R_D, 0, XY=nan_at(R_D.phi.layers[0].XY))),
     ValueError, "direct.phi.layers[0].XY"),
    ("r2dn-phi-d-shape", lambda: r2dn.direct_to_explicit(R_CFG, set_layer(R_D, 0, d=np.zeros(1))), ValueError,
     "direct.phi.layers[0].d"),
    ("r2dn-phi-layers-short", lambda: r2dn.direct_to_explicit(
        R_CFG, R_D._replace(phi=R_D.phi._replace(layers=R_D.phi.layers[:1]))), ValueError, "direct.phi.layers"),
    ("r2dn-dtype-mixed", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(C2=R_D.C2.astype(np.float32))),
     TypeError, "direct.C2"),
    ("r2dn-dtype-int", lambda: r2dn.direct_to_explicit(R_CFG, R_D._replace(bx=np.zeros(3, int))), TypeError,
     "direct.bx"),
    ("r2dn-vg-nan-X", vg(direct=R_D._replace(X=nan_at(R_D.X))), ValueError, "direct.X"),
    ("r2dn-forward-explicit-nan", lambda: r2dn.forward(R_CFG, R_E._replace(A=nan_at(R_E.A)), X0, U), ValueError,
     "explicit.A"),
    ("r2dn-forward-bias-broadcast", lambda: r2dn.forward(R_CFG, R_E._replace(bx=np.zeros(1)), X0, U), ValueError,
     "explicit.bx"),
    ("r2dn-forward-ren-explicit", lambda: r2dn.forward(R_CFG, N_E, X0, U), TypeError, "explicit"),
    ("r2dn-forward-direct", lambda: r2dn.forward(R_CFG, R_D, X0, U), TypeError, "explicit"),
    ("r2dn-backward-explicit", lambda: r2dn.backward(R_CFG, R_E._replace(D22=None),
                                                     r2dn.forward(R_CFG, R_E, X0, U)[2], Y_OK), ValueError,
     "explicit.D22"),
    ("r2dn-step-explicit", lambda: r2dn.step(R_CFG, R_E._replace(by=np.zeros(2)), X0, U[0]), ValueError,
     "explicit.by"),
    # --- sequences ---------------------------------------------------------------------------
    ("r2dn-U-rank", vg(U_=np.zeros((T, 2))), ValueError, "U"),
    ("r2dn-U-nu", vg(U_=np.zeros((T, B, 3))), ValueError, "U"),
    ("r2dn-U-nan", vg(U_=nan_at(U, 3)), ValueError, "U"),
    ("r2dn-U-int", vg(U_=np.zeros((T, B, 2), int)), TypeError, "U"),
    ("r2dn-U-float32", vg(U_=np.zeros((T, B, 2), np.float32)), TypeError, "U"),
    ("r2dn-U-empty", vg(U_=np.zeros((0, B, 2))), ValueError, "U"),
    ("r2dn-U-list", vg(U_=U.tolist()), TypeError, "U"),
    ("r2dn-x0-B", vg(x0=np.zeros((B + 1, 3))), ValueError, "x0"),
    ("r2dn-x0-inf", vg(x0=X0 + np.inf), ValueError, "x0"),
    ("r2dn-checkpoint-zero", lambda: r2dn.forward(R_CFG, R_E, X0, U, checkpoint_every=0), ValueError,
     "checkpoint_every"),
    # --- what a user's loss returns ----------------------------------------------------------
    ("loss-not-callable", vg(loss=0.0), TypeError, "loss"),
    ("loss-bare-scalar", vg(loss=lambda Y: 0.0), TypeError, "loss"),
    ("loss-triple", vg(loss=lambda Y: (0.0, Y, Y)), TypeError, "loss"),
    ("loss-dY-wrong-shape", vg(loss=lambda Y: (0.0, Y[..., 0])), ValueError, "dY"),
    ("loss-dY-broadcastable", vg(loss=lambda Y: (0.0, Y[:1])), ValueError, "dY"),
    ("loss-dY-nan", vg(loss=lambda Y: (0.0, Y * NAN)), ValueError, "dY"),
    ("loss-dY-float32", vg(loss=lambda Y: (0.0, Y.astype(np.float32))), TypeError, "dY"),
    ("loss-value-nan", vg(loss=lambda Y: (NAN, Y)), ValueError, "loss"),
    ("loss-value-vector", vg(loss=lambda Y: (Y, Y)), TypeError, "loss"),
    ("model-output-overflow", lambda: quiet(vg(U_=np.full((T, B, 2), 1e308))), ValueError, "model output Y"),
    ("ren-loss-dY-shape", lambda: ren.value_and_grad(N_CFG, N_D, X0, U, lambda Y: (0.0, Y[0])), ValueError, "dY"),
    # --- parameter containers: ren, lbdn ----------------------------------------------------
    ("ren-bias-shape-1", lambda: ren.direct_to_explicit(N_CFG, N_D._replace(bx=np.zeros(1))), ValueError,
     "direct.bx"),
    ("ren-nan-Y1", lambda: ren.direct_to_explicit(N_CFG, N_D._replace(Y1=nan_at(N_D.Y1))), ValueError,
     "direct.Y1"),
    ("ren-r2dn-params", lambda: ren.direct_to_explicit(N_CFG, R_D), TypeError, "direct"),
    ("ren-forward-D11-shape", lambda: ren.forward(N_CFG, N_E._replace(phi=N_E.phi._replace(D11=np.zeros((3, 3)))),
                                                  X0, U), ValueError, "explicit.phi.D11"),
    ("ren-vg-nan-bv", lambda: ren.value_and_grad(N_CFG, N_D._replace(bv=N_D.bv + NAN), X0, U, ok_loss),
     ValueError, "direct.bv"),
    ("lbdn-bias-shape-1", lambda: lbdn.direct_to_explicit(L_CFG, L_D._replace(
        layers=(L_D.layers[0]._replace(b=np.zeros(1)),) + L_D.layers[1:])), ValueError, "direct.layers[0].b"),
    ("lbdn-extra-log-gamma", lambda: lbdn.direct_to_explicit(L_CFG, L_D._replace(log_gamma=np.asarray(0.0))),
     ValueError, "direct.log_gamma"),
    ("lbdn-forward-W-nan", lambda: lbdn.forward(L_CFG, L_E._replace(W=(nan_at(L_E.W[0]),) + L_E.W[1:]),
                                                np.zeros((4, 2))), ValueError, "explicit.W[0]"),
    ("lbdn-forward-h-shape", lambda: lbdn.forward(L_CFG, L_E, np.zeros((4, 3))), ValueError, "h"),
    ("lbdn-forward-h-nan", lambda: lbdn.forward(L_CFG, L_E, nan_at(np.zeros((4, 2)))), ValueError, "h"),
    ("lbdn-backward-dout", lambda: lbdn.backward(L_CFG, L_E, lbdn.forward(L_CFG, L_E, np.zeros((4, 2)))[1],
                                                 np.zeros((4, 2))), ValueError, "dout"),
    ("deq-bias-shape-1", lambda: deq.direct_to_explicit(D_CFG, D_D._replace(b=np.zeros(1))), ValueError,
     "direct.b"),
    ("deq-forward-nan-W", lambda: deq.forward(D_CFG, D_E._replace(W=nan_at(D_E.W)), np.zeros((2, 2))),
     ValueError, "explicit.W"),
    ("deq-forward-mondeq-explicit", lambda: deq.forward(D_CFG, M_E, np.zeros((2, 2))), TypeError, "explicit"),
    ("mondeq-nan-A", lambda: mondeq.direct_to_explicit(M_CFG, M_D._replace(A=nan_at(M_D.A))), ValueError,
     "direct.A"),
    ("mondeq-forward-c-shape", lambda: mondeq.forward(M_CFG, M_E._replace(c=np.zeros(1)), np.zeros((2, 2))),
     ValueError, "explicit.c"),
    # --- losses ------------------------------------------------------------------------------
    ("mse-broadcast", lambda: losses.mse(np.zeros((T, B, 1)), np.zeros((T, B))), ValueError, "target"),
    ("mse-target-scalar", lambda: losses.mse(np.zeros((T, B, 1)), 0.0), TypeError, "target"),
    ("mse-pred-list", lambda: losses.mse([0.0], np.zeros(1)), TypeError, "pred"),
    ("mse-target-nan", lambda: losses.mse(np.zeros(3), nan_at(np.zeros(3))), ValueError, "target"),
    ("mse-target-dtype", lambda: losses.mse(np.zeros(3), np.zeros(3, np.float32)), TypeError, "target"),
    ("sum-squares-broadcast", lambda: losses.sum_squares(np.zeros((3, 1)), np.zeros(3)), ValueError, "target"),
    ("xent-label-eq-C", lambda: losses.softmax_cross_entropy(np.zeros((3, 4)), np.array([0, 4, 1])), ValueError,
     "labels"),
    ("xent-label-neg", lambda: losses.softmax_cross_entropy(np.zeros((3, 4)), np.array([0, -1, 1])), ValueError,
     "labels"),
    ("xent-label-float", lambda: losses.softmax_cross_entropy(np.zeros((3, 4)), np.array([0.0, 1, 1])), TypeError,
     "labels"),
    ("xent-label-shape", lambda: losses.softmax_cross_entropy(np.zeros((3, 4)), np.array([[0, 1, 1]])),
     ValueError, "labels"),
    ("xent-logits-rank", lambda: losses.softmax_cross_entropy(np.zeros(4), np.array([0])), ValueError, "logits"),
    ("accuracy-label-big", lambda: losses.accuracy(np.zeros((2, 3)), np.array([0, 3])), ValueError, "labels"),
    # --- io.save / from_flax / certify --------------------------------------------------------
    ("save-other-model", lambda: io.save(os.devnull, R_CFG, N_D), TypeError, "params"),
    ("save-other-config", lambda: io.save(os.devnull, R_LIP, R_D), ValueError, "params."),
    ("save-nan", lambda: io.save(os.devnull, R_CFG, R_D._replace(bx=R_D.bx + NAN)), ValueError, "params.bx"),
    ("save-float16", lambda: io.save(os.devnull, L_CFG, L_D._replace(layers=tuple(
        layer._replace(**{k: None if v is None else v.astype(np.float16) for k, v in layer._asdict().items()})
        for layer in L_D.layers))), TypeError, "float32 or float64"),
    ("save-no-config", lambda: io.save(os.devnull, {"nu": 1}, R_D), TypeError, "config"),
    ("save-metadata-list", lambda: io.save(os.devnull, R_CFG, R_D, metadata=[1]), TypeError, "metadata"),
    ("from-flax-nan", lambda: flax_interop.from_flax(R_FLAX, flax_tree(X=nan_at(np.eye(6)))), ValueError, "X"),
    ("from-flax-shape", lambda: flax_interop.from_flax(R_FLAX, flax_tree(bx=np.zeros(1))), ValueError, "bx"),
    ("ren-from-flax-inf", lambda: flax_interop.from_flax(N_CFG, {k: v + np.inf if k == "bx" else v for k, v in
                                                        flax_interop.to_flax(N_CFG, N_D)["params"].items()}), ValueError, "bx"),
    ("certify-nan-explicit", lambda: certificates.certify(R_CFG, R_E._replace(A=nan_at(R_E.A)), R_CACHE),
     ValueError, "explicit.A"),
    ("certify-nan-cache", lambda: certificates.certify(R_CFG, R_E, R_CACHE._replace(H=nan_at(R_CACHE.H))),
     ValueError, "cache.H"),
    ("certify-ren-nan", lambda: certificates.certify(N_CFG, N_E, N_CACHE._replace(E=nan_at(N_CACHE.E))),
     ValueError, "cache.E"),
    ("certify-lbdn-config", lambda: certificates.certify(L_CFG, L_E, R_CACHE), TypeError, "cfg"),
    ("certify-tol-nan", lambda: certificates.certify(R_CFG, R_E, R_CACHE, tol=NAN), ValueError, "tol"),
    ("linear-val-shorter-than-washout", lambda: linear.fit([Record(np.ones((300, 1)), np.ones((300, 1)))],
                                                          [Record(np.ones((50, 1)), np.ones((50, 1)))],
                                                          max_order=2, washout=100), ValueError, "val[0]"),
    # --- classify.train ------------------------------------------------------------------------
    ("classify-batch-axis", lambda: classify.train(None, None, None, (np.zeros((4, 2)), np.zeros(4, int)),
                                                   (np.zeros((4, 2)), np.zeros(4, int)), epochs=1, batch_size=2,
                                                   lr=0.1, batch_axis=2), ValueError, "batch_axis"),
    ("classify-labels-count", lambda: classify.train(None, None, None, (np.zeros((4, 2)), np.zeros(3, int)),
                                                     (np.zeros((4, 2)), np.zeros(4, int)), epochs=1, batch_size=2,
                                                     lr=0.1), ValueError, "train_set"),
    ("classify-X-nan", lambda: classify.train(None, None, None, (nan_at(np.zeros((4, 2))), np.zeros(4, int)),
                                              (np.zeros((4, 2)), np.zeros(4, int)), epochs=1, batch_size=2,
                                              lr=0.1), ValueError, "train_set"),
]


@pytest.mark.parametrize("call, exc, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused(call, exc, text):
    if exc is None:  # an edge case that is valid: it must go through the checks
        try:
            quiet(call)
        except (ValueError, TypeError) as error:
            assert "contains NaN" not in str(error), error
        return
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value), str(info.value)


def test_save_refuses_before_touching_the_file(tmp_path):
    path = tmp_path / "model.npz"
    io.save(path, R_CFG, R_D)
    before = path.read_bytes()
    for bad in (N_D, R_D._replace(X=nan_at(R_D.X))):
        with pytest.raises((TypeError, ValueError)):
            io.save(path, R_CFG, bad)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


# --- valid inputs in other spellings give the right answer -----------------------------------

def test_valid_spellings_are_accepted():
    assert r2dn.Config(1, 2, 3, 1, hidden=[4, 5]).hidden == (4, 5)
    assert r2dn.Config(np.int64(1), 2, 3, 1, hidden=np.array([4])).hidden == (4,)
    assert lbdn.Config(2, 3, hidden=range(4, 6)).hidden == (4, 5)
    assert r2dn.Config(1, 2, 3, 1, gamma=np.float32(2.0)).gamma == 2.0
    assert r2dn.init(R_CFG, seed=np.uint32(3)).X.shape == (6, 6)
    value, grads = r2dn.value_and_grad(R_CFG, R_D, X0, U, lambda Y: (float(np.sum(Y * Y)), 2 * Y))
    assert np.isfinite(value) and grads.U.shape == U.shape


# --- the command line: one line naming the flag, no traceback --------------------------------

@pytest.mark.parametrize("argv, flag", [
    (["verify", "--seed", "-1"], "--seed"),
    (["verify", "--gamma", "nan"], "--gamma"),
    (["verify", "--gamma", "-2"], "--gamma"),
    (["sysid", "--seed", "-5"], "--seed"),
    (["sysid", "--epochs", "0"], "--epochs"),
    (["sysid", "--gamma", "inf"], "--gamma"),
    (["sysid", "--out", "{file}"], "--out"),
    (["simulate", "--params", "{missing}", "--input", "{file}", "--out", "{tmp}/y.csv"], "--params"),
    (["simulate", "--params", "{file}", "--input", "{file}", "--out", "{tmp}/y.txt"], "--out"),
], ids=["verify-seed", "verify-gamma-nan", "verify-gamma-neg", "sysid-seed", "sysid-epochs", "sysid-gamma",
        "sysid-out-file", "simulate-params-missing", "simulate-out-ext"])
def test_cli_user_error_is_one_line_naming_the_flag(argv, flag, tmp_path, capsys):
    existing = tmp_path / "a_file.txt"
    existing.write_text("1\n")
    subs = dict(file=str(existing), missing=str(tmp_path / "nope.npz"), tmp=str(tmp_path))
    assert cli.main([a.format(**subs) for a in argv]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("r2dn ") and flag in err, err


def test_cli_os_error_names_the_flag(tmp_path, capsys):
    args = cli._parser().parse_args(["sysid", "--out", str(tmp_path / "runs")])
    exc = PermissionError(13, "Permission denied", str(tmp_path / "runs" / "results.json"))
    assert cli._os_error_line(args, exc).startswith(f"--out {tmp_path / 'runs'}: Permission denied")


# --- Hypothesis: malformed arrays at the core entry points -----------------------------------

def _corrupt(draw, a):
    """A malformed copy of ``a``: another rank, one size off by one, a NaN/Inf, or another dtype."""
    a = np.asarray(a)
    kinds = ["rank", "nonfinite", "dtype"] + (["size"] if a.ndim else [])
    if a.size == 0:
        kinds.remove("nonfinite")
    kind = draw(st.sampled_from(kinds))
    if kind == "rank":
        return np.zeros(a.shape + (1,)) if draw(st.booleans()) or a.ndim == 0 else np.zeros(a.shape[:-1])
    if kind == "size":
        axis = draw(st.integers(0, a.ndim - 1))
        shape = list(a.shape)
        shape[axis] += draw(st.sampled_from([-1, 1]))
        return np.zeros(shape)
    if kind == "nonfinite":
        out = np.array(a, dtype=a.dtype)
        out.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([NAN, np.inf, -np.inf]))
        return out
    return a.astype(draw(st.sampled_from([np.float32, np.int64, np.bool_, np.complex128])))


def _names_it(message, name):
    return re.search(rf"(^|[^\w.]){re.escape(name)}([^\w]|$)", message) is not None


def _r2dn_fields(direct):
    """Every array of a Direct as (name in messages, replace function)."""
    out = []
    for field in direct._fields:
        if field != "phi" and getattr(direct, field) is not None:
            out.append((f"direct.{field}", getattr(direct, field),
                        lambda v, f=field: direct._replace(**{f: v})))
    for k, layer in enumerate(direct.phi.layers):
        for field in layer._fields:
            if getattr(layer, field) is not None:
                out.append((f"direct.phi.layers[{k}].{field}", getattr(layer, field),
                            lambda v, k=k, f=field: set_layer(direct, k, **{f: v})))
    return out


R_FIELDS = _r2dn_fields(R_D)


@given(st.data())
def test_r2dn_value_and_grad_refuses_malformed_parameters(data):
    name, value, replace = data.draw(st.sampled_from(R_FIELDS))
    bad = _corrupt(data.draw, value)
    with pytest.raises((ValueError, TypeError)) as info:
        r2dn.value_and_grad(R_CFG, replace(bad), X0, U, ok_loss)
    # a dtype mismatch on the first field is reported against the one it differs from
    assert _names_it(str(info.value), name) or "dtype" in str(info.value), (name, str(info.value))


@given(st.data())
def test_r2dn_forward_refuses_malformed_sequences(data):
    which = data.draw(st.sampled_from(["U", "x0"]))
    args = {"U": U, "x0": X0}
    args[which] = _corrupt(data.draw, args[which])
    with pytest.raises((ValueError, TypeError)) as info:
        r2dn.forward(R_CFG, R_E, args["x0"], args["U"])
    message = str(info.value)
    # a U with another batch size is reported where the sizes disagree: at x0
    assert _names_it(message, which) or (which == "U" and _names_it(message, "x0")), (which, message)


@given(st.data())
def test_r2dn_forward_refuses_malformed_explicit(data):
    fields = [(f, getattr(R_E, f)) for f in R_E._fields if f != "phi"]
    field, value = data.draw(st.sampled_from(fields))
    bad = _corrupt(data.draw, value)
    with pytest.raises((ValueError, TypeError)) as info:
        r2dn.forward(R_CFG, R_E._replace(**{field: bad}), X0, U)
    assert _names_it(str(info.value), f"explicit.{field}") or "dtype" in str(info.value), str(info.value)


@given(st.data())
def test_lbdn_forward_refuses_malformed_inputs(data):
    h = np.zeros((4, 2))
    targets = [("h", h)] + [(f"explicit.W[{k}]", w) for k, w in enumerate(L_E.W)] + [
        (f"explicit.b[{k}]", b) for k, b in enumerate(L_E.b) if b is not None]
    name, value = data.draw(st.sampled_from(targets))
    bad = _corrupt(data.draw, value)
    if name == "h":
        call = lambda: lbdn.forward(L_CFG, L_E, bad)  # noqa: E731
    else:
        group, k = name[len("explicit."):].split("[")
        k = int(k[:-1])
        parts = list(getattr(L_E, group))
        parts[k] = bad
        call = lambda: lbdn.forward(L_CFG, L_E._replace(**{group: tuple(parts)}), h)  # noqa: E731
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert _names_it(str(info.value), name) or "dtype" in str(info.value), (name, str(info.value))
