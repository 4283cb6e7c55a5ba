"""Writer turns: one transaction of a lake at a time re-applies its changes on a moved head and appends them.

A transaction that loses the race for the branch head re-applies its changes on the new head (automatic rebase)
and tries again. Re-applying a keyed write takes milliseconds, while an append takes well under one: with
several processes writing, a rebased transaction was overtaken again and again, and gave up after 64 tries with
a `ConflictError` no key collision explains. Appending inside a turn means a transaction that had to rebase is
not overtaken while it does, so its second append succeeds.

A second turn, on `log/flush.lock`, is taken without waiting by a writer about to flush the lake's small writes
(`Turns.flush`), so concurrent writers do not all do the same flush.

A turn is a `flock` on its file through a descriptor no other holder uses at the same time, so it excludes other
processes and other threads alike. Descriptors are kept open between turns (`Turns`, one per log handle): opening
and closing the file cost a single writer's commit as much as the lock itself. A released descriptor is unlocked
before another turn may take it. The kernel drops a `flock` when its process dies, so a writer killed in its turn
never blocks the others. Turns carry no data and only order writers: correctness never depends on them (the
commit point stays the compare-and-swap of `LogStore.append`), and a writer that takes no turn (an older udr)
only falls back to retrying. Safe across threads.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType

from udr.errors import UdrError
from udr.log.envtypes import Environment
from udr.log.format import FLUSH_TURN_FILE, TURN_FILE


class _LockFile:
    """Descriptors of one lock file, each of its own open file (a `flock` belongs to one), kept for reuse."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._free: list[int] = []
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._closed = False

    def lock(self, operation: int) -> int:
        """A descriptor holding the `flock` `operation` (`BlockingIOError` when it would block, with LOCK_NB).

        Raises:
            UdrError: the file cannot be opened or locked (permissions, a read-only file system).
        """
        fd = self._descriptor()
        try:
            fcntl.flock(fd, operation)
        except BaseException as exc:
            self.unlock(fd)
            if isinstance(exc, OSError) and not isinstance(exc, BlockingIOError):
                raise UdrError(f"cannot lock {self.path}: {exc}; check the lake's permissions") from exc
            raise
        return fd

    def unlock(self, fd: int) -> None:
        """Release the turn `fd` holds, and keep `fd` for the next one."""
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            os.close(fd)  # closing the only descriptor of the open file releases the lock too
            return
        with self._guard:
            if not self._closed:
                self._free.append(fd)
                return
        os.close(fd)  # a turn that outlived `close`

    def _descriptor(self) -> int:
        with self._guard:
            if self._pid != os.getpid():
                # A forked child shares its parent's open files, and with them their locks: it opens its own.
                self._free, self._pid = [], os.getpid()
            if self._free:
                return self._free.pop()
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UdrError(f"cannot open {self.path}: {exc}; check the lake's permissions") from exc

    def close(self) -> None:
        """Close the descriptors kept, and those of turns still held as they end."""
        with self._guard:
            free, self._free, self._closed = self._free, [], True
        if self._pid == os.getpid():
            for fd in free:
                os.close(fd)


class _WriterTurn:
    """A context manager holding a writer turn of `file` (a class: a commit takes one, and a generator-based
    context manager cost as much as the lock)."""

    __slots__ = ("_fd", "_file", "_operation")

    def __init__(self, file: _LockFile, *, exclusive: bool) -> None:
        self._file = file
        self._operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH

    def __enter__(self) -> None:
        self._fd = self._file.lock(self._operation)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._file.unlock(self._fd)


class _FlushTurn:
    """A context manager trying the flush turn of `file` without waiting; it gives whether this writer has it."""

    __slots__ = ("_fd", "_file")

    def __init__(self, file: _LockFile) -> None:
        self._file = file
        self._fd: int | None = None

    def __enter__(self) -> bool:
        try:
            self._fd = self._file.lock(fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            self._file.unlock(self._fd)


class _CommitTurn:
    """A writer turn whose commits become durable once it ended (`Turns.commit`)."""

    __slots__ = ("_deferred", "_turn")

    def __init__(self, env: Environment, turn: _WriterTurn) -> None:
        self._deferred = env.deferred_sync()
        self._turn = turn

    def __enter__(self) -> None:
        self._deferred.__enter__()
        try:
            self._turn.__enter__()
        except BaseException as exc:
            self._deferred.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._turn.__exit__(exc_type, exc, tb)  # the turn ends first: the next writer works during the fsync
        finally:
            self._deferred.__exit__(exc_type, exc, tb)


class Turns:
    """The writer turns of the lake whose log directory is `log_dir` (its log environment `env`), taken through
    descriptors kept open."""

    def __init__(self, log_dir: Path, env: Environment) -> None:
        self._env = env
        self._turn = _LockFile(log_dir / TURN_FILE)
        self._flush = _LockFile(log_dir / FLUSH_TURN_FILE)

    def writer(self, *, exclusive: bool) -> _WriterTurn:
        """A context manager holding a writer turn for the body of the `with` block.

        A first attempt to append takes a shared turn (writers append side by side, ordered by LMDB's own writer
        lock, and their syncs overlap); a transaction that lost the race rebases and appends in an exclusive turn,
        which waits for the shared ones to end and keeps new ones out.

        Raises:
            UdrError: the lock file cannot be opened or locked (permissions, a read-only file system).
        """
        return _WriterTurn(self._turn, exclusive=exclusive)

    def commit(self, *, exclusive: bool) -> _CommitTurn:
        """A context manager holding a writer turn (`writer`) for the body, in which commits to the log
        are made but not yet durable; it leaves the turn, then returns once they are durable.

        The fsync that makes a commit durable needs no turn, and the next writer in (re-applying its changes on
        the new head, in an exclusive turn) works meanwhile instead of waiting for the disk too.

        Raises:
            UdrError: the lock file cannot be opened or locked, or the commits cannot be made durable.
        """
        return _CommitTurn(self._env, self.writer(exclusive=exclusive))

    def flush(self) -> _FlushTurn:
        """A context manager trying to take the lake's one turn to flush small writes into Parquet; it gives
        whether this writer has it.

        Never waits: with several writers, every one of them sees the run of small writes come due at about the
        same moment, and all but the first flush would be rejected at commit after doing the whole work (reading,
        encoding and syncing the run). A writer that finds the turn taken leaves the flush to its holder, and if
        that flush fails, a later commit finds the run still due and flushes.

        Raises:
            UdrError: the lock file cannot be opened or locked (permissions, a read-only file system).
        """
        return _FlushTurn(self._flush)

    def close(self) -> None:
        """Close the descriptors kept (no turn may be held)."""
        self._turn.close()
        self._flush.close()
