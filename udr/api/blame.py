"""Blame: for each cell of a keyed table's current rows, the commit that last set its current value.

Columns of the result: the key columns, then for each other column `c`, in table order, `c__commit` (commit id),
`c__author` and `c__time` (commit time, UTC). Rows are sorted by key.

A commit sets a cell when it inserts the row, or updates the row and the cell's value differs from the one before
(null-aware; NaN equals NaN): writing a cell its current value again sets nothing. Through merges a cell's value is
traced to where it came from: a merge takes each cell from one parent, so a cell the merge changed relative to its
first parent came from the second parent and is blamed in the second parent's history; a cell it left alone is
blamed in the first parent's. A conflict resolved by `strategy="theirs"` is therefore blamed on the commit that
wrote their value, one resolved by `"ours"` on the commit that wrote ours.

How: along a first-parent chain the latest commit that set a cell wins, so each commit's change rows become one
event row per changed key (the commit's `seq` in every column it set, null elsewhere) and a vectorised group-by
takes the maximum per key and column; cells whose maximum is a merge are resolved again on the merge's second
parent. The cost is one read of the change feed from the first commit plus one hash aggregation. Read-only.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from udr.api import history
from udr.api.context import LakeContext
from udr.errors import TableNotFound, UsageError, close_matches
from udr.log import graph
from udr.log.commits import CommitRecord
from udr.log.format import CommitId
from udr.query.changefeed import CHANGE

_TIME = pa.timestamp("us", tz="UTC")
_SEQ = pa.int64()


def blame(ctx: LakeContext, table: str, key: Mapping[str, object] | None, head: CommitId) -> pa.Table:
    """Who last set each cell of `table`'s rows at commit `head` (only the row with primary key `key` if given).

    Raises:
        TableNotFound: no table `table` at `head`.
        UsageError: the table has no primary key, or `key` names other columns than the key.
    """
    state = ctx.materializer.snapshot(head).get(table)
    if state is None:
        raise TableNotFound(f"table {table!r} does not exist at {head[:10]}" +
                            close_matches(table, ctx.materializer.snapshot(head)))
    if state.primary_key is None:
        raise UsageError(f"table {table!r} has no primary key, so its cells cannot be followed from commit to commit; "
                         "set one with set_primary_key, or read whole-row changes with history or changes")
    pk = list(state.primary_key)
    schema = ctx.rows.schema(state.schema)
    values = [c for c in schema.names if c not in pk]
    current = ctx.rows.table(table, state, columns=pk)
    if key is not None:
        if set(key) != set(pk):
            raise UsageError(f"table {table!r} is keyed by {', '.join(pk)}; blame of one row needs exactly those columns")
        current = current.filter(_key_mask(current, key))
    tracer = _Tracer(ctx, table, pk, values, schema)
    origins = tracer.origins(head, current)
    return tracer.labelled(origins.sort_by([(k, "ascending") for k in pk]))


def _key_mask(rows: pa.Table, key: Mapping[str, object]) -> pa.ChunkedArray:
    mask = None
    for column, value in key.items():
        hit = pc.equal(rows.column(column), history.key_scalar(value, rows.schema.field(column).type))
        mask = hit if mask is None else pc.and_(mask, hit)
    return pc.fill_null(mask, False)


def _distinct(before: pa.ChunkedArray, after: pa.ChunkedArray) -> pa.ChunkedArray:
    """Null-aware "values differ" (NaN equals NaN), one bool per row."""
    same = pc.fill_null(pc.equal(before, after), False)
    same = pc.or_(same, pc.and_(pc.is_null(before), pc.is_null(after)))
    if pa.types.is_floating(before.type):
        same = pc.or_(same, pc.fill_null(pc.and_(pc.is_nan(before), pc.is_nan(after)), False))
    return pc.invert(same)


class _Tracer:
    """One blame: the per-commit events it read (each commit's are read once, however many chains share it)."""

    def __init__(self, ctx: LakeContext, table: str, key: list[str], values: list[str], schema: pa.Schema) -> None:
        self._ctx = ctx
        self._table = table
        self._key = key
        self._values = values
        self._event_schema = pa.schema([schema.field(k) for k in key] + [pa.field(c, _SEQ) for c in values])
        self._events: dict[CommitId, pa.Table | None] = {}
        self._records: dict[int, tuple[CommitId, CommitRecord]] = {}

    def origins(self, tip: CommitId, wanted: pa.Table) -> pa.Table:
        """`wanted` (key columns) plus, per value column, the `seq` of the commit that last set the cell at `tip`."""
        chain = graph.first_parent_range(self._ctx.log, None, tip)
        parts = [events for cid, record in chain if (events := self._commit_events(cid, record)) is not None]
        merges = {record.seq: record for cid, record in chain if len(record.parents) > 1}
        if parts:
            latest = pa.concat_tables(parts).group_by(self._key).aggregate([(c, "max") for c in self._values])
            # group_by names each aggregate "<column>_max".
            plain = {f"{c}_max": c for c in self._values}
            latest = latest.rename_columns([plain.get(c, c) for c in latest.column_names])
        else:
            latest = self._event_schema.empty_table()
        found = wanted.select(self._key).join(latest, keys=self._key, join_type="left outer")
        for seq, record in sorted(merges.items(), reverse=True):
            found = self._through_merge(found, seq, record)
        return found

    def _through_merge(self, found: pa.Table, seq: int, record: CommitRecord) -> pa.Table:
        """Cells whose latest setter on this chain is merge `seq` came from its second parent: blame them there."""
        hits = [pc.fill_null(pc.equal(found.column(c), seq), False) for c in self._values]
        if not hits:
            return found
        any_hit = hits[0]
        for hit in hits[1:]:
            any_hit = pc.or_(any_hit, hit)
        moved = found.filter(any_hit)
        if not moved.num_rows:
            return found
        deeper = self.origins(record.parents[1], moved.select(self._key))
        deeper = deeper.rename_columns([c if c in self._key else f"{c}__deeper" for c in deeper.column_names])
        joined = found.join(deeper, keys=self._key, join_type="left outer")
        for c in self._values:
            index = joined.schema.get_field_index(c)
            chosen = pc.if_else(pc.fill_null(pc.equal(joined.column(c), seq), False), joined.column(f"{c}__deeper"),
                                joined.column(c))
            joined = joined.set_column(index, pa.field(c, _SEQ), chosen)
        return joined.drop_columns([f"{c}__deeper" for c in self._values])

    def _commit_events(self, cid: CommitId, record: CommitRecord) -> pa.Table | None:
        """One row per key commit `cid` inserted or updated: its seq in each column it set (None: no rows)."""
        self._records[record.seq] = (cid, record)
        if cid in self._events:
            return self._events[cid]
        rows = history.commit_changes(self._ctx, self._table, cid, record) if self._table in record.tables else None
        events = None
        if rows is not None and rows.num_rows:
            kinds = rows.column(CHANGE)
            inserted = rows.filter(pc.equal(kinds, "insert"))
            before = rows.filter(pc.equal(kinds, "update_before"))
            after = rows.filter(pc.equal(kinds, "update_after"))
            stamp = pa.scalar(record.seq, _SEQ)
            columns: list[pa.Array | pa.ChunkedArray] = [
                pa.concat_arrays([_whole(inserted, k), _whole(after, k)]).cast(self._event_schema.field(k).type)
                for k in self._key]
            for c in self._values:
                if c not in rows.column_names:
                    columns.append(pa.nulls(inserted.num_rows + after.num_rows, _SEQ))
                    continue
                updated = pc.if_else(_distinct(before.column(c), after.column(c)), stamp, pa.scalar(None, _SEQ))
                columns.append(pa.concat_arrays([pa.repeat(stamp, inserted.num_rows), _whole_array(updated)]))
            events = pa.Table.from_arrays(columns, schema=self._event_schema)
        self._events[cid] = events
        return events

    def labelled(self, origins: pa.Table) -> pa.Table:
        """`origins` with each value column's seq replaced by `<col>__commit`, `<col>__author`, `<col>__time`."""
        seqs = sorted(self._records)
        value_set = pa.array(seqs, _SEQ)
        ids = pa.array([self._records[s][0] for s in seqs], pa.string())
        authors = pa.array([self._records[s][1].author for s in seqs], pa.string())
        times = pa.array([self._records[s][1].time_us for s in seqs], pa.int64()).cast(_TIME)
        arrays: list[pa.ChunkedArray] = [origins.column(k) for k in self._key]
        names = list(self._key)
        for c in self._values:
            at = pc.index_in(origins.column(c), value_set=value_set)
            arrays += [pc.take(ids, at), pc.take(authors, at), pc.take(times, at)]
            names += [f"{c}__commit", f"{c}__author", f"{c}__time"]
        return pa.table(arrays, names=names)


def _whole(rows: pa.Table, column: str) -> pa.Array:
    return _whole_array(rows.column(column))


def _whole_array(data: pa.ChunkedArray | pa.Array) -> pa.Array:
    return data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
