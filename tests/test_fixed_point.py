import numpy as np
import pytest

from r2dn_np.core import fixed_point

from helpers import host, put


def linear_problem(xp, rho=0.9, n=6, N=3, seed=0):
    """``F(z) = z A^T + c`` with ``||A||_2 = rho``: the fixed point is ``c (I - A^T)^{-1}``."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    A *= rho / np.linalg.norm(A, 2)
    c = rng.standard_normal((N, n))
    want = np.linalg.solve(np.eye(n) - A, c.T).T
    A_, c_ = put(xp, A), put(xp, c)
    return (lambda z: z @ A_.mT + c_), c, want


@pytest.mark.parametrize("solver", fixed_point.SOLVERS)
def test_linear_contraction(xp, solver):
    F, c, want = linear_problem(xp)
    result = fixed_point.solve(F, put(xp, np.zeros_like(c)), scale=float(np.linalg.norm(c)),
                               solver=solver, tol=1e-12, max_iter=2000)
    assert result.converged and result.method == solver
    assert len(result.residuals) == result.iterations and result.residuals[-1] <= 1e-12
    np.testing.assert_allclose(host(result.z), want, rtol=0, atol=1e-10)
    assert fixed_point.relative_residual(result.fz, result.z, float(np.linalg.norm(c))) == result.residuals[-1]


def test_accelerated_solvers_beat_plain_iteration():
    F, c, _ = linear_problem(np, rho=0.97, n=12)
    counts = {s: fixed_point.solve(F, np.zeros_like(c), solver=s, tol=1e-10, max_iter=5000).iterations
              for s in fixed_point.SOLVERS}
    assert counts["anderson"] < counts["fixed_point"] and counts["broyden"] < counts["fixed_point"]


def test_failure_is_returned_then_raised_on_request():
    result = fixed_point.solve(lambda z: z + 1.0, np.zeros((2, 3)), solver="fixed_point", max_iter=7)
    assert not result.converged and result.iterations == len(result.residuals) == 7
    with pytest.raises(fixed_point.NotConverged, match=r"^my.solve: the fixed_point solver did not reach "
                       r"tol=0\.01 in 7 iterations \(max_iter=7\).* Try this\.$") as info:
        fixed_point.raise_unless_converged(result, "my.solve", 0.01, 7, "Try this.")
    assert info.value.result is result


def test_converged_result_passes():
    result = fixed_point.solve(lambda z: 0.5 * z, np.ones((1, 2)), tol=1e-6)
    assert fixed_point.raise_unless_converged(result, "x", 1e-6, 200) is None


def test_relative_residual():
    z = np.array([[1.0, 2.0]])
    assert fixed_point.relative_residual(z, z) == 0.0
    got = fixed_point.relative_residual(np.array([[4.0, 2.0]]), z, scale=1.0)
    assert got == pytest.approx(3.0 / (np.sqrt(20.0) + 1.0))
    assert fixed_point.relative_residual(np.zeros((1, 2)), z) == np.inf


def test_frobenius_norm(xp):
    assert fixed_point.frobenius_norm(put(xp, [[3.0, 4.0]])) == 5.0
    assert fixed_point.frobenius_norm(put(xp, [[1e300, 0.0]])) == np.inf
    assert fixed_point.frobenius_norm(put(xp, [[np.nan, 0.0]])) == np.inf
    assert fixed_point.frobenius_norm(put(xp, np.zeros((0, 3)))) == 0.0


def test_solve_checks_its_options():
    with pytest.raises(ValueError, match="solver must be one of"):
        fixed_point.solve(lambda z: z, np.zeros((1, 2)), solver="bisection")


def _anderson_reference(F, z0, m, beta, updates):
    """Type-II Anderson, (D6) of docs/derivations/deq.md, written out row by row with a least-squares
    solve: the iterate after ``updates`` updates."""
    z, prev, dZ, dG = z0.copy(), None, [], []
    for _ in range(updates):
        g = F(z) - z
        if prev is not None:
            dZ, dG = (dZ + [z - prev[0]])[-m:], (dG + [g - prev[1]])[-m:]
        prev = (z, g)
        new = z + beta * g
        for i in range(z.shape[0]) if dZ else ():
            DZ, DG = np.stack([d[i] for d in dZ], 1), np.stack([d[i] for d in dG], 1)
            gamma = np.linalg.lstsq(DG, g[i], rcond=None)[0]
            new[i] -= (DZ + beta * DG) @ gamma
        z = new
    return z


@pytest.mark.parametrize("m, beta", [(1, 1.0), (2, 0.5), (3, 0.2)])
def test_anderson_iterates_match_the_reference_for_beta_and_m(m, beta):
    """Away from the defaults (m = 5, beta = 1): each of the first iterates equals the reference's,
    so both the damping beta and the window of the last m differences are used as written."""
    rng = np.random.default_rng(1)
    A = rng.standard_normal((6, 6))
    A *= 0.9 / np.linalg.norm(A, 2)
    c = rng.standard_normal((2, 6))

    def F(z):
        return np.tanh(z @ A.T + c)

    for k in range(1, 8):
        got = fixed_point.solve(F, np.zeros_like(c), solver="anderson", tol=1e-15, max_iter=k, anderson_m=m,
                                anderson_beta=beta)
        assert got.iterations == k
        np.testing.assert_allclose(got.z, _anderson_reference(F, np.zeros_like(c), m, beta, k - 1),
                                   rtol=1e-4, atol=1e-6, err_msg=f"iterate {k}")  # (D6)'s 1e-10 Tikhonov term


@pytest.mark.parametrize("beta, m, iterations", [
    (1.0, 5, 21), (1.0, 1, 30), (0.5, 5, 29), (0.5, 2, 48), (0.2, 3, 50), (0.2, 1, 89)])
def test_anderson_iteration_counts_are_pinned(beta, m, iterations):
    """Evaluations of F to reach tol = 1e-10 on a contraction of rate 0.97, measured and pinned:
    a dropped beta or a window of m - 1 differences changes them."""
    F, c, want = linear_problem(np, rho=0.97, n=12)
    result = fixed_point.solve(F, np.zeros_like(c), solver="anderson", tol=1e-10, max_iter=5000, anderson_m=m,
                               anderson_beta=beta)
    assert result.converged and result.iterations == iterations
    np.testing.assert_allclose(result.z, want, rtol=0, atol=1e-8)


@pytest.mark.parametrize("solver", fixed_point.SOLVERS)
def test_an_unconverged_result_keeps_the_measured_iterate(solver):
    """``z`` is the iterate whose residual was measured last, converged or not: ``fz = F(z)``."""
    F, c, _ = linear_problem(np, rho=0.97, n=12)
    result = fixed_point.solve(F, np.zeros_like(c), solver=solver, tol=1e-12, max_iter=4)
    assert not result.converged and result.iterations == 4
    np.testing.assert_array_equal(result.fz, F(result.z))
    assert fixed_point.relative_residual(result.fz, result.z) == result.residuals[-1]
