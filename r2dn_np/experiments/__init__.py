"""Experiments built from the library: system identification from arrays or files (``sysid``),
the R2DN paper's generated-data tasks (``observer``, ``youla``), the sweep of seeds x models x
tasks (``sweep``) and figures (``plots``)."""
