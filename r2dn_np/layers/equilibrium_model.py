"""The public functions every equilibrium model shares (DEQ and monDEQ), written once.

An equilibrium model is a static layer ``z* = sigma(z* W^T + x U^T + b)`` (rows are batch
entries) solved to a fixed point, with a readout, trained through the implicit function theorem.
What differs between models is the parameterisation of ``W`` (free for the DEQ, monotone for the
monDEQ), the solver of the forward and the adjoint problem, and the readout. A model module writes
those (:class:`Spec`) and gets the rest from :func:`functions`: the checks at the boundary,
``init``'s seeding and placement, ``direct_to_explicit`` and its VJP, ``forward``, ``backward``,
``value_and_grad`` and ``residual``. So both models check their inputs the same way and a fix here
reaches both, as ``loop/feedback_model.py`` does for the feedback models.

Examples
--------
Inside a model module (``deq.py`` has exactly this shape)::

    (init, direct_to_explicit, direct_to_explicit_vjp, forward, backward, value_and_grad,
     residual, _check_cfg, _templates) = equilibrium_model.functions(equilibrium_model.Spec(
        "deq", Config, Cache, Grads, _draw, _map, _map_vjp, None, _solve, _solve_adjoint,
        ("z", "n"), None))
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import numpy as np
from array_api_compat import array_namespace

from ..core import _validate, activations, fixed_point, tree
from ..core.backend import asarray, namespace, resolve_dtype

__all__ = ["Spec", "Functions", "functions"]


class Spec(NamedTuple):
    """What an equilibrium model supplies. Every callable may trust its inputs: the shared
    functions check them first."""

    name: str  # the module's name, e.g. "deq"
    Config: type
    Cache: type  # NamedTuple with at least (x, z, s, ..., result); s = sigma(z W^T + x U^T + b)
    Grads: type  # NamedTuple (direct, x)
    draw: Callable  # (cfg, rng) -> Direct of float64 NumPy arrays, drawn in a fixed order
    map: Callable  # (cfg, direct) -> (explicit, map_cache)
    map_vjp: Callable  # (cfg, map_cache, d_explicit) -> d_direct
    map_cache: Optional[Callable]  # direct -> the map cache's template, or None: the map has none
    solve: Callable  # (cfg, explicit, x, z0) -> (out, cache), raising fixed_point.NotConverged
    solve_adjoint: Callable  # (cfg, explicit, cache, dout) -> (d_explicit, dx, SolveResult)
    out: tuple  # (name, size attribute of cfg) of the output, e.g. ("z", "n") or ("logits", "n_out")
    check_cache: Optional[Callable] = None  # (cfg, explicit, cache): the model's own cache fields


class Functions(NamedTuple):
    init: Callable
    direct_to_explicit: Callable
    direct_to_explicit_vjp: Callable
    forward: Callable
    backward: Callable
    value_and_grad: Callable
    residual: Callable
    check_config: Callable  # cfg -> None, raising TypeError for another model's config
    templates: Callable  # cfg -> (direct, explicit) on the host: the shapes users' containers must have


def functions(spec):
    """The public functions of the equilibrium model described by ``spec``."""
    out_name, out_size = spec.out

    def check_config(cfg):
        if not isinstance(cfg, spec.Config):
            raise TypeError(f"cfg must be a {spec.name}.Config; got {type(cfg).__name__}")

    def init(cfg, seed=0, backend=None, dtype="float64"):
        check_config(cfg)
        xp = namespace(backend)
        resolve_dtype(xp, dtype)
        rng = np.random.default_rng(_validate.seed("seed", seed))
        return tree.map(lambda a: asarray(np.ascontiguousarray(a, dtype=np.float64), xp, dtype),
                        spec.draw(cfg, rng))

    init.__doc__ = spec.draw.__doc__

    @functools.lru_cache(maxsize=32)
    def templates(cfg):
        direct = init(cfg, 0, backend="numpy")
        return direct, spec.map(cfg, direct)[0]

    def direct_to_explicit(cfg, direct):
        """Map free parameters to the layer's weights. Returns ``(explicit, map_cache)``.

        ``direct`` must be this config's ``Direct``: every field of its exact shape, one floating
        dtype, finite (``ValueError``/``TypeError`` naming the field otherwise).
        """
        check_config(cfg)
        _validate.container("direct", direct, templates(cfg)[0])
        return spec.map(cfg, direct)

    def direct_to_explicit_vjp(cfg, cache, d_explicit):
        """Cotangent of the free parameters given that of the weights; ``cache`` is the map
        cache that :func:`direct_to_explicit` returned."""
        check_config(cfg)
        direct, explicit = templates(cfg)
        if spec.map_cache is None:
            if cache is not None:
                raise TypeError(f"cache must be None, the map cache of {spec.name}.direct_to_explicit; "
                                f"got {type(cache).__name__}")
        else:
            _validate.container("cache", cache, spec.map_cache(direct))
        _validate.container("d_explicit", d_explicit, explicit)
        return spec.map_vjp(cfg, cache, d_explicit)

    def check_x(cfg, explicit, x):
        check_config(cfg)
        _validate.container("explicit", explicit, templates(cfg)[1])
        _validate.array("x", x, [("N", None), ("n_in", cfg.n_in)], like=explicit.W)

    def forward(cfg, explicit, x, z0=None):
        """Solve for the equilibrium of every row of ``x`` and read it out.

        Parameters
        ----------
        cfg : Config
        explicit : Explicit
        x : (N, n_in) array
        z0 : optional (N, n) starting iterate (zeros by default), e.g. the last minibatch's.

        Returns
        -------
        out : the output (the equilibrium ``z`` for the DEQ, the logits for the monDEQ)
        cache : Cache, with the equilibrium ``cache.z`` and the forward solve's
            ``fixed_point.SolveResult`` as ``cache.result``

        Raises
        ------
        fixed_point.NotConverged
            The solver stopped above ``cfg.tol``; ``exc.result`` holds the residual trace.
        """
        check_x(cfg, explicit, x)
        if z0 is None:
            z0 = array_namespace(x).zeros((x.shape[0], cfg.n), dtype=x.dtype)
        else:
            _validate.array("z0", z0, [("N", int(x.shape[0])), ("n", cfg.n)], like=explicit.W)
        return spec.solve(cfg, explicit, x, z0)

    def check_cache(cfg, explicit, cache):
        if not isinstance(cache, spec.Cache):
            raise TypeError(f"cache must be the {spec.name}.Cache returned by {spec.name}.forward; "
                            f"got {type(cache).__name__}")
        _validate.array("cache.x", cache.x, [("N", None), ("n_in", cfg.n_in)], like=explicit.W)
        N = int(cache.x.shape[0])
        _validate.array("cache.z", cache.z, [("N", N), ("n", cfg.n)], like=explicit.W)
        _validate.array("cache.s", cache.s, [("N", N), ("n", cfg.n)], like=explicit.W)
        if spec.check_cache is not None:
            spec.check_cache(cfg, explicit, cache)
        return N

    def backward(cfg, explicit, cache, dout):
        """Cotangents of the weights and of ``x`` by the implicit function theorem: one adjoint
        solve, never an unrolled iteration.

        Parameters
        ----------
        cache : Cache, from :func:`forward` with the same ``cfg`` and ``explicit``.
        dout : (N, size) array, the cotangent of ``forward``'s output.

        Returns
        -------
        d_explicit : Explicit
        dx : (N, n_in) array
        result : fixed_point.SolveResult of the adjoint solve

        Raises
        ------
        fixed_point.NotConverged
            The adjoint solve stopped above ``cfg.tol``.
        """
        check_config(cfg)
        _validate.container("explicit", explicit, templates(cfg)[1])
        N = check_cache(cfg, explicit, cache)
        _validate.array("dout", dout, [("N", N), (out_size, getattr(cfg, out_size))], like=explicit.W)
        return spec.solve_adjoint(cfg, explicit, cache, dout)

    def value_and_grad(cfg, direct, x, loss):
        """Map, solve forward, evaluate ``loss`` on the output, solve the adjoint, map back.

        Parameters
        ----------
        direct : Direct
        x : (N, n_in) array
        loss : callable ``out -> (value, dout)`` (``out`` as :func:`forward` returns it); it must
            return a finite scalar and a finite ``dout`` of exactly ``out``'s shape and dtype.

        Returns
        -------
        value : the loss value.
        grads : Grads(direct, x).

        Raises
        ------
        fixed_point.NotConverged
            The forward or the adjoint solve stopped above ``cfg.tol``.
        """
        check_config(cfg)
        if not callable(loss):
            raise TypeError(f"loss must be a callable {out_name} -> (value, d{out_name}); "
                            f"got {type(loss).__name__}")
        _validate.container("direct", direct, templates(cfg)[0])
        like = tree.leaves(direct)[0]
        _validate.array("x", x, [("N", None), ("n_in", cfg.n_in)], like=like)
        explicit, map_cache = spec.map(cfg, direct)
        out, cache = spec.solve(cfg, explicit, x, array_namespace(x).zeros((x.shape[0], cfg.n), dtype=x.dtype))
        value, dout = _validate.loss_output(loss(out), out)
        d_explicit, dx, _ = spec.solve_adjoint(cfg, explicit, cache, dout)
        return value, spec.Grads(spec.map_vjp(cfg, map_cache, d_explicit), dx)

    def residual(cfg, explicit, x, z):
        """The residual the forward solve stops on: with ``c = x U^T + b`` and
        ``F(z) = sigma(z W^T + c)``, ``||F(z) - z|| / (||F(z)|| + ||c||)`` (equation (D5) of
        ``docs/derivations/deq.md``)."""
        check_x(cfg, explicit, x)
        _validate.array("z", z, [("N", int(x.shape[0])), ("n", cfg.n)], like=explicit.W)
        c = x @ explicit.U.mT + explicit.b
        fz = activations.apply(cfg.activation, z @ explicit.W.mT + c)
        return fixed_point.relative_residual(fz, z, fixed_point.frobenius_norm(c))

    return Functions(init, direct_to_explicit, direct_to_explicit_vjp, forward, backward,
                     value_and_grad, residual, check_config, templates)
