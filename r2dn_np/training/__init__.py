"""Training: system identification (``train``), classification (``classify``), the linear
baseline (``linear``), optimisers (``optim``), losses (``losses``) and the checkpoints every
loop that resumes writes and reads (``checkpoint``)."""
