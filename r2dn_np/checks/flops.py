"""Floating-point operation counts of the R2DN passes, and a matrix-product throughput probe.

The counts are analytic and follow the algorithm of ``feedback.py``, ``lbdn.py`` and
``r2dn.py``: a product of an ``(m, k)`` and a ``(k, n)`` matrix counts ``2 m n k``, a linear
solve with an ``n x n`` matrix and ``k`` right-hand sides counts ``2/3 n^3 + 2 n^2 k`` (LU
plus two triangular solves per column). Ignored, because they are linear in the number of
entries and so at most a few percent of the total at the sizes benchmarked: bias additions,
activations and their slopes, elementwise scalings, bias-gradient sums, copies, and the loss.
For the Lipschitz kind the map counts only ``Ext Ext^T`` and its VJP on top of the
contracting terms (the remaining coupling terms are products with ``nu`` or ``ny`` columns).

Achieved throughput of a pass is ``count / seconds``; dividing it by
:func:`matmul_gflops` on the same backend and dtype gives the fraction of what the machine's
matrix product reaches, which is steadier than a time on a shared machine.

Examples
--------
>>> from r2dn_np.checks import flops
>>> from r2dn_np import r2dn
>>> cfg = r2dn.Config(nu=1, nx=1, nv=1, ny=1, hidden=(2,))
>>> flops.lbdn_weight_shapes(cfg.lbdn)
((2, 1), (1, 2))
>>> flops.r2dn_counts(cfg, T=1, B=1)["rollout"]
24
"""

from __future__ import annotations

import time

from ..core import _validate
from ..core.backend import namespace, resolve_dtype

__all__ = [
    "gemm",
    "solve",
    "lbdn_weight_shapes",
    "lbdn_forward",
    "lbdn_backward",
    "lbdn_map",
    "lbdn_map_vjp",
    "r2dn_counts",
    "matmul_gflops",
    "sync",
]


def gemm(m, n, k):
    """``(m, k) @ (k, n)``: ``2 m n k``."""
    return 2 * m * n * k


def solve(n, k):
    """``A^{-1} B`` with ``A`` of size ``n x n`` and ``k`` columns in ``B`` (``2n^3/3`` rounded down)."""
    return (2 * n**3) // 3 + 2 * n * n * k


def lbdn_weight_shapes(cfg):
    """``(rows, cols)`` of every explicit weight ``W[k]`` of an ``lbdn.Config`` (``W[0]`` first).

    Adjacent Sandwich matrices are multiplied once in the map, so there is one weight per
    activation layer, plus a closing ``n_out x n_out`` matrix for ``output_layer="sandwich"``.
    """
    shapes = [(n_out, n_in) for n_in, n_out in cfg.layer_sizes]
    if cfg.output_layer == "sandwich":
        shapes.append((cfg.n_out, cfg.n_out))
    return tuple(shapes)


def lbdn_forward(cfg, N):
    """The network on ``N`` rows: one product per weight."""
    return sum(gemm(N, r, c) for r, c in lbdn_weight_shapes(cfg))


def lbdn_backward(cfg, N):
    """Input cotangent (one product per weight) and weight gradients (one per weight)."""
    return 2 * lbdn_forward(cfg, N)


def _chain_links(cfg):
    """``(rows, inner, cols)`` of ``W_in[k] @ W_out[k-1]`` for each layer after the first."""
    sizes = cfg.layer_sizes
    return [(sizes[k][1], sizes[k][0], sizes[k][0]) for k in range(1, len(sizes))]


def lbdn_map(cfg):
    """Free parameters to weights: per layer ``V^T V``, ``(I + Z)^{-1}``, ``V (I + Z)^{-1}``,
    then one product per link of the chain."""
    total = 0
    for n_in, n in cfg.layer_sizes:
        total += gemm(n, n, n_in) + solve(n, n) + gemm(n_in, n, n)
    return total + sum(gemm(r, c, i) for r, i, c in _chain_links(cfg))


def lbdn_map_vjp(cfg):
    """Back through the chain (two products per link) and each Cayley transform
    (``V^T dB``, ``dB Minv^T``, ``Minv^T dMinv Minv^T``, ``V (dM + dM^T)``)."""
    total = 0
    for n_in, n in cfg.layer_sizes:
        total += gemm(n, n, n_in) + gemm(n_in, n, n) + 2 * gemm(n, n, n) + gemm(n_in, n, n)
    return total + sum(2 * gemm(r, c, i) for r, i, c in _chain_links(cfg))


def r2dn_counts(cfg, T, B):
    """FLOP counts of one R2DN pass over ``B`` sequences of length ``T``.

    Returns
    -------
    dict with ``map``, ``rollout``, ``bptt`` and ``map_vjp`` (each stage alone),
    ``forward = map + rollout`` and ``gradient = map + rollout + bptt + map_vjp``.
    """
    _validate.positive_int("T", T)
    _validate.positive_int("B", B)
    if getattr(cfg, "lti", "dense") != "dense":
        raise ValueError(f"r2dn_counts counts the dense LTI part's map; got lti={cfg.lti!r}")
    nu, nx, nv, ny = cfg.nu, cfg.nx, cfg.nv, cfg.ny
    N = T * B
    phi = cfg.lbdn

    rollout = (
        gemm(N, nx, nu) + gemm(N, nv, nu)  # hoisted input projections
        + gemm(N, nx + nv, nx) + lbdn_forward(phi, N) + gemm(N, nx, nv)  # the loop
        + gemm(N, ny, nx) + gemm(N, ny, nv) + gemm(N, ny, nu)  # outputs
    )
    bptt = (
        gemm(N, nx, ny) + gemm(N, nv, ny)  # output adjoints
        + gemm(N, nv, nx) + lbdn_backward(phi, N) - lbdn_forward(phi, N)  # loop: dw, phi input
        + gemm(N, nx, nx) + gemm(N, nx, nv)  # loop: dx
        + lbdn_forward(phi, N)  # phi weight gradients
        + gemm(nx, nx, N) + gemm(nx, nv, N) + gemm(nx, nu, N)  # A, B1, B2
        + gemm(nv, nx, N) + gemm(ny, nx, N) + gemm(nv, nu, N)  # C1, C2, D12
        + gemm(ny, nv, N) + gemm(ny, nu, N)  # D21, D22
        + gemm(N, nu, nx) + gemm(N, nu, nv) + gemm(N, nu, ny)  # dU
    )

    n2 = 2 * nx
    k = nx + nv + (nu if cfg.kind == "lipschitz" else 0)  # columns of [F B1 (B2)]
    r2 = gemm(n2, n2, n2) + gemm(nx, nx, nv) + solve(nx, k)  # polar Gram, C1^T C1, solve
    r2_vjp = gemm(n2, n2, n2) + gemm(nv, nx, nx) + solve(nx, k) + gemm(nx, nx, k)
    if cfg.kind == "contracting":
        r2 += gemm(nx, nx, nv)  # B1 B1^T
        r2_vjp += gemm(nx, nv, nx)
    else:
        n_ext = nv + ny + nu
        r2 += gemm(n2, n2, n_ext)
        r2_vjp += gemm(n2, n_ext, n2)
    map_ = r2 + lbdn_map(phi)
    map_vjp = r2_vjp + lbdn_map_vjp(phi)
    return dict(
        map=map_, rollout=rollout, bptt=bptt, map_vjp=map_vjp,
        forward=map_ + rollout, gradient=map_ + rollout + bptt + map_vjp,
    )


def sync(x):
    """Wait until ``x`` is computed: pulls one entry to the host (enough for a CUDA stream)."""
    if x.ndim == 0:
        return float(x)
    return float(x[(0,) * x.ndim])


def matmul_gflops(backend=None, dtype="float64", n=2048, repeats=5, clock=time.perf_counter):
    """Best throughput, in GFLOP/s, of an ``n x n`` matrix product on ``backend`` and ``dtype``.

    One warm-up product, then the fastest of ``repeats`` timed ones (``2 n^3`` each).
    ``clock=time.process_time`` counts only this process's CPU time, which is steadier on
    a shared machine (for a CPU backend).
    """
    _validate.positive_int("n", n)
    _validate.positive_int("repeats", repeats)
    _validate.allocation(f"n={n}", "three n x n matrices", (3, n, n))
    xp = namespace(backend)
    dt = resolve_dtype(xp, dtype)
    a = xp.reshape(xp.astype(xp.arange(n * n) % 7, dt), (n, n)) / 7.0 - 0.4
    b = a.mT + 0.0
    sync(a @ b)
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        sync(a @ b)
        best = min(best, clock() - t0)
    return gemm(n, n, n) / best / 1e9
