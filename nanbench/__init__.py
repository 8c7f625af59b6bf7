"""nanbench: measure which training factors make a TensorFlow/Keras loss turn NaN.

Data flows one way: config (spec) -> data -> model -> engine -> result -> tracking -> summary.
"""

import os as _os

# TensorFlow reads these at import: keep its C++ start-up chatter off the terminal.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN reorders float sums: not bit-reproducible

__version__ = "0.1.0"
