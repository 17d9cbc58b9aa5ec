"""Public test helpers: a finite-difference check of hand-written VJPs, and a strict
``assert_close``.

Examples
--------
>>> import numpy as np
>>> from r2dn_np.checks.testing import check_vjp
>>> f = lambda args: args[0] ** 3 * args[1]
>>> vjp = lambda args, dy: (3 * args[0] ** 2 * args[1] * dy, np.sum(args[0] ** 3 * dy))
>>> report = check_vjp(f, vjp, (np.linspace(0.5, 1.5, 4), np.asarray(2.0)))
>>> report.worst_error < 1e-6
True
"""

from __future__ import annotations

import dataclasses

import numpy as np
from array_api_compat import array_namespace

from ..core import tree
from ..core.backend import to_numpy

__all__ = ["FiniteDifferenceUnreliable", "VJPReport", "check_vjp", "assert_close"]


class FiniteDifferenceUnreliable(Exception):
    """The central differences at step ``h`` and ``h/2`` disagree: the function is not
    smooth at this point within the step (a ReLU kink, say). Not evidence against the VJP;
    a property test should discard the draw (``hypothesis.reject()``)."""


@dataclasses.dataclass
class VJPReport:
    rows: list  # (component, direction, analytic, finite_difference, error)
    worst_error: float
    worst_component: str

    def table(self):
        lines = [f"{'component':<32} {'dir':>3} {'vjp . delta':>24} {'finite difference':>24} {'rel. error':>10}"]
        for name, k, an, fd, err in self.rows:
            lines.append(f"{name:<32} {k:>3} {an:>24.16e} {fd:>24.16e} {err:>10.2e}")
        return "\n".join(lines)


def check_vjp(f, vjp, inputs, *, rtol=1e-6, step=1e-5, n_directions=2, seed=0, raises=True):
    """Compare a hand-written VJP with float64 central finite differences.

    Along random directions ``delta`` (one over all inputs at once, and one per input
    component), checks ``<vjp(inputs, c), delta>`` against the derivative of
    ``<c, f(inputs + t delta)>`` at ``t = 0``, where ``c`` is a random output cotangent.
    The derivative is a Richardson-extrapolated central difference (steps ``h`` and
    ``h/2``, error O(h^4)).

    Parameters
    ----------
    f : callable ``inputs -> output``; ``output`` is an array or a container of arrays.
    vjp : callable ``(inputs, d_output) -> d_inputs`` in the structure of ``inputs``;
        a ``None`` cotangent means zero.
    inputs : container of float64 arrays (``None`` leaves are held fixed).
    rtol : largest accepted relative error.
    step : the finite-difference step ``h`` along a unit-norm direction.
    raises : if False, return the report instead of raising ``AssertionError``.

    Notes
    -----
    A difference quotient cannot resolve a directional derivative much smaller than the
    rounding noise of ``f`` itself (about ``eps * |f| / h``); the error of such a component is
    measured relative to ``noise / rtol`` instead of the derivative, so a component whose true
    derivative is below the noise passes when the VJP agrees within the noise.

    Returns
    -------
    VJPReport

    Raises
    ------
    AssertionError
        The worst relative error exceeds ``rtol``; the message prints the whole table.
    FiniteDifferenceUnreliable
        The differences at ``h`` and ``h/2`` disagree (a kink within the step).
    """
    named = tree.paths(inputs)
    if not named:
        raise ValueError("inputs has no arrays to perturb")
    for name, leaf in named:
        if array_namespace(leaf).float64 != leaf.dtype:
            raise TypeError(f"inputs[{name!r}] must be float64 for a finite-difference check; got {leaf.dtype}")
    rng = np.random.default_rng(seed)
    out0 = f(inputs)
    cot = tree.map(lambda y: _like(rng.standard_normal(tuple(y.shape)), y), out0)
    grads = vjp(inputs, cot)
    grads = tree.map(lambda x, g: g if g is not None else array_namespace(x).zeros_like(x), inputs, grads)
    g_named = dict(tree.paths(grads))

    rows = []
    for k in range(n_directions):
        masks = [None] + [name for name, _ in named]
        for only in masks:
            if only is not None and _size(dict(named)[only]) == 0:
                continue
            delta = {
                name: (rng.standard_normal(tuple(leaf.shape)) if only in (None, name) else np.zeros(tuple(leaf.shape)))
                for name, leaf in named
            }
            norm = np.sqrt(sum(float(np.sum(d * d)) for d in delta.values()))
            if norm == 0.0:
                continue
            delta = {n: d / norm for n, d in delta.items()}
            analytic = sum(float(np.sum(to_numpy(g_named[n]) * delta[n])) for n in delta)
            d1, size1 = _central(f, inputs, named, delta, cot, step)
            d2, size2 = _central(f, inputs, named, delta, cot, step / 2)
            fd = (4.0 * d2 - d1) / 3.0
            # rounding in f limits what a difference quotient can resolve
            noise = 64.0 * np.finfo(np.float64).eps * max(size1, size2) / (step / 2)
            floor = 1e-3 * _gnorm(g_named, only)
            scale = max(abs(analytic), abs(fd), floor, noise / rtol, 1e-300)
            if abs(d1 - d2) > max(1e-4 * max(abs(fd), floor), 10 * noise):
                raise FiniteDifferenceUnreliable(
                    f"component {only or 'all'}: central differences at h={step:g} and h/2 "
                    f"disagree ({d1:.6e} vs {d2:.6e}); the function is not smooth here"
                )
            rows.append((only or "all", k, analytic, fd, abs(analytic - fd) / scale))
    worst = max(rows, key=lambda r: r[4])
    report = VJPReport(rows, worst[4], worst[0])
    if raises and report.worst_error > rtol:
        raise AssertionError(
            f"VJP disagrees with finite differences: worst relative error {worst[4]:.3e} "
            f"> rtol {rtol:.1e} in component {worst[0]!r} "
            f"(vjp.delta = {worst[2]:.16e}, finite difference = {worst[3]:.16e})\n{report.table()}"
        )
    return report


def _like(host, ref):
    xp = array_namespace(ref)
    return xp.asarray(np.asarray(host, dtype=np.float64))


def _size(x):
    n = 1
    for s in x.shape:
        n *= int(s)
    return n


def _gnorm(g_named, only):
    names = g_named if only is None else [only]
    return float(np.sqrt(sum(float(np.sum(to_numpy(g_named[n]) ** 2)) for n in names)))


def _central(f, inputs, named, delta, cot, h):
    """Central difference of ``<cot, f>``, and the size of the terms summed (for rounding)."""
    def shifted(sign):
        values = {n: leaf + _like(sign * h * delta[n], leaf) for n, leaf in named}
        out = f(tree.from_paths(inputs, values))
        size = sum(float(np.sum(np.abs(to_numpy(c) * to_numpy(y)))) for c, y in zip(tree.leaves(cot), tree.leaves(out)))
        return tree.vdot(cot, out), size

    (fp, sp), (fm, sm) = shifted(1.0), shifted(-1.0)
    return (fp - fm) / (2.0 * h), max(sp, sm)


def assert_close(actual, desired, *, rtol=1e-12, atol=0.0, err_msg=""):
    """Assert two arrays agree: same namespace, dtype and shape first, then values."""
    xa, xd = array_namespace(actual), array_namespace(desired)
    if xa is not xd:
        raise AssertionError(f"{err_msg} namespaces differ: {xa.__name__} vs {xd.__name__}")
    if actual.dtype != desired.dtype:
        raise AssertionError(f"{err_msg} dtypes differ: {actual.dtype} vs {desired.dtype}")
    if tuple(actual.shape) != tuple(desired.shape):
        raise AssertionError(f"{err_msg} shapes differ: {tuple(actual.shape)} vs {tuple(desired.shape)}")
    np.testing.assert_allclose(to_numpy(actual), to_numpy(desired), rtol=rtol, atol=atol, err_msg=err_msg)
