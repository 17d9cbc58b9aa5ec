"""Replay a whole computation as one CUDA graph on CuPy, for inputs of fixed shapes.

Why: a CuPy gradient pass of a small recurrent model queues ~70 small kernels per time step, and
launching them costs more than running them (``docs/benchmarks.md``, GPU section). A CUDA graph
records the launches of one call once; replaying it is one launch from Python.

:func:`captured` wraps a function of arrays (parameter containers, sequences) and keyword values
that are not arrays (configs, modules, sizes). On any namespace but CuPy it calls the function:
one code path, nothing changes. On CuPy, for each new *key* (the arguments' tree structure,
shapes and dtypes, and the keyword values) it

1. calls the function normally: every input check runs, kernels compile, and that call's
   result is returned;
2. copies the array arguments into buffers it owns and records the function on them on a side
   stream. Every allocation made while recording comes from a memory pool of the capture's own,
   which nothing else ever draws from, so no later array can share memory that a replay
   writes. Checks that need a value from the device (NaN/Inf in parameters, the loss value)
   cannot run while recording (a host sync ends a capture) and are suspended
   (``_validate.values_unchecked``); shape, dtype and type checks still run. CuPy refuses
   cuBLAS calls during a capture, so the products the time loops write as ``kernels.matmul``
   go to cuBLAS directly meanwhile (``kernels.direct_blas``); a product written ``a @ b`` (the
   parameter maps, with their cuSOLVER factorisations) makes the capture fail, so a training
   step records the rollout, loss and BPTT and runs the map and its VJP outside the graph.

Later calls with the same key copy the arguments into the buffers, launch the graph on the
current stream and return copies of its outputs. The graph also sums every input and output
into one number; if that is not finite the call is repeated without the graph, so a NaN
in, or a non-finite result, is reported (or returned) exactly as the uncaptured function
would. Cost: one host sync per call, which a training step pays anyway to read its loss.

Rules for the wrapped function: every array it reads must come in through its arguments (an
array reached through a closure or a global is frozen into the graph at its address, with the
value it has at each replay, which is rarely what is meant); it must not copy from or to the
host, or branch on array values; Python values it depends on go in as keyword arguments, which
are part of the key. A capture that fails (the function synchronises, say) is not an error:
that key then runs uncaptured, with a ``RuntimeWarning`` naming the cause.

Control: ``enabled=False`` or the environment variable ``R2DN_CUDA_GRAPHS=0`` turns capture off.
At most ``max_graphs`` keys (default 8) are kept, least recently used dropped first.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections import OrderedDict

from array_api_compat import array_namespace, is_cupy_array

from ..core import _validate, kernels, tree

__all__ = ["captured", "Captured"]


def _enabled_by_env():
    return os.environ.get("R2DN_CUDA_GRAPHS", "1") != "0"


class _Graph:
    """One recorded call: the input buffers it reads, the outputs it writes, its memory."""

    def __init__(self, graph, inputs, outputs, check, pool, stream):
        self.graph, self.inputs, self.outputs, self.check = graph, inputs, outputs, check
        self.pool, self.stream = pool, stream  # kept alive as long as the graph


class Captured:
    """``fn`` as a replayed CUDA graph per key on CuPy; ``fn`` itself elsewhere. See the module
    docstring; use :func:`captured` to make one."""

    def __init__(self, fn, *, enabled=None, max_graphs=8):
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        self.fn = fn
        self.enabled = _enabled_by_env() if enabled is None else _validate.flag("enabled", enabled)
        self.max_graphs = _validate.positive_int("max_graphs", max_graphs)
        self._graphs = OrderedDict()  # key -> _Graph, or the reason capture failed (a str)
        self._lock = threading.Lock()  # a graph's buffers serve one call at a time
        self.stats = {"captures": 0, "replays": 0, "eager": 0, "failed": 0, "fallbacks": 0}

    def __call__(self, *args, **static):
        leaves = tree.leaves(args)
        if not (self.enabled and leaves and all(is_cupy_array(a) for a in leaves)):
            self.stats["eager"] += 1
            return self.fn(*args, **static)
        key = _key(args, leaves, static)
        if key is None:
            self.stats["eager"] += 1
            return self.fn(*args, **static)
        with self._lock:
            return self._call(key, args, static)

    def _call(self, key, args, static):
        entry = self._graphs.get(key)
        if entry is None:
            out = self.fn(*args, **static)  # checked, compiled, and this call's answer
            self.stats["eager"] += 1
            self._remember(key, self._record(args, static))
            return out
        self._graphs.move_to_end(key)
        if isinstance(entry, str):
            self.stats["eager"] += 1
            return self.fn(*args, **static)
        return self._replay(entry, args, static)

    def _remember(self, key, entry):
        self._graphs[key] = entry
        while len(self._graphs) > self.max_graphs:
            self._graphs.popitem(last=False)

    def _record(self, args, static):
        import cupy
        import cupyx

        inputs = tree.map(lambda a: a.copy(), args)
        cupy.cuda.get_current_stream().synchronize()
        pool = cupy.cuda.MemoryPool()
        stream = cupy.cuda.Stream(non_blocking=True)
        graph = None
        try:
            with stream, cupy.cuda.using_allocator(pool.malloc), cupyx.errstate(linalg="ignore"), \
                    _validate.values_unchecked(), kernels.direct_blas():
                stream.begin_capture()
                try:
                    outputs = self.fn(*inputs, **static)
                    check = _total(tree.leaves(inputs) + tree.leaves(outputs))
                finally:
                    graph = stream.end_capture()
        except Exception as exc:  # noqa: BLE001 - any failure means: run this key uncaptured
            self.stats["failed"] += 1
            reason = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"CUDA graph capture of {getattr(self.fn, '__name__', 'fn')} failed; running "
                          f"uncaptured for these shapes ({reason})", RuntimeWarning, stacklevel=3)
            return reason
        self.stats["captures"] += 1
        return _Graph(graph, inputs, outputs, check, pool, stream)

    def _replay(self, entry, args, static):
        for buf, a in zip(tree.leaves(entry.inputs), tree.leaves(args)):
            buf[...] = a
        entry.graph.launch()
        self.stats["replays"] += 1
        if not math.isfinite(float(entry.check)):
            self.stats["fallbacks"] += 1
            return self.fn(*args, **static)
        return tree.map(_copy, entry.outputs)


def captured(fn=None, *, enabled=None, max_graphs=8):
    """Wrap ``fn(*arrays, **static)`` to run as a replayed CUDA graph on CuPy (see the module
    docstring). Usable as ``captured(fn)`` or as a decorator ``@captured`` /
    ``@captured(max_graphs=2)``."""
    if fn is None:
        return lambda f: Captured(f, enabled=enabled, max_graphs=max_graphs)
    return Captured(fn, enabled=enabled, max_graphs=max_graphs)


def _copy(a):
    return a.copy() if hasattr(a, "copy") and hasattr(a, "shape") else a


def _total(leaves):
    """One 0-d array: the sum of every entry of every floating array; NaN or Inf if any is."""
    xp = array_namespace(leaves[0])
    parts = [xp.sum(a) for a in leaves if hasattr(a, "dtype") and xp.isdtype(a.dtype, "real floating")]
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def _key(args, leaves, static):
    try:
        hash(tuple(static.items()))
    except TypeError as exc:
        warnings.warn(f"a keyword argument of a captured function is not hashable ({exc}); running "
                      "uncaptured", RuntimeWarning, stacklevel=3)
        return None
    structure = tuple(path for path, _ in tree.paths(args))
    return (structure, tuple((tuple(a.shape), str(a.dtype)) for a in leaves),
            tuple(sorted(static.items(), key=lambda kv: kv[0])))
