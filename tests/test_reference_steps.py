"""The fast time loops against a Python loop over their one-step references.

Each fast loop (``loop/feedback.py`` with its compiled twin, the Lipschitz RNN's forms, the tanh
RNN) has beside it a step-sized reference, forward and backward in plain array code. Here random
models run through both, and the outputs, final state and every gradient must agree to 1e-12
(relative to the largest entry of each array).
"""

import numpy as np
import pytest

from r2dn_np import lipschitz_rnn, r2dn, ren, tanh_rnn
from r2dn_np.core import tree
from r2dn_np.loop import compiled, feedback, reference

T, B = 7, 3


def close(name, fast, ref):
    """``fast`` equals ``ref`` to 1e-12 of the larger of 1 and ``ref``'s largest entry."""
    fast, ref = np.asarray(fast), np.asarray(ref)
    assert fast.shape == ref.shape, name
    np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(ref).max()), err_msg=name)


def close_trees(fast, ref):
    fast_paths, ref_paths = dict(tree.paths(fast)), dict(tree.paths(ref))
    assert fast_paths.keys() == ref_paths.keys()
    for path, a in ref_paths.items():
        close(str(path), fast_paths[path], a)


def perturbed(module, cfg, seed):
    """A random model away from the initialisation, so no weight is special (zero, identity)."""
    rng = np.random.default_rng(seed)
    direct = module.init(cfg, seed)
    return tree.map(lambda a: a + 0.3 * rng.standard_normal(np.shape(a)), direct), rng


# --- the feedback loop (R2DN and REN), both paths --------------------------------------------


def reference_feedback(explicit, phi, x0, U, dY, dxT):
    """``feedback.forward`` and ``feedback.backward`` as a Python loop over ``reference``."""
    x, Y, caches = x0, [], []
    for t in range(U.shape[0]):
        x, y, c = reference.step(explicit, phi, x, U[t])
        Y.append(y)
        caches.append(c)
    dx, dU, grads = dxT, [None] * len(caches), None
    for t in range(len(caches) - 1, -1, -1):
        g, dx, dU[t] = reference.step_vjp(explicit, phi, caches[t], dx, dY[t])
        grads = g if grads is None else tree.map(lambda a, b: a + b, grads, g)
    return x, np.stack(Y), grads, dx, np.stack(dU)


FEEDBACK_MODELS = [
    (r2dn, dict(nu=2, nx=3, nv=4, ny=2, hidden=(5,), kind="contracting", activation="tanh")),
    (r2dn, dict(nu=3, nx=4, nv=3, ny=2, hidden=(4, 3), kind="lipschitz", activation="relu", gamma=2.0)),
    (ren, dict(nu=2, nx=3, nv=4, ny=2, kind="contracting", activation="tanh")),
    (ren, dict(nu=2, nx=3, nv=5, ny=3, kind="lipschitz", activation="relu", gamma=1.5)),
    (ren, dict(nu=2, nx=3, nv=4, ny=2, kind="contracting", activation="tanh", layer="full")),
]


@pytest.mark.parametrize("jit", [False, None], ids=["array-api", "default"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("module, options", FEEDBACK_MODELS,
                         ids=[f"{m.__name__.rsplit('.', 1)[-1]}-{o['kind']}-{o.get('layer', '')}"
                              for m, o in FEEDBACK_MODELS])
def test_feedback_loop_equals_reference_steps(module, options, seed, jit):
    cfg = module.Config(**options)
    direct, rng = perturbed(module, cfg, seed)
    explicit, _ = module.direct_to_explicit(cfg, direct)
    phi = module.phi(cfg)
    x0, U = rng.standard_normal((B, cfg.nx)), rng.standard_normal((T, B, cfg.nu))
    dY, dxT = rng.standard_normal((T, B, cfg.ny)), rng.standard_normal((B, cfg.nx))

    xT, Y, cache = feedback.forward(explicit, phi, x0, U, jit=jit)
    d_explicit, dx0, dU = feedback.backward(explicit, phi, cache, dY, dxT, jit=jit)
    xT_ref, Y_ref, d_ref, dx0_ref, dU_ref = reference_feedback(explicit, phi, x0, U, dY, dxT)

    close("xT", xT, xT_ref)
    close("Y", Y, Y_ref)
    close("dx0", dx0, dx0_ref)
    close("dU", dU, dU_ref)
    close_trees(d_explicit, d_ref)


def test_feedback_reference_is_what_the_loop_runs_on_a_changed_model():
    """Negative control: the comparison above would catch a loop that differs from the
    reference (here, the reference run on a model with a perturbed ``A``)."""
    module, options = FEEDBACK_MODELS[0]
    cfg = module.Config(**options)
    direct, rng = perturbed(module, cfg, 0)
    explicit, _ = module.direct_to_explicit(cfg, direct)
    phi = module.phi(cfg)
    x0, U = rng.standard_normal((B, cfg.nx)), rng.standard_normal((T, B, cfg.nu))
    _, Y, _ = feedback.forward(explicit, phi, x0, U, jit=False)
    changed = explicit._replace(A=explicit.A * (1.0 + 1e-9))
    _, Y_changed, _, _, _ = reference_feedback(changed, phi, x0, U, np.zeros((T, B, cfg.ny)), np.zeros((B, cfg.nx)))
    with pytest.raises(AssertionError):
        close("Y", Y, Y_changed)


def test_the_default_path_is_compiled_where_numba_imports():
    """So that the ``default`` cases above test the compiled loop wherever it exists."""
    cfg = r2dn.Config(**FEEDBACK_MODELS[0][1])
    x = np.zeros((B, cfg.nx))
    assert (r2dn.phi(cfg).compiled is not None and compiled.use((x,), None)) == compiled.available()


# --- the RNNs ---------------------------------------------------------------------------------


def reference_rnn(module, cfg, explicit, x0, U, dY, dxT):
    """``forward`` and ``backward`` of an RNN as a Python loop over ``module._reference_step``."""
    H = [x0]
    for t in range(U.shape[0]):
        H.append(module._reference_step(cfg, explicit, H[-1], U[t]))
    Hn = np.stack(H[1:])
    Y = Hn[-1:] @ explicit.D.T + explicit.by if cfg.decoder == "last" else Hn @ explicit.D.T + explicit.by
    dH = np.zeros_like(Hn)  # what the outputs send to each h_{t+1}
    if cfg.decoder == "last":
        dH[-1] = dY[0] @ explicit.D
        dD, dby = dY[0].T @ Hn[-1], dY[0].sum(axis=0)
    else:
        dH = dY @ explicit.D
        dD, dby = np.einsum("tbo,tbn->on", dY, Hn), dY.sum(axis=(0, 1))
    a, dU, grads = dxT + dH[-1], [None] * len(U), None
    for t in range(len(U) - 1, -1, -1):
        g, a, dU[t] = module._reference_step_vjp(cfg, explicit, H[t], U[t], a)
        grads = g if grads is None else tree.map(lambda p, q: p + q, grads, g)
        if t > 0:
            a = a + dH[t - 1]
    return H[-1], Y, grads._replace(D=dD, by=dby), a, np.stack(dU)


RNNS = [
    (tanh_rnn, dict(n_in=2, n_units=5, n_out=3, decoder="sequence")),
    (tanh_rnn, dict(n_in=2, n_units=5, n_out=3, decoder="last")),
    (lipschitz_rnn, dict(n_in=2, n_units=5, n_out=3, decoder="sequence", scheme="euler", eps=0.1)),
    (lipschitz_rnn, dict(n_in=2, n_units=5, n_out=3, decoder="last", scheme="imex", eps=0.2, rho=0.3)),
    (lipschitz_rnn, dict(n_in=2, n_units=5, n_out=3, decoder="sequence", scheme="midpoint", eps=0.1, alpha=0.7)),
    (lipschitz_rnn, dict(n_in=2, n_units=5, n_out=3, decoder="sequence", scheme="rk4", eps=0.1, alpha=0.7)),
    (lipschitz_rnn, dict(n_in=2, n_units=5, n_out=3, decoder="sequence", gated=True, eps=0.1, alpha=0.7)),
]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("module, options", RNNS,
                         ids=[f"{m.__name__.rsplit('.', 1)[-1]}-{o.get('scheme', '')}{'-gated' * o.get('gated', False)}"
                              f"-{o['decoder']}" for m, o in RNNS])
def test_rnn_loop_equals_reference_steps(module, options, seed):
    cfg = module.Config(**options, init_std=3.0)
    direct, rng = perturbed(module, cfg, seed)
    explicit, _ = module.direct_to_explicit(cfg, direct)
    x0, U = rng.standard_normal((B, cfg.n_units)), rng.standard_normal((T, B, cfg.n_in))
    T_out = 1 if cfg.decoder == "last" else T
    dY, dxT = rng.standard_normal((T_out, B, cfg.n_out)), rng.standard_normal((B, cfg.n_units))

    xT, Y, cache = module.forward(cfg, explicit, x0, U)
    d_explicit, dx0, dU = module.backward(cfg, explicit, cache, dY, dxT)
    xT_ref, Y_ref, d_ref, dx0_ref, dU_ref = reference_rnn(module, cfg, explicit, x0, U, dY, dxT)

    close("xT", xT, xT_ref)
    close("Y", Y, Y_ref)
    close("dx0", dx0, dx0_ref)
    close("dU", dU, dU_ref)
    close_trees(d_explicit, d_ref)


@pytest.mark.parametrize("module, options", [RNNS[0], RNNS[5]], ids=["tanh", "rk4"])
def test_rnn_reference_vjp_matches_finite_differences(module, options):
    """The references are themselves right: their VJP against central differences of the step."""
    cfg = module.Config(**options, init_std=3.0)
    direct, rng = perturbed(module, cfg, 3)
    explicit, _ = module.direct_to_explicit(cfg, direct)
    h, x = rng.standard_normal((B, cfg.n_units)), rng.standard_normal((B, cfg.n_in))
    dh_next = rng.standard_normal((B, cfg.n_units))
    g, dh, dx = module._reference_step_vjp(cfg, explicit, h, x, dh_next)

    def f(e=explicit, h=h, x=x):
        return float(np.sum(dh_next * module._reference_step(cfg, e, h, x)))

    eps = 1e-6
    for name, value, analytic in [("h", h, dh), ("x", x, dx), ("W", explicit.W, g.W), ("U", explicit.U, g.U)]:
        direction = rng.standard_normal(value.shape)

        def at(step, name=name, value=value, direction=direction):
            moved = value + step * direction
            if name in ("h", "x"):
                return f(**{name: moved})
            return f(e=explicit._replace(**{name: moved}))

        fd = (at(eps) - at(-eps)) / (2 * eps)
        assert abs(fd - np.sum(analytic * direction)) <= 1e-7 * max(1.0, abs(fd)), name
