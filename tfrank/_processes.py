"""Whether the process that left a file behind still runs: lock files, temporary exports, extracted zip copies.

A file named after its writer's pid (and host) outlives the writer when it is killed (``kill -9``); the next run
takes it over or removes it only when that writer is gone.
"""

import os
import re
import socket


def host_id() -> str:
    """This machine's name and, where it has one, its pid namespace: a pid names a process only within both.

    Containers that share a volume (and a host name) but not their pids must not judge each other's files dead.
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"
    try:
        return f"{name}.pidns{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # no /proc (not Linux)
        return name


def process_alive(pid: int) -> bool:
    """True unless no process ``pid`` runs on this host; another user's process, or a number that is no pid, counts
    as alive, so that its files are left alone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
