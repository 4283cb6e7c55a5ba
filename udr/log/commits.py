"""Commit records and their canonical encoding: the bytes whose BLAKE3 hash is the commit id.

A commit is data: a frozen record of typed table changes. Its canonical encoding is JSON with sorted keys,
no insignificant whitespace and UTF-8 text; it includes the parent ids, so the log is a hash chain.
Pure functions only: safe from any thread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import cast

import blake3

from udr.errors import CorruptionError, FormatError
from udr.log.format import COMMIT_RECORD_VERSION, BlobId, ChunkId, CommitId
from udr.values import Commit, TableChange


@dataclass(frozen=True, slots=True)
class Fragment:
    """A chunk of rows added to a table: a Parquet file, or an Arrow IPC blob inlined in the log."""

    chunk: ChunkId
    rows: int
    inline: bool
    schema: BlobId


@dataclass(frozen=True, slots=True)
class Deletes:
    """The cumulative deletion vector of one fragment after this commit (`vector` None: all rows gone)."""

    chunk: ChunkId
    vector: BlobId | None
    count: int


@dataclass(frozen=True, slots=True)
class TableOp:
    """Everything one commit does to one table, applied to the table as of the commit's first parent.

    `create` starts a new table (dropping any old one of that name), `drop` removes it. `truncate` removes
    every existing row before `add`. `deletes` replaces fragments' deletion vectors. `rewrite` marks a
    compaction or a merge's re-encoding: the table's rows do not change, so no row-level change is reported.
    `before` optionally names a ROWS blob holding the before-image of a keyed write (old values of changed
    cells and of removed rows), so the change feed need not read the old chunks. `keys` (a keyed write's
    hashed keys, `udr.log.keyplace`) and `added` (per `deletes` entry, the positions its vector adds to the
    fragment's vector at the parent, None: unknown) let the log place it over concurrent keyed writes.
    """

    create: bool = False
    drop: bool = False
    schema: BlobId | None = None
    primary_key: tuple[str, ...] | None = None
    truncate: bool = False
    add: tuple[Fragment, ...] = ()
    deletes: tuple[Deletes, ...] = ()
    rewrite: bool = False
    before: BlobId | None = None
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    keys: tuple[int, ...] | None = None
    added: tuple[int | None, ...] = ()

    def key_after(self, key: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """The table's primary key once this op applies to a table whose key is `key`."""
        return self.primary_key if self.create or self.primary_key is not None else key

    @property
    def reshapes(self) -> bool:
        """Whether the op replaces the table's identity or shape (create, drop, truncate, schema or key change):
        such an op cannot be re-applied over, or under, a concurrent change of the same table."""
        return self.create or self.drop or self.truncate or self.schema is not None or self.primary_key is not None


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """One entry of the log. `time_us` is UTC microseconds since the epoch."""

    parents: tuple[CommitId, ...]
    seq: int
    branch: str
    time_us: int
    author: str
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    tables: Mapping[str, TableOp] = field(default_factory=dict)


# The canonical JSON encoder (an encoder holds only its options; `json.dumps` with options builds one per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _op_to_json(op: TableOp) -> dict[str, object]:
    out: dict[str, object] = {}
    if op.create:
        out["create"] = True
    if op.drop:
        out["drop"] = True
    if op.schema is not None:
        out["schema"] = op.schema
    if op.primary_key is not None:
        out["primary_key"] = list(op.primary_key)
    if op.truncate:
        out["truncate"] = True
    if op.add:
        out["add"] = [[f.chunk, f.rows, int(f.inline), f.schema] for f in op.add]
    if op.deletes:
        out["deletes"] = [[d.chunk, d.vector, d.count] for d in op.deletes]
    if op.rewrite:
        out["rewrite"] = True
    if op.before is not None:
        out["before"] = op.before
    out["counts"] = [op.inserted, op.updated, op.deleted]
    if op.keys is not None:
        out["keys"] = list(op.keys)
        out["added"] = list(op.added)
    return out


def _op_from_json(raw: Mapping[str, object]) -> TableOp:
    add = cast(list[list[object]], raw.get("add", []))
    deletes = cast(list[list[object]], raw.get("deletes", []))
    counts = cast(list[int], raw["counts"])
    pk = raw.get("primary_key")
    keys = cast("list[int] | None", raw.get("keys"))
    return TableOp(
        create=bool(raw.get("create", False)),
        drop=bool(raw.get("drop", False)),
        schema=cast("BlobId | None", raw.get("schema")),
        primary_key=tuple(cast(list[str], pk)) if pk is not None else None,
        truncate=bool(raw.get("truncate", False)),
        add=tuple(
            Fragment(ChunkId(str(c)), int(cast(int, n)), bool(i), BlobId(str(s))) for c, n, i, s in add
        ),
        deletes=tuple(
            Deletes(ChunkId(str(c)), BlobId(str(v)) if v is not None else None, int(cast(int, n)))
            for c, v, n in deletes
        ),
        rewrite=bool(raw.get("rewrite", False)),
        before=BlobId(str(raw["before"])) if raw.get("before") is not None else None,
        inserted=counts[0],
        updated=counts[1],
        deleted=counts[2],
        keys=tuple(int(k) for k in keys) if keys is not None else None,
        added=tuple(None if n is None else int(n) for n in cast("list[int | None]", raw.get("added", []))),
    )


def encode_commit(record: CommitRecord) -> bytes:
    """Return the canonical bytes of `record`: the bytes that are stored and hashed."""
    doc = {
        "v": COMMIT_RECORD_VERSION,
        "parents": list(record.parents),
        "seq": record.seq,
        "branch": record.branch,
        "time_us": record.time_us,
        "author": record.author,
        "message": record.message,
        "metadata": dict(record.metadata),
        "tables": {name: _op_to_json(op) for name, op in record.tables.items()},
    }
    return _CANONICAL.encode(doc).encode()


def decode_commit(data: bytes, commit_id: str) -> CommitRecord:
    """Parse canonical bytes back into a record.

    Raises:
        CorruptionError: the bytes are not a well-formed commit record.
        FormatError: the record is of a newer version than this udr reads.
    """
    try:
        doc = json.loads(data)
        version = doc["v"]
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"record version {version!r}")
        if version > COMMIT_RECORD_VERSION:
            raise FormatError(f"commit {commit_id} is a version-{version} record; this udr reads records up to "
                              f"version {COMMIT_RECORD_VERSION}: upgrade udr to read this lake")
        return CommitRecord(
            parents=tuple(CommitId(p) for p in doc["parents"]),
            seq=int(doc["seq"]),
            branch=str(doc["branch"]),
            time_us=int(doc["time_us"]),
            author=str(doc["author"]),
            message=str(doc["message"]),
            metadata={str(k): str(v) for k, v in doc["metadata"].items()},
            tables={str(k): _op_from_json(v) for k, v in doc["tables"].items()},
        )
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptionError(f"commit {commit_id} is not a well-formed commit record: {exc}") from exc


def commit_id(canonical: bytes) -> CommitId:
    """Return the id of a commit: the BLAKE3 hash (hex) of its canonical bytes."""
    return CommitId(blake3.blake3(canonical).hexdigest())


def commit_value(cid: CommitId, record: CommitRecord) -> Commit:
    """The public `udr.Commit` of a stored commit record."""
    return Commit(
        id=cid,
        parents=record.parents,
        seq=record.seq,
        branch=record.branch,
        time=datetime.fromtimestamp(record.time_us / 1_000_000, tz=timezone.utc),
        author=record.author,
        message=record.message,
        metadata=dict(record.metadata),
        tables={n: TableChange(op.inserted, op.updated, op.deleted) for n, op in record.tables.items()},
    )
