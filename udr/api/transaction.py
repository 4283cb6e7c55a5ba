"""Transactions: stage table changes in isolation, then commit them atomically at the log's commit point.

A transaction reads the snapshot of its branch head at `begin` and stages its changes as one `TableOp` per
table. Data chunks are written (durably) as they are staged; small batches stay in memory as inline blobs.
Nothing is visible to anyone else until `commit`, whose single LMDB write transaction appends the commit.
A transaction belongs to one thread or task at a time; several may be open on one handle.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict, cast

import numpy as np
import pyarrow as pa

from udr.api import history, rebase
from udr.api.changes import commit_value
from udr.api.inputs import TableData, conform_input, to_batches
from udr.errors import (
    ConflictError,
    KeyViolation,
    SchemaError,
    TableNotFound,
    UsageError,
    close_matches,
)
from udr.log.commits import CommitRecord, Deletes, Fragment, TableOp, content_id
from udr.log.format import (
    INLINE_MAX_BYTES,
    ROW_GROUP_ROWS,
    ROW_GROUPS_PER_CHUNK,
    BlobId,
    BlobKind,
    ChunkId,
    CommitId,
)
from udr.log.placement import HeadMoved
from udr.log.refs import check_name
from udr.materialize import schemas
from udr.materialize.current import read_current
from udr.materialize.data import (
    EncodedChunk,
    conform,
    decode_ipc,
    decode_positions,
    distinct_positions,
    encode_before,
    encode_chunk,
    encode_inline,
    encode_positions,
    encode_schema,
    rebatch,
    store_parquet,
)
from udr.materialize.snapshot import FragmentState, TableState, apply_op, fold
from udr.query.diff import (
    check_keys,
    keyed_diff,
    matching_keys,
    multiset_diff,
    rows_to_upsert,
)
from udr.query.engine import Connection, Relation, named_tables
from udr.query.statements import check_not_writing
from udr.stream.subscription import PendingAck, Subscription
from udr.values import ChangeBatch, Commit

if TYPE_CHECKING:
    from udr.api.lake import Lake

_ENCODE_THREADS = max(2, min(4, os.cpu_count() or 2))
# Re-applications on a moving head before giving up: each one means another writer committed meanwhile.
_MAX_REBASES = 64
Isolation = Literal["snapshot", "serializable"]

# The row counters of a `TableOp` that a staged write adds to.
_CountField = Literal["inserted", "updated", "deleted"]


# The fields of a `TableOp` that `_delete_positions` replaces, so `replace(op, **changes)` type-checks.
class _DeleteChanges(TypedDict, total=False):
    deletes: tuple[Deletes, ...]
    inserted: int
    updated: int
    deleted: int


class Transaction:
    """A set of table changes that commits atomically or not at all.

    Use as a context manager: a clean exit commits, an exception aborts. After commit, `committed` is the
    new `udr.Commit`.
    """

    def __init__(self, lake: Lake, *, branch: str, message: str, author: str, metadata: Mapping[str, str],
                 isolation: Isolation = "snapshot", action: str = "commit", mover: str | None = None) -> None:
        if isolation not in ("snapshot", "serializable"):
            raise UsageError(f"isolation must be 'snapshot' or 'serializable', not {isolation!r}")
        self._lake = lake
        self.branch = check_name(branch, "branch")
        self._base: CommitId = lake._head(branch)
        self._base_tables = lake._materializer.snapshot(self._base)
        self._message = str(message)
        self._author = str(author)
        self._metadata = {str(k): str(v) for k, v in metadata.items()}
        self._ops: dict[str, TableOp] = {}
        self._blobs: dict[BlobId, tuple[BlobKind, bytes]] = {}
        # Before-images of keyed writes, kept only while that write is the table's sole change here.
        self._before: dict[str, pa.Table] = {}
        self._before_ops: dict[str, TableOp] = {}
        # Write calls per table: counts accumulated over several calls are recomputed as the net change.
        self._writes: Counter[str] = Counter()
        self._chunks: set[ChunkId] = set()
        # Rows of the inline chunks staged here, handed to the lake's reader once committed.
        self._inline_rows: dict[ChunkId, pa.Table] = {}
        self._hooks: list[PendingAck] = []
        # Tables without a key this transaction overwrote (stored as a multiset delta): their new rows are the
        # whole table, so any concurrent change of them conflicts.
        self._overwritten: set[str] = set()
        # Under "serializable": the tables this transaction read, which no concurrent commit may change.
        self._read: set[str] | None = set() if isolation == "serializable" else None
        # A merge sets both parents and must not be rebased onto a moved head.
        self._parents: tuple[CommitId, ...] = ()
        self._action, self._mover = action, mover  # what the ref log says moved the branch, and who
        self._open = True
        # A staged schema carries stable column ids (format version 2): an older lake is relabelled first.
        self._ids_used = False
        # A maintenance transaction (the flush of small writes) does not trigger another flush.
        self._maintenance = False
        self.committed: Commit | None = None
        self._rows = lake._rows.with_blobs(self._blob)
        lake._open_transactions.add(self)

    # -- context manager ------------------------------------------------------------------------------

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._open:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # -- reading ----------------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        """The id of the commit this transaction started from."""
        return self._base

    def tables(self) -> list[str]:
        """Names of the tables as this transaction sees them."""
        names = set(self._base_tables) | set(self._ops)
        return sorted(n for n in names if self._state(n) is not None)

    def schema(self, table: str) -> pa.Schema:
        """The schema of `table` as this transaction sees it.

        Raises:
            TableNotFound: no such table.
        """
        return self._rows.schema(self._require(table).schema)

    def read(self, table: str, *, columns: list[str] | None = None) -> pa.Table:
        """Every row of `table` including this transaction's own uncommitted changes.

        Raises:
            TableNotFound: no such table.
        """
        state = self._require(table)
        self._note_read([table])
        return self._rows.table(table, state, columns)

    def primary_key(self, table: str) -> list[str] | None:
        """The primary key columns of `table` as this transaction sees it (None: no key).

        Raises:
            TableNotFound: no such table.
        """
        key = self._require(table).primary_key
        return list(key) if key is not None else None

    def connect(self, sql: str = "") -> Connection:
        """A DuckDB connection whose views are the tables as this transaction sees them, plus every
        `"table@REF"` that `sql` names (close it when done)."""
        names = self.tables()
        found = named_tables(sql) if sql else set()
        self._note_read([n for n in names if n.lower() in found] if found else names)
        con, _ = self._lake._server.connect({n: self._require(n) for n in names}, self._rows, named=found)
        self._lake._server.register_versions(con, sql, self._lake._resolver(self.branch))
        return con

    def sql(self, query: str) -> Relation:
        """Run a reading query over the tables as this transaction sees them (its own changes included).

        Raises:
            UsageError: `query` writes; use `execute`.
            SqlError: DuckDB rejected the query.
        """
        check_not_writing(query)
        return self._lake._server.sql(self.connect(query), query, self._lake._resolver(self.branch))

    def execute(self, sql: str) -> None:
        """Run writing SQL (DuckDB dialect) in this transaction; later statements and reads see its effect.

        Supports CREATE [OR REPLACE] TABLE [AS], DROP TABLE, INSERT [OR REPLACE | ON CONFLICT], UPDATE,
        DELETE, MERGE INTO and ALTER TABLE (ADD/DROP/RENAME COLUMN, ALTER COLUMN TYPE, ADD PRIMARY KEY).
        Every statement is checked before the first runs; if one fails, this call's changes are undone
        (the transaction keeps what earlier calls staged) and the error is raised.

        Raises:
            UsageError: a statement UDR cannot run (nothing ran).
            SqlError: DuckDB rejected a statement.
            TableNotFound, SchemaError, KeyViolation: as the corresponding write method.
        """
        self._check_open()
        with self._savepoint():
            from udr.query.dml import (
                execute_script,  # loads sqlglot: only scripts that write need it
            )

            execute_script(self, sql)

    def _note_read(self, tables: Iterable[str]) -> None:
        if self._read is not None:
            self._read.update(tables)

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        """Undo every change staged inside the block if it raises (chunks it wrote are left to `gc`)."""
        saved = (dict(self._ops), dict(self._blobs), Counter(self._writes), dict(self._before),
                 dict(self._before_ops))
        try:
            yield
        except BaseException:
            self._ops, self._blobs, self._writes, self._before, self._before_ops = saved
            raise

    # -- writing ----------------------------------------------------------------------------------------

    def create_table(self, table: str, schema: pa.Schema, *, primary_key: list[str] | None = None) -> None:
        """Create an empty table.

        Raises:
            InvalidName: bad table name.
            UsageError: the table already exists.
            KeyViolation: a key column is not in the schema.
        """
        self._check_open()
        check_name(table, "table")
        if not isinstance(schema, pa.Schema):
            raise UsageError(f"create_table({table!r}) needs a pyarrow.Schema, got {type(schema).__name__}")
        if self._state(table) is not None:
            raise UsageError(f"table {table!r} already exists")
        pk = _check_key(table, schema, primary_key)
        self._writes[table] += 1
        self._create(table, schema, pk)

    def append(self, table: str, data: TableData, *, evolve: bool = False, drop_missing: bool = False) -> None:
        """Add rows to `table`, creating it from the data's schema if it does not exist.

        Args:
            table: table name.
            data: a pyarrow Table/RecordBatch/RecordBatchReader (streamed), pandas or polars DataFrame,
                or a dict of columns.
            evolve: add the data's new columns (nullable) to the table instead of rejecting them.
            drop_missing: with `evolve`, also drop the table's columns the data lacks (else they get nulls).

        Raises:
            SchemaError: columns or types do not match.
            KeyViolation: a keyed table would get a duplicate or null key.
        """
        state, target, batches = self._incoming(table, data, evolve, drop_missing)
        if state.primary_key is not None:
            data_table = pa.Table.from_batches(list(batches), schema=target)
            with self._lake._server.session() as con:
                diff = keyed_diff(read_current(self._rows, table, self._require(table)), data_table,
                                  list(state.primary_key), table=table, remove_missing=False, con=con)
            if diff.updated.num_rows or diff.replaced.num_rows:
                raise KeyViolation(f"table {table!r}: append of existing key {_first_key(diff.updated, state)}; use upsert")
            unchanged = data_table.num_rows - diff.inserted.num_rows
            if unchanged:
                key = list(state.primary_key)
                new_keys = set(zip(*(diff.inserted.column(k).to_pylist() for k in key)))
                first = next(k for k in zip(*(data_table.column(c).to_pylist() for c in key)) if k not in new_keys)
                raise KeyViolation(f"table {table!r}: append of {unchanged} row(s) whose key already exists, e.g. "
                                   f"{dict(zip(key, first))}; use upsert")
            batches = iter(data_table.to_batches())
        self._add_rows(table, target, batches, streaming=isinstance(data, pa.RecordBatchReader))

    def overwrite(self, table: str, data: TableData, *, evolve: bool = False, drop_missing: bool = False) -> None:
        """Replace every row of `table` with `data` (creating the table if needed).

        Only the difference is stored and reported. On a keyed table rows identical to the current ones are
        kept, changed rows are updated, missing keys are deleted. On a table without a key the rows compare
        as a multiset: unchanged rows (duplicates included) stay, the surplus is deleted and the rest
        inserted. A streamed input (a RecordBatchReader) or a schema change on a table without a key replaces
        the table wholesale instead. `evolve` and `drop_missing` as in `append`.

        Raises:
            SchemaError: columns or types do not match.
            KeyViolation: duplicate or null keys in `data` (keyed tables).
        """
        state, target, batches = self._incoming(table, data, evolve, drop_missing)
        if state.primary_key is not None:
            self._keyed_write(table, self._require(table), pa.Table.from_batches(list(batches), schema=target),
                              remove_missing=True)
            return
        streaming = isinstance(data, pa.RecordBatchReader)
        if state.rows and not streaming and self._require(table).schema == state.schema:
            self._replace_multiset(table, target, batches)
            self._overwritten.add(table)
            return
        own = sum(f.live_rows for f in self._own_fragments(table, state))
        op = self._op(table)
        self._ops[table] = replace(
            op, truncate=True, add=(), deletes=(), inserted=op.inserted - own,
            deleted=op.deleted + state.rows - own,
        )
        self._add_rows(table, target, batches, streaming=isinstance(data, pa.RecordBatchReader))

    def upsert(self, table: str, data: TableData) -> None:
        """Insert rows with new keys and replace rows with existing keys (identical rows are no change).

        Raises:
            KeyViolation: the table has no primary key, or `data` has duplicate or null keys.
            TableNotFound: no such table.
        """
        self._check_open()
        state = self._require(table)
        if state.primary_key is None:
            raise KeyViolation(f"table {table!r} has no primary key; upsert needs one (create_table(..., primary_key=[...]))")
        schema, batches = to_batches(data, table)
        self._writes[table] += 1
        target, batches = self._conformed(table, state, schema, batches, False)
        self._keyed_write(table, self._require(table), pa.Table.from_batches(list(batches), schema=target),
                          remove_missing=False)

    def delete(self, table: str, where: str | None = None, *, keys: TableData | None = None) -> int:
        """Delete the rows matching SQL predicate `where`, or whose key is in `keys`; return rows deleted.

        Raises:
            TableNotFound: no such table.
            SqlError: `where` is not a valid predicate.
            KeyViolation: `keys` given for a table without a primary key.
        """
        self._check_open()
        state = self._require(table)
        if (where is None) == (keys is None):
            raise UsageError("delete() needs exactly one of where=... or keys=...")
        self._writes[table] += 1
        if where is not None:
            hits = self._lake._server.positions_where(table, state, where, self._rows)
        else:
            if state.primary_key is None:
                raise KeyViolation(f"table {table!r} has no primary key; delete by where=... instead")
            key_schema, batches = to_batches(keys, table)
            key_table = pa.Table.from_batches(list(batches), schema=key_schema)
            missing = [k for k in state.primary_key if k not in key_table.column_names]
            if missing:
                raise KeyViolation(f"table {table!r}: keys lack key column(s) {', '.join(missing)}")
            with self._lake._server.session() as con:
                hits = matching_keys(self._rows.table(table, state, with_position=True), key_table,
                                     list(state.primary_key), table=table, con=con)
        self._delete_positions(table, state, hits, counted="deleted")
        return cast(int, hits.num_rows)  # pyarrow is untyped: its attributes are Any

    def drop_table(self, table: str) -> None:
        """Remove `table` and its rows (history keeps them).

        Raises:
            TableNotFound: no such table.
        """
        self._check_open()
        self._require(table)
        self._writes[table] += 1
        base = self._base_tables.get(table)
        if base is None:
            del self._ops[table]
        else:
            self._ops[table] = TableOp(drop=True, deleted=base.rows)

    def replace_rows(self, table: str, data: TableData) -> None:
        """Make `table`'s rows equal `data`, storing only the rows that differ: by key on a keyed table
        (as `overwrite`), else as a multiset (unchanged rows, duplicates included, stay where they are).

        Raises:
            TableNotFound, SchemaError, KeyViolation: no such table, rows that do not fit it, or a bad key.
        """
        self._check_open()
        state = self._require(table)
        if state.primary_key is not None:
            self.overwrite(table, data)
            return
        schema, batches = to_batches(data, table)
        self._writes[table] += 1
        target, batches = self._conformed(table, state, schema, batches, False)
        self._replace_multiset(table, target, batches)

    def _replace_multiset(self, table: str, target: pa.Schema, batches: Iterator[pa.RecordBatch]) -> None:
        state = self._require(table)
        with self._lake._server.session() as con:
            diff = multiset_diff(self._rows.table(table, state, with_position=True),
                                 pa.Table.from_batches(list(batches), schema=target), table=table, con=con)
        self._delete_positions(table, state, diff.removed, counted="deleted")
        if diff.added.num_rows:
            self._add_rows(table, target, iter(diff.added.to_batches()))

    # -- schema evolution -------------------------------------------------------------------------------

    def add_column(self, table: str, name: str, type: pa.DataType, default: object = None) -> None:
        """Add a nullable column; existing rows get `default` (None: null, which rewrites no data).

        Raises:
            TableNotFound, SchemaError: no such table; the column exists, or `default` does not fit `type`.
        """
        self._check_open()
        state = self._require(table)
        self._writes[table] += 1
        self._stage_schema(table, schemas.with_column(table, self._rows.schema(state.schema), name, type))
        if default is not None:
            rows = self.read(table)
            try:
                filled = pa.array([default] * rows.num_rows, type)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise SchemaError(f"table {table!r}: default {default!r} does not fit {type}: {exc}") from exc
            self.replace_rows(table, rows.set_column(rows.schema.get_field_index(name), name, filled))

    def drop_column(self, table: str, name: str) -> None:
        """Remove a column from the table's schema; no data is rewritten (old versions keep it).

        Raises:
            TableNotFound, SchemaError: no such table; no such column, a key column, or the only column.
        """
        self._check_open()
        state = self._require(table)
        self._writes[table] += 1
        self._stage_schema(table, schemas.without_column(table, self._rows.schema(state.schema), name,
                                                         state.primary_key))

    def rename_column(self, table: str, old: str, new: str) -> None:
        """Rename a column; it keeps its id, so no data is rewritten and old versions keep the old name.

        Raises:
            TableNotFound, SchemaError: no such table; no column `old`, or a column `new` exists.
        """
        self._check_open()
        state = self._require(table)
        self._writes[table] += 1
        self._stage_schema(table, schemas.renamed(table, self._rows.schema(state.schema), old, new))
        if state.primary_key is not None and old in state.primary_key:
            key = tuple(new if k == old else k for k in state.primary_key)
            self._ops[table] = replace(self._op(table), primary_key=key)

    def alter_column_type(self, table: str, name: str, type: pa.DataType) -> None:
        """Widen a column's type (older rows are cast when read; no data is rewritten).

        Raises:
            TableNotFound, SchemaError: no such table; not a widening change.
        """
        self._check_open()
        state = self._require(table)
        self._writes[table] += 1
        self._stage_schema(table, schemas.with_type(table, self._rows.schema(state.schema), name, type))

    def set_primary_key(self, table: str, columns: list[str]) -> None:
        """Make `columns` the table's primary key, after checking the rows are unique and non-null on them.

        Raises:
            TableNotFound, KeyViolation: no such table; a column is missing, or a null or duplicate key.
        """
        self._check_open()
        state = self._require(table)
        key = _check_key(table, self._rows.schema(state.schema), columns)
        assert key is not None
        rows = self._rows.table(table, state, list(key))
        with self._lake._server.session() as con:
            con.register("__udr_keys", rows)
            check_keys(con, "__udr_keys", list(key), table, rows)
        self._writes[table] += 1
        self._ops[table] = replace(self._op(table), primary_key=key)

    def _stage_schema(self, table: str, schema: pa.Schema) -> None:
        """Stage `schema` as the table's. A new column whose id older chunks still store (a dropped
        column of that name) gets a fresh id, so the dropped values never reappear."""
        state = self._require(table)
        stored = {schemas.field_id(f) for s in {f.schema for f in state.fragments} for f in self._rows.schema(s)}
        schema = schemas.with_fresh_ids(schema, self._rows.schema(state.schema), stored)
        self._ids_used = self._ids_used or schemas.has_ids(schema)
        schema_id, payload = encode_schema(schema)
        self._blobs[schema_id] = (BlobKind.SCHEMA, payload)
        self._ops[table] = replace(self._op(table), schema=schema_id)

    def compact(self, table: str) -> None:
        """Rewrite `table`'s live rows into fresh chunks; no row changes, so no change is reported.

        Raises:
            TableNotFound: no such table.
        """
        self._check_open()
        state = self._require(table)
        if table in self._ops:
            raise UsageError(f"compact table {table!r} in a transaction of its own, not after changing it")
        data = self._rows.table(table, state)
        self._ops[table] = TableOp(truncate=True, rewrite=True)
        self._add_rows(table, data.schema, iter(data.to_batches()), counted="inserted")
        self._ops[table] = replace(self._ops[table], inserted=0)

    def _flush_inline(self, table: str) -> None:
        """Rewrite the trailing run of inline fragments of `table` as Parquet chunk(s); no row changes
        (a `rewrite`). Used by `Lake._flush_small_writes`.

        Small writes are inlined in the log, one fragment each. Flushing them keeps a table's manifest,
        its snapshot opens, queries and change-feed looks from growing with the number of tiny commits;
        the log still holds every inline write. Only a trailing run is taken, so row order is kept.
        """
        state = self._require(table)
        run = state.inline_tail()
        if len(run) < 2 or table in self._ops:
            return
        schema = self._rows.schema(state.schema)
        parts = [conform(self._rows.live(f, table=table), schema) for f in run]
        self._ops[table] = TableOp(rewrite=True, deletes=tuple(Deletes(f.chunk, None, f.rows) for f in run))
        self._add_rows(table, schema, (b for part in parts for b in part.to_batches()), inline=False)
        self._ops[table] = replace(self._ops[table], inserted=0)

    def ack(self, subscription: Subscription, batch: ChangeBatch) -> None:
        """Acknowledge `batch` of a group subscription in this transaction's commit: exactly-once outputs.

        The group's new position commits atomically with this transaction's writes, so after a crash
        the consumer neither loses nor repeats an effect. Acks in one transaction follow delivery order.

        Raises:
            AckError: the subscription has no group, or `batch` is not its next unacknowledged batch.
            UsageError: the subscription belongs to another lake.
            ConflictError, GroupBusy (at commit): the group moved or its lease was lost; nothing commits.
        """
        self._check_open()
        if not isinstance(subscription, Subscription) or subscription._log.root.resolve() != self._lake.path.resolve():
            raise UsageError("ack() needs a subscription of this transaction's lake (udr.Lake.subscribe)")
        earlier = sum(1 for pending in self._hooks if pending.subscription is subscription)
        self._hooks.append(subscription.stage_ack(batch, earlier=earlier))

    # -- finishing --------------------------------------------------------------------------------------

    def commit(self) -> Commit:
        """Commit every staged change atomically and return the new commit.

        A transaction that changed nothing writes no commit and returns the commit it started from; if
        it only acknowledged batches (`ack`), their groups' positions are written on their own. If the
        branch moved since the transaction began, its changes are re-applied on the new head (see
        `udr.api.rebase`) and the commit's parent is that head.

        Raises:
            ConflictError: a concurrent commit made a conflicting change (or, under "serializable", changed
                a table this transaction read); nothing was written.
        """
        self._check_open()
        if not self._ops and not self._parents:
            return self._commit_acks_only()
        try:
            self._settle_ops()
            cid, final = self._append()
        finally:
            self._close()
        for pending in self._hooks:
            pending.done()
        for op in final.tables.values():
            for frag in op.add:
                rows = self._inline_rows.get(frag.chunk)
                if rows is not None:
                    self._lake._rows.remember_inline(frag.chunk, rows)
        snapshot = fold(self._lake._materializer.snapshot(final.parents[0]), final)
        self._lake._materializer.remember_commit(cid, final.parents[0], snapshot)
        self.committed = commit_value(cid, final)
        self._lake._after_commit(self.committed)
        if not self._maintenance:
            self._lake._flush_small_writes(self.branch, snapshot, [t for t, op in final.tables.items() if op.add])
        return self.committed

    def _commit_acks_only(self) -> Commit:
        """Nothing changed (e.g. an upsert of identical rows): no empty commit clutters the log. Acks alone
        move their groups in a write of their own, as `Subscription.ack` would."""
        try:
            hook = self._lake._hook_for(self._hooks)
            if hook is not None:
                log = self._lake._log
                with log.env.write() as txn:
                    hook(txn, log.env)
        finally:
            self._close()
        for pending in self._hooks:
            pending.done()
        self.committed = self._lake.commit_info(self._base)
        return self.committed

    def _settle_ops(self) -> None:
        """Attach before-images still valid, and recount tables written more than once as net changes."""
        for table, image in self._before.items():
            op = self._ops.get(table)
            if op is not None and self._before_ops.get(table) is op:
                payload = encode_before(image)
                blob = BlobId(content_id(payload))
                self._blobs[blob] = (BlobKind.BEFORE, payload)
                self._ops[table] = replace(op, before=blob)
        for table, writes in self._writes.items():
            op = self._ops.get(table)
            if writes > 1 and op is not None and not op.drop and table not in self._base_tables:
                # A table new in this transaction: every row it has is inserted, no recount needed.
                self._ops[table] = replace(op, inserted=self._require(table).rows, updated=0, deleted=0)
            elif writes > 1 and op is not None and not op.drop:
                net = history.count_changes(self._lake._ctx, table, self._base_tables.get(table),
                                            self._state(table), self._rows)
                self._ops[table] = replace(op, inserted=net.inserted, updated=net.updated, deleted=net.deleted)

    def _append(self) -> tuple[CommitId, CommitRecord]:
        """The commit point, re-applying the staged changes on the branch's new head while it keeps moving."""
        log = self._lake._log
        if self._ids_used:
            log.upgrade_format()
        for _ in range(_MAX_REBASES):
            record = CommitRecord(
                parents=self._parents or (self._base,), seq=0, branch=self.branch, time_us=0, author=self._author,
                message=self._message, metadata=self._metadata, tables=dict(sorted(self._ops.items())),
            )
            try:
                return log.append(record, base=self._base, rebase=not self._parents, blobs=self._blobs,
                                  hook=self._lake._hook_for(self._hooks), placeable=self._placeable(),
                                  read=frozenset(self._read or ()), action=self._action,
                                  mover=self._mover)
            except HeadMoved as moved:
                rebase.restage(self, moved.head)
        raise ConflictError(f"branch {self.branch!r} moved {_MAX_REBASES} times while this transaction was being "
                            "re-applied on it; retry")

    def _placeable(self) -> frozenset[str]:
        """Tables whose op the log may place over concurrent changes that touch other fragments: multiset
        tables (no primary key), and a flush of small writes (it only re-encodes the fragments it names)."""
        return frozenset(t for t, op in self._ops.items()
                         if (self._maintenance and op.rewrite)
                         or (t not in self._overwritten and not op.drop
                             and op.key_after(b.primary_key if (b := self._base_tables.get(t)) else None) is None))

    def abort(self) -> None:
        """Discard every staged change. Chunks already written are reclaimed by `gc`."""
        if self._open:
            self._close()

    def _close(self) -> None:
        self._open = False
        self._lake._log.env.release(self._chunks)
        self._lake._open_transactions.discard(self)

    # -- internals --------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._open:
            raise UsageError("this transaction is already committed or aborted")

    def _blob(self, blob: BlobId, kind: BlobKind) -> bytes:
        staged = self._blobs.get(blob)
        return staged[1] if staged is not None else self._lake._log.get_blob(blob, kind)

    def _state(self, table: str) -> TableState | None:
        op = self._ops.get(table)
        base = self._base_tables.get(table)
        return apply_op(base, op) if op is not None else base

    def _require(self, table: str) -> TableState:
        state = self._state(table) if isinstance(table, str) else None
        if state is None:
            raise TableNotFound(
                f"table {table!r} does not exist on branch {self.branch!r}" + close_matches(str(table), self.tables())
            )
        return state

    def _op(self, table: str) -> TableOp:
        return self._ops.get(table) or TableOp()

    def _own_fragments(self, table: str, state: TableState) -> list[FragmentState]:
        own = {f.chunk for f in self._op(table).add}
        return [f for f in state.fragments if f.chunk in own]

    def _create(self, table: str, schema: pa.Schema, pk: tuple[str, ...] | None) -> None:
        schema_id, payload = encode_schema(schema)
        self._blobs[schema_id] = (BlobKind.SCHEMA, payload)
        base = self._base_tables.get(table)
        self._ops[table] = TableOp(create=True, schema=schema_id, primary_key=pk,
                                   deleted=base.rows if base is not None else 0)

    def _incoming(self, table: str, data: TableData, evolve: bool, drop_missing: bool,
                  ) -> tuple[TableState, pa.Schema, Iterator[pa.RecordBatch]]:
        """Check and count a write of `data` to `table`, creating the table if new; return its state, the
        schema the rows are written with and the conformed batches."""
        self._check_open()
        check_name(table, "table")
        schema, batches = to_batches(data, table)
        self._writes[table] += 1
        state = self._state(table)
        if state is None:
            self._create(table, schema, None)
            state = self._require(table)
        target, batches = self._conformed(table, state, schema, batches, evolve, drop_missing)
        return state, target, batches

    def _conformed(self, table: str, state: TableState, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
                   evolve: bool, drop_missing: bool = False) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        current = self._rows.schema(state.schema)
        target, convert = conform_input(table, current, schema, evolve=evolve, drop_missing=drop_missing,
                                        key=state.primary_key)
        if not target.equals(current):
            self._stage_schema(table, target)
        return target, (convert(b) for b in batches)

    def _add_rows(self, table: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch], *,
                  counted: _CountField = "inserted", streaming: bool = False, inline: bool = True) -> int:
        """Encode rows as chunks (inline or Parquet) and stage them as fragments of `table`.

        In-memory input is written by a thread pool, one chunk per thread. A stream is written as it is
        read, one row group at a time, so its memory stays near one row group whatever its length.
        """
        state = self._require(table)
        schema_id = state.schema
        op = self._op(table)
        # Chunks this transaction already adds or removes count too: a fragment it deleted whole must
        # not share an id with rows it writes again.
        staged = {f.chunk for f in op.add} | {d.chunk for d in op.deletes}
        present: set[ChunkId] = set()  # the table's chunks and `staged`, gathered only when needed
        fragments: list[Fragment] = []

        def collect(encoded: EncodedChunk) -> None:
            chunk = encoded.fragment.chunk
            # Only bytes stored before can be in the table already: a new inline chunk (the common small
            # write) is not in the log, so a long table's chunk ids are not gathered for it.
            if chunk in staged or encoded.payload is None or self._lake._log.has_blob(BlobId(chunk)):
                if not present:
                    present.update(state.chunk_ids())
                present.update(staged)
                # Start past the table's fragment count so repeated identical appends collide at most once.
                copy = len(present)
                while encoded.fragment.chunk in present:
                    copy += 1
                    rows = self._staged_rows(encoded)
                    encoded = encode_chunk(rows, schema_id, self._store_file, copy=copy)
                present.add(encoded.fragment.chunk)
            staged.add(encoded.fragment.chunk)
            if encoded.payload is not None:
                self._blobs[BlobId(encoded.fragment.chunk)] = (BlobKind.ROWS, encoded.payload)
                if encoded.rows is not None:
                    self._inline_rows[encoded.fragment.chunk] = encoded.rows
            fragments.append(encoded.fragment)

        pieces = (p if p.schema.equals(schema) else p.cast(schema) for p in rebatch(batches, ROW_GROUP_ROWS))
        pool: ThreadPoolExecutor | None = None
        try:
            pending: list[Future[EncodedChunk]] = []
            while True:
                head = _inline_candidate(pieces)
                if not head:
                    break
                if inline and sum(p.nbytes for p in head) <= INLINE_MAX_BYTES:
                    collect(encode_inline(pa.concat_tables(head), schema_id))
                    continue
                rest = islice(pieces, ROW_GROUPS_PER_CHUNK - len(head))
                if streaming:
                    collect(store_parquet(chain(head, rest), schema, schema_id, self._store_file))
                    continue
                pool = pool or ThreadPoolExecutor(_ENCODE_THREADS)
                pending.append(pool.submit(store_parquet, head + list(rest), schema, schema_id, self._store_file))
                while len(pending) > _ENCODE_THREADS:
                    collect(pending.pop(0).result())
            for future in pending:
                collect(future.result())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        rows = sum(f.rows for f in fragments)
        op = self._op(table)
        self._ops[table] = replace(op, add=op.add + tuple(fragments), **{counted: getattr(op, counted) + rows})
        return rows

    def _staged_rows(self, encoded: EncodedChunk) -> pa.Table:
        """The rows of a chunk this transaction just encoded (read back from its payload or file)."""
        frag = encoded.fragment
        if encoded.payload is not None:
            return decode_ipc(encoded.payload)
        return self._rows.fragment(FragmentState(frag.chunk, frag.rows, False, frag.schema))

    def _store_file(self, write: Callable[[Path], None]) -> ChunkId:
        log = self._lake._log

        def announce(chunk: ChunkId) -> None:
            # The intent is durable before the chunk has its final name, so a concurrent gc never
            # deletes a chunk this transaction is about to commit.
            log.register_intents([chunk])
            if chunk not in self._chunks:
                self._chunks.add(chunk)
                log.env.hold(chunk)

        return log.chunks.put_written(write, announce)

    def _keyed_write(self, table: str, state: TableState, data: pa.Table, *, remove_missing: bool) -> None:
        first = table not in self._ops
        with self._lake._server.session() as con:
            old = read_current(self._rows, table, state) if remove_missing else rows_to_upsert(
                self._rows, table, state, data, con=con)
            diff = keyed_diff(old, data, list(state.primary_key or ()), table=table, remove_missing=remove_missing,
                              con=con)
        if first and diff.before is not None:
            self._before[table] = diff.before
        self._delete_positions(table, state, diff.replaced, counted=None)
        self._delete_positions(table, state, diff.removed, counted="deleted")
        if diff.updated.num_rows or diff.inserted.num_rows:
            # New versions of updated rows and new rows share chunks: fewer, better-compressed files.
            rows = pa.concat_tables([diff.updated, diff.inserted])
            self._add_rows(table, data.schema, iter(rows.to_batches()))
            op = self._op(table)
            self._ops[table] = replace(op, inserted=op.inserted - diff.updated.num_rows,
                                       updated=op.updated + diff.updated.num_rows)
        self._note_keyed_write(table, first and diff.before is not None)

    def _note_keyed_write(self, table: str, keep: bool) -> None:
        """Remember the op a before-image describes; any later change to the table makes it stale."""
        if keep:
            self._before_ops[table] = self._op(table)
        else:
            self._before.pop(table, None)

    def _delete_positions(self, table: str, state: TableState, hits: pa.Table, *, counted: _CountField | None) -> None:
        if hits.num_rows == 0:
            return
        op = self._op(table)
        deletes = {d.chunk: d for d in op.deletes}
        frags = np.asarray(hits.column("__frag").to_numpy(), dtype=np.int64)
        positions, touched = hits.column("__pos").to_numpy(), np.unique(frags).tolist()
        for index in touched:
            frag = state.fragments[index]
            new = positions[frags == index]
            earlier = deletes.get(frag.chunk)
            if earlier is None:
                old = self._rows.deleted_positions(frag)
            elif earlier.vector is None:
                continue  # every row of the fragment is deleted already
            else:
                old = decode_positions(self._blob(earlier.vector, BlobKind.DELETES))
            deletes[frag.chunk] = self._deletion(frag, distinct_positions(old, new))
        changes: _DeleteChanges = {"deletes": tuple(deletes.values())}
        if counted is not None:
            # Rows this transaction added itself were never visible: deleting them un-inserts them.
            own = {f.chunk for f in op.add}
            mine = sum(int(np.count_nonzero(frags == i)) for i in touched if state.fragments[i].chunk in own)
            changes["inserted"] = op.inserted - mine
            changes[counted] = getattr(op, counted) + hits.num_rows - mine
        self._ops[table] = replace(op, **changes)


    def _deletion(self, frag: FragmentState, positions: np.ndarray) -> Deletes:
        """The cumulative deletion vector of `frag` removing the sorted distinct `positions`, staged."""
        if len(positions) == frag.rows:
            return Deletes(frag.chunk, None, len(positions))
        payload = encode_positions(positions)
        blob = BlobId(content_id(payload))
        self._blobs[blob] = (BlobKind.DELETES, payload)
        return Deletes(frag.chunk, blob, len(positions))


def _inline_candidate(pieces: Iterator[pa.Table]) -> list[pa.Table]:
    """Pull row-group pieces until they outgrow an inline chunk, fill a chunk, or run out."""
    head: list[pa.Table] = []
    size = 0
    for piece in pieces:
        head.append(piece)
        size += piece.nbytes
        if size > INLINE_MAX_BYTES or len(head) == ROW_GROUPS_PER_CHUNK:
            break
    return head


def _check_key(table: str, schema: pa.Schema, key: list[str] | None) -> tuple[str, ...] | None:
    if key is None:
        return None
    if isinstance(key, str):
        key = [key]
    missing = [k for k in key if k not in schema.names]
    if not key or missing:
        raise KeyViolation(f"table {table!r}: primary key column(s) {', '.join(missing) or '(none)'} not in the schema")
    return tuple(key)


def _first_key(rows: pa.Table, state: TableState) -> dict[str, object]:
    if rows.num_rows == 0:
        return {}
    return {k: rows.column(k)[0].as_py() for k in state.primary_key or ()}

