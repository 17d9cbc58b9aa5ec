import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from r2dn_np.core import linalg
from r2dn_np.checks.testing import check_vjp

from helpers import host, put

sizes = st.integers(1, 8)
scales = st.sampled_from([0.3, 1.0, 3.0])
seeds = st.integers(0, 2**31 - 1)


@given(m=sizes, n=sizes, scale=scales, seed=seeds)
def test_normalize_vjp(xp, m, n, scale, seed):
    rng = np.random.default_rng(seed)
    X = put(xp, scale * rng.standard_normal((m, n)))
    c = put(xp, rng.standard_normal())
    check_vjp(
        lambda a: linalg.normalize(a[0], a[1], 1e-8),
        lambda a, dY: linalg.normalize_vjp(a[0], a[1], 1e-8, dY),
        (X, c),
    )


@given(m=sizes, n=sizes, scale=scales, seed=seeds, enabled=st.booleans())
def test_polar_vjp(xp, m, n, scale, seed, enabled):
    rng = np.random.default_rng(seed)
    X = put(xp, scale * rng.standard_normal((m, n)))
    p = put(xp, rng.standard_normal())
    check_vjp(
        lambda a: linalg.polar(a[0], a[1], 2.0**-23, enabled),
        lambda a, dG: linalg.polar_vjp(a[0], a[1], 2.0**-23, dG, enabled),
        (X, p),
    )


def test_polar_formula(xp):
    rng = np.random.default_rng(1)
    X, p, eps = rng.standard_normal((4, 3)), 0.7, 1e-3
    G = linalg.polar(put(xp, X), put(xp, p), eps)
    np.testing.assert_allclose(host(G), p**2 * X.T @ X / (np.sum(X**2) + eps), rtol=1e-13)


@given(n=sizes, k=sizes, scale=scales, seed=seeds)
def test_solve_vjp(xp, n, k, scale, seed):
    rng = np.random.default_rng(seed)
    A = put(xp, scale * (rng.standard_normal((n, n)) + 3 * np.eye(n)))
    B = put(xp, scale * rng.standard_normal((n, k)))
    check_vjp(
        lambda a: linalg.solve(a[0], a[1]),
        lambda a, dX: linalg.solve_vjp(a[0], linalg.solve(a[0], a[1]), dX),
        (A, B),
    )


@given(n=sizes, scale=scales, seed=seeds)
def test_cholesky_vjp(xp, n, scale, seed):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n))
    S = put(xp, scale * (G @ G.T + np.eye(n)))

    # the map reads a symmetric matrix, so differentiate S -> chol(sym(S))
    check_vjp(
        lambda a: linalg.cholesky(linalg.sym(a)),
        lambda a, dL: linalg.cholesky_vjp(linalg.cholesky(linalg.sym(a)), dL),
        S,
    )


def test_cholesky_is_lower(xp):
    S = np.array([[4.0, 2.0], [2.0, 3.0]])
    L = host(linalg.cholesky(put(xp, S)))
    assert L[0, 1] == 0.0
    np.testing.assert_allclose(L @ L.T, S, rtol=1e-14)


@given(n_in=sizes, n_out=sizes, scale=scales, seed=seeds)
def test_cayley_vjp(xp, n_in, n_out, scale, seed):
    rng = np.random.default_rng(seed)
    W = put(xp, scale * rng.standard_normal((n_in + n_out, n_out)))

    def f(a):
        return linalg.cayley(a, n_out)

    def vjp(a, d):
        A_T, _ = linalg.cayley(a, n_out)
        return linalg.cayley_vjp(a, n_out, A_T, d[0], d[1])

    check_vjp(f, vjp, W)


@given(n_in=sizes, n_out=sizes, scale=st.sampled_from([0.1, 1.0, 10.0]), seed=seeds)
def test_cayley_orthonormal_columns(xp, n_in, n_out, scale, seed):
    rng = np.random.default_rng(seed)
    W = put(xp, scale * rng.standard_normal((n_in + n_out, n_out)))
    A_T, B_T = (host(m) for m in linalg.cayley(W, n_out))
    Q = np.concatenate([A_T, B_T], axis=0)
    assert np.max(np.abs(Q.T @ Q - np.eye(n_out))) <= 1e-12


def test_cayley_matches_definition(xp):
    rng = np.random.default_rng(3)
    n_in, n_out = 3, 2
    W = rng.standard_normal((n_in + n_out, n_out))
    U, V = W[:n_out], W[n_out:]
    Z = U - U.T + V.T @ V
    I = np.eye(n_out)
    A_T, B_T = (host(m) for m in linalg.cayley(put(xp, W), n_out))
    np.testing.assert_allclose(A_T, np.linalg.solve(I + Z, I - Z), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(B_T, -2 * V @ np.linalg.inv(I + Z), rtol=1e-12, atol=1e-14)


def test_vjp_checker_catches_wrong_gradient(xp):
    X = put(xp, np.random.default_rng(0).standard_normal((3, 2)))
    with pytest.raises(AssertionError, match="worst relative error"):
        check_vjp(linalg.gram, lambda a, dG: a @ dG, X)  # missing the transpose term
