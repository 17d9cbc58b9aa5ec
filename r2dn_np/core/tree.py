"""Parameter containers as trees: NamedTuples, tuples, lists and dicts of arrays.

Containers are plain NamedTuples (``Direct``, ``Explicit``, caches); ``None`` marks an
absent parameter and is carried through unchanged. Gradients come back in the same
container type as the values, so these few maps are all that optimisers, savers and the
gradient checker need.
"""

from __future__ import annotations

__all__ = ["map", "leaves", "paths", "vdot", "size", "from_paths", "flattener"]

_builtin_map = map


def _is_namedtuple(node):
    return isinstance(node, tuple) and hasattr(node, "_fields")


def _children(node):
    """(keys, children, rebuild) for a container node, or None for a leaf."""
    if _is_namedtuple(node):
        return node._fields, tuple(node), lambda kids: type(node)(*kids)
    if isinstance(node, (tuple, list)):
        return tuple(range(len(node))), tuple(node), lambda kids: type(node)(kids)
    if isinstance(node, dict):
        keys = tuple(node)
        return keys, tuple(node[k] for k in keys), lambda kids: dict(zip(keys, kids))
    return None


def map(fn, tree, *rest):  # noqa: A001 - mirrors jax.tree.map
    """Apply ``fn`` leaf by leaf over trees of identical structure; ``None`` stays ``None``."""
    if tree is None:
        return None
    node = _children(tree)
    if node is None:
        return fn(tree, *rest)
    keys, kids, rebuild = node
    rest_kids = [_children(r)[1] if r is not None else (None,) * len(kids) for r in rest]
    return rebuild(
        [map(fn, kid, *(rk[i] for rk in rest_kids)) for i, kid in enumerate(kids)]
    )


def paths(tree, prefix=""):
    """List of ``(path, leaf)`` with dotted paths such as ``"lbdn.layers.0.XY"``; skips ``None``."""
    if tree is None:
        return []
    node = _children(tree)
    if node is None:
        return [(prefix, tree)]
    out = []
    for key, kid in zip(*node[:2]):
        out.extend(paths(kid, f"{prefix}.{key}" if prefix else str(key)))
    return out


def leaves(tree):
    """The non-``None`` leaves in a fixed order."""
    return [leaf for _, leaf in paths(tree)]


def from_paths(template, values):
    """Rebuild ``template`` with each leaf replaced by ``values[path]``."""
    def rebuild(node, prefix):
        if node is None:
            return None
        kids = _children(node)
        if kids is None:
            return values[prefix]
        keys, children, make = kids
        return make(
            [rebuild(c, f"{prefix}.{k}" if prefix else str(k)) for k, c in zip(keys, children)]
        )

    return rebuild(template, "")


def flattener(node):
    """``(flatten, unflatten)`` for containers shaped like ``node``, ``None`` included.

    ``flatten(n)`` lists the leaves of a container of ``node``'s structure and ``unflatten(it)``
    rebuilds one from an iterator of leaves. The structure is walked once, here, so a time loop
    that stores a cache at every step pays a few function calls per step, not a tree walk."""
    if node is None:
        return (lambda n: []), (lambda it: None)
    if isinstance(node, (tuple, list, dict)):
        keys = tuple(node) if isinstance(node, dict) else range(len(node))
        plans = [flattener(node[k]) for k in keys]
        if isinstance(node, dict):
            build = lambda kids: dict(zip(keys, kids))  # noqa: E731
        elif hasattr(node, "_fields"):
            build = lambda kids: type(node)(*kids)  # noqa: E731
        else:
            build = type(node)

        def flatten(n):
            return [leaf for (f, _), k in zip(plans, keys) for leaf in f(n[k])]

        def unflatten(it):
            return build([u(it) for _, u in plans])

        return flatten, unflatten
    return (lambda n: [n]), (lambda it: next(it))


def vdot(a, b):
    """Sum over all leaves of ``sum(a * b)`` as a Python float (host sync: not for inner loops)."""
    total = 0.0
    for x, y in zip(leaves(a), leaves(b)):
        total += float(_namespace(x).sum(x * y))
    return total


def size(tree):
    """Total number of scalars in the tree."""
    total = 0
    for leaf in leaves(tree):
        n = 1
        for s in leaf.shape:
            n *= int(s)
        total += n
    return total


def _namespace(x):
    from array_api_compat import array_namespace

    return array_namespace(x)
