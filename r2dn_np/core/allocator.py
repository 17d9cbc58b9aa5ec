"""An allocator for the time loop's large buffers: it hands NumPy buffers of one pass out again in
the next. Nothing here is maths; ``feedback.py`` asks it for ``empty`` arrays and would be correct
with ``xp.empty``.

Why: the kernel supplies a fresh allocation of many MB page by page on first write. For a gradient
pass that allocates ~100 MB of ``(T, B, n)`` buffers this costs 8-14% of the pass (measured at the
timing-study and F-16 sizes, one BLAS thread: 97 vs 113 ms and 188 vs 205 ms; ``docs/benchmarks.md``),
so reuse is on by default.

Safety: a buffer is handed out again only once nothing but the pool refers to it. Any cache, output
or view a caller still holds keeps its owner's reference count up, so it is never overwritten.
Only NumPy arrays of at least 256 KiB are pooled, 1 GiB in all; CuPy has its own memory pool and
other namespaces allocate fresh.

Control: :func:`reuse_buffers` switches reuse off or on (the environment variable
``R2DN_REUSE_BUFFERS=0`` switches it off at import) and :func:`release_buffers` hands the kept
buffers back to the system.
"""

from __future__ import annotations

import os
import sys
import threading

from array_api_compat import is_numpy_namespace

__all__ = ["empty", "reuse_buffers", "release_buffers"]

MIN_BYTES = 2**18
MAX_BYTES = 2**30


class _Pool:
    def __init__(self, enabled):
        self.enabled = enabled
        self.free = {}
        self.total = 0
        self.lock = threading.Lock()
        probe = [object()]
        self.idle_refs = self._refs(probe, 0)  # the count of a buffer only the pool holds

    @staticmethod
    def _refs(bufs, i):
        return sys.getrefcount(bufs[i:i + 1][0])

    def empty(self, xp, shape, dtype):
        n = 1
        for s in shape:
            n *= s
        nbytes = n * (8 if dtype == xp.float64 else 4)
        if not self.enabled or nbytes < MIN_BYTES or not is_numpy_namespace(xp):
            return xp.empty(shape, dtype=dtype)
        key = (tuple(shape), dtype)
        with self.lock:
            bufs = self.free.setdefault(key, [])
            for i in range(len(bufs)):
                if self._refs(bufs, i) == self.idle_refs:
                    return bufs[i]
            buf = xp.empty(shape, dtype=dtype)
            if self.total + nbytes <= MAX_BYTES:
                bufs.append(buf)
                self.total += nbytes
            return buf

    def clear(self):
        with self.lock:
            self.free.clear()
            self.total = 0


_POOL = _Pool(enabled=os.environ.get("R2DN_REUSE_BUFFERS", "1") != "0")


def empty(xp, shape, dtype):
    """``xp.empty(shape, dtype=dtype)``, possibly a buffer of an earlier pass (contents arbitrary)."""
    return _POOL.empty(xp, shape, dtype)


def reuse_buffers(enabled):
    """Switch buffer reuse on or off for this process; returns the previous setting. Switching
    it off also releases the kept buffers."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool; got {enabled!r}")
    previous, _POOL.enabled = _POOL.enabled, enabled
    if not enabled:
        _POOL.clear()
    return previous


def release_buffers():
    """Hand back the NumPy buffers kept for reuse between passes (at most 1 GiB); the next
    pass allocates afresh. Useful after training, before other memory-hungry work."""
    _POOL.clear()
