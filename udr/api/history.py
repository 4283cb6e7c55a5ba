"""Row-level history: the change feed of a table, the versions of one row, and diffs between refs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet

import pyarrow as pa
import pyarrow.compute as pc

from udr.api.context import LakeContext
from udr.errors import TableNotFound, UsageError, close_matches
from udr.log import graph
from udr.log.commits import CommitRecord, TableOp
from udr.log.format import BlobKind, ChunkId, CommitId
from udr.materialize.changes import changes_from_before, state_delta
from udr.materialize.data import RowReader
from udr.materialize.encodings import decode_before
from udr.materialize.schemas import rename_by_id
from udr.materialize.states import FragmentState, TableState
from udr.query.changefeed import CHANGE, pair_changes
from udr.values import TableChange

_TIME = pa.timestamp("us", tz="UTC")
_STAMPS = ("_commit_id", "_commit_seq", "_commit_time")


def first_parent_range(ctx: LakeContext, since: CommitId | None,
                       until: CommitId) -> list[tuple[CommitId, CommitRecord]]:
    """Commits after `since` up to and including `until` along first parents, oldest first (see
    `udr.log.graph.first_parent_range`)."""
    return graph.first_parent_range(ctx.log, since, until)


def commit_changes(ctx: LakeContext, table: str, cid: CommitId, record: CommitRecord, *,
                   first: int | None = None) -> pa.Table | None:
    """The change rows one commit made to `table` (None if it did not touch it or only re-encoded it); with
    `first`, at least its first `first` change rows (a commit that only inserted rows reads no more of its
    fragments than those need)."""
    op = record.tables.get(table)
    if op is None or op.rewrite:
        return None
    record = ctx.materializer.replaced(record)  # chunks and before-images an erasure replaced
    op = record.tables[table]
    ctx.check_readable(cid, (table,))
    new = ctx.materializer.snapshot(cid).get(table)
    if new is not None and new.primary_key and (image := _before_image(ctx, cid, table, op)) is not None:
        return changes_from_before(ctx.rows, table, new, {f.chunk for f in op.add}, image, list(new.primary_key))
    if record.parents:  # the changes are computed against the parent's rows
        ctx.check_readable(record.parents[0], (table,))
    old = ctx.materializer.snapshot(record.parents[0]).get(table) if record.parents else None
    if first is not None and new is not None and not (op.drop or op.truncate or op.deletes) and (
            old is None or not op.create):
        # Only inserts: the live rows of the fragments the commit added (all of a new table's), in order.
        added = new.fragments if old is None else new.appended({f.chunk for f in op.add})
        return _first_inserts(ctx, table, new, added, first)
    if op.create or op.drop or op.truncate:
        return paired(ctx, table, old, new)
    # Otherwise only the fragments the op adds or re-deletes can differ.
    return paired(ctx, table, old, new, added={f.chunk for f in op.add}, redeleted={d.chunk for d in op.deletes})


def _before_image(ctx: LakeContext, cid: CommitId, table: str, op: TableOp) -> pa.Table | None:
    """The before-image of `op` (`table`'s op in `cid`, as readers see it): its BEFORE blob, else the one
    its writer kept if that was this process (None: the feed derives it from the parent's chunks)."""
    if op.before is not None:
        return decode_before(ctx.log.get_blob(op.before, BlobKind.BEFORE))
    return ctx.befores.image(cid, table, op)


def _first_inserts(ctx: LakeContext, table: str, new: TableState, added: Sequence[FragmentState],
                   first: int) -> pa.Table:
    """The first `first` change rows of a commit that only added the fragments `added` to `table`."""
    schema = ctx.rows.schema(new.schema)
    read: list[pa.Table] = []
    count = 0
    for frag in added:
        if count >= first:
            break
        read.append(ctx.rows.live_as(frag, schema, table=table))
        count += read[-1].num_rows
    rows = pa.concat_tables(read).slice(0, first) if read else schema.empty_table()
    return pair_changes(schema, schema.empty_table(), rows, list(new.primary_key) if new.primary_key else None)


def paired(ctx: LakeContext, table: str, old: TableState | None, new: TableState | None,
            rows: RowReader | None = None, *, added: set[ChunkId] | None = None,
            redeleted: set[ChunkId] | frozenset[ChunkId] = frozenset(), ordered: bool = True) -> pa.Table:
    """The change rows (`_change` column) turning `table` from `old` into `new`, updates paired by key."""
    delta = state_delta(rows or ctx.rows, table, old, new, added=added, redeleted=redeleted)
    ref = new if new is not None else old
    key = list(ref.primary_key) if ref is not None and ref.primary_key else None
    if not (delta.removed.num_rows and delta.added.num_rows):
        # Only inserts or only deletes: nothing to pair, so no DuckDB cursor is needed.
        return pair_changes(delta.schema, delta.removed, delta.added, key)
    with ctx.database.session() as con:
        return pair_changes(delta.schema, delta.removed, delta.added, key, con, ordered=ordered)


def stamped_commit_changes(ctx: LakeContext, table: str, cid: CommitId, record: CommitRecord) -> pa.Table | None:
    """`commit_changes` plus `_commit_id`, `_commit_seq` and `_commit_time` (None when no row changed,
    except for a drop: a table dropped empty still gets its final batch, with no rows)."""
    rows = commit_changes(ctx, table, cid, record)
    if rows is None or not (rows.num_rows or record.tables[table].drop):
        return None
    return _stamp(rows, cid, record)


def _stamp(rows: pa.Table, cid: CommitId, record: CommitRecord) -> pa.Table:
    n = rows.num_rows
    stamps = [pa.repeat(pa.scalar(cid, pa.string()), n), pa.repeat(pa.scalar(record.seq, pa.int64()), n),
              pa.repeat(pa.scalar(record.time_us, _TIME), n)]
    return pa.Table.from_arrays([*rows.columns, *stamps], names=[*rows.column_names, *_STAMPS])


def _unify(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    if not parts:
        return schema.empty_table()
    return pa.concat_tables(parts, promote_options="permissive")


def _change_schema(ctx: LakeContext, table: str, cid: CommitId) -> pa.Schema:
    state = ctx.materializer.snapshot(cid).get(table)
    base = ctx.rows.schema(state.schema) if state is not None else pa.schema([])
    return (base.append(pa.field(CHANGE, pa.string())).append(pa.field("_commit_id", pa.string()))
            .append(pa.field("_commit_seq", pa.int64())).append(pa.field("_commit_time", _TIME)))


def _commits_touching(ctx: LakeContext, table: str, chain: list[tuple[CommitId, CommitRecord]], until: CommitId,
                      first: int | None) -> Iterator[tuple[CommitId, CommitRecord, pa.Table]]:
    """The commits of `chain` that changed rows of `table`, with their change rows (at least the `first`
    ones) named as at `until`: a renamed column is followed by its stable id."""
    final = ctx.materializer.snapshot(until).get(table)
    for cid, record in chain:
        rows = commit_changes(ctx, table, cid, record, first=first)
        if rows is None or not rows.num_rows:
            continue
        state = ctx.materializer.snapshot(cid).get(table)
        if final is not None and state is not None and state.schema != final.schema:
            rows = rename_by_id(rows, ctx.rows.schema(state.schema), ctx.rows.schema(final.schema))
        yield cid, record, rows


def _check_table_known(ctx: LakeContext, table: str, chain: list[tuple[CommitId, CommitRecord]],
                       until: CommitId) -> None:
    if table in ctx.materializer.snapshot(until) or any(table in r.tables for _, r in chain):
        return
    raise TableNotFound(f"table {table!r} has no history here" + close_matches(table, ctx.materializer.snapshot(until)))


def changes(ctx: LakeContext, table: str, since: CommitId | None, until: CommitId, *,
            limit: int | None = None) -> pa.Table:
    """Every row-level change to `table` by the commits after `since` up to `until`, in commit order; with
    `limit`, only the first `limit` of them, computing (and stamping) no more commits and rows than those.

    Raises:
        UsageError: `limit` is negative.
    """
    if limit is not None and limit < 0:
        raise UsageError(f"limit={limit}: a number of rows cannot be negative; pass limit >= 0 (None: all)")
    chain = first_parent_range(ctx, since, until)
    _check_table_known(ctx, table, chain, until)
    parts: list[pa.Table] = []
    wanted = limit
    for cid, record, touched in _commits_touching(ctx, table, chain, until, limit) if limit != 0 else ():
        rows = touched if wanted is None else touched.slice(0, wanted)
        if wanted is not None:
            wanted -= rows.num_rows
        parts.append(_stamp(rows, cid, record))
        if wanted == 0:
            break
    return _unify(parts, _change_schema(ctx, table, until))


def key_scalar(value: object, kind: pa.DataType) -> pa.Scalar:
    """`value` as a scalar of the key column type `kind` (text such as "2024-05-01" is cast)."""
    # Typed directly: inferring first would overflow uint64 keys above 2**63 and drop nanoseconds.
    try:
        return pa.scalar(value, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.scalar(value).cast(kind)  # e.g. "2024-05-01" for a date key


def diff(ctx: LakeContext, table: str, a: CommitId, b: CommitId) -> pa.Table:
    """The net row changes to `table` from commit `a` to commit `b` (any two commits, any branches)."""
    old = ctx.materializer.snapshot(a).get(table)
    new = ctx.materializer.snapshot(b).get(table)
    if old is None and new is None:
        known = set(ctx.materializer.snapshot(a)) | set(ctx.materializer.snapshot(b))
        raise TableNotFound(f"table {table!r} exists at neither version" + close_matches(table, known))
    for commit in (a, b):
        ctx.check_readable(commit, (table,))
    record = ctx.log.get_commit(b)
    return _stamp(paired(ctx, table, old, new), b, record)


def count_changes(ctx: LakeContext, table: str, old: TableState | None, new: TableState | None,
                  rows: RowReader | None = None) -> TableChange:
    """Net rows inserted, updated and deleted between two states of a table."""
    kinds = paired(ctx, table, old, new, rows, ordered=False).column(CHANGE)
    found = {c["values"]: c["counts"] for c in pc.value_counts(kinds).to_pylist()} if len(kinds) else {}
    return TableChange(found.get("insert", 0), found.get("update_after", 0), found.get("delete", 0))


def diff_summary(ctx: LakeContext, a: CommitId, b: CommitId) -> dict[str, TableChange]:
    """Per table, the net rows inserted, updated and deleted from `a` to `b` (unchanged tables left out)."""
    out: dict[str, TableChange] = {}
    for table, old, new in _differing(ctx, a, b):
        change = count_changes(ctx, table, old, new)
        if change != TableChange():
            out[table] = change
    return out


def net_changes(ctx: LakeContext, a: CommitId, b: CommitId, tables: AbstractSet[str] | None) -> dict[str, pa.Table]:
    """Per table of `tables` (None: all) that differs, the change rows taking it from `a` to `b`, stamped
    as changes of commit `b` (for a change stream whose branch jumped to another line of history)."""
    record = ctx.log.get_commit(b)
    out: dict[str, pa.Table] = {}
    for table, old, new in _differing(ctx, a, b):
        if tables is None or table in tables:
            rows = paired(ctx, table, old, new)
            if rows.num_rows:
                out[table] = _stamp(rows, b, record)
    return out


def _differing(ctx: LakeContext, a: CommitId,
               b: CommitId) -> Iterator[tuple[str, TableState | None, TableState | None]]:
    snap_a = ctx.materializer.snapshot(a)
    snap_b = ctx.materializer.snapshot(b)
    for table in sorted(set(snap_a) | set(snap_b)):
        if snap_a.get(table) != snap_b.get(table):
            for commit in (a, b):
                ctx.check_readable(commit, (table,))
            yield table, snap_a.get(table), snap_b.get(table)
