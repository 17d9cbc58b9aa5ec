"""Lipschitz RNN: a sequence classifier's loss and gradient, and the eigenvalue bounds of its A.

Run: python docs/examples/lipschitz_rnn_classifier.py   (about a second)
"""
import numpy as np

from r2dn_np.training import classify
from r2dn_np import lipschitz_rnn as lrnn
from r2dn_np.checks import stability

cfg = lrnn.Config(n_in=1, n_units=32, n_out=10, beta=0.75, gamma=0.2, eps=0.5, scheme="imex", rho=0.5)
direct = lrnn.init(cfg, seed=0)
U, labels = np.random.default_rng(0).random((28, 16, 1)), np.arange(16) % 10   # (T, B, n_in), (B,)
loss, d_direct = classify.value_and_grad(lrnn, cfg, direct, U, labels)
low, high = stability.eigenvalue_bounds(direct.M, cfg.beta, cfg.gamma)
print(f"cross-entropy {float(loss):.3f}; real parts of the eigenvalues of A in "
      f"[{low:.3f}, {high:.3f}]")
eig = np.linalg.eigvals(np.asarray(lrnn.direct_to_explicit(cfg, direct)[0].A)).real
assert low - 1e-9 <= eig.min() and eig.max() <= high + 1e-9
