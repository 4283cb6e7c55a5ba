"""Whether another process on this machine is alive: how records owned by a dead process are freed."""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether a process with id `pid` exists on this machine (used to free a dead owner's records)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process its parent has not reaped yet (a zombie) still answers kill(0) but holds nothing.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux) or it just exited: the lease's own expiry still frees it
    return stat[stat.rfind(")") + 2:][:1] != "Z"
