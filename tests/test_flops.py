import numpy as np
import pytest

from r2dn_np.checks import flops
from r2dn_np import lbdn, r2dn


@pytest.mark.parametrize("output_layer", ["linear", "sandwich"])
def test_weight_shapes_match_the_map(output_layer):
    cfg = lbdn.Config(3, 4, hidden=(5, 6), output_layer=output_layer)
    explicit, _ = lbdn.direct_to_explicit(cfg, lbdn.init(cfg, 0))
    assert flops.lbdn_weight_shapes(cfg) == tuple(tuple(W.shape) for W in explicit.W)


def test_hand_counted_case():
    """nu = nx = nv = ny = 1, one hidden layer of 2, one sample, counted term by term."""
    cfg = r2dn.Config(1, 1, 1, 1, hidden=(2,))
    c = flops.r2dn_counts(cfg, T=1, B=1)
    phi = 2 * 2 + 2 * 2  # W[0] (2x1), W[1] (1x2): 2mnk each on one row
    # inputs B2, D12; [A^T C1^T]; phi; B1; outputs C2, D21, D22
    assert c["rollout"] == 2 + 2 + 4 + phi + 2 + 2 + 2 + 2 == 24
    # output adjoints (2); loop: dx B1, phi input, dx A, dv C1; phi weights; 8 weight grads; dU (3)
    assert c["bptt"] == 2 * 2 + (2 + phi + 2 + 2) + phi + 8 * 2 + 3 * 2 == 48
    # R2DN: polar Gram of a 2x2 (16), C1^T C1 (2), B1 B1^T (2), solve 1x1 with 2 columns (4)
    # LBDN layer 1->2: V^T V (8), (I+Z)^-1 (16//3 + 16), V Minv (8); layer 2->1: 4 + 2 + 4;
    # chain W_in[1] W_out[0]: (1x2)(2x2) = 8
    assert c["map"] == 16 + 2 + 2 + 4 + (8 + 5 + 16 + 8) + (4 + 2 + 4) + 8 == 79
    assert c["forward"] == c["map"] + c["rollout"]
    assert c["gradient"] == c["map"] + c["rollout"] + c["bptt"] + c["map_vjp"]


def test_sequence_terms_scale_with_rows_and_the_map_does_not():
    cfg = r2dn.Config(2, 3, 4, 5, hidden=(6, 7), kind="lipschitz")
    one, many = flops.r2dn_counts(cfg, 1, 1), flops.r2dn_counts(cfg, 7, 3)
    assert many["rollout"] == 21 * one["rollout"] and many["bptt"] == 21 * one["bptt"]
    assert many["map"] == one["map"] and many["map_vjp"] == one["map_vjp"]


def test_gradient_pass_is_about_three_forward_passes():
    """Every product of the loop returns twice in BPTT (input cotangent and weight gradient)."""
    cfg = r2dn.Config(1, 1, 16, 1, hidden=(96,) * 6)
    c = flops.r2dn_counts(cfg, 128, 64)
    assert 2.9 < (c["rollout"] + c["bptt"]) / c["rollout"] < 3.1


def test_bad_sizes():
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        flops.r2dn_counts(r2dn.Config(1, 1, 1, 1), 0, 1)


def test_matmul_gflops_is_positive():
    rate = flops.matmul_gflops("numpy", "float32", n=64, repeats=2)
    assert np.isfinite(rate) and rate > 0
