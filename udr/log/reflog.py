"""The ref log: every move of a ref (a branch or tag being created, moved or deleted), with who, when, from,
to and why, in the log's `reflog` sub-database.

Invariants:
- A move is recorded by `record_move` inside the LMDB write transaction that moves the ref
  (`LogStore.set_ref` calls it, with the `reflog` sub-database's handle), so a ref and the record of its move
  become durable together or not at all.
- Entries are never changed or deleted, and keys are consecutive from 0: key order is the order of moves.
  The ref log is part of the log, not derived state: nothing rebuilds it.
- Lakes made before the ref log existed (or written by such a udr) have no entries for those moves.
Reading is safe from any thread or process.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass

import lmdb

from udr.errors import ConflictError, CorruptionError, UsageError
from udr.log.format import CommitId, record_json


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a ref moves.

    Attributes:
        action: what moved it: "commit", "merge", "revert", "reset", "create", "delete", or another
            operation's own name (e.g. "replay").
        message: the commit message, or a sentence saying what was done.
        author: who moved it.
    """

    action: str
    message: str
    author: str


@dataclass(frozen=True, slots=True)
class Move:
    """One stored ref move.

    Attributes:
        position: the move's place in the ref log (0 is the first recorded move).
        ref: the `refs` key as text, e.g. "branch:main" or "tag:v1".
        old: the commit the ref held before (None: the ref was created).
        new: the commit it holds after (None: the ref was deleted).
        reason: why it moved.
        time_us: when, in microseconds since the epoch (UTC).
    """

    position: int
    ref: str
    old: CommitId | None
    new: CommitId | None
    reason: Reason
    time_us: int

    @property
    def kind(self) -> str:
        """What kind of ref moved ("branch", "tag", ...): the key's part before the colon."""
        return self.ref.partition(":")[0]

    @property
    def name(self) -> str:
        """The ref's name: the key's part after the colon."""
        return self.ref.partition(":")[2]


def _position_key(position: int) -> bytes:
    return struct.pack(">Q", position)


def record_move(txn: lmdb.Transaction[bytes], db: lmdb._Database, key: bytes, old: CommitId | None,
                new: CommitId | None, why: Reason, *, time_us: int | None = None) -> int:
    """Append the move of ref `key` from `old` to `new` to the ref log inside write transaction `txn`, the
    one that moves the ref; return its position. `time_us` defaults to now.

    Raises:
        UsageError: `why.action` is empty.
    """
    if not why.action:
        raise UsageError("a ref move needs an action name (e.g. 'reset')")
    cursor = txn.cursor(db=db)
    position = int(struct.unpack(">Q", cursor.key())[0]) + 1 if cursor.last() else 0
    doc = {"ref": key.decode(), "old": old, "new": new, "action": why.action, "message": why.message,
           "author": why.author, "time_us": time_us if time_us is not None else time.time_ns() // 1000}
    txn.put(_position_key(position), record_json(doc), db=db, overwrite=False)
    return position


def move_ref(txn: lmdb.Transaction[bytes], refs: lmdb._Database, reflog: lmdb._Database, key: bytes,
             new: CommitId | None, expected: CommitId | None, why: Reason, *, time_us: int | None = None) -> None:
    """Compare-and-swap ref `key` in `refs` inside `txn` (`new` None deletes it) and record the move in `reflog`.

    Raises:
        ConflictError: the ref no longer holds `expected`.
    """
    raw = txn.get(key, db=refs)
    current = raw.decode() if raw is not None else None
    if current != expected:
        raise ConflictError(f"{key.decode().replace(':', ' ', 1)!r} moved from {str(expected)[:7]} to "
                            f"{str(current)[:7]} after this operation began; reload and retry")
    if new is None:
        txn.delete(key, db=refs)
    else:
        txn.put(key, new.encode(), db=refs)
    record_move(txn, reflog, key, expected, new, why, time_us=time_us)


def _decode(position: int, raw: bytes) -> Move:
    try:
        doc = json.loads(raw)
        reason = Reason(str(doc["action"]), str(doc["message"]), str(doc["author"]))
        return Move(position, str(doc["ref"]), doc["old"], doc["new"], reason, int(doc["time_us"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptionError(f"ref log entry {position} is not a valid record ({exc}): the log is damaged") from exc


def read_moves(txn: lmdb.Transaction[bytes], db: lmdb._Database, *, newest_first: bool = True) -> list[Move]:
    """Every recorded ref move, as read by transaction `txn`."""
    entries = list(txn.cursor(db=db))
    if newest_first:
        entries.reverse()
    return [_decode(int(struct.unpack(">Q", key)[0]), raw) for key, raw in entries]
