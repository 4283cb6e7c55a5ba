"""Automatic rebase: re-apply a transaction's staged table operations on a branch head that moved.

A transaction stages one `TableOp` per table against the snapshot it began from (`base`). When the head moved, the
caller passes, per table, the staged op, the ops the commits between base and head made to that table, the table's
state at base and at head, and the keyed conflicts found by `merge.merge_rows` between the two sides' change tables.
`rebase_table` then either returns the op to commit with the new head as parent (a linear history), or raises
`ConflictError` naming the table, the key and column where known, and the other commit.

Rules (snapshot isolation): appends never conflict; keyed upserts, deletes and keyed overwrites conflict only where
the same key's same cell was set to different values or a row was deleted on one side and changed on the other
(the caller's `keyed_conflicts`); creating a table, dropping it, changing its schema, an unkeyed overwrite
(`truncate`) and a rewrite conflict with any concurrent change of that table. A staged `Deletes` names row positions
of a fragment of base: if that fragment is gone at head (compacted or overwritten) the positions cannot be carried
over and the rebase conflicts (re-deriving them by key is left to issue 11's follow-up); if the other side changed
the same fragment's deletion vector, the result lists a `DeleteUnion` the caller must resolve by writing the union of
the two vectors before committing. When both sides changed the same keys in different cells, the result says
`remerge`: the staged rows of those keys must be replaced by `merge_rows`' merged rows. Pure: no I/O, thread-safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from udr.errors import Conflict, ConflictError
from udr.log.commits import TableOp
from udr.log.format import BlobId, ChunkId, CommitId
from udr.materialize.snapshot import TableState


@dataclass(frozen=True, slots=True)
class Concurrent:
    """One commit between base and the new head, and what it did to the table being rebased."""

    commit: CommitId
    op: TableOp


@dataclass(frozen=True, slots=True)
class DeleteUnion:
    """A fragment both sides deleted rows of: commit the union of `ours` and `theirs` (None: no rows deleted).

    In a table without a primary key a position in both vectors is one copy removed twice: a multiset conflict.
    """

    chunk: ChunkId
    ours: BlobId | None
    theirs: BlobId | None


@dataclass(frozen=True, slots=True)
class Rebased:
    """The staged op re-expressed against the new head, plus deletion vectors the caller must union first.

    `remerge` is True when both sides changed some of the same keys (in different cells): the staged rows of those
    keys would overwrite the other side's cells, so the caller must instead write `merge_rows`' result on the head.
    """

    op: TableOp
    unions: tuple[DeleteUnion, ...]
    remerge: bool = False


def _reshapes(op: TableOp) -> bool:
    return op.create or op.drop or op.schema is not None or op.truncate or op.rewrite


def rebase_table(
    table: str,
    staged: TableOp,
    concurrent: Sequence[Concurrent],
    *,
    base: TableState | None,
    head: TableState | None,
    keyed_conflicts: Sequence[Conflict] = (),
    shared_keys: int = 0,
) -> Rebased:
    """Decide whether `staged` can be re-applied on the new head, and return the op to commit there.

    Args:
        table: The table's name, for messages.
        staged: What the transaction did to the table, relative to `base`.
        concurrent: What each commit between base and head did to the table, oldest first (empty: untouched).
        base: The table's state when the transaction began (None: it did not exist).
        head: The table's state at the new head (None: it does not exist).
        keyed_conflicts: `merge.merge_rows(...).conflicts` for the two sides' change tables (keyed tables only).
        shared_keys: How many keys both sides changed (keyed tables only).

    Returns:
        The op to commit with the new head as parent, and the deletion vectors to union before committing.

    Raises:
        ConflictError: A concurrent commit changed the table in a way that collides with `staged`.
    """
    if not concurrent:
        return Rebased(staged, ())
    other = concurrent[-1].commit
    if _reshapes(staged):
        raise ConflictError(f"table {table!r} was changed by commit {other} after this transaction began, and this transaction recreates, drops, overwrites or changes the schema of it; reload and retry")
    for change in concurrent:
        if _reshapes(change.op):
            raise ConflictError(f"commit {change.commit} recreated, dropped, overwrote or changed the schema of table {table!r} after this transaction began; reload and retry")
    if keyed_conflicts:
        first = keyed_conflicts[0]
        where = f" at key {first.key}" + (f", column {first.column!r}" if first.column else "")
        raise ConflictError(f"table {table!r}{where} was also changed by commit {other} ({len(keyed_conflicts)} conflicting cells); reload and retry")
    return Rebased(staged, _delete_unions(table, staged, other, base, head), remerge=shared_keys > 0)


def _delete_unions(table: str, staged: TableOp, other: CommitId, base: TableState | None, head: TableState | None) -> tuple[DeleteUnion, ...]:
    before = {f.chunk: f.deletes for f in base.fragments} if base else {}
    now = {f.chunk: f.deletes for f in head.fragments} if head else {}
    added = {f.chunk for f in staged.add}
    unions = []
    for d in staged.deletes:
        if d.chunk in added:
            continue
        if d.chunk not in now:
            raise ConflictError(f"rows this transaction deletes from table {table!r} were rewritten by commit {other} (compaction or overwrite); reload and retry")
        if now[d.chunk] != before.get(d.chunk):
            unions.append(DeleteUnion(d.chunk, d.vector, now[d.chunk]))
    return tuple(unions)
