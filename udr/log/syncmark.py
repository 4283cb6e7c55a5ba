"""Group commit across processes: the log's last fsync, shared by every writer committing at that moment.

The log environment is opened with `sync` on and `metasync` off: inside its commit LMDB writes a transaction's
pages, fsyncs the data file, then writes the meta page without syncing it, and the writer makes the commit
durable with one more fsync before it returns. Any fsync of the data file that starts after a transaction's
meta page was written covers it. So a writer returns without an fsync of its own when

- a later transaction is already committed: its commit fsynced after this meta page was written (a writer does
  not wait for one: waiting 2 ms for the next commit cost consumer groups 15% of their acks, G1, and gained
  nothing measurable for concurrent writers, C2); or
- `log/synced` says an fsync since covered it: it records the newest transaction id one covered.

Threads of one process and separate processes share alike. The rule needs every writer of the log to open it
with `sync` on (udr always does; LMDB's default too).

`log/synced` is a hint for live processes and is never fsynced. It holds the transaction id with the data file's
inode number and the boot id, and is ignored after a reboot (a power failure may have undone transactions it
names) or once the data file was replaced (a restored copy). The checks, the fsync and the update run under an
exclusive `flock` of the file, so no writer reads it half-written; threads of one process take a lock first,
because a `flock` does not exclude threads that share its descriptor.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
from pathlib import Path

import lmdb

from udr.errors import UdrError
from udr.log.format import SYNC_MARK_FILE

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# The mark: a transaction id, then the stamp of who may trust it (the data file's inode number, the boot id).
_U64 = struct.Struct(">Q")


def boot_id() -> bytes | None:
    """This boot's id (Linux), or None where the kernel does not say (the mark is then never trusted)."""
    try:
        return _BOOT_ID.read_bytes().strip()
    except OSError:
        return None


class SyncMark:
    """Shares the last fsync of the log environment in directory `path` between its writers."""

    def __init__(self, path: Path, data_file: Path, env: lmdb.Environment) -> None:
        self._path = path / SYNC_MARK_FILE
        self._env = env
        self._threads = threading.Lock()
        boot = boot_id()
        # Who may trust a mark: writers of this boot, on this data file.
        self._stamp = None if boot is None else _U64.pack(os.stat(data_file).st_ino) + boot
        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UdrError(f"cannot open {self._path}: {exc}; check the lake's permissions") from exc

    def sync(self, txnid: int) -> None:
        """Return once write transaction `txnid`, which this process committed, is durable.

        Raises:
            UdrError: the mark file cannot be locked.
        """
        with self._threads:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise UdrError(f"cannot lock {self._path}: {exc}; check the lake's permissions") from exc
            try:
                # Read before the fsync: every transaction up to `last` wrote its meta page already.
                last = self._last_txnid()
                if last > txnid or self.covered() >= txnid:
                    return
                self._env.sync(True)
                if self._stamp is not None:
                    os.pwrite(self._fd, _U64.pack(last) + self._stamp, 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _last_txnid(self) -> int:
        return int(self._env.info()["last_txnid"])

    def covered(self) -> int:
        """The newest transaction id an fsync of this boot covered (0 when the mark is absent or not trusted)."""
        if self._stamp is None:
            return 0
        raw = os.pread(self._fd, 8 + len(self._stamp), 0)
        if len(raw) != 8 + len(self._stamp) or raw[8:] != self._stamp:
            return 0
        return int(_U64.unpack(raw[:8])[0])

    def close(self) -> None:
        """Close the mark file (no sync may be running)."""
        os.close(self._fd)
