"""The R2DN paper's generated-data experiments: a learned observer for a reaction-diffusion PDE
(``observer``) and Youla-parameterised feedback control (``youla``). Each holds its simulator,
data, training loop and evaluation; ``scripts/observer.py`` and ``scripts/youla.py`` run them.
"""
