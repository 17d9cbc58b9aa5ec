"""Array-API linear-algebra blocks, each followed by its vector-Jacobian product (VJP).

Every ``f_vjp`` takes the forward's inputs (and, where it saves work, its output) plus
the cotangent of the output, and returns cotangents of the inputs. Derivations:
``docs/derivations/lbdn.md`` (normalize, gram, polar, cayley) and
``docs/derivations/r2dn.md`` (solve, cholesky).
"""

from __future__ import annotations

from array_api_compat import array_namespace

__all__ = [
    "eye_like",
    "sym",
    "normalize",
    "normalize_vjp",
    "gram",
    "gram_vjp",
    "polar",
    "polar_vjp",
    "solve",
    "solve_vjp",
    "cholesky",
    "cholesky_vjp",
    "cayley",
    "cayley_vjp",
]


def eye_like(n, like):
    xp = array_namespace(like)
    return xp.eye(n, dtype=like.dtype, device=getattr(like, "device", None))


def sym(A):
    return 0.5 * (A + A.mT)


# --- weight normalisation  Y = scale * X / ||X||,  ||X|| = sqrt(sum X^2 + eps_n) -----------


def normalize(X, scale, eps_n):
    """``scale * X / sqrt(sum(X**2) + eps_n)``; ``eps_n`` keeps the norm and its gradient finite."""
    xp = array_namespace(X)
    return scale * X / xp.sqrt(xp.sum(X * X) + eps_n)


def normalize_vjp(X, scale, eps_n, dY):
    """Returns ``(dX, dscale)``. With ``n = ||X||``: ``dX = scale/n (dY - X <X,dY>/n^2)``."""
    xp = array_namespace(X)
    n2 = xp.sum(X * X) + eps_n
    n = xp.sqrt(n2)
    inner = xp.sum(X * dY)
    dX = (scale / n) * (dY - X * (inner / n2))
    return dX, inner / n


# --- Gram matrix  G = X^T X -------------------------------------------------------------------


def gram(X):
    return X.mT @ X


def gram_vjp(X, dG):
    return X @ (dG + dG.mT)


# --- polar Gram map  polar(X, p) = p^2 X^T X / ||X||^2 (docs/derivations/linalg.md) -----------------------


def polar(X, p, eps_n, enabled=True):
    """``p**2 X^T X / (sum X**2 + eps_n)``, or plain ``X^T X`` when ``enabled`` is False."""
    return gram(normalize(X, p, eps_n)) if enabled else gram(X)


def polar_vjp(X, p, eps_n, dG, enabled=True):
    """Returns ``(dX, dp)``; ``dp`` is zero when the polar scale is disabled."""
    if not enabled:
        xp = array_namespace(X)
        return gram_vjp(X, dG), xp.zeros_like(p)
    Y = normalize(X, p, eps_n)
    return normalize_vjp(X, p, eps_n, gram_vjp(Y, dG))


# --- linear solve  X = A^{-1} B --------------------------------------------------------------


def solve(A, B):
    xp = array_namespace(A)
    return xp.linalg.solve(A, B)


def solve_vjp(A, X, dX):
    """Returns ``(dA, dB)``: ``dB = A^{-T} dX`` and ``dA = -dB X^T``."""
    dB = solve(A.mT, dX)
    return -(dB @ X.mT), dB


# --- Cholesky  S = L L^T, L lower ---------------------------------------------------------------


def cholesky(S):
    xp = array_namespace(S)
    return xp.linalg.cholesky(S)


def cholesky_vjp(L, dL):
    """Symmetric cotangent ``dS = sym(L^{-T} Phi(L^T dL) L^{-1})``.

    ``Phi`` keeps the lower triangle and halves the diagonal (``docs/derivations/linalg.md``).
    """
    xp = array_namespace(L)
    n = L.shape[-1]
    I = eye_like(n, L)
    P = L.mT @ dL
    P = xp.tril(P) - 0.5 * (P * I)
    Linv = solve(L, I)
    return sym(Linv.mT @ P @ Linv)


# --- Cayley transform of the Sandwich layer (docs/derivations/linalg.md) --------------------------------


def cayley(W, n):
    """Split ``W = [U; V]`` (U the first ``n`` rows) and return ``(A_T, B_T)``.

    ``Z = U - U^T + V^T V``, ``A_T = (I + Z)^{-1}(I - Z)`` and ``B_T = -2 V (I + Z)^{-1}``,
    so that ``[A_T; B_T]`` has orthonormal columns. We use ``A_T = 2 (I + Z)^{-1} - I``,
    the same matrix, which lets the VJP recover ``(I + Z)^{-1}`` from ``A_T``.
    """
    U, V = W[:n, :], W[n:, :]
    I = eye_like(n, W)
    Minv = solve(I + U - U.mT + V.mT @ V, I)
    return 2.0 * Minv - I, -2.0 * (V @ Minv)


def cayley_vjp(W, n, A_T, dA_T, dB_T):
    """Returns ``dW`` given the cotangents of ``A_T`` and ``B_T`` (either may be None)."""
    xp = array_namespace(W)
    V = W[n:, :]
    I = eye_like(n, W)
    Minv = 0.5 * (A_T + I)
    dMinv = xp.zeros_like(A_T) if dA_T is None else 2.0 * dA_T
    dV = xp.zeros_like(V)
    if dB_T is not None:
        dMinv = dMinv - 2.0 * (V.mT @ dB_T)
        dV = dV - 2.0 * (dB_T @ Minv.mT)
    dM = -(Minv.mT @ dMinv @ Minv.mT)
    dU = dM - dM.mT
    dV = dV + V @ (dM + dM.mT)
    return xp.concat([dU, dV], axis=0)
