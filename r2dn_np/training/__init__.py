"""Training: system identification (``train``), classification (``classify``), the linear
baseline (``linear``), optimisers (``optim``) and losses (``losses``)."""
