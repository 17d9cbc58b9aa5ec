"""r2dn_np: robust recurrent deep networks with hand-derived gradients on NumPy or CuPy."""

from .core.backend import BackendError, namespace, to_backend, to_numpy

__version__ = "0.1.0"
__all__ = ["BackendError", "namespace", "to_backend", "to_numpy", "__version__"]
