"""Writer turns: one transaction of a lake at a time re-applies its changes on a moved head and appends them.

A transaction that loses the race for the branch head re-applies its changes on the new head (automatic rebase)
and tries again. Re-applying a keyed write takes milliseconds, while an append takes well under one: with
several processes writing, a rebased transaction was overtaken again and again, and gave up after 64 tries with
a `ConflictError` no key collision explains. Appending inside a turn means a transaction that had to rebase is
not overtaken while it does, so its second append succeeds.

A turn is a `flock` on `log/turn.lock` through a descriptor of its own, so it excludes other processes and
other threads alike. The kernel drops a `flock` when its process dies, so a writer killed in its turn never
blocks the others. Turns carry no data and only order writers: correctness never depends on them (the commit
point stays the compare-and-swap of `LogStore.append`), and a writer that takes no turn (an older udr) only
falls back to retrying.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from udr.errors import UdrError
from udr.log.format import LOG_DIR, TURN_FILE


@contextmanager
def writer_turn(root: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold a writer turn of the lake at `root` for the body of the `with` block.

    A first attempt to append takes a shared turn (writers append side by side, ordered by LMDB's own writer
    lock, and their syncs overlap); a transaction that lost the race rebases and appends in an exclusive turn,
    which waits for the shared ones to end and keeps new ones out.

    Raises:
        UdrError: the lock file cannot be opened or locked (permissions, a read-only file system).
    """
    path = root / LOG_DIR / TURN_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UdrError(f"cannot open {path}: {exc}; check the lake's permissions") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the only descriptor of the open file releases the lock
