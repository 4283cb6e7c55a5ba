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

import pyarrow as pa
import pyarrow.compute as pc

from udr.api import history
from udr.api.context import LakeContext
from udr.errors import TableNotFound, UsageError, close_matches
from udr.log import graph
from udr.log.commits import CommitRecord
from udr.log.format import CommitId
from udr.materialize.merge import merge_rows
from udr.query.changefeed import CHANGE

_TIME = pa.timestamp("us", tz="UTC")
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
    records = {c: ctx.log.get_commit(c) for c in graph.ancestors(ctx.log, until)}
    # A merge that kept our side of a conflict changed nothing relative to its first parent: it is read too.
    touching = sorted((r.seq, c) for c, r in records.items() if table in r.tables or len(r.parents) > 1)
    if state is None and not any(table in r.tables for r in records.values()):
        raise TableNotFound(f"table {table!r} has no history here" + close_matches(table, ctx.materializer.snapshot(until)))
    pk = list(state.primary_key) if state is not None and state.primary_key else None
    if pk is not None and set(key) != set(pk):
        raise UsageError(f"table {table!r} is keyed by {', '.join(pk)}; history needs exactly those columns")
    parts = []
    for _, cid in touching:
        record = records[cid]
        if len(record.parents) > 1:
            picked = _decided(ctx, table, cid, record, key, pk)
        else:
            rows = history.commit_changes(ctx, table, cid, record)
            picked = rows.filter(_matching(rows, key, table)) if rows is not None else pa.table({})
        if picked.num_rows:
            parts.append(_stamped(picked, cid, record))
    schema = (ctx.rows.schema(state.schema) if state is not None else pa.schema([])).append(pa.field(CHANGE, pa.string()))
    for name, kind in _STAMPS:
        schema = schema.append(pa.field(name, kind))
    return pa.concat_tables(parts, promote_options="permissive") if parts else schema.empty_table()


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


def _stamped(rows: pa.Table, cid: CommitId, record: CommitRecord) -> pa.Table:
    n = rows.num_rows
    values = (cid, record.time_us, record.author, record.message, json.dumps(dict(record.metadata), sort_keys=True))
    for (name, kind), value in zip(_STAMPS, values, strict=True):
        rows = rows.append_column(name, pa.repeat(pa.scalar(value, pa.int64() if kind == _TIME else kind), n).cast(kind))
    return rows
