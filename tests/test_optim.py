import math

import numpy as np
import pytest

from r2dn_np.training import optim

from helpers import host, put


def test_adam_matches_hand_computed_steps(xp):
    p = (put(xp, [1.0, -2.0]), None)
    g1 = (put(xp, [0.5, 0.1]), None)
    g2 = (put(xp, [-0.5, 0.3]), None)
    state = optim.adam_init(p)
    p1, state = optim.adam_step(p, g1, state, lr=0.1)
    # step 1: m_hat = g, v_hat = g^2 -> update lr * sign(g) (up to eps)
    np.testing.assert_allclose(host(p1[0]), [0.9, -2.1], rtol=1e-7)
    assert p1[1] is None and state.step == 1
    p2, state = optim.adam_step(p1, g2, state, lr=0.1)
    for i, (a, b) in enumerate([(0.5, -0.5), (0.1, 0.3)]):
        start = float(host(p1[0])[i])
        m = 0.9 * (0.1 * a) + 0.1 * b
        v = 0.999 * (0.001 * a * a) + 0.001 * b * b
        m_hat, v_hat = m / (1 - 0.9**2), v / (1 - 0.999**2)
        expected = start - 0.1 * m_hat / (math.sqrt(v_hat) + 1e-8)
        assert float(host(p2[0])[i]) == pytest.approx(expected, rel=1e-12)


def test_clip_by_global_norm(xp):
    g = (put(xp, [3.0, 0.0]), put(xp, [[4.0]]))
    clipped, norm = optim.clip_by_global_norm(g, 1.0)
    assert float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose(host(clipped[0]), [0.6, 0.0])
    np.testing.assert_allclose(host(clipped[1]), [[0.8]])
    same, _ = optim.clip_by_global_norm(g, 10.0)
    np.testing.assert_array_equal(host(same[0]), [3.0, 0.0])
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_by_global_norm(g, 0.0)


def test_clip_elementwise(xp):
    (out,) = optim.clip_elementwise((put(xp, [-20.0, 5.0, 11.0]),), 10.0)
    np.testing.assert_array_equal(host(out), [-10.0, 5.0, 10.0])


def test_exponential_decay():
    assert optim.exponential_decay(0, 1e-3, 0.1, 500) == 1e-3
    assert optim.exponential_decay(499, 1e-3, 0.1, 500) == 1e-3
    assert optim.exponential_decay(500, 1e-3, 0.1, 500) == pytest.approx(1e-4)
    assert optim.exponential_decay(250, 1.0, 0.25, 500, staircase=False) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="decay_steps"):
        optim.exponential_decay(1, 1.0, 0.5, 0)


def test_reduce_on_plateau():
    s = optim.plateau_init(1.0)
    s = optim.plateau_update(s, 10.0, patience=2, factor=0.5)
    assert (s.lr, s.best, s.wait) == (1.0, 10.0, 0)
    s = optim.plateau_update(s, 10.0, patience=2, factor=0.5)  # no improvement
    assert (s.lr, s.wait) == (1.0, 1)
    s = optim.plateau_update(s, 9.9999999, patience=2, factor=0.5)  # below threshold: no
    assert (s.lr, s.wait) == (0.5, 0)
    s = optim.plateau_update(s, 5.0, patience=2, factor=0.5)
    assert (s.lr, s.best, s.wait) == (0.5, 5.0, 0)
    with pytest.raises(ValueError, match="factor"):
        optim.plateau_update(s, 1.0, factor=2.0)


def test_plateau_min_lr_and_recovery():
    s = optim.plateau_init(1.0)
    for metric in (5.0, 5.0, 5.0, 5.0, 5.0):
        s = optim.plateau_update(s, metric, factor=0.1, patience=1, min_lr=0.05)
    # 1.0 -> 0.1 -> 0.05 (floored), stays at the floor
    assert s.lr == 0.05 and s.best == 5.0
    s = optim.plateau_update(s, 1.0, factor=0.1, patience=1, min_lr=0.05)
    assert (s.lr, s.best, s.wait) == (0.05, 1.0, 0)


def test_global_norm_and_elementwise_clip_keep_absent_leaves(xp):
    g = (put(xp, [[1.0, -2.0], [2.0, 0.0]]), None, put(xp, [-40.0]))
    assert float(optim.global_norm(g)) == pytest.approx(math.sqrt(1 + 4 + 4 + 1600))
    out = optim.clip_elementwise(g, 1.5)
    np.testing.assert_array_equal(host(out[0]), [[1.0, -1.5], [1.5, 0.0]])
    assert out[1] is None
    np.testing.assert_array_equal(host(out[2]), [-1.5])
    with pytest.raises(ValueError, match="limit"):
        optim.clip_elementwise(g, -1.0)


def test_adam_third_step_by_hand():
    # three steps on f(p) = p^2 / 2 (gradient p) from p = 1, lr = 0.01, computed by hand
    p, m, v = 1.0, 0.0, 0.0
    params, state = (np.array([1.0]),), optim.adam_init((np.array([1.0]),))
    for t in (1, 2, 3):
        g = p
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        p = p - 0.01 * (m / (1 - 0.9**t)) / (math.sqrt(v / (1 - 0.999**t)) + 1e-8)
        params, state = optim.adam_step(params, (params[0].copy(),), state, lr=0.01)
        assert float(params[0][0]) == pytest.approx(p, rel=1e-14)
    assert state.step == 3
