"""What validation costs on one training step: r2dn.value_and_grad (nx 16, nv 32, hidden (32,),
T 128, B 10, one BLAS thread) against the checks it and forward/backward run, each timed alone,
best of 7 rounds. Usage: python scripts/bench_validation.py"""
import timeit
import numpy as np
from threadpoolctl import threadpool_limits
from r2dn_np.core import _validate
from r2dn_np.loop import feedback_model
from r2dn_np.training import losses
from r2dn_np import r2dn

cfg = r2dn.Config(nu=1, nx=16, nv=32, ny=1, hidden=(32,))
direct = r2dn.init(cfg, seed=0)
rng = np.random.default_rng(0)
T, B = 128, 10
U, x0, target = rng.standard_normal((T, B, 1)), np.zeros((B, 16)), rng.standard_normal((T, B, 1))


def loss(Y):
    return losses.mse(Y, target)


template = r2dn._templates(cfg)
explicit, _ = r2dn.direct_to_explicit(cfg, direct)
Y = r2dn.forward(cfg, explicit, x0, U)[1]
out = loss(Y)

def best(f, n, rounds=7):
    return min(timeit.repeat(f, number=n, repeat=rounds)) / n

with threadpool_limits(limits=1):
    step = best(lambda: r2dn.value_and_grad(cfg, direct, x0, U, loss), 20)
    c_direct = best(lambda: _validate.container("direct", direct, template[0]), 500)
    c_explicit = best(lambda: _validate.container("explicit", explicit, template[1]), 500)
    seq = best(lambda: feedback_model._check_sequence(cfg, explicit.A, x0, U), 500)
    lo = best(lambda: _validate.loss_output(out, Y), 500)
print(f"value_and_grad step          {step * 1e3:8.3f} ms")
for name, t in (("container(direct)", c_direct), ("container(explicit)", c_explicit),
                ("U and x0 checks", seq), ("loss_output", lo)):
    print(f"{name:<28} {t * 1e6:8.1f} us  ({100 * t / step:.2f} % of a step)")
total = c_direct + c_explicit + seq + lo
print(f"{'all four':<28} {total * 1e6:8.1f} us  ({100 * total / step:.2f} % of a step)")
