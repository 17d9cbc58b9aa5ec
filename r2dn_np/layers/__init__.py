"""Static maps that a recurrent model closes its feedback loop through, other than the LBDN
(``r2dn_np.lbdn``, a model in its own right): the REN's equilibrium layer, acyclic
(``equilibrium``) and full (``equilibrium_full``)."""
