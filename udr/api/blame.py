"""Blame: for each cell of a keyed table's current rows, the commit that last set its current value.

Columns of the result: the key columns, then for each other column `c`, in table order, `c__commit` (commit id),
`c__author` (both dictionary-encoded strings: a few commits name millions of cells) and `c__time` (commit time,
UTC). Rows are sorted by key.

A commit sets a cell when it inserts the row, or updates the row and the cell's value differs from the one before
(null-aware; NaN equals NaN): writing a cell its current value again sets nothing. Through merges a cell's value is
traced to where it came from: a merge takes each cell from one parent, so a cell the merge changed relative to its
first parent came from the second parent and is blamed in the second parent's history; a cell it left alone is
blamed in the first parent's. A conflict resolved by `strategy="theirs"` is therefore blamed on the commit that
wrote their value, one resolved by `"ours"` on the commit that wrote ours.

How: along a first-parent chain the latest commit that set a cell wins. Each commit's change rows become events:
keys inserted or deleted (`seq * 2 + 1` or `seq * 2`; the latest says whether the row is live and since when all
its cells are set) and keys updated (the commit's `seq` in each column it set, null elsewhere). Vectorised
group-bys take the maximum per key (and column); cells whose maximum is a merge are resolved again on the merge's
second parent. The cost is about one read of the change feed from the first commit (a table's first load is read
for its keys only) plus two hash aggregations. Read-only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
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
    if key is not None and set(key) != set(pk):
        raise UsageError(f"table {table!r} is keyed by {', '.join(pk)}; blame of one row needs exactly those columns")
    tracer = _Tracer(ctx, table, pk, values, schema)
    origins = tracer.origins(head, _key_table(key, schema, pk) if key is not None else None)
    if not _sorted(origins, pk):
        origins = origins.sort_by([(k, "ascending") for k in pk])
    return tracer.labelled(origins)


def _scatter_max(base: pa.Table, key: str, small: pa.Table, columns: list[str],
                 base_column: str | None = None) -> tuple[list[pa.Array], pa.Table]:
    """Per column of `columns`, `base`'s values (of `base_column` if given; never null), in `base`'s order, raised
    to `small`'s value on the rows whose `key` `small` holds; and the keys both hold. `small` is the few rows.

    A column `small` holds no value of comes back as `base`'s own array, one object for every such column: most
    columns of a table are set by inserts only, and `_Tracer.labelled` labels each distinct array once.
    """
    # Whole arrays: some kernels crash on a chunked array with no chunks (an empty table).
    keys = base.column(key).combine_chunks()
    positions = pc.indices_nonzero(pc.is_in(keys, value_set=small.column(key).combine_chunks()))
    sub = pa.table({key: keys.take(positions), "__pos": positions}).join(small, keys=key, join_type="inner")
    at = sub.column("__pos").to_numpy()
    shared: dict[str, pa.Array] = {}
    out = []
    for c in columns:
        source = base_column or c
        raised = sub.column(c)
        if raised.null_count == len(raised):
            if source not in shared:
                shared[source] = base.column(source).combine_chunks()
            out.append(shared[source])
            continue
        values = base.column(source).combine_chunks().to_numpy(zero_copy_only=False).copy()
        values[at] = np.maximum(values[at], pc.fill_null(raised, -1).to_numpy())
        out.append(pa.array(values, _SEQ))
    return out, sub.select([key])


def _sorted(rows: pa.Table, key: list[str]) -> bool:
    """Whether `rows` are already in key order (checked for one numeric key column without nulls only)."""
    column = rows.column(key[0])
    if len(key) > 1 or column.null_count or not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        return False
    values = column.combine_chunks().to_numpy(zero_copy_only=False)
    return bool(np.all(values[1:] >= values[:-1]))


def _key_table(key: Mapping[str, object], schema: pa.Schema, pk: list[str]) -> pa.Table:
    return pa.table([pa.array([history.key_scalar(key[k], schema.field(k).type)]) for k in pk], names=pk)


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
        self._key_schema = pa.schema([schema.field(k) for k in key])
        self._events: dict[CommitId, tuple[pa.Table | None, pa.Table | None]] = {}
        self._records: dict[int, tuple[CommitId, CommitRecord]] = {}

    def origins(self, tip: CommitId, wanted: pa.Table | None) -> pa.Table:
        """The keys live at `tip` (only those in `wanted` if given) plus, per value column, the `seq` of the
        commit that last set the cell on `tip`'s first-parent chain, merges resolved on their second parent."""
        chain = graph.first_parent_range(self._ctx.log, None, tip)
        events = [self._commit_events(cid, record) for cid, record in chain]
        presence = [p for p, _ in events if p is not None]
        if not presence:
            return pa.schema([*self._key_schema, *(pa.field(c, _SEQ) for c in self._values)]).empty_table()
        last = self._latest(presence)
        last = last.filter(pc.equal(pc.bit_wise_and(last.column("__ev"), 1), 1))
        if wanted is not None:
            last = last.join(wanted.select(self._key), keys=self._key, join_type="left semi")
        found = pa.table([*(last.column(k) for k in self._key), pc.shift_right(last.column("__ev"), 1)],
                         names=[*self._key, "__ins"])
        updates = [u for _, u in events if u is not None]
        if updates:
            latest = pa.concat_tables(updates).group_by(self._key).aggregate([(c, "max") for c in self._values])
            found = self._with_updates(found, latest.rename_columns({f"{c}_max": c for c in self._values}))
        else:
            found = pa.table([*(found.column(k) for k in self._key), *(found.column("__ins") for _ in self._values)],
                             names=[*self._key, *self._values])
        for record in sorted((r for _, r in chain if len(r.parents) > 1), key=lambda r: r.seq, reverse=True):
            found = self._through_merge(found, record)
        return found

    def _latest(self, parts: list[pa.Table]) -> pa.Table:
        """The greatest `__ev` per key over `parts` (each holds a key at most once: one commit's rows).

        A table's history is mostly one big load and small changes: with a one-column key, the big part is not
        hashed into the aggregation, only checked against the keys of the others.
        """
        big = max(parts, key=lambda p: p.num_rows)
        rest = [p for p in parts if p is not big]
        if not rest:
            return big

        def grouped(tables: list[pa.Table]) -> pa.Table:
            return pa.concat_tables(tables).group_by(self._key).aggregate([("__ev", "max")]).rename_columns(
                {"__ev_max": "__ev"})

        if len(self._key) > 1:
            return grouped(parts)
        small = grouped(rest)
        ev, matched = _scatter_max(big, self._key[0], small, ["__ev"])
        added = small.join(matched, keys=self._key, join_type="left anti").sort_by(self._key[0])
        # Keys keep their place in the big load; keys new since then follow in key order.
        return pa.concat_tables([big.set_column(big.schema.get_field_index("__ev"), "__ev", ev[0]),
                                 added.select(big.column_names)])

    def _with_updates(self, found: pa.Table, latest: pa.Table) -> pa.Table:
        """`found` (keys, `__ins`) plus each value column: the later of the row's last insert and last update."""
        if len(self._key) == 1:
            columns, _ = _scatter_max(found, self._key[0], latest, self._values, base_column="__ins")
            return pa.table([found.column(self._key[0]), *columns], names=[*self._key, *self._values])
        joined = found.join(latest.rename_columns({c: f"{c}__upd" for c in self._values}), keys=self._key,
                            join_type="left outer")
        return pa.table([*(joined.column(k) for k in self._key),
                         *(pc.max_element_wise(joined.column("__ins"), joined.column(f"{c}__upd"), skip_nulls=True)
                           for c in self._values)], names=[*self._key, *self._values])

    def _through_merge(self, found: pa.Table, record: CommitRecord) -> pa.Table:
        """Cells whose latest setter on this chain is merge `record` came from its second parent: blame them there."""
        hits = [pc.fill_null(pc.equal(found.column(c), record.seq), False) for c in self._values]
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
            chosen = pc.if_else(pc.fill_null(pc.equal(joined.column(c), record.seq), False),
                                joined.column(f"{c}__deeper"), joined.column(c))
            joined = joined.set_column(index, pa.field(c, _SEQ), chosen)
        return joined.drop_columns([f"{c}__deeper" for c in self._values])

    def _commit_events(self, cid: CommitId, record: CommitRecord) -> tuple[pa.Table | None, pa.Table | None]:
        """What commit `cid` did to the table's rows: keys inserted or deleted (`__ev` = seq * 2 + 1 for an insert,
        seq * 2 for a delete), and keys updated with its seq in each column it set. None: no such rows."""
        self._records[record.seq] = (cid, record)
        if cid not in self._events:
            self._events[cid] = self._read_events(cid, record)
        return self._events[cid]

    def _read_events(self, cid: CommitId, record: CommitRecord) -> tuple[pa.Table | None, pa.Table | None]:
        op = record.tables.get(self._table)
        if op is None or op.rewrite:
            return None, None
        if op.create and record.parents and self._ctx.materializer.snapshot(record.parents[0]).get(self._table) is None:
            # A new table: every live row is an insert, and only its key needs reading.
            state = self._ctx.materializer.snapshot(cid).get(self._table)
            keys = self._ctx.rows.table(self._table, state, columns=self._key) if state is not None else None
            return (self._presence(keys, None, record.seq) if keys is not None and keys.num_rows else None), None
        rows = history.commit_changes(self._ctx, self._table, cid, record)
        if rows is None or not rows.num_rows:
            return None, None
        kinds = rows.column(CHANGE)
        inserted = rows.filter(pc.equal(kinds, "insert"))
        deleted = rows.filter(pc.equal(kinds, "delete"))
        presence = self._presence(inserted, deleted, record.seq) if inserted.num_rows or deleted.num_rows else None
        before = rows.filter(pc.equal(kinds, "update_before"))
        after = rows.filter(pc.equal(kinds, "update_after"))
        if not after.num_rows:
            return presence, None
        stamp, unset = pa.scalar(record.seq, _SEQ), pa.scalar(None, _SEQ)
        columns = [after.column(k).cast(self._key_schema.field(k).type) for k in self._key]
        for c in self._values:
            columns.append(pc.if_else(_distinct(before.column(c), after.column(c)), stamp, unset)
                           if c in rows.column_names else pa.nulls(after.num_rows, _SEQ))
        return presence, pa.table(columns, names=[*self._key, *self._values])

    def _presence(self, inserted: pa.Table, deleted: pa.Table | None, seq: int) -> pa.Table:
        parts = [(inserted, seq * 2 + 1), (deleted, seq * 2)]
        return pa.concat_tables([
            pa.table([*(rows.column(k).cast(self._key_schema.field(k).type) for k in self._key),
                      pa.repeat(pa.scalar(ev, _SEQ), rows.num_rows)], names=[*self._key, "__ev"])
            for rows, ev in parts if rows is not None and rows.num_rows])

    def labelled(self, origins: pa.Table) -> pa.Table:
        """`origins` with each value column's seq replaced by `<col>__commit`, `<col>__author` and `<col>__time`."""
        seqs = sorted(self._records)
        ids = pa.array([self._records[s][0] for s in seqs], pa.string())
        authors = pa.array([self._records[s][1].author for s in seqs], pa.string())
        times = np.array([self._records[s][1].time_us for s in seqs], dtype=np.int64)
        # seq -> index into the arrays above: seqs are log positions, so a dense lookup table is small.
        lookup = np.full(max(seqs) + 2, -1, dtype=np.int32)
        lookup[np.array(seqs, dtype=np.int64)] = np.arange(len(seqs), dtype=np.int32)
        arrays: list[pa.Array | pa.ChunkedArray] = [origins.column(k) for k in self._key]
        names = list(self._key)
        # Columns set by the same commits (most often: by inserts only) share one labelling.
        done: list[tuple[np.ndarray, list[pa.Array]]] = []
        for c in self._values:
            column = origins.column(c).combine_chunks()
            found = (pc.fill_null(column, -1) if column.null_count else column).to_numpy(zero_copy_only=False)
            labels = next((labels for seen, labels in done if np.array_equal(seen, found)), None)
            if labels is None:
                labels = self._labels(lookup[found], ids, authors, times)
                done.append((found, labels))
            arrays += labels
            names += [f"{c}__commit", f"{c}__author", f"{c}__time"]
        return pa.table(arrays, names=names)

    @staticmethod
    def _labels(at: np.ndarray, ids: pa.Array, authors: pa.Array, times: np.ndarray) -> list[pa.Array]:
        """Commit id, author and time for each index `at` into `ids`, `authors` and `times` (-1: null)."""
        unset = at < 0
        mask = unset if unset.any() else None
        indices = pa.array(at, mask=mask)
        stamps = pa.array(times[np.maximum(at, 0)] if mask is not None else times[at], mask=mask).view(_TIME)
        return [pa.DictionaryArray.from_arrays(indices, ids), pa.DictionaryArray.from_arrays(indices, authors), stamps]
