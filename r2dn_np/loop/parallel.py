"""Both CPU cores for one gradient pass: the batch split over worker processes.

The sequences of a batch are independent, so ``forward`` cuts the batch into ``n`` contiguous
shards, sends shards ``1 .. n-1`` to persistent worker processes (one per extra core) and rolls
shard 0 out in this process at the same time. Each worker keeps its shard's rollout cache until
``backward`` (or until the returned cache is garbage-collected); only inputs, outputs and
cotangents cross the pipe. Outputs, final states, ``dx0`` and ``dU`` are concatenated along the
batch axis, so they are bitwise those of the serial pass. The weight gradients are the sum of the
shards' gradients in shard order, ``((g_0 + g_1) + g_2) + ...``, so they equal the serial ones to
the rounding of that sum (each shard sums its own ``T*B_i`` rows in one matrix product).

Why processes: Python threads are held back by the GIL, since a time step is ~100 small NumPy
calls whose dispatch runs under the lock (measured on 2 cores: two threads were no faster in
float64 and slower in float32 than one). The workers are started once, with one BLAS thread each
and the parent's ``sys.path`` (so a library imported from a source tree works), and are stopped at
exit or by :func:`shutdown`. This process runs its shard with one BLAS thread as well
(``threadpoolctl``), so the cores are not oversubscribed.

Only NumPy uses workers: CuPy's GPU is one device, and other namespaces (``array_api_strict``)
run serially. How many processes share a pass (this one included), see :func:`resolve`:
``workers=`` on the feedback models' ``forward`` and ``value_and_grad`` (and on ``train.fit``,
``train.refine`` and the experiments), else the environment variable ``R2DN_WORKERS``, else one:
a library call never starts a process unless asked. ``"auto"`` (the command line's default) is
one process per available core when the pass is large enough to gain (see ``AUTO_MIN_WORK``).
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import pickle
import subprocess
import sys
import threading
import traceback
import weakref
from typing import NamedTuple

from array_api_compat import array_namespace, is_numpy_namespace

from . import feedback
from ..core import tree

__all__ = ["Cache", "AUTO", "check_workers", "resolve", "forward", "backward", "shutdown"]

ENV = "R2DN_WORKERS"
# Automatic mode shards a pass only when every shard keeps at least this many sequences and the
# multiply-adds of one time step (batch x explicit weights) reach AUTO_MIN_WORK: below that a
# step costs too little for a second process to pay off. 2^19 with the array-API loop (whose
# dispatch every process pays in full); 2^16 since the compiled loop, measured on a quiet 2-core
# machine (docs/benchmarks.md, "Compiled loops": two processes gained 1.17-1.7x from nh = 16 up).
AUTO_MIN_ROWS = 8
AUTO_MIN_WORK = 2**16


class Cache(NamedTuple):
    """A sharded pass's cache: ``U`` is the whole input (for shape checks), ``local`` shard 0's
    ``feedback.Cache``; the other shards' caches stay in the workers."""

    U: object
    explicit: object  # the weights of the forward pass, reused by workers when backward gets the same
    bounds: tuple  # (start, stop) of every shard along the batch
    local: feedback.Cache
    remote: object  # _Remote: the workers' tokens; dropping it frees their caches


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


AUTO = "auto"


def check_workers(workers, name="workers"):
    """``workers`` as :func:`resolve` takes it: None, a positive int or ``"auto"``; ValueError
    naming ``name`` otherwise."""
    if workers is None or (isinstance(workers, str) and workers == AUTO):
        return workers
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"{name} must be an integer >= 1 (1: serial), 'auto' or None; got {workers!r}")
    if workers < 1:
        raise ValueError(f"{name} must be an integer >= 1 (1: serial), 'auto' or None; got {workers}")
    return workers


def _from_env():
    env = os.environ.get(ENV, "").strip()
    if not env:
        return None
    if env != AUTO and (not env.isdigit() or int(env) < 1):
        raise ValueError(f"{ENV} must be a positive integer (1: serial) or 'auto'; got {env!r}")
    return env if env == AUTO else int(env)


def resolve(workers, U, explicit):
    """How many processes share a pass over ``U : (T, B, nu)`` (1 means serial).

    ``workers`` (a positive int, or ``"auto"``) wins, else ``R2DN_WORKERS`` (the same), else 1:
    a library call starts no process unless asked (the command line asks for ``"auto"``).
    ``"auto"``: one per available core when ``B * weights >= AUTO_MIN_WORK``, keeping
    ``AUTO_MIN_ROWS`` sequences per shard. Never more than ``B``; always 1 unless ``U`` is a
    NumPy array.
    """
    check_workers(workers)
    if not is_numpy_namespace(array_namespace(U)):
        return 1
    B = int(U.shape[1])
    if workers is None:
        workers = _from_env() or 1
    if workers != AUTO:
        return max(1, min(workers, B))
    if B * tree.size(explicit) < AUTO_MIN_WORK:  # multiply-adds per step and sequence: the weights
        return 1
    return max(1, min(_cores(), B // AUTO_MIN_ROWS))


def _bounds(B, n):
    """``n`` contiguous shards of ``B`` sequences, sizes differing by at most one."""
    cuts = [B * i // n for i in range(n + 1)]
    return tuple(zip(cuts[:-1], cuts[1:]))


# --- what a worker runs -------------------------------------------------------------------------

_KEPT = {}  # in a worker: token -> (explicit, phi, cache) between forward and backward


def _shard_forward(token, phi_ref, explicit, x0, U, checkpoint_every, jit):
    phi = phi_ref[0](phi_ref[1])
    xT, Y, cache = feedback.forward(explicit, phi, x0, U, checkpoint_every, jit)
    _KEPT[token] = (explicit, phi, cache)
    return xT, Y


def _shard_backward(token, explicit, dY, dxT, jit):
    kept_explicit, phi, cache = _KEPT[token]
    return feedback.backward(kept_explicit if explicit is None else explicit, phi, cache, dY, dxT, jit)


def _kept_count():
    """How many shard caches this worker holds (for tests of their release)."""
    return len(_KEPT)


def _serve():
    """A worker's loop: read ``(function, args, tokens to drop)``, reply ``(ok, value)``."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    requests = sys.stdin.buffer
    with os.fdopen(os.dup(1), "wb") as replies:
        os.dup2(2, 1)  # a stray print must not corrupt the reply stream
        while True:
            try:
                fn, args, drops = pickle.load(requests)
            except EOFError:
                return
            for token in drops:
                _KEPT.pop(token, None)
            try:
                reply = (True, fn(*args))
            except BaseException:  # noqa: BLE001 - reported to the parent, which raises
                reply = (False, traceback.format_exc())
            pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
            replies.flush()


# --- the parent's side ----------------------------------------------------------------------------

_BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
         "from r2dn_np.loop.parallel import _serve; _serve()")


class _Worker:
    def __init__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   **{ENV: "1"})  # a worker never shards again
        path = [p for p in sys.path if isinstance(p, str)]
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, json.dumps(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.pending = False

    def send(self, fn, args, drops):
        pickle.dump((fn, args, drops), self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.proc.stdin.flush()
        self.pending = True

    def receive(self):
        try:
            ok, value = pickle.load(self.proc.stdout)
        except EOFError:
            raise RuntimeError(f"r2dn_np worker process {self.proc.pid} exited "
                               f"(code {self.proc.poll()}); see its messages above") from None
        self.pending = False
        if not ok:
            raise RuntimeError(f"in r2dn_np worker process {self.proc.pid}:\n{value}")
        return value

    def close(self):
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Pool:
    def __init__(self):
        self.workers = []
        self.lock = threading.RLock()
        self.drops = {}  # worker -> tokens whose caches it may free
        self.tokens = itertools.count()
        self.blas = None

    def get(self, n):
        """At least ``n`` live workers (started on first use)."""
        self.workers = [w for w in self.workers if w.proc.poll() is None and not w.pending]
        while len(self.workers) < n:
            self.workers.append(_Worker())
        return self.workers[:n]

    def drop(self, pairs):
        """Called when a sharded cache dies (any time, any thread): free at the next request."""
        for worker, token in pairs:
            self.drops.setdefault(worker, []).append(token)

    def take_drops(self, worker):
        return self.drops.pop(worker, [])

    def one_blas_thread(self):
        if self.blas is None:
            from threadpoolctl import ThreadpoolController

            self.blas = ThreadpoolController()
        return self.blas.limit(limits=1, user_api="blas")

    def shutdown(self):
        with self.lock:
            workers, self.workers = self.workers, []
            self.drops.clear()
        for w in workers:
            w.close()


_POOL = _Pool()
atexit.register(_POOL.shutdown)
_INHERITED = []  # a forked child's copies of the parent's workers: never used, never collected


def _forget_workers_after_fork():
    """A forked child must not talk to its parent's workers: it starts its own when needed."""
    _INHERITED.extend(_POOL.workers)
    _POOL.workers, _POOL.drops = [], {}
    _POOL.lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers_after_fork)


def shutdown():
    """Stop the worker processes (they start again when a parallel pass needs them)."""
    _POOL.shutdown()


class _Remote:
    """The workers' tokens of one sharded cache; when it dies they may drop those caches."""

    def __init__(self, pairs):
        self.pairs = pairs
        weakref.finalize(self, _POOL.drop, pairs)


def _run(workers, calls, local):
    """Send ``calls[i] = (fn, args)`` to ``workers[i]``, run ``local()`` here meanwhile, and
    return ``(local result, [worker results])``. A worker whose reply was not read (an error
    here) is stopped, so no reply is ever read out of turn."""
    try:
        for w, (fn, args) in zip(workers, calls):
            w.send(fn, args, _POOL.take_drops(w))
        with _POOL.one_blas_thread():
            here = local()
        return here, [w.receive() for w in workers]
    finally:
        for w in workers:
            if w.pending:
                _POOL.workers.remove(w)
                w.proc.kill()
                w.close()


def forward(explicit, phi, phi_ref, x0, U, n, checkpoint_every=None, jit=None):
    """:func:`feedback.forward` with the batch split into ``n`` shards. ``phi_ref = (factory,
    arg)`` rebuilds ``phi`` in a worker (``factory(arg)``; both picklable). Returns
    ``(xT, Y, Cache)``."""
    xp = array_namespace(U)
    bounds = _bounds(int(U.shape[1]), n)
    (a, b), rest = bounds[0], bounds[1:]
    with _POOL.lock:
        tokens = [next(_POOL.tokens) for _ in rest]
        calls = [(_shard_forward, (tok, phi_ref, explicit, x0[s:f, ...], U[:, s:f, ...], checkpoint_every, jit))
                 for tok, (s, f) in zip(tokens, rest)]
        workers = _POOL.get(len(calls))
        (xT0, Y0, local), outs = _run(
            workers, calls,
            lambda: feedback.forward(explicit, phi, x0[a:b, ...], U[:, a:b, ...], checkpoint_every, jit))
    xT = xp.concat([xT0] + [o[0] for o in outs], axis=0)
    Y = xp.concat([Y0] + [o[1] for o in outs], axis=1)
    return xT, Y, Cache(U, explicit, bounds, local, _Remote(list(zip(workers, tokens))))


def backward(explicit, phi, cache, dY, dxT=None, jit=None):
    """:func:`feedback.backward` of a sharded ``forward``: the weight gradients are summed in
    shard order, ``dx0`` and ``dU`` concatenated along the batch. The workers use the weights
    they were sent by ``forward`` when ``explicit`` is that same object (arrays changed in place
    since then are not seen), else they are sent ``explicit``."""
    xp = array_namespace(dY)
    (a, b), rest = cache.bounds[0], cache.bounds[1:]
    same = explicit is cache.explicit  # the workers kept it: do not send it again

    def part(s, f, d):
        return None if d is None else d[s:f, ...]

    with _POOL.lock:
        pairs = cache.remote.pairs
        workers = [w for w, _ in pairs]
        if any(w not in _POOL.workers or w.proc.poll() is not None for w in workers):
            raise RuntimeError("the worker processes of this forward pass were stopped (parallel.shutdown "
                               "or an error); run forward again")
        calls = [(_shard_backward, (tok, None if same else explicit, dY[:, s:f, ...], part(s, f, dxT), jit))
                 for (_, tok), (s, f) in zip(pairs, rest)]
        (d0, dx0, dU0), outs = _run(
            workers, calls,
            lambda: feedback.backward(explicit, phi, cache.local, dY[:, a:b, ...], part(a, b, dxT), jit))
    grads = d0
    for d, _, _ in outs:
        grads = _add(grads, d)
    dx0 = xp.concat([dx0] + [o[1] for o in outs], axis=0)
    dU = xp.concat([dU0] + [o[2] for o in outs], axis=1)
    return grads, dx0, dU


def _add(a, b):
    """``a + b`` over matching containers (NamedTuples, tuples, None leaves)."""
    if a is None:
        return None
    if isinstance(a, tuple):
        items = [_add(x, y) for x, y in zip(a, b)]
        return type(a)(*items) if hasattr(a, "_fields") else tuple(items)
    return a + b
