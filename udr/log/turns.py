"""Writer turns: one transaction of a lake at a time re-applies its changes on a moved head and appends them.

A transaction that loses the race for the branch head re-applies its changes on the new head (automatic rebase)
and tries again. Re-applying a keyed write takes milliseconds, while an append takes well under one: with
several processes writing, a rebased transaction was overtaken again and again, and gave up after 64 tries with
a `ConflictError` no key collision explains. Appending inside a turn means a transaction that had to rebase is
not overtaken while it does, so its second append succeeds.

A second turn, on `log/flush.lock`, is taken without waiting by a writer about to flush the lake's small writes
(`flush_turn`), so concurrent writers do not all do the same flush.

A turn is a `flock` on its file through a descriptor of its own, so it excludes other processes and
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
from udr.log.envtypes import LogEnvironments
from udr.log.format import FLUSH_TURN_FILE, LOG_DIR, TURN_FILE


@contextmanager
def flush_turn(root: Path) -> Iterator[bool]:
    """Try to take the lake's one turn to flush small writes into Parquet; yield whether this writer has it.

    Never waits: with several writers, every one of them sees the run of small writes come due at about the
    same moment, and all but the first flush would be rejected at commit after doing the whole work (reading,
    encoding and syncing the run). A writer that finds the turn taken leaves the flush to its holder, and if
    that flush fails, a later commit finds the run still due and flushes.

    Raises:
        UdrError: the lock file cannot be opened or locked (permissions, a read-only file system).
    """
    path = root / LOG_DIR / FLUSH_TURN_FILE
    fd = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        except OSError as exc:
            raise UdrError(f"cannot lock {path}: {exc}; check the lake's permissions") from exc
        yield True
    finally:
        os.close(fd)  # closing the only descriptor of the open file releases the lock


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
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing the only descriptor of the open file releases the lock


@contextmanager
def commit_turn(log: LogEnvironments, root: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold a writer turn (`writer_turn`) of the lake at `root` for the body, in which commits to its log `log`
    are made but not yet durable; leave the turn, then return once they are durable.

    The fsync that makes a commit durable needs no turn, and the next writer in (re-applying its changes on the
    new head, in an exclusive turn) works meanwhile instead of waiting for the disk too.

    Raises:
        UdrError: the lock file cannot be opened or locked, or the commits cannot be made durable.
    """
    with log.env.deferred_sync(), writer_turn(root, exclusive=exclusive):  # the turn ends first
        yield


def _open(path: Path) -> int:
    """A descriptor of its own on lock file `path` (created if missing)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UdrError(f"cannot open {path}: {exc}; check the lake's permissions") from exc
