"""The public functions every feedback model shares (R2DN and REN), written once.

A feedback model is an LTI system in feedback with a static map ``phi`` (``feedback.py`` runs it).
What differs between models is only the parameterisation: how free parameters become the explicit
weights, and which ``phi`` closes the loop. A model module writes those (``init``, its trusted map
and map VJP, ``phi``) and gets the rest of the model protocol (``docs/protocol.md``) from
:func:`functions`: input checks at the boundary, the rollout, BPTT, one time-step and
``value_and_grad``. So every feedback model checks its inputs the same way and has checkpointed
BPTT, and a fix here reaches all of them.

Examples
--------
Inside a model module (``r2dn.py`` has exactly this)::

    (direct_to_explicit, direct_to_explicit_vjp, forward, backward, step, value_and_grad,
     _templates) = feedback_model.functions(feedback_model.Spec(
        "r2dn", Grads, init, phi, _direct_to_explicit, _direct_to_explicit_vjp))
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

from array_api_compat import array_namespace, device

from ..core import _validate, kernels, linalg, tree
from . import compiled, feedback, parallel

__all__ = ["Spec", "Functions", "functions", "identity_output"]


class Spec(NamedTuple):
    """What a feedback model supplies. ``map`` and ``map_vjp`` may trust their inputs: the
    shared functions check them first."""

    name: str  # the module's name, e.g. "r2dn"
    Grads: type  # NamedTuple (direct, x0, U)
    init: Callable  # (cfg, seed, backend, dtype) -> Direct
    phi: Callable  # cfg -> static_map.Phi
    map: Callable  # (cfg, direct) -> (explicit, map_cache)
    map_vjp: Callable  # (cfg, map_cache, d_explicit) -> d_direct


class Functions(NamedTuple):
    direct_to_explicit: Callable
    direct_to_explicit_vjp: Callable
    forward: Callable
    backward: Callable
    step: Callable
    value_and_grad: Callable
    templates: Callable  # cfg -> (direct, explicit) on the host: the shapes users' containers must have


def _zeros_state(cfg, U):
    xp = array_namespace(U)
    return xp.zeros((int(U.shape[1]), cfg.nx), dtype=U.dtype, device=device(U))


def _check_sequence(cfg, like, x0, U):
    """Checks ``U`` and ``x0`` (None means zeros); returns ``x0``."""
    _validate.array("U", U, [("T", None), ("B", None), ("nu", cfg.nu)], like=like)
    T, B = int(U.shape[0]), int(U.shape[1])
    if T < 1 or B < 1:
        raise ValueError(f"U must have T >= 1 time-steps and B >= 1 sequences; got shape {tuple(U.shape)}")
    if x0 is None:
        return _zeros_state(cfg, U)
    _validate.array("x0", x0, [("B", B), ("nx", cfg.nx)], like=like)
    return x0


def _check_checkpoint(checkpoint_every):
    if checkpoint_every is not None:
        _validate.positive_int("checkpoint_every", checkpoint_every)


def _check_workers(workers):
    parallel.check_workers(workers)


def _check_jit(jit):
    if jit is not None and not isinstance(jit, bool):
        raise TypeError(f"jit must be True, False or None; got {jit!r}")
    if jit is True and not compiled.available():
        raise ValueError("jit=True needs Numba, which does not import here: pip install 'r2dn_np[fast]'")


def functions(spec):
    """The protocol's public functions for the model described by ``spec``."""

    @functools.lru_cache(maxsize=32)
    def templates(cfg):
        direct = spec.init(cfg, 0, backend="numpy")
        return direct, spec.map(cfg, direct)[0]

    def check_config(cfg):
        if getattr(cfg, "model", None) != spec.name or type(cfg).__name__ != "Config":
            raise TypeError(f"cfg must be an {spec.name}.Config; got {type(cfg).__name__}"
                            + (f" of {cfg.model}" if hasattr(cfg, "model") else ""))

    def direct_to_explicit(cfg, direct):
        """Map free parameters to the explicit model. Returns ``(explicit, map_cache)``.

        ``direct`` must be this config's ``Direct``: every field of its exact shape, one floating
        dtype, finite (``ValueError``/``TypeError`` naming the field otherwise).
        """
        check_config(cfg)
        _validate.container("direct", direct, templates(cfg)[0])
        with kernels.single_blas(tree.leaves(direct)[0]):  # small factorisations: threads only cost
            return spec.map(cfg, direct)

    def direct_to_explicit_vjp(cfg, cache, d_explicit):
        """Cotangent of the free parameters given that of the explicit model.

        ``d_explicit`` has the explicit model's structure; a field that is None counts as zero.
        """
        check_config(cfg)
        _validate.container("d_explicit", d_explicit, templates(cfg)[1], optional=True)
        with kernels.single_blas(next(a for a in tree.leaves(d_explicit) if a is not None)):
            return spec.map_vjp(cfg, cache, d_explicit)

    def rollout(cfg, explicit, phi, x0, U, checkpoint_every, workers, jit):
        n = parallel.resolve(workers, U, explicit)
        if n == 1:
            return feedback.forward(explicit, phi, x0, U, checkpoint_every, jit)
        return parallel.forward(explicit, phi, (spec.phi, cfg), x0, U, n, checkpoint_every, jit)

    def bptt(explicit, phi, cache, dY, dxT, jit):
        if isinstance(cache, parallel.Cache):
            return parallel.backward(explicit, phi, cache, dY, dxT, jit)
        return feedback.backward(explicit, phi, cache, dY, dxT, jit)

    def forward(cfg, explicit, x0, U, checkpoint_every=None, workers=None, jit=None):
        """Roll the model out over a whole input sequence.

        Parameters
        ----------
        x0 : (B, nx) initial state, or None for zeros.
        U : (T, B, nu) inputs, time-major.
        checkpoint_every : int or None
            ``k`` keeps only every ``k``-th state, and ``backward`` recomputes the rest
            (``r2dn_np.loop.feedback``): less memory, one more rollout.
        workers : int, "auto" or None
            Processes that share the pass, each on a slice of the batch (``r2dn_np.loop.parallel``;
            NumPy only); 1 is serial, ``"auto"`` one per core when the batch is large enough to
            gain. None: the ``R2DN_WORKERS`` environment variable, else serial.
        jit : bool or None
            The compiled time loop for NumPy arrays (``r2dn_np.loop.compiled``, needs Numba): None uses
            it unless ``R2DN_JIT=0``; False runs the array-API loop (the reference).

        Returns
        -------
        xT : (B, nx) final state.
        Y : (T, B, ny) outputs.
        cache : what ``backward`` needs (``feedback.Cache``, or ``parallel.Cache`` when sharded:
            ``backward`` then runs on the same processes).
        """
        check_config(cfg)
        _validate.container("explicit", explicit, templates(cfg)[1])
        x0 = _check_sequence(cfg, explicit.A, x0, U)
        _check_checkpoint(checkpoint_every)
        _check_workers(workers)
        _check_jit(jit)
        return rollout(cfg, explicit, spec.phi(cfg), x0, U, checkpoint_every, workers, jit)

    def backward(cfg, explicit, cache, dY, dxT=None, jit=None):
        """Backpropagation through time.

        Parameters
        ----------
        cache : from ``forward`` with the same ``explicit``.
        dY : (T, B, ny) cotangent of the outputs.
        dxT : (B, nx) cotangent of the final state, or None for zero.
        jit : bool or None, the compiled loop as in ``forward``.

        Returns
        -------
        d_explicit : Explicit
        dx0 : (B, nx)
        dU : (T, B, nu)
        """
        check_config(cfg)
        _validate.container("explicit", explicit, templates(cfg)[1])
        if not isinstance(cache, (feedback.Cache, parallel.Cache)):
            raise TypeError(f"cache must be the cache returned by forward; got {type(cache).__name__}")
        T, B = int(cache.U.shape[0]), int(cache.U.shape[1])
        _validate.array("dY", dY, [("T", T), ("B", B), ("ny", cfg.ny)], like=explicit.A)
        if dxT is not None:
            _validate.array("dxT", dxT, [("B", B), ("nx", cfg.nx)], like=explicit.A)
        _check_jit(jit)
        return bptt(explicit, spec.phi(cfg), cache, dY, dxT, jit)

    stepped = {}  # the last (cfg, explicit) step checked, and its phi: a control loop steps one model

    def step(cfg, explicit, x, u, jit=None):
        """One time-step, for control loops that feed back one sample at a time:
        ``x : (B, nx)``, ``u : (B, nu)`` -> ``(x_next, y)``.

        ``explicit`` is checked once per container object, and the compiled step packs its
        weights once per container object: a controller steps the same weights thousands of times.
        So give new weights as a new container (``direct_to_explicit`` again, or
        ``explicit._replace(...)``), never by writing into its arrays, which neither the check nor
        the compiled step would see. ``x`` and ``u`` are checked at every step. ``jit`` as in
        ``forward`` (the compiled step).
        """
        hit = stepped.get("last")
        if hit is None or hit[0] is not cfg or hit[1] is not explicit:
            check_config(cfg)
            _validate.container("explicit", explicit, templates(cfg)[1])
            hit = stepped["last"] = (cfg, explicit, spec.phi(cfg))
        _validate.array("x", x, [("B", None), ("nx", cfg.nx)], like=explicit.A)
        _validate.array("u", u, [("B", int(x.shape[0])), ("nu", cfg.nu)], like=explicit.A)
        _check_jit(jit)
        return feedback.step(explicit, hit[2], x, u, jit)

    def value_and_grad(cfg, direct, x0, U, loss, checkpoint_every=None, workers=None, jit=None):
        """Map, roll out, backpropagate through time and through the map.

        Parameters
        ----------
        x0 : (B, nx) initial state, or None for zeros.
        U : (T, B, nu) inputs.
        loss : callable ``Y -> (value, dY)``, e.g. ``lambda Y: losses.mse(Y, Y_target)``; it must
            return a finite scalar and a finite ``dY`` of exactly ``Y``'s shape and dtype.
        checkpoint_every : int or None, checkpointed BPTT as in ``forward``.
        workers : int, "auto" or None, processes sharing the pass as in ``forward``; the loss always sees
            the whole ``Y``.
        jit : bool or None, the compiled loop as in ``forward``.

        Returns
        -------
        value : the loss value.
        grads : Grads(direct, x0, U).
        """
        if not callable(loss):
            raise TypeError(f"loss must be a callable Y -> (value, dY); got {type(loss).__name__}")
        with kernels.single_blas(U):
            return _value_and_grad(cfg, direct, x0, U, loss, checkpoint_every, workers, jit)

    def _value_and_grad(cfg, direct, x0, U, loss, checkpoint_every, workers, jit):
        explicit, map_cache = direct_to_explicit(cfg, direct)
        x0 = _check_sequence(cfg, explicit.A, x0, U)
        _check_checkpoint(checkpoint_every)
        _check_workers(workers)
        _check_jit(jit)
        phi = spec.phi(cfg)
        _, Y, cache = rollout(cfg, explicit, phi, x0, U, checkpoint_every, workers, jit)
        value, dY = _validate.loss_output(loss(Y), Y)
        d_explicit, dx0, dU = bptt(explicit, phi, cache, dY, None, jit)
        return value, spec.Grads(spec.map_vjp(cfg, map_cache, d_explicit), dx0, dU)

    fns = Functions(direct_to_explicit, direct_to_explicit_vjp, forward, backward, step, value_and_grad,
                    templates)
    for fn in fns:
        fn.__module__ = f"r2dn_np.{spec.name}"
        fn.__qualname__ = fn.__name__
    return fns



def identity_output(cfg, like):
    """``(C2, D21, D22, by)`` of the fixed output map ``y = x`` (``identity_output=True``, which
    needs ``ny == nx``): ``C2 = I`` and zeros, on ``like``'s namespace, dtype and device."""
    xp = array_namespace(like)
    zeros = lambda *shape: xp.zeros(shape, dtype=like.dtype, device=device(like))  # noqa: E731
    return linalg.eye_like(cfg.nx, like), zeros(cfg.ny, cfg.nv), zeros(cfg.ny, cfg.nu), zeros(cfg.ny)
