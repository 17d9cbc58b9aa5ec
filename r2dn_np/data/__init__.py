"""Data sets: simulators, loaders and sequence utilities. Classification sets (``digits``)
are created on the backend named by the ``backend`` argument of their loader;
system-identification records (``boucwen``, ``pendulum``, ``f16``) are host NumPy arrays
that the training loop moves to its backend chunk by chunk (``sequences``)."""
