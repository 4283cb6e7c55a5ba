"""Automatic rebase: re-express a transaction's staged changes on a branch head that moved after it began.

The log places a commit over concurrent changes by itself when they commute (`LogStore.append`: untouched
tables, and multiset tables whose ops touch different fragments). Otherwise it raises `HeadMoved`, and
`restage` re-applies the transaction's changes to each contested table on the new head by the merge's rules:

- an op that creates, drops, truncates (unkeyed overwrite), rewrites (compaction) or changes the schema or
  key of a table conflicts with any concurrent change of that table, and so does any op over a concurrent
  one of those kinds;
- a keyed table merges cell by cell (`merge.merge_rows`): both sides' changes are kept, and only the same
  key's same cell set to different values, or a row deleted on one side and changed on the other, conflicts;
- a table without a primary key is a multiset: every added row is kept (a chunk both sides added is
  re-encoded as a copy) and every removed row removed; removing the same stored row on both sides conflicts.

The result is a linear history: the transaction's base becomes the new head and it commits with that
parent. A conflict raises `ConflictError` naming the table, the key and column where known, and the other
commit; nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from udr.api import history, writes
from udr.api.context import LakeContext
from udr.errors import ConflictError, RefNotFound
from udr.log import graph
from udr.log.commits import Deletes, TableOp
from udr.log.format import BlobId, ChunkId, CommitId
from udr.log.placement import check_reads
from udr.materialize.changes import state_delta
from udr.materialize.merge import RowMerge, merge_rows
from udr.materialize.snapshot import FragmentState, TableState
from udr.materialize.staging import Staging
from udr.materialize.vectors import distinct_positions


def restage(ctx: LakeContext, staging: Staging, head: CommitId, read: set[str] | None) -> None:
    """Move `staging`'s base to `head` and re-apply its changes to every table a commit in between changed.

    Raises:
        ConflictError: a real conflict (see the module docstring), or (with `read`, under serializable
            isolation) a commit in between changed a table that was read; `staging` is left unchanged.
    """
    try:
        between = graph.first_parent_range(ctx.log, staging.base, head)
    except RefNotFound:
        raise ConflictError(f"branch {staging.branch!r} was reset to {head[:10]}, which does not descend from "
                            f"{staging.base[:10]} where this transaction began; reload and retry") from None
    if read is not None:
        for cid, record in between:
            check_reads(staging.branch, read, cid, record)
    contested = {t: [(cid, r.tables[t]) for cid, r in between if t in r.tables] for t in staging.ops}
    contested = {t: ops for t, ops in contested.items() if ops}
    for table, ops in contested.items():
        _check_shapes(table, staging.ops[table], ops, overwritten=table in staging.overwritten)
    old_base = staging.base_tables
    staged = {t: staging.state(t) for t in contested}
    new_base = ctx.materializer.snapshot(head)
    plans = [(t, _plan(ctx, staging, t, old_base.get(t), new_base.get(t), staged[t], ops[-1][0]))
             for t, ops in contested.items()]
    taken = staging.rebase_to(head, new_base, list(contested))
    for table, apply in plans:
        apply(taken[table])


def _check_shapes(table: str, mine: TableOp, theirs: Sequence[tuple[CommitId, TableOp]], *,
                  overwritten: bool) -> None:
    other = theirs[-1][0]
    if mine.reshapes or mine.rewrite or overwritten:
        raise ConflictError(f"commit {other[:10]} changed table {table!r} after this transaction began, and this "
                            "transaction creates, drops, overwrites, compacts or changes the schema of it; "
                            "reload and retry")
    for cid, op in theirs:
        if op.reshapes:
            raise ConflictError(f"commit {cid[:10]} created, dropped, overwrote or changed the schema of table "
                                f"{table!r} after this transaction began; reload and retry")


# Stages one table's changes again, given the op staged before the base moved (called after it moved).
_Apply = Callable[[TableOp], None]


def _plan(ctx: LakeContext, staging: Staging, table: str, base: TableState | None, head: TableState | None,
          staged: TableState | None, other: CommitId) -> _Apply:
    if base is None or head is None or staged is None:
        raise ConflictError(f"table {table!r} was created or dropped by commit {other[:10]} after this "
                            "transaction began; reload and retry")
    if staged.primary_key is None:
        return _Multiset(staging, table, base, other)
    return _Keyed(ctx, staging, table, base, head, staged, other)


class _Keyed:
    """A keyed table: merge our change rows into the new head cell by cell.

    When no key was changed on both sides, our op stays as it is (its new rows are right, and the rows it
    deletes are still there), only the deletion vectors of fragments both sides deleted from are unioned.
    Otherwise the merged rows of every key we changed are staged again on the head.
    """

    def __init__(self, ctx: LakeContext, staging: Staging, table: str, base: TableState, head: TableState,
                 staged: TableState, other: CommitId) -> None:
        self.ctx, self.staging, self.table, self.other = ctx, staging, table, other
        self.key = list(staged.primary_key or ())
        self.states = base, head, staged
        self.schema = staging.rows.schema(head.schema)
        self.base_vectors = {f.chunk: f.deletes for f in base.fragments}
        # Only a key both sides changed can conflict: when none is, the rows need no pairing and merging.
        self.shared = bool(self._touched(base, head) & self._touched(base, staged))
        self.result = self._merged() if self.shared else None

    def _touched(self, old: TableState, new: TableState) -> set[tuple[object, ...]]:
        """The keys of the rows that differ between two states of the table (removed or added)."""
        delta = state_delta(self.staging.rows, self.table, old, new)
        return {k for rows in (delta.removed, delta.added) for k in zip(*(rows.column(c).to_pylist() for c in self.key))}

    def _merged(self) -> RowMerge:
        (base, head, staged), table = self.states, self.table
        theirs = history.paired(self.ctx, table, base, head)
        mine = history.paired(self.ctx, table, base, staged, self.staging.rows)
        result = merge_rows(table, self.schema, self.key, theirs, mine, strategy=None)
        if result.conflicts:
            first = result.conflicts[0]
            where = f" key {first.key}" + (f" column {first.column!r}" if first.column else " (deleted on one side)")
            raise ConflictError(f"table {table!r}{where} was also changed by commit {self.other[:10]} after this "
                                f"transaction began ({len(result.conflicts)} conflicting cell(s)); reload and retry")
        return result

    def __call__(self, op: TableOp) -> None:
        staging, table = self.staging, self.table
        if not self.shared and _carry(staging, table, op, self.base_vectors):
            return
        if self.result is None:  # disjoint keys cannot conflict: merging now (the base has moved) raises nothing
            self.result = self._merged()
        if self.result.remove.num_rows:
            writes.delete_keys(self.ctx, staging, table, self.result.remove, counted=None)
        if self.result.add.num_rows:
            staging.add_rows(table, self.schema, iter(self.result.add.to_batches()))
        if table in staging.ops:
            counts = history.count_changes(self.ctx, table, staging.base_tables[table], staging.state(table),
                                           staging.rows)
            staging.recount(table, counts.inserted, counts.updated, counts.deleted)


def _carry(staging: Staging, table: str, op: TableOp, base_vectors: dict[ChunkId, BlobId | None]) -> bool:
    """Stage `op` unchanged on the new base, unioning deletion vectors both sides changed; False (nothing
    staged) if a fragment it deletes from is gone at the new base or a chunk it adds is already there."""
    head = staging.require(table)
    now = {f.chunk: f for f in head.fragments}
    if any(f.chunk in now for f in op.add):
        return False
    own = {f.chunk for f in op.add}
    deletes = []
    for d in op.deletes:
        frag = now.get(d.chunk)
        if d.chunk in own or (frag is not None and frag.deletes == base_vectors.get(d.chunk)):
            deletes.append(d)
            continue
        if frag is None:
            return False
        deletes.append(_united(staging, d, frag))
    staging.ops[table] = replace(op, deletes=tuple(deletes))
    return True


class _Multiset:
    """A table without a primary key: keep our added chunks and our removed rows on top of the new head."""

    def __init__(self, staging: Staging, table: str, base: TableState, other: CommitId) -> None:
        self.staging, self.table, self.other = staging, table, other
        self.base_deletes = {f.chunk: f for f in base.fragments}

    def __call__(self, op: TableOp) -> None:
        staging, table = self.staging, self.table
        present = set(staging.require(table).chunk_ids())
        carried = tuple(f for f in op.add if f.chunk not in present)
        staging.ops[table] = TableOp(add=carried, inserted=op.inserted, updated=op.updated)
        for frag in op.add:
            if frag.chunk in present:  # both sides added identical rows: ours become a copy
                rows = staging.rows.fragment(FragmentState(frag.chunk, frag.rows, frag.inline, frag.schema))
                staging.add_rows(table, staging.rows.schema(frag.schema), iter(rows.to_batches()))
        own = {f.chunk for f in op.add}
        kept = [d if d.chunk in own else self._remove_again(d) for d in op.deletes]
        staging.ops[table] = replace(staging.ops[table], deletes=staging.ops[table].deletes + tuple(kept),
                                     inserted=op.inserted, deleted=op.deleted)

    def _remove_again(self, d: Deletes) -> Deletes:
        """Our deletion vector of a fragment of base, re-expressed on the head's vector of that fragment."""
        frag = next((f for f in self.staging.require(self.table).fragments if f.chunk == d.chunk), None)
        if frag is None:
            raise ConflictError(f"rows this transaction deletes from table {self.table!r} were rewritten by commit "
                                f"{self.other[:10]} after it began (compaction or flush); reload and retry")
        mine = np.setdiff1d(_positions(self.staging, d.vector, frag.rows),
                            _deleted(self.staging, self.base_deletes[d.chunk]), assume_unique=True)
        if np.intersect1d(mine, _deleted(self.staging, frag), assume_unique=True).size:
            raise ConflictError(f"table {self.table!r}: commit {self.other[:10]} deleted some of the same rows after "
                                "this transaction began; reload and retry")
        return _united(self.staging, d, frag)


def _united(staging: Staging, d: Deletes, frag: FragmentState) -> Deletes:
    """Our cumulative deletion vector `d` united with the new base's vector of the same fragment, staged."""
    return staging.deletion(frag, distinct_positions(_positions(staging, d.vector, frag.rows), _deleted(staging, frag)))


def _deleted(staging: Staging, frag: FragmentState) -> npt.NDArray[np.int64]:
    return np.asarray(staging.rows.deleted_positions(frag), np.int64)


def _positions(staging: Staging, vector: BlobId | None, rows: int) -> npt.NDArray[np.int64]:
    """The row positions a cumulative deletion vector names (None: every row of the fragment)."""
    if vector is None:
        return np.arange(rows, dtype=np.int64)
    return np.asarray(staging.vector(vector), dtype=np.int64)
