"""Imports TensorFlow quietly and quickly, and ends a binary without its slow teardown.

The binaries in bin/ import this before anything else.

TF_CPP_MIN_LOG_LEVEL=3 silences TensorFlow's C++ logging, but its CUDA probe logs through absl before logging is
set up, whatever the level, so stderr is muted while TensorFlow loads (a failing import still raises, loudly).

Python's cycle collector is off while TensorFlow imports, and the hundreds of thousands of objects the import leaves
are then frozen (``gc.freeze``): they live as long as the process, and each full collection would walk all of them,
which made the import slower and paused training runs (timings: BUILD.md).
"""

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_stderr = os.dup(2)
os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
gc.disable()
try:
    import tensorflow  # noqa: F401
finally:
    os.dup2(_stderr, 2)
    os.close(_stderr)
    gc.freeze()
    gc.enable()


def exit_without_teardown(status: int = 0) -> None:
    """Ends the process without Python's interpreter teardown, which is slow after TensorFlow (BUILD.md).

    Exit handlers run first and the standard streams are flushed, so nothing written is lost (every file tfrank
    writes is closed or flushed before its function returns); only the module teardown is skipped.
    """
    import atexit
    import sys

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
