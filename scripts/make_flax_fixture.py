"""Write the fixtures of tests/test_flax_equality.py from the authors' JAX/Flax models.

Not part of the library or its tests: run it in a separate environment that has jax, flax
and the authors' ``robustnn`` package (the R2DN paper's code) importable, e.g.

    python -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install "jax[cpu]" flax
    PYTHONPATH=/path/to/R2DN /tmp/jaxenv/bin/python scripts/make_flax_fixture.py tests/data

For a few small models (their ContractingR2DN, ContractingREN and LipschitzREN) in float64,
it moves every parameter off its initial value and stores the parameter tree, an input
sequence, the outputs and the gradients (``jax.value_and_grad`` of ``sum(Y * Wy) + sum(xT *
Wx)``) that tests/test_flax_equality.py compares ours with: flax_contracting_r2dn.npz and
flax_ren.npz (their default eps = 2^-23), and flax_eps_identity.npz (non-default eps, for
which their polar norm still adds 2^-23, and identity_output; each case records its eps).
"""
import json
import os
import sys

import numpy as np
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
from flax import linen as nn  # noqa: E402
from robustnn import r2dn, ren  # noqa: E402

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh}
T, B = 6, 2

R2DN_CASES = {
    "relu": dict(nu=2, nx=3, nv=4, ny=3, hidden=[5, 3], activation="relu"),
    "tanh": dict(nu=2, nx=3, nv=4, ny=3, hidden=[5, 3], activation="tanh"),
}
# their LipschitzREN builds the D22 identity as ny x ny, so only ny <= nu runs there
REN_CASES = {
    "contracting_relu": dict(kind="contracting", nu=2, nx=3, nv=4, ny=3, activation="relu", abar=0.9),
    "lipschitz_tanh": dict(kind="lipschitz", nu=3, nx=3, nv=5, ny=2, activation="tanh", abar=1.0, gamma=2.0),
    "lipschitz_relu_d22zero": dict(kind="lipschitz", nu=2, nx=2, nv=3, ny=2, activation="relu", abar=0.95,
                                   gamma=0.5, d22="zero"),
}


EPS_IDENTITY_CASES = {
    "r2dn_eps": dict(model="r2dn", nu=2, nx=3, nv=4, ny=2, hidden=[5, 3], activation="tanh", eps=1e-3),
    "r2dn_identity": dict(model="r2dn", nu=2, nx=3, nv=4, ny=3, hidden=[5], activation="relu", eps=0.05,
                          identity_output=True),
    "ren_contracting_identity": dict(model="ren", kind="contracting", nu=2, nx=3, nv=4, ny=3, activation="tanh",
                                     abar=0.9, eps=1e-3, identity_output=True),
    "ren_lipschitz_eps": dict(model="ren", kind="lipschitz", nu=3, nx=3, nv=4, ny=2, activation="tanh",
                              abar=1.0, gamma=2.0, eps=0.01),
}


def _options(c):
    return dict(eps=c.get("eps", float(np.finfo(np.float32).eps)), identity_output=c.get("identity_output", False))


def r2dn_model(c):
    return r2dn.ContractingR2DN(c["nu"], c["nx"], c["nv"], c["ny"], tuple(c["hidden"]),
                                activation=ACTIVATIONS[c["activation"]], param_dtype=jnp.float64, **_options(c))


def ren_model(c):
    common = dict(activation=ACTIVATIONS[c["activation"]], param_dtype=jnp.float64, abar=c["abar"], **_options(c))
    if c["kind"] == "contracting":
        return ren.ContractingREN(c["nu"], c["nx"], c["nv"], c["ny"], **common)
    return ren.LipschitzREN(c["nu"], c["nx"], c["nv"], c["ny"], gamma=c["gamma"],
                            d22_zero=c.get("d22") == "zero", **common)


def case_arrays(model, c, seed):
    params = model.init(jax.random.key(seed), jnp.zeros((B, c["nx"])), jnp.zeros((B, c["nu"])))
    rng = np.random.default_rng(seed + 1)
    # move every parameter off its initial value so biases, d, D22, Y3 and Z3 all matter
    params = jax.tree_util.tree_map(lambda a: a + 0.3 * rng.standard_normal(a.shape), params)
    x0, U = rng.standard_normal((B, c["nx"])), rng.standard_normal((T, B, c["nu"]))
    Wy, Wx = rng.standard_normal((T, B, c["ny"])), rng.standard_normal((B, c["nx"]))

    def loss(params, x0, U):
        xT, Y = model.simulate_sequence(params, x0, U)
        return jnp.sum(Y * Wy) + jnp.sum(xT * Wx), (xT, Y)

    (val, (xT, Y)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, x0, U)
    out = {}
    for prefix, tree in (("params/", params), ("grad/", grads[0])):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            out[prefix + "/".join(k.key for k in path[1:])] = np.asarray(leaf)
    out.update(x0=x0, U=U, Wy=Wy, Wx=Wx, xT=np.asarray(xT), Y=np.asarray(Y), grad_x0=np.asarray(grads[1]),
               grad_U=np.asarray(grads[2]), loss=np.asarray(val))
    return out


def write(path, cases, make_model, source):
    arrays = {}
    for k, (name, c) in enumerate(cases.items()):
        arrays.update({f"{name}/{key}": a for key, a in case_arrays(make_model(c), c, k).items()})
    meta = dict(cases=cases, T=T, B=B, eps=float(np.finfo(np.float32).eps), source=source + ", jax " + jax.__version__,
                loss="sum(Y * Wy) + sum(xT * Wx)")
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)
    print(path, sorted(cases))


if __name__ == "__main__":
    out = sys.argv[1]
    write(os.path.join(out, "flax_contracting_r2dn.npz"), R2DN_CASES, r2dn_model,
          "nic-barbara/R2DN robustnn.r2dn.ContractingR2DN (commit 3535c109)")
    write(os.path.join(out, "flax_ren.npz"), REN_CASES, ren_model,
          "nic-barbara/R2DN robustnn.ren ContractingREN / LipschitzREN (commit 5191115b)")
    write(os.path.join(out, "flax_eps_identity.npz"), EPS_IDENTITY_CASES,
          lambda c: (r2dn_model if c["model"] == "r2dn" else ren_model)(c),
          "nic-barbara/R2DN robustnn.r2dn (3535c109) and robustnn.ren (5191115b)")
