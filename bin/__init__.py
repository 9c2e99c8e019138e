"""Console scripts: ``tfrank-train`` and ``tfrank-rank`` run ``bin/train.py`` and ``bin/rank.py`` as they are.

setup.py installs this folder as the package ``tfrank_bin``, so that a non-editable install has the binaries too.
Each script is run as ``__main__`` with its own folder first on ``sys.path``, exactly as ``python bin/train.py``
runs it: the same flags, the same ``main``, one source.
"""

import os
import runpy
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _run(script: str) -> None:
    path = os.path.join(_HERE, f"{script}.py")
    sys.path.insert(0, _HERE)  # the scripts import their sibling _quiet_tensorflow first
    sys.argv[0] = path
    runpy.run_path(path, run_name="__main__")


def train() -> None:
    """``tfrank-train``: the same as ``python bin/train.py``."""
    _run("train")


def rank() -> None:
    """``tfrank-rank``: the same as ``python bin/rank.py``."""
    _run("rank")
