"""The versions of one row through every line of history that reached a branch, merges included.

`history` follows every parent, not only first parents: each version is credited to the commit that made it,
on whichever branch it was made, and versions are listed in log order (`seq`). A merge commit brings in versions
its second parent's commits already made, so it is listed only for what it decided itself: a row where both sides
changed the same cell differently, or one deleted the row and the other changed it (a conflict the merge resolved
with a strategy). For a table without a primary key, a merge is listed only when both sides changed the table.
Read-only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from udr.api import history
from udr.api.context import LakeContext
from udr.errors import TableNotFound, UsageError, close_matches
from udr.log import graph
from udr.log.commits import CommitRecord, TableOp
from udr.log.format import BlobId, ChunkId, CommitId
from udr.materialize.merge import merge_rows
from udr.materialize.states import FragmentState
from udr.query.changefeed import CHANGE

_TIME = pa.timestamp("us", tz="UTC")
_Version = tuple[pa.Table, CommitId, CommitRecord]
_STAMPS = (("_commit_id", pa.string()), ("_commit_time", _TIME), ("_author", pa.string()),
           ("_message", pa.string()), ("_metadata", pa.string()))


def row_history(ctx: LakeContext, table: str, key: Mapping[str, object], until: CommitId) -> pa.Table:
    """Every version of the row with primary key `key` in the history of `until`, oldest first.

    Returns the table's columns, `_change`, then `_commit_id`, `_commit_time`, `_author`, `_message` and
    `_metadata` (the commit's metadata as a JSON object).

    Raises:
        TableNotFound: no commit in the history of `until` ever had the table.
        UsageError: `key` is not the table's primary key, or names a column the table lacks.
    """
    state = ctx.materializer.snapshot(until).get(table)
    # As readers see them: chunks an erasure replaced are read through its map, so erased values never show.
    records = {c: ctx.materializer.replaced(ctx.log.get_commit(c)) for c in graph.ancestors(ctx.log, until)}
    if state is None and not any(table in r.tables for r in records.values()):
        raise TableNotFound(f"table {table!r} has no history here"
                            + close_matches(table, ctx.materializer.snapshot(until)))
    pk = list(state.primary_key) if state is not None and state.primary_key else None
    if pk is not None and set(key) != set(pk):
        raise UsageError(f"table {table!r} is keyed by {', '.join(pk)}; history needs exactly those columns")
    if pk is not None and state is not None:
        tracker = _RowTracker(ctx, table, key, pk, ctx.rows.schema(state.schema))
        parts = _tracked_versions(ctx, tracker, records, pk)
    else:
        parts = []
        # A merge that kept our side of a conflict changed nothing relative to its first parent: it is read too.
        touching = sorted((r.seq, c) for c, r in records.items() if table in r.tables or len(r.parents) > 1)
        for _, cid in touching:
            record = records[cid]
            if len(record.parents) > 1:
                picked = _decided(ctx, table, cid, record, key, pk)
            else:
                rows = history.commit_changes(ctx, table, cid, record)
                picked = rows.filter(_matching(rows, key, table)) if rows is not None else pa.table({})
            if picked.num_rows:
                parts.append((picked, cid, record))
    schema = (ctx.rows.schema(state.schema) if state is not None else pa.schema([]))
    schema = schema.append(pa.field(CHANGE, pa.string()))
    for name, kind in _STAMPS:
        schema = schema.append(pa.field(name, kind))
    return _stamped(parts) if parts else schema.empty_table()


@dataclass(frozen=True, slots=True)
class _Where:
    """Where a version of the row lives: a fragment and a row position in it."""

    frag: FragmentState
    pos: int


class _RowTracker:
    """Follows one key of a keyed table from commit to commit without building any commit's change rows.

    In a keyed table a key is live at most once, so a commit that adds the key replaced its old version, and
    a commit that deleted no rows (its op's `deleted` count is 0) and does not add the key left the row where
    it was: only the few commits that delete rows need a deletion vector read.
    """

    def __init__(self, ctx: LakeContext, table: str, key: Mapping[str, object], pk: list[str],
                 schema: pa.Schema) -> None:
        self._ctx = ctx
        self.table = table
        self.key = key
        self._pk = pk
        self._schema = schema
        self._rows: dict[tuple[str, int], pa.Table] = {}
        self._scalars: dict[pa.DataType, pa.Scalar] = {}
        self._found: dict[str, list[int]] = {}

    def after(self, prev: _Where | None, op: TableOp) -> _Where | None:
        """Where the row lives after `op`, given where it lived before (None: nowhere)."""
        cur = None if op.create or op.drop or op.truncate else prev
        if cur is not None and op.deleted and not self._live(cur.frag.chunk, cur.pos, op):
            cur = None
        for f in op.add:
            frag = FragmentState(f.chunk, f.rows, f.inline, f.schema)
            for pos in self._positions(frag):
                if self._live(frag.chunk, pos, op):
                    cur = _Where(frag, pos)
        return cur

    def _live(self, chunk: str, pos: int, op: TableOp) -> bool:
        for d in op.deletes:
            if d.chunk == chunk:
                if d.vector is None:
                    return False
                frag = FragmentState(ChunkId(chunk), 0, False, BlobId(""), d.vector)
                return pos not in set(self._ctx.rows.deleted_positions(frag).to_pylist())
        return True

    def prefetch(self, ops: list[TableOp]) -> None:
        """Search the key in every fragment `ops` add at once (one vectorised search, not one per commit)."""
        frags = {f.chunk: FragmentState(f.chunk, f.rows, f.inline, f.schema) for op in ops for f in op.add}
        parts, chunks = [], []
        for chunk, frag in frags.items():
            data = self._ctx.rows.fragment(frag, columns=self._pk, table=self.table)
            if data.num_columns == len(self._pk) and data.num_rows:
                parts.append(data)
                chunks.append(chunk)
            else:
                self._found[chunk] = []
        try:
            joined = pa.concat_tables(parts) if parts else None
        except pa.ArrowInvalid:
            return  # the key's type changed over time: each fragment is searched on its own
        self._found.update((chunk, []) for chunk in chunks)
        if joined is None:
            return
        hits = np.asarray(pc.indices_nonzero(_matching(joined, self.key, self.table)), dtype=np.int64)
        starts = np.cumsum([0] + [p.num_rows for p in parts])
        owners = np.searchsorted(starts, hits, side="right") - 1
        for hit, owner in zip(hits.tolist(), owners.tolist(), strict=True):
            self._found[chunks[owner]].append(hit - int(starts[owner]))

    def _positions(self, frag: FragmentState) -> list[int]:
        known = self._found.get(frag.chunk)
        if known is not None:
            return known
        data = self._ctx.rows.fragment(frag, columns=self._pk, table=self.table)
        if data.num_columns != len(self._pk):
            return []
        first = self._pk[0]
        kind = data.schema.field(first).type
        wanted = self._scalars.get(kind)
        if wanted is None:
            wanted = self._scalars[kind] = history.key_scalar(self.key[first], kind)
        # Most fragments lack the key: one search of its first column rules them out.
        if pc.index(data.column(first), wanted).as_py() < 0:
            return []
        positions: list[int] = pc.indices_nonzero(_matching(data, self.key, self.table)).to_pylist()
        return positions

    def change(self, prev: _Where | None, cur: _Where | None) -> pa.Table:
        """The change rows from the version at `prev` to the one at `cur` (none if they hold the same values)."""
        if prev is not None and cur is not None:
            before, after = self._row(prev), self._row(cur)
            if before.equals(after):
                return pa.table({})
            return _labelled([before, after], ["update_before", "update_after"])
        if cur is not None:
            return _labelled([self._row(cur)], ["insert"])
        return _labelled([self._row(prev)], ["delete"]) if prev is not None else pa.table({})

    def decided(self, base: _Where | None, ours: _Where | None, theirs: _Where | None, merged: _Where | None,
                pk: list[str]) -> pa.Table:
        """The change rows of a merge to the row if it decided a conflict on it (see `_decided`), else none."""
        mine, other = self.change(base, ours), self.change(base, theirs)
        if not (mine.num_rows and other.num_rows):
            return pa.table({})
        if not merge_rows(self.table, self._schema, pk, mine, other, strategy=None).conflicts:
            return pa.table({})
        picked = self.change(ours, merged)
        return picked if picked.num_rows else self.change(theirs, merged)

    def _row(self, where: _Where) -> pa.Table:
        found = self._rows.get((where.frag.chunk, where.pos))
        if found is None:
            found = self._ctx.rows.rows_at_as(where.frag, np.array([where.pos]), self._schema, table=self.table)
            self._rows[(where.frag.chunk, where.pos)] = found
        return found


def _labelled(rows: list[pa.Table], kinds: list[str]) -> pa.Table:
    return pa.concat_tables(rows).append_column(CHANGE, pa.array(kinds, pa.string()))


def _tracked_versions(ctx: LakeContext, tracker: _RowTracker, records: Mapping[CommitId, CommitRecord],
                      pk: list[str]) -> list[_Version]:
    """The stamped versions of the tracked row, in log order, through every parent."""
    table = tracker.table
    where: dict[CommitId, _Where | None] = {}
    parts: list[_Version] = []
    tracker.prefetch([op for r in records.values() if (op := r.tables.get(table)) is not None])
    for _, cid in sorted((r.seq, c) for c, r in records.items()):
        record = records[cid]
        prev = where.get(record.parents[0]) if record.parents else None
        op = record.tables.get(table)
        cur = where[cid] = tracker.after(prev, op) if op is not None else prev
        if len(record.parents) > 1:
            theirs = where.get(record.parents[1])
            if theirs == prev:
                continue  # both sides hold the same version of the row: nothing to decide
            base = where.get(graph.merge_base(ctx.log, record.parents[0], record.parents[1]))
            picked = tracker.decided(base, prev, theirs, cur, pk)
        elif op is not None and not op.rewrite and cur != prev:
            picked = tracker.change(prev, cur)
        else:
            continue
        if picked.num_rows:
            parts.append((picked, cid, record))
    return parts


def _matching(rows: pa.Table, key: Mapping[str, object], table: str) -> pa.ChunkedArray | pa.Array:
    mask: pa.ChunkedArray | pa.Array | None = None
    for column, value in key.items():
        if column not in rows.column_names:
            raise UsageError(f"table {table!r} has no column {column!r}")
        hit = pc.equal(rows.column(column), history.key_scalar(value, rows.schema.field(column).type))
        mask = hit if mask is None else pc.and_(mask, hit)
    return pc.fill_null(mask, False) if mask is not None else pa.repeat(pa.scalar(True), rows.num_rows)


def _decided(ctx: LakeContext, table: str, cid: CommitId, record: CommitRecord, key: Mapping[str, object],
             pk: list[str] | None) -> pa.Table:
    """The change rows of merge `cid` to the row `key` if the merge decided a conflict on it, else none.

    The rows are relative to the first parent, or to the second when the merge kept the first parent's row
    (`strategy="ours"`): the version the merge chose over the other side's.
    """
    ours, theirs = record.parents[0], record.parents[1]
    snap = ctx.materializer.snapshot
    base = snap(graph.merge_base(ctx.log, ours, theirs)).get(table)
    if base == snap(ours).get(table) or base == snap(theirs).get(table):
        return pa.table({})
    mine = history.paired(ctx, table, base, snap(ours).get(table))
    other = history.paired(ctx, table, base, snap(theirs).get(table))
    if pk is None:
        conflicted = bool(mine.num_rows and other.num_rows)
    else:
        mine, other = mine.filter(_matching(mine, key, table)), other.filter(_matching(other, key, table))
        schema = mine.schema.remove(mine.schema.get_field_index(CHANGE))
        conflicted = bool(mine.num_rows and other.num_rows
                          and merge_rows(table, schema, pk, mine, other, strategy=None).conflicts)
    if not conflicted:
        return pa.table({})
    rows = history.commit_changes(ctx, table, cid, record)
    picked = rows.filter(_matching(rows, key, table)) if rows is not None else None
    if picked is None or not picked.num_rows:
        rows = history.paired(ctx, table, snap(theirs).get(table), snap(cid).get(table))
        picked = rows.filter(_matching(rows, key, table))
    return picked


def _stamped(parts: list[_Version]) -> pa.Table:
    """The change rows of every version, each stamped with its commit."""
    rows = pa.concat_tables([p for p, _, _ in parts], promote_options="permissive")
    owner = pa.array(np.repeat(np.arange(len(parts)), [p.num_rows for p, _, _ in parts]))
    values = ([cid for _, cid, _ in parts], [r.time_us for _, _, r in parts], [r.author for _, _, r in parts],
              [r.message for _, _, r in parts], [json.dumps(dict(r.metadata), sort_keys=True) for _, _, r in parts])
    for (name, kind), column in zip(_STAMPS, values, strict=True):
        stamps = pa.array(column, pa.int64() if kind == _TIME else kind).take(owner)
        rows = rows.append_column(name, stamps.cast(kind))
    return rows
