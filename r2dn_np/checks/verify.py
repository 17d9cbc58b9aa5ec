"""Checks that a model keeps its promises, for ``r2dn verify`` and ``scripts/sweep_r2dn.py``:
hand-written gradients against finite differences, the certificate eigenvalues, contraction
of sampled trajectories in the certificate's metric, and the Lipschitz bound under random
and adversarial input pairs (``docs/guarantees.md``). Every check returns a
:class:`~r2dn_np.checks.certificates.Check` row (measured value, bound, verdict). All work is in
float64 on the parameters given, so a float32 model is checked in float64.

The model enters as a module with the common interface (``direct_to_explicit``,
``direct_to_explicit_vjp``, ``forward``, ``backward``), plus ``certificates.certify``.

Examples
--------
>>> from r2dn_np import r2dn
>>> from r2dn_np.checks import verify
>>> cfg = r2dn.Config(nu=1, nx=2, nv=3, ny=1, hidden=(4,), activation="tanh", kind="lipschitz", gamma=0.5)
>>> rows = verify.check_model(r2dn, cfg, r2dn.init(cfg, seed=0), seed=0, quick=True)
>>> all(row.holds for row in rows)
True
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace

from ..core import _validate, supply, tree
from . import certificates, empirical
from .certificates import judge, verdict_text
from ..core.backend import to_numpy
from .testing import FiniteDifferenceUnreliable, check_vjp

__all__ = ["GRAD_RTOL", "CONTRACTION_TOL", "LIPSCHITZ_TOL", "model_map", "gradient_error", "check_gradient",
           "contraction_step", "check_contraction", "lipschitz_search", "check_lipschitz", "check_model",
           "perturbed", "table"]

GRAD_RTOL = 1e-6
CONTRACTION_TOL = 1e-9  # largest accepted relative growth of |x_a - x_b|_M^2 in one step
LIPSCHITZ_TOL = 1e-9  # largest accepted excess of measured gain / gamma over 1


def _f64(params):
    return tree.map(lambda a: array_namespace(a).astype(a, array_namespace(a).float64), params)


def model_map(module, cfg, explicit, x0):
    """The sequence map ``U -> Y`` of a model from state ``x0`` with its BPTT VJP."""
    def outputs(U):
        return module.forward(cfg, explicit, x0, U)[1]

    def vjp(U, dY):
        _, _, cache = module.forward(cfg, explicit, x0, U)
        return module.backward(cfg, explicit, cache, dY)[2]

    return empirical.SequenceMap(outputs, vjp)


def gradient_error(module, cfg, direct, rng, T=5, B=2):
    """Worst relative error of the gradient of every free parameter, ``x0`` and ``U``
    against finite differences; NaN when the point is at a kink of the activation."""
    xp = array_namespace(tree.leaves(direct)[0])
    x0 = xp.asarray(rng.standard_normal((B, cfg.nx)))
    U = xp.asarray(rng.standard_normal((T, B, cfg.nu)))

    def f(a):
        e, _ = module.direct_to_explicit(cfg, a[0])
        return module.forward(cfg, e, a[1], a[2])[1]

    def vjp(a, dY):
        e, mc = module.direct_to_explicit(cfg, a[0])
        _, _, c = module.forward(cfg, e, a[1], a[2])
        de, dx0, dU = module.backward(cfg, e, c, dY)
        return module.direct_to_explicit_vjp(cfg, mc, de), dx0, dU

    try:
        return check_vjp(f, vjp, (direct, x0, U), n_directions=1, raises=False).worst_error
    except FiniteDifferenceUnreliable:
        return float("nan")


def check_gradient(module, cfg, direct, rng, attempts=3):
    """Gradient row; a draw at a kink is redrawn up to ``attempts`` times."""
    direct = _f64(direct)
    err = float("nan")
    for _ in range(attempts):
        err = gradient_error(module, cfg, direct, rng)
        if not math.isnan(err):
            break
    if math.isnan(err):  # every draw hit a kink: no evidence either way
        return judge("gradient vs finite differences, rel. error", err, GRAD_RTOL, "<=",
                     f"every one of {attempts} draws met a kink of the activation")
    return judge("gradient vs finite differences, rel. error", err, GRAD_RTOL, "<=")


def contraction_step(module, cfg, explicit, M, rng, T=40, B=4, scale=10.0):
    """Largest one-step relative growth ``V_{t+1} / V_t - 1`` of ``V_t = |x^a_t - x^b_t|_M^2``
    along pairs of trajectories from random initial states under the same random input."""
    xp = array_namespace(explicit.A)
    U = xp.asarray(3.0 * rng.standard_normal((T, B, cfg.nu)))
    xa = xp.asarray(scale * rng.standard_normal((B, cfg.nx)))
    xb = xp.asarray(scale * rng.standard_normal((B, cfg.nx)))
    Xa = to_numpy(module.forward(cfg, explicit, xa, U)[2].X)
    Xb = to_numpy(module.forward(cfg, explicit, xb, U)[2].X)
    dX = Xa - Xb
    V = np.einsum("tbi,ij,tbj->tb", dX, to_numpy(M), dX)
    live = V[:-1] > 1e-16 * V[0]  # below this V is rounding noise
    rel = np.divide(V[1:], V[:-1], out=np.zeros_like(V[1:]), where=live) - 1
    return float(rel.max())


def check_contraction(module, cfg, explicit, cache, rng):
    growth = contraction_step(module, cfg, explicit, certificates.metric(cache), rng)
    return judge("contraction in metric M, max V_t+1/V_t - 1", growth, CONTRACTION_TOL, "<=")


def lipschitz_search(module, cfg, explicit, rng, T=12, B=4, steps=30):
    """Largest input-output gain found by random pairs, Jacobian power iteration and gradient
    ascent on the pair ratio (evidence, not proof)."""
    xp = array_namespace(explicit.A)
    f = model_map(module, cfg, explicit, xp.zeros((B, cfg.nx), dtype=xp.float64))
    gain = empirical.random_pair_search(f, (T, B, cfg.nu), xp, xp.float64, rng)
    f1 = model_map(module, cfg, explicit, xp.zeros((1, cfg.nx), dtype=xp.float64))
    gain = max(gain, empirical.jacobian_gain(f1, xp.asarray(rng.standard_normal((T, 1, cfg.nu))), rng))
    U1 = rng.standard_normal((T, B, cfg.nu))
    U2 = U1 + 0.1 * rng.standard_normal(U1.shape)
    return max(gain, empirical.ascend_pair_ratio(f, xp.asarray(U1), xp.asarray(U2), steps=steps))


def check_lipschitz(module, cfg, explicit, rng, steps=30):
    ratio = lipschitz_search(module, cfg, explicit, rng, steps=steps) / cfg.gamma
    return judge("Lipschitz: searched gain / gamma", ratio, 1.0 + LIPSCHITZ_TOL, "<=")


def supply_search(module, cfg, explicit, Q, S, R, rng, T=12, B=4, steps=30):
    """Smallest normalised incremental supply ``sum s(dy, du) / sum |du|^2`` found from equal
    (zero) initial states by random pairs and gradient descent (evidence, not proof)."""
    xp = array_namespace(explicit.A)
    f = model_map(module, cfg, explicit, xp.zeros((B, cfg.nx), dtype=xp.float64))
    worst = np.inf
    for s in (0.1, 1.0, 10.0):
        for ds in (1e-3, 0.1, 1.0):
            U1 = s * rng.standard_normal((T, B, cfg.nu))
            U2 = U1 + ds * rng.standard_normal(U1.shape)
            worst = min(worst, float(empirical.supply_ratios(f, Q, S, R, xp.asarray(U1), xp.asarray(U2)).min()))
    U1 = rng.standard_normal((T, B, cfg.nu))
    U2 = U1 + 0.1 * rng.standard_normal(U1.shape)
    return min(worst, empirical.descend_supply(f, Q, S, R, xp.asarray(U1), xp.asarray(U2), steps=steps))


def check_supply(module, cfg, explicit, direct, rng, steps=30):
    """The (Q, S, R) supply of a (Q, S, R) or learned-gamma model, on sampled and searched pairs.
    The bound is relative to the supply's scale ``max(|Q|, |R|)``."""
    Q, S, R = supply.matrices(cfg, direct)
    scale = max(np.abs(Q).max(), np.abs(R).max())
    worst = supply_search(module, cfg, explicit, Q, S, R, rng, steps=steps) / scale
    return judge("(Q,S,R) supply: searched min sum s / sum |du|^2 / scale", worst, -LIPSCHITZ_TOL, ">=")


def check_model(module, cfg, direct, seed=0, quick=False):
    """Every check for one model; a list of Check rows."""
    if not hasattr(module, "Config") or not isinstance(cfg, module.Config):
        raise TypeError(f"cfg must be a {getattr(module, '__name__', '?').rsplit('.', 1)[-1]}.Config; "
                        f"got {type(cfg).__name__}")
    rng = np.random.default_rng(_validate.seed("seed", seed))
    direct = _f64(direct)
    rows = [check_gradient(module, cfg, direct, rng)]
    explicit, cache = module.direct_to_explicit(cfg, direct)
    rows.extend(certificates.certify(cfg, explicit, cache).checks)
    rows.append(check_contraction(module, cfg, explicit, cache, rng))
    if getattr(cfg, "kind", None) == "qsr" or getattr(cfg, "learn_gamma", False):
        rows.append(check_supply(module, cfg, explicit, direct, rng, steps=10 if quick else 30))
    elif getattr(cfg, "kind", None) == "lipschitz":
        rows.append(check_lipschitz(module, cfg, explicit, rng, steps=10 if quick else 30))
    return rows


def perturbed(module, cfg, seed, tiny=False):
    """A random model away from initialisation: ``init`` plus N(0, 0.5^2) noise on every free
    parameter; ``tiny`` shrinks the polar scale ``p`` so the certificate is nearly tight."""
    rng = np.random.default_rng(_validate.seed("seed", seed))
    d = tree.map(lambda a: a + 0.5 * rng.standard_normal(a.shape), module.init(cfg, seed, backend="numpy"))
    if getattr(d, "p", None) is not None and getattr(d, "X", None) is not None:
        n = math.sqrt(float(np.sum(np.asarray(d.X) ** 2)))
        d = d._replace(p=np.asarray(1e-4 * n if tiny else n * math.exp(rng.normal(0, 0.5))))
    return d


def table(rows):
    """One line per ``(label, Check)`` with the measured value, its bound and the verdict."""
    wl = max([5] + [len(label) for label, _ in rows])
    wc = max([5] + [len(c.name) for _, c in rows])
    lines = [f"{'model':<{wl}}  {'check':<{wc}} {'measured':>11} {'':>2} {'bound':>10}  verdict"]
    for label, c in rows:
        lines.append(f"{label:<{wl}}  {c.name:<{wc}} {c.value:>11.3e} {c.sense:>2} {c.bound:>10.3e}  "
                     f"{verdict_text(c)}")
    return "\n".join(lines)
