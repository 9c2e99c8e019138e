"""What both binaries share: flag parsing whose help exits 0 and whose errors are one line, and one-line failures.

Imported after ``_quiet_tensorflow``, like everything else in a binary.
"""

import os
import sys

import _quiet_tensorflow
from absl import app, flags

_HELP_FLAGS = {"-h", "-?", "-help", "--help", "--helpshort", "--helpfull"}


def fail(program: str, message: str) -> None:
    """Ends the run with one line on stderr, ``<program>: error: <message>``, and exit status 1: no traceback."""
    sys.exit(f"{program}: error: {' '.join(message.split())}")


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with help on stdout and exit status 0 (absl exits 1), and a flag error as one line."""
    arguments = argv[1 : argv.index("--")] if "--" in argv else argv[1:]
    help_flags = _HELP_FLAGS.intersection(arguments)
    if help_flags:
        app.usage(shorthelp="--helpfull" not in help_flags, writeto_stdout=True)
        _quiet_tensorflow.exit_without_teardown(0)
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(os.path.basename(argv[0]), str(error))
