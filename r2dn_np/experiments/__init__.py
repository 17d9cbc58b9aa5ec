"""Experiments built from the library, each a function from a settings object to a result object
(``.to_json()``, ``.table()``): system identification from files, data sets or arrays
(``sysid``), the R2DN paper's expressivity study (``expressivity``) and generated-data tasks
(``observer``, ``youla``); the sweep of seeds x models x tasks (``sweep``, the engine;
``sweep_report``, its table and plot) and figures (``plots``)."""
