"""Evidence that a model does what the theory says: certificates of trained weights
(``certificates``), sampled and searched bounds (``empirical``, ``stability``), finite-difference
gradient checks (``testing``), the ``r2dn verify`` report (``verify``) and operation counts
(``flops``)."""
