"""Imports TensorFlow without its C++ start-up noise. The binaries in bin/ import this before anything else.

TF_CPP_MIN_LOG_LEVEL=3 silences TensorFlow's C++ logging, but its CUDA probe logs through absl before logging is
set up, whatever the level, so stderr is muted while TensorFlow loads (a failing import still raises, loudly).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_stderr = os.dup(2)
os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
try:
    import tensorflow  # noqa: F401
finally:
    os.dup2(_stderr, 2)
    os.close(_stderr)
