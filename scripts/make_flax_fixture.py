"""Write tests/data/flax_contracting_r2dn.npz from the authors' JAX/Flax ContractingR2DN.

Not part of the library or its tests: run it in a separate environment that has jax, flax
and the authors' ``robustnn`` package (the R2DN paper's code) importable, e.g.

    python -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install "jax[cpu]" flax
    PYTHONPATH=/path/to/R2DN /tmp/jaxenv/bin/python scripts/make_flax_fixture.py tests/data/flax_contracting_r2dn.npz

It builds a small relu and a small tanh model in float64, moves every parameter off its
initial value, and stores the parameter tree, an input sequence, the outputs and the
gradients (``jax.value_and_grad``) that tests/test_flax_equality.py compares ours with.
"""
import sys, json
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from flax import linen as nn
from robustnn import r2dn

out = sys.argv[1]
nu, nx, nv, ny, hidden, T, B = 2, 3, 4, 3, (5, 3), 6, 2
arrays = {}
for act_name, act in (("relu", nn.relu), ("tanh", nn.tanh)):
    model = r2dn.ContractingR2DN(nu, nx, nv, ny, hidden, activation=act, param_dtype=jnp.float64)
    params = model.init(jax.random.key(0), jnp.zeros((B, nx)), jnp.zeros((B, nu)))
    rng = np.random.default_rng(1)
    # move every parameter off its initial value so biases, d and D22 matter
    params = jax.tree_util.tree_map(lambda a: a + 0.3 * rng.standard_normal(a.shape), params)
    x0 = rng.standard_normal((B, nx)); U = rng.standard_normal((T, B, nu))
    Wy = rng.standard_normal((T, B, ny)); Wx = rng.standard_normal((B, nx))
    def loss(params, x0, U):
        xT, Y = model.simulate_sequence(params, x0, U)
        return jnp.sum(Y * Wy) + jnp.sum(xT * Wx), (xT, Y)
    (val, (xT, Y)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, x0, U)
    pre = act_name + "/"
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        arrays[pre + "params/" + "/".join(k.key for k in path[1:])] = np.asarray(leaf)
    for path, leaf in jax.tree_util.tree_flatten_with_path(grads[0])[0]:
        arrays[pre + "grad/" + "/".join(k.key for k in path[1:])] = np.asarray(leaf)
    arrays.update({pre + "x0": x0, pre + "U": U, pre + "Wy": Wy, pre + "Wx": Wx, pre + "xT": np.asarray(xT),
                   pre + "Y": np.asarray(Y), pre + "grad_x0": np.asarray(grads[1]), pre + "grad_U": np.asarray(grads[2]),
                   pre + "loss": np.asarray(val)})
meta = dict(nu=nu, nx=nx, nv=nv, ny=ny, hidden=list(hidden), T=T, B=B, eps=float(np.finfo(np.float32).eps),
            source="nic-barbara/R2DN robustnn.r2dn.ContractingR2DN (commit 3535c109), jax " + jax.__version__,
            loss="sum(Y * Wy) + sum(xT * Wx)")
np.savez(out, __meta__=np.array(json.dumps(meta)), **arrays)
print(sorted(k for k in arrays if k.startswith("relu/params")))
print(meta)
