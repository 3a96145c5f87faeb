"""The host's deploy lock (templates/parts/deploy-lock.sh.j2): one deploy, backup or restore at a time per host.

The lock is held by the SSH connection that took it and is free once that connection ends, so a
killed run never leaves it behind. /run is emptied at boot as well.
"""

from __future__ import annotations

import functools
import os
import socket
import time

LOCK_PATH = "/run/regdeploy.lock"


@functools.lru_cache(maxsize=None)
def holder(what: str) -> str:
    """Who takes the lock, as a run that has to wait is told (one text per process and kind of run)."""
    return f"{what} on {socket.gethostname()} (pid {os.getpid()}, started {time.strftime('%H:%M:%S')})"
