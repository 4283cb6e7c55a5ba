"""Retention: policies, holds and expired versions, in the log's `retention` and `expired` sub-databases.

A *policy* (the lake's, or one table's) says how long the data of old versions is kept. `expire` (in the
facade) turns it into *expired records*: one per commit, naming the tables whose data at that version is
expired and the policy that expired it. Expiry only ever grows: a record is never removed, so a reader that
saw a version expired never sees it readable again, and `gc` may then delete what only expired versions
needed. Commit records themselves are never touched, so the hash chain still verifies.

What is never expired (`protected`): branch heads, tags, holds, and every version a consumer group still
needs (from its position onward on its branch, plus the version before, whose rows the next batch is
computed against). `mark_expired` reads those inside the log write transaction that writes the records, so
a ref, hold or group position that moves concurrently is either seen or moves after the records land.

Keys: `retention`: `RETENTION_POLICY` (+ table name) -> JSON `{"keep_days", "keep_commits"}`,
`RETENTION_HOLD + name` -> JSON `{"commit", "reason", "author", "time_us"}`; `expired`: commit id (ASCII
hex) -> JSON `{"tables": {table: policy}, "time_us"}`. Each public method is one LMDB transaction; safe
across threads and processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timezone

from udr.errors import CorruptionError, Expired, RefNotFound, UsageError
from udr.log import graph
from udr.log.envtypes import IndexTxn
from udr.log.erasure import ErasureStore
from udr.log.format import (
    DB_BLOBS,
    DB_EXPIRED,
    DB_RETENTION,
    RETENTION_HOLD,
    RETENTION_POLICY,
    BlobKind,
    ChunkId,
    CommitId,
    record_json,
)
from udr.log.groups import GroupStore
from udr.log.protocols import LakeLog
from udr.log.scrub import scrub
from udr.values import Hold, RetentionPolicy

ExpiredTables = Mapping[str, str]
"""The tables expired at one version -> the policy (as `RetentionPolicy.describe` words it) that expired each."""


@dataclass(frozen=True, slots=True)
class MarkResult:
    """What one `mark_expired` wrote: new versions and (version, table) pairs, and protected versions skipped."""

    versions: int
    tables: int
    protected: int


def _dump(doc: Mapping[str, object]) -> bytes:
    return record_json(doc)


def _load(what: str, raw: bytes) -> dict[str, object]:
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise CorruptionError(f"the retention record of {what} is damaged: {exc}") from exc
    if not isinstance(doc, dict):
        raise CorruptionError(f"the retention record of {what} is not an object")
    return doc


def _policy_key(table: str | None) -> bytes:
    return RETENTION_POLICY + (table.encode() if table is not None else b"")


class RetentionStore:
    """Policies, holds and expired records of one lake's log."""

    def __init__(self, log: LakeLog) -> None:
        self._log = log
        self._env = log.env

    # -- policies -----------------------------------------------------------------------------------

    def set_policy(self, policy: RetentionPolicy) -> None:
        """Store `policy` (both bounds None: remove it), durably."""
        key = _policy_key(policy.table)
        with self._env.write() as txn:
            if policy.keep_days is None and policy.keep_commits is None:
                txn.delete(key, db=self._env.db(DB_RETENTION))
            else:
                doc = {"keep_days": policy.keep_days, "keep_commits": policy.keep_commits}
                txn.put(key, _dump(doc), db=self._env.db(DB_RETENTION))

    def policies(self) -> dict[str | None, RetentionPolicy]:
        """Every stored policy: table name (None: the lake's default) -> policy."""
        out: dict[str | None, RetentionPolicy] = {}
        for key, raw in self._scan(RETENTION_POLICY):
            table = key.decode() or None
            doc = _load(f"policy {table or '(lake)'}", raw)
            days, count = doc.get("keep_days"), doc.get("keep_commits")
            out[table] = RetentionPolicy(float(days) if isinstance(days, (int, float)) else None,
                                         int(count) if isinstance(count, int) else None, table)
        return out

    # -- holds --------------------------------------------------------------------------------------

    def hold(self, name: str, commit: CommitId, reason: str, author: str) -> Hold:
        """Place hold `name` on `commit`, durably.

        Raises:
            UsageError: a hold of that name exists (release it first).
            Expired: the version's data is already expired.
        """
        doc = {"commit": commit, "reason": reason, "author": author, "time_us": time.time_ns() // 1000}
        key = RETENTION_HOLD + name.encode()
        with self._env.write() as txn:
            if txn.get(key, db=self._env.db(DB_RETENTION)) is not None:
                raise UsageError(f"hold {name!r} exists; release it first or choose another name")
            self._check(txn, commit, None)
            txn.put(key, _dump(doc), db=self._env.db(DB_RETENTION))
        return _hold(name, doc)

    def release(self, name: str) -> None:
        """Remove hold `name`, durably.

        Raises:
            RefNotFound: no such hold.
        """
        with self._env.write() as txn:
            if not txn.delete(RETENTION_HOLD + name.encode(), db=self._env.db(DB_RETENTION)):
                raise RefNotFound(f"there is no hold {name!r}; `udr holds` lists them")

    def holds(self) -> dict[str, Hold]:
        """Every hold: name -> hold."""
        return {key.decode(): _hold(key.decode(), _load(f"hold {key.decode()!r}", raw))
                for key, raw in self._scan(RETENTION_HOLD)}

    # -- expired versions ---------------------------------------------------------------------------

    def expired(self, commit: CommitId, txn: IndexTxn | None = None) -> dict[str, str]:
        """The tables expired at `commit` -> the policy that expired each (empty: nothing expired)."""
        if txn is None:
            with self._env.read() as own:
                raw = own.get(commit.encode(), db=self._env.db(DB_EXPIRED))
        else:
            raw = txn.get(commit.encode(), db=self._env.db(DB_EXPIRED))
        if raw is None:
            return {}
        tables = _load(f"commit {commit[:10]}", raw).get("tables", {})
        return {str(k): str(v) for k, v in tables.items()} if isinstance(tables, dict) else {}

    def any_expired(self) -> bool:
        """Whether `expire` ever expired a version of this lake."""
        with self._env.read() as txn:
            return txn.cursor(db=self._env.db(DB_EXPIRED)).first()

    def all_expired(self) -> dict[CommitId, dict[str, str]]:
        """Every expired version: commit id -> its expired tables and policies."""
        out: dict[CommitId, dict[str, str]] = {}
        with self._env.read() as txn:
            for key in txn.cursor(db=self._env.db(DB_EXPIRED)).iternext(keys=True, values=False):
                out[CommitId(key.decode())] = self.expired(CommitId(key.decode()), txn)
        return out

    def mark_expired(self, candidates: Mapping[CommitId, ExpiredTables],
                     protect: Callable[[], set[CommitId]]) -> MarkResult:
        """Record the expiry of every candidate version not in `protect()`, in one durable write.

        `protect` runs inside the write transaction (no ref, hold or group can move meanwhile: each moves
        in a log write transaction of its own), so a version it protects is never recorded expired.
        """
        versions = pairs = skipped = 0
        with self._env.write() as txn:
            kept = protect()
            now = time.time_ns() // 1000
            for commit, tables in candidates.items():
                if commit in kept:
                    skipped += 1
                    continue
                old = self.expired(commit, txn)
                new = {t: p for t, p in tables.items() if t not in old}
                if not new:
                    continue
                versions += 0 if old else 1
                pairs += len(new)
                doc = {"tables": {**old, **new}, "time_us": now}
                txn.put(commit.encode(), _dump(doc), db=self._env.db(DB_EXPIRED))
        return MarkResult(versions, pairs, skipped)

    def check_readable(self, commit: CommitId, tables: Iterable[str]) -> None:
        """Raise `Expired` if the data of one of `tables` at `commit` is expired."""
        self._check(None, commit, tables)

    def _check(self, txn: IndexTxn | None, commit: CommitId, tables: Iterable[str] | None) -> None:
        expired = self.expired(commit, txn)
        if not expired:
            return
        hit = sorted(expired) if tables is None else sorted(t for t in tables if t in expired)
        if hit:
            raise Expired(f"table {hit[0]!r} at commit {commit[:10]} has expired under the retention policy "
                          f"{expired[hit[0]]}: its rows are gone (the commit record stays); read a newer version, "
                          "and hold versions you need (`db.hold`) before expiring")

    def _scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        with self._env.read() as txn:
            cursor = txn.cursor(db=self._env.db(DB_RETENTION))
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    out.append((key[len(prefix):], value))
        return out


def _hold(name: str, doc: Mapping[str, object]) -> Hold:
    try:
        when = datetime.fromtimestamp(int(str(doc["time_us"])) / 1_000_000, tz=timezone.utc)
        return Hold(name, str(doc["commit"]), str(doc["reason"]), str(doc["author"]), when)
    except (KeyError, ValueError) as exc:
        raise CorruptionError(f"the retention record of hold {name!r} is damaged: {exc}") from exc


def drop_blobs(log: LakeLog, txn: IndexTxn, keep: AbstractSet[str]) -> int:
    """Inside `txn`, delete the log's row, deletion-vector and before-image blobs not in `keep`; return the
    bytes they held. Schemas stay: they are tiny and describe even expired versions."""
    db = log.env.db(DB_BLOBS)
    droppable = {BlobKind.ROWS, BlobKind.DELETES, BlobKind.BEFORE}
    doomed = [(key, len(value)) for key, value in txn.cursor(db=db)
              if len(value) > 1 and value[1] in droppable and key.decode() not in keep]
    for key, _ in doomed:
        txn.delete(key, db=db)
    return sum(size for _, size in doomed)


def collect_live(log: LakeLog, progress: Callable[[int], None] | None,
                 live: Callable[[], tuple[set[ChunkId], AbstractSet[str]]]) -> int:
    """`LogStore.collect_garbage` keeping only the chunks and log blobs `live()` names (it runs under the log's
    write lock, so no commit lands meanwhile); return bytes freed. Once an erasure exists, the log is then
    scrubbed (`udr.log.scrub`) if blobs were dropped: no byte of an erased row may stay in its freed pages."""
    dropped = 0

    def keep(txn: IndexTxn) -> tuple[set[ChunkId], int]:
        nonlocal dropped
        chunks, blobs = live()
        dropped = drop_blobs(log, txn, blobs)
        return chunks, dropped

    freed = log.collect_garbage(progress, keep=keep)
    if dropped and ErasureStore.of(log).generation():
        scrub(log.env)
    return freed


def protected(log: LakeLog) -> dict[CommitId, str]:
    """Every version that is never expired -> why: branch heads, tags, holds, and what consumer groups need.

    A group needs every commit on its branch's first-parent history from its position onward (the one at
    its position is the base the next batch is computed against).
    """
    out: dict[CommitId, str] = {}
    for name, commit in log.branches().items():
        out.setdefault(commit, f"head of branch {name!r}")
    for name, commit in log.tags().items():
        out.setdefault(commit, f"tag {name!r}")
    for name, hold in RetentionStore(log).holds().items():
        out.setdefault(CommitId(hold.commit_id), f"hold {name!r}")
    for name, position in GroupStore.of(log).positions().items():
        head = log.head(position.branch)
        unread = False  # whether the commit at the position still has batches the group will read
        for commit, record in graph.first_parents(log, head):
            # The commit at the position is the base of the next batch; its own parent is needed only
            # while the group is part-way through it.
            if record.seq < position.cursor.seq:
                if unread:
                    out.setdefault(commit, f"consumer group {name!r}")
                break
            if record.seq == position.cursor.seq and position.cursor.table is not None:
                unread = any(t > position.cursor.table and (position.tables is None or t in position.tables)
                             for t in record.tables)
            out.setdefault(commit, f"consumer group {name!r}")
    return out


def recent(log: LakeLog, count: int) -> set[CommitId]:
    """The newest `count` commits of every branch's first-parent history."""
    out: set[CommitId] = set()
    for head in log.branches().values():
        for n, (commit, _) in enumerate(graph.first_parents(log, head)):
            if n >= count:
                break
            out.add(commit)
    return out
