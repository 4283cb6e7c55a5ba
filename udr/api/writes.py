"""Writes that compare incoming rows with a table's current rows (in DuckDB, `udr.query.diff`) and stage only
the difference through `udr.materialize.staging`: keyed overwrites and upserts, multiset replacement,
deletes by key, and the duplicate-key check of keyed appends. The current rows a write can touch are read
here (`udr.materialize.current`), so the diff only compares.
"""

from __future__ import annotations

import pyarrow as pa

from udr.api.context import LakeContext
from udr.errors import KeyViolation
from udr.materialize.current import read_current
from udr.materialize.currentrows import CurrentRows
from udr.materialize.data import RowReader
from udr.materialize.keyhashes import canonical_keys
from udr.materialize.keyindex import KeyIndex
from udr.materialize.schemas import key_field
from udr.materialize.staging import CountField, Staging
from udr.materialize.states import TableState
from udr.query.diff import (
    KeyedDiff,
    keyed_diff,
    matching_keys,
    multiset_diff,
    upsert_hits,
)
from udr.query.smalldiff import small_keyed_diff


def keyed_write(ctx: LakeContext, staging: Staging, table: str, data: pa.Table, *, remove_missing: bool) -> None:
    """Stage `data` into keyed `table`: new keys inserted, changed rows updated, identical rows left alone,
    and with `remove_missing` (an overwrite) keys `data` lacks deleted."""
    before = staging.ops.get(table)
    state = staging.require(table)
    diff = keyed_changes(ctx, staging, table, state, data, remove_missing=remove_missing)
    stage_keyed_diff(staging, table, diff, data.schema, first=before is None, replaced=remove_missing)
    keys = None if remove_missing else canonical_keys(data, data.schema, state.primary_key)
    staging.keyed.record(table, before, staging.ops.get(table), keys)


def keyed_changes(ctx: LakeContext, staging: Staging, table: str, state: TableState, data: pa.Table, *,
                  remove_missing: bool) -> KeyedDiff:
    """What writing `data` into keyed `table` (staged as `state`) changes, as `keyed_write` stages it.

    Stages nothing: safe on a worker thread while the caller stages other tables (`udr.api.overwrites`),
    once `staging.pool()` exists.

    Raises:
        KeyViolation: `data` has a null or duplicate key.
    """
    key = list(state.primary_key or ())
    old = read_current(staging.rows, table, state) if remove_missing else _upserted(ctx, staging, table, state, data)
    small = small_keyed_diff(old, data, key, table=table, remove_missing=remove_missing)
    if small is not None:
        return small
    with ctx.database.session() as con:
        return keyed_diff(old, data, key, table=table, remove_missing=remove_missing, con=con, pool=staging.pool())


def stage_keyed_diff(staging: Staging, table: str, diff: KeyedDiff, schema: pa.Schema, *, first: bool,
                     replaced: bool) -> None:
    """Stage the change `diff` (found against `table`'s staged state) of keyed `table`, new rows written with
    `schema`; `first`: nothing else of the table was staged before, so `diff.before` is its before-image;
    `replaced`: `diff` replaces the table's rows (a keyed overwrite), whose run of delta fragments may then be
    due for a merge (`Staging.refreshed`)."""
    state = staging.require(table)
    staging.delete_positions(table, state, diff.replaced, counted=None)
    staging.delete_positions(table, state, diff.removed, counted="deleted")
    if diff.updated.num_rows or diff.inserted.num_rows:
        # New versions of updated rows and new rows share chunks: fewer, better-compressed files.
        rows = pa.concat_tables([diff.updated, diff.inserted])
        staging.add_rows(table, schema, iter(rows.to_batches()))
        op = staging.op(table)
        staging.recount(table, op.inserted - diff.updated.num_rows, op.updated + diff.updated.num_rows, op.deleted)
    staging.keep_before(table, diff.before if first else None)
    if replaced:
        staging.refreshed.add(table)


def _upserted(ctx: LakeContext, staging: Staging, table: str, state: TableState, data: pa.Table) -> CurrentRows:
    """The current rows an upsert of `data` can touch: for a few rows, only those whose key matches (found
    through the table's key index, else by a scan of the key columns, then read by position), else the whole
    table.

    Raises:
        KeyViolation: a key repeats in `data` (found by the scan).
    """
    if data.num_rows * 20 > state.rows:
        return read_current(staging.rows, table, state)
    hits = key_hits(ctx.keys, staging.rows, state, data)
    if hits is None:
        key = list(state.primary_key or ())
        with ctx.database.session() as con:
            hits = upsert_hits(read_current(staging.rows, table, state, key), data, key, table=table, con=con)
    return CurrentRows.from_positioned(staging.rows.rows_at_hits(table, state, hits))


def key_hits(index: KeyIndex, rows: RowReader, state: TableState, keys: pa.Table) -> pa.Table | None:
    """(`__frag`, `__pos`) of the live rows whose primary key is in `keys` (a table of the key columns),
    found through the lake's key index `index` (read through `rows`); None when the key cannot be indexed
    or its index would not fit the index's budget (the caller scans)."""
    field = key_field(rows.schema(state.schema), state.primary_key)
    if field is None:
        return None
    try:
        wanted = keys.column(field.name).cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # keys of another type: the scan compares them as SQL would
    return index.hits(state, field, wanted, column=rows.key_column, deleted=rows.deleted_positions)


def _hits(ctx: LakeContext, staging: Staging, table: str, state: TableState, keys: pa.Table) -> pa.Table:
    """Where the rows of keyed `table` whose key is in `keys` are (`__frag`, `__pos`): through the table's key
    index (`udr.materialize.keyindex`), else by a scan of its key columns in DuckDB."""
    hits = key_hits(ctx.keys, staging.rows, state, keys)
    if hits is None:
        key = list(state.primary_key or ())
        with ctx.database.session() as con:
            hits = matching_keys(staging.rows.table(table, state, key, with_position=True), keys, key, table=table,
                                 con=con)
    return hits


def check_new_keys(ctx: LakeContext, staging: Staging, table: str, data: pa.Table) -> None:
    """Raise `KeyViolation` unless every key of `data` is new to keyed `table` (an append)."""
    state = staging.require(table)
    key = list(state.primary_key or ())
    with ctx.database.session() as con:
        diff = keyed_diff(read_current(staging.rows, table, state), data, key, table=table, remove_missing=False,
                          con=con, before=False)
    if diff.updated.num_rows or diff.replaced.num_rows:
        first = {k: diff.updated.column(k)[0].as_py() for k in key} if diff.updated.num_rows else {}
        raise KeyViolation(f"table {table!r}: append of existing key {first}; use upsert")
    unchanged = data.num_rows - diff.inserted.num_rows
    if unchanged:
        new_keys = set(zip(*(diff.inserted.column(k).to_pylist() for k in key)))
        existing = next(k for k in zip(*(data.column(c).to_pylist() for c in key)) if k not in new_keys)
        raise KeyViolation(f"table {table!r}: append of {unchanged} row(s) whose key already exists, e.g. "
                           f"{dict(zip(key, existing))}; use upsert")


def delete_keys(ctx: LakeContext, staging: Staging, table: str, keys: pa.Table, *,
                counted: CountField | None) -> int:
    """Stage the deletion of the rows of `table` whose key is in `keys`; return how many."""
    state = staging.require(table)
    before = staging.ops.get(table)
    hits = _hits(ctx, staging, table, state, keys)
    staging.delete_positions(table, state, hits, counted=counted)
    staging.keyed.record(table, before, staging.ops.get(table),
                         canonical_keys(keys, staging.rows.schema(state.schema), state.primary_key))
    return int(hits.num_rows)


def replace_multiset(ctx: LakeContext, staging: Staging, table: str, data: pa.Table) -> None:
    """Stage the rows of `table` (no primary key) becoming `data` as a multiset: unchanged rows, duplicates
    included, stay; the surplus is deleted and the rest inserted."""
    state = staging.require(table)
    with ctx.database.session() as con:
        diff = multiset_diff(staging.rows.table(table, state, with_position=True), data, table=table, con=con)
    staging.delete_positions(table, state, diff.removed, counted="deleted")
    if diff.added.num_rows:
        staging.add_rows(table, data.schema, iter(diff.added.to_batches()))
