"""The array-API core: backends, parameter trees, linear algebra and its VJPs, activations, the
per-step kernels and buffer allocator, fixed-point solvers, supply rates and argument checks.
Nothing here knows about a model; everything above may import it."""
