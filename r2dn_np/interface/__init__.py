"""What every model offers and how it leaves the process: the model protocol (``protocol``),
saving and loading parameters (``io``) and exchange with the authors' JAX code (``flax_interop``)."""
