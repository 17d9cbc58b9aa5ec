"""Time loops: the feedback loop that R2DN and REN share (``feedback``, wrapped as a model by
``feedback_model``), its compiled twin (``compiled``, ``_compiled_kernels``), sharding over
processes (``parallel``), CUDA-graph capture (``graph``) and the plain RNNs' loops (``_rnn``)."""
