"""The interface of a static map ``w = phi(v)`` that a feedback model closes its loop with.

The layers implement it (``lbdn.as_phi``: the R2DN's 1-Lipschitz network; ``equilibrium.as_phi``:
the REN's equilibrium layer) and the time loop (``feedback``) consumes it, so neither depends on
the other.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

__all__ = ["Phi"]


class Phi(NamedTuple):
    """A static map ``w = phi(v)`` on rows, with its parameters held in ``explicit.phi``.

    ``forward(params, v) -> (w, cache)``: ``cache`` is a container of arrays whose first
    axis is the batch. ``backward(params, cache, dw) -> (dv, grad_cache)``: input
    cotangent, plus whatever ``weight_grads`` needs. ``weight_grads(params, cache,
    grad_cache) -> d_params`` receives caches stacked over all time-steps, as
    ``(T*B, ...)`` arrays, so it can use one matrix product per weight.

    Optionally ``forward`` and ``backward`` take ``out=``: the step's caches as buffers to write
    into, which the time loop passes when the signature has it (the LBDN's does), saving one
    copy per step.

    ``compiled``, where set, is ``(layer, activation)`` with ``layer`` one of the static maps the
    compiled time loops implement (``"lbdn"``, ``"equilibrium"``; ``compiled.py``), whose weights
    the loops then read from the map's parameters directly; None keeps the array-API loop.
    """

    forward: Callable
    backward: Callable
    weight_grads: Callable
    compiled: Optional[tuple] = None
