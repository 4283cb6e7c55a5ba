"""Transactions: stage table changes in isolation, then commit them atomically at the log's commit point.

A transaction reads the snapshot of its branch head at `begin` and stages its changes through the write
engine (`udr.materialize.staging`) as one `TableOp` per table. Data chunks are written (durably) as they are
staged; small batches stay in memory as inline blobs. Nothing is visible to anyone else until `commit`,
whose single LMDB write transaction appends the commit. A transaction belongs to one thread or task at a
time; several may be open on one handle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Literal, final

import pyarrow as pa

from udr.api import committing, overwrites, writes
from udr.api.handle import Handle, Intent
from udr.api.inputs import TableData, conform_input, to_batches
from udr.errors import KeyViolation, SchemaError, UsageError
from udr.log.format import CommitId
from udr.log.refs import check_name
from udr.materialize import schemas
from udr.materialize.staging import Staging
from udr.materialize.states import TableState
from udr.query.diff import check_keys
from udr.query.engine import Connection, Relation, named_tables
from udr.query.statements import check_not_writing
from udr.stream.subscription import PendingAck, Subscription
from udr.values import ChangeBatch, Commit

Isolation = Literal["snapshot", "serializable"]


@final
class Transaction:
    """A set of table changes that commits atomically or not at all.

    Use as a context manager: a clean exit commits, an exception aborts. After commit, `committed` is the
    new `udr.Commit`. Begin one with `udr.Lake.transaction`.
    """

    def __init__(self, handle: Handle, *, branch: str, message: str, author: str, metadata: Mapping[str, str],
                 isolation: Isolation = "snapshot", action: str = "commit", mover: str | None = None,
                 staging: Staging | None = None, parents: tuple[CommitId, ...] = ()) -> None:
        if isolation not in ("snapshot", "serializable"):
            raise UsageError(f"isolation must be 'snapshot' or 'serializable', not {isolation!r}")
        self._handle = handle
        self._ctx = handle.ctx
        self.branch = check_name(branch, "branch")
        if staging is None:
            base = handle.head(branch)
            staging = Staging(self._ctx.log, self._ctx.rows, base, self._ctx.materializer.snapshot(base),
                              branch=self.branch)
        self._staging = staging
        self._intent = Intent(self.branch, str(message), str(author), {str(k): str(v) for k, v in metadata.items()},
                              parents=parents, action=action, mover=mover)
        self._hooks: list[PendingAck] = []
        # Under "serializable": the tables this transaction read, which no concurrent commit may change.
        self._read: set[str] | None = set() if isolation == "serializable" else None
        self._open = True
        self.committed: Commit | None = None
        handle.transactions.add(self)

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
        """The id of the commit this transaction started from (moved forward if it was re-applied)."""
        return self._staging.base

    def tables(self) -> list[str]:
        """Names of the tables as this transaction sees them."""
        return self._staging.tables()

    def schema(self, table: str) -> pa.Schema:
        """The schema of `table` as this transaction sees it.

        Raises:
            TableNotFound: no such table.
        """
        return self._staging.rows.schema(self._staging.require(table).schema)

    def read(self, table: str, *, columns: list[str] | None = None) -> pa.Table:
        """Every row of `table` including this transaction's own uncommitted changes.

        Raises:
            TableNotFound: no such table.
        """
        state = self._staging.require(table)
        self._note_read([table])
        return self._staging.rows.table(table, state, columns)

    def primary_key(self, table: str) -> list[str] | None:
        """The primary key columns of `table` as this transaction sees it (None: no key).

        Raises:
            TableNotFound: no such table.
        """
        key = self._staging.require(table).primary_key
        return list(key) if key is not None else None

    def connect(self, sql: str = "") -> Connection:
        """A DuckDB connection whose views are the tables as this transaction sees them, plus every
        `"table@REF"` that `sql` names (close it when done)."""
        return self._connect(sql)

    def _connect(self, sql: str = "", without: str | None = None) -> Connection:
        """`connect(sql)` giving table `without` no view (a SQL write shows its target another way)."""
        names = self.tables()
        found = named_tables(sql) if sql else set()
        self._note_read([n for n in names if n.lower() in found] if found else names)
        server = self._handle.server
        con, _ = server.connect({n: self._staging.require(n) for n in names}, self._staging.rows, named=found,
                                without=without)
        server.register_versions(con, sql, self._handle.resolver(self.branch))
        return con

    def sql(self, query: str) -> Relation:
        """Run a reading query over the tables as this transaction sees them (its own changes included).

        Raises:
            UsageError: `query` writes; use `execute`.
            SqlError: DuckDB rejected the query.
        """
        check_not_writing(query)
        return self._handle.server.sql(self.connect(query), query, self._handle.resolver(self.branch))

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
        with self._staging.savepoint():
            # Both load sqlglot, which only scripts that write need: its ~16k objects slow every full GC.
            from udr.api.sqlwrites import DirectWrites
            from udr.query.dml import execute_script

            execute_script(self, sql, DirectWrites(self._ctx, self._handle.server, self._staging, self._connect))

    def _note_read(self, tables: Iterable[str]) -> None:
        if self._read is not None:
            self._read.update(tables)

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
        if self._staging.state(table) is not None:
            raise UsageError(f"table {table!r} already exists")
        pk = _check_key(table, schema, primary_key)
        self._staging.writes[table] += 1
        self._staging.create(table, schema, pk)

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
            rows = pa.Table.from_batches(list(batches), schema=target)
            writes.check_new_keys(self._ctx, self._staging, table, rows)
            batches = iter(rows.to_batches())
        self._staging.add_rows(table, target, batches, streaming=isinstance(data, pa.RecordBatchReader))

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
            writes.keyed_write(self._ctx, self._staging, table, pa.Table.from_batches(list(batches), schema=target),
                               remove_missing=True)
        else:
            self._replace_rows(table, state, target, batches, streaming=isinstance(data, pa.RecordBatchReader))

    def overwrite_many(self, tables: Mapping[str, TableData], *, evolve: bool = False,
                       drop_missing: bool = False) -> None:
        """`overwrite` each of `tables` (name -> its new rows), as one call after another would; the keyed
        tables are compared with their current rows side by side, on worker threads (a refresh of many).

        Raises:
            SchemaError: columns or types do not match.
            KeyViolation: duplicate or null keys in the data of a keyed table.
        """
        keyed = []
        for table, data in tables.items():
            state, target, batches = self._incoming(table, data, evolve, drop_missing)
            if state.primary_key is None:
                self._replace_rows(table, state, target, batches, streaming=isinstance(data, pa.RecordBatchReader))
            else:
                keyed.append((table, pa.Table.from_batches(list(batches), schema=target)))
        overwrites.overwrite_keyed(self._ctx, self._staging, keyed)

    def _replace_rows(self, table: str, state: TableState, target: pa.Schema, batches: Iterator[pa.RecordBatch], *,
                      streaming: bool) -> None:
        """The rows of `table` (no key, staged as `state`) become `batches`, of schema `target` (see `overwrite`)."""
        if state.rows and not streaming and self._staging.require(table).schema == state.schema:
            rows = pa.Table.from_batches(list(batches), schema=target)
            writes.replace_multiset(self._ctx, self._staging, table, rows)
            self._staging.overwritten.add(table)
        else:
            self._staging.truncate(table, state)
            self._staging.add_rows(table, target, batches, streaming=streaming)

    def upsert(self, table: str, data: TableData) -> None:
        """Insert rows with new keys and replace rows with existing keys (identical rows are no change).

        Raises:
            KeyViolation: the table has no primary key, or `data` has duplicate or null keys.
            TableNotFound: no such table.
        """
        self._check_open()
        state = self._staging.require(table)
        if state.primary_key is None:
            raise KeyViolation(f"table {table!r} has no primary key; upsert needs one "
                               "(create_table(..., primary_key=[...]))")
        schema, batches = to_batches(data, table)
        self._staging.writes[table] += 1
        target, batches = self._conformed(table, state, schema, batches, False)
        writes.keyed_write(self._ctx, self._staging, table, pa.Table.from_batches(list(batches), schema=target),
                           remove_missing=False)

    def delete(self, table: str, where: str | None = None, *, keys: TableData | None = None) -> int:
        """Delete the rows matching SQL predicate `where`, or whose key is in `keys`; return rows deleted.

        Raises:
            TableNotFound: no such table.
            SqlError: `where` is not a valid predicate.
            KeyViolation: `keys` given for a table without a primary key.
        """
        self._check_open()
        state = self._staging.require(table)
        if (where is None) == (keys is None):
            raise UsageError("delete() needs exactly one of where=... or keys=...")
        self._staging.writes[table] += 1
        if where is not None:
            hits = self._handle.server.positions_where(table, state, where, self._staging.rows)
            self._staging.delete_positions(table, state, hits, counted="deleted")
            return int(hits.num_rows)
        if state.primary_key is None:
            raise KeyViolation(f"table {table!r} has no primary key; delete by where=... instead")
        key_schema, batches = to_batches(keys, table)
        key_table = pa.Table.from_batches(list(batches), schema=key_schema)
        missing = [k for k in state.primary_key if k not in key_table.column_names]
        if missing:
            raise KeyViolation(f"table {table!r}: keys lack key column(s) {', '.join(missing)}")
        return writes.delete_keys(self._ctx, self._staging, table, key_table, counted="deleted")

    def drop_table(self, table: str) -> None:
        """Remove `table` and its rows (history keeps them).

        Raises:
            TableNotFound: no such table.
        """
        self._check_open()
        self._staging.require(table)
        self._staging.writes[table] += 1
        self._staging.drop(table)

    def replace_rows(self, table: str, data: TableData) -> None:
        """Make `table`'s rows equal `data`, storing only the rows that differ: by key on a keyed table
        (as `overwrite`), else as a multiset (unchanged rows, duplicates included, stay where they are).

        Raises:
            TableNotFound, SchemaError, KeyViolation: no such table, rows that do not fit it, or a bad key.
        """
        self._check_open()
        state = self._staging.require(table)
        if state.primary_key is not None:
            self.overwrite(table, data)
            return
        schema, batches = to_batches(data, table)
        self._staging.writes[table] += 1
        target, batches = self._conformed(table, state, schema, batches, False)
        writes.replace_multiset(self._ctx, self._staging, table, pa.Table.from_batches(list(batches), schema=target))

    # -- schema evolution -------------------------------------------------------------------------------

    def add_column(self, table: str, name: str, type: pa.DataType, default: object = None) -> None:
        """Add a nullable column; existing rows get `default` (None: null, which rewrites no data).

        Raises:
            TableNotFound, SchemaError: no such table; the column exists, or `default` does not fit `type`.
        """
        self._reshape(table, lambda schema, _: schemas.with_column(table, schema, name, type))
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
        self._reshape(table, lambda schema, key: schemas.without_column(table, schema, name, key))

    def rename_column(self, table: str, old: str, new: str) -> None:
        """Rename a column; it keeps its id, so no data is rewritten and old versions keep the old name.

        Raises:
            TableNotFound, SchemaError: no such table; no column `old`, or a column `new` exists.
        """
        key = self._reshape(table, lambda schema, _: schemas.renamed(table, schema, old, new))
        if key is not None and old in key:
            self._staging.set_primary_key(table, tuple(new if k == old else k for k in key))

    def alter_column_type(self, table: str, name: str, type: pa.DataType) -> None:
        """Widen a column's type (older rows are cast when read; no data is rewritten).

        Raises:
            TableNotFound, SchemaError: no such table; not a widening change.
        """
        self._reshape(table, lambda schema, _: schemas.with_type(table, schema, name, type))

    def set_primary_key(self, table: str, columns: list[str]) -> None:
        """Make `columns` the table's primary key, after checking the rows are unique and non-null on them.

        Raises:
            TableNotFound, KeyViolation: no such table; a column is missing, or a null or duplicate key.
        """
        self._check_open()
        state = self._staging.require(table)
        key = _check_key(table, self._staging.rows.schema(state.schema), columns)
        assert key is not None
        rows = self._staging.rows.table(table, state, list(key))
        with self._ctx.database.session() as con:
            con.register("__udr_keys", rows)
            check_keys(con, "__udr_keys", list(key), table, rows)
        self._staging.writes[table] += 1
        self._staging.set_primary_key(table, key)

    def _reshape(self, table: str, change: Callable[[pa.Schema, tuple[str, ...] | None], pa.Schema],
                 ) -> tuple[str, ...] | None:
        """Stage the schema `change` makes of `table`'s (given its key); return the key."""
        self._check_open()
        state = self._staging.require(table)
        self._staging.writes[table] += 1
        self._staging.stage_schema(table, change(self._staging.rows.schema(state.schema), state.primary_key))
        return state.primary_key

    def compact(self, table: str) -> None:
        """Rewrite `table`'s live rows into fresh chunks; no row changes, so no change is reported.

        Raises:
            TableNotFound: no such table.
            UsageError: this transaction changed the table already.
        """
        self._check_open()
        self._staging.require(table)
        if table in self._staging.ops:
            raise UsageError(f"compact table {table!r} in a transaction of its own, not after changing it")
        self._staging.compact(table)

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
        if not isinstance(subscription, Subscription) or subscription.path.resolve() != self._ctx.path.resolve():
            raise UsageError("ack() needs a subscription of this transaction's lake (udr.Lake.subscribe)")
        earlier = sum(1 for pending in self._hooks if pending.subscription is subscription)
        self._hooks.append(subscription.stage_ack(batch, earlier=earlier))

    # -- finishing --------------------------------------------------------------------------------------

    def commit(self) -> Commit:
        """Commit every staged change atomically and return the new commit.

        A transaction that changed nothing writes no commit and returns the commit it started from; if
        it only acknowledged batches (`ack`), their groups' positions are written on their own. If the
        branch moved since the transaction began, its changes are re-applied on the new head (see
        `udr.api.committing.restage`) and the commit's parent is that head.

        Raises:
            ConflictError: a concurrent commit made a conflicting change (or, under "serializable", changed
                a table this transaction read); nothing was written.
        """
        self._check_open()
        self._forget()
        self.committed = committing.commit(self._handle, self._staging, self._intent, self._hooks, self._read)
        return self.committed

    def abort(self) -> None:
        """Discard every staged change. Chunks already written are reclaimed by `gc`."""
        if self._open:
            self._forget()
            self._staging.release()

    def _forget(self) -> None:
        self._open = False
        self._handle.transactions.discard(self)

    # -- internals --------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._open:
            raise UsageError("this transaction is already committed or aborted")

    def _incoming(self, table: str, data: TableData, evolve: bool, drop_missing: bool,
                  ) -> tuple[TableState, pa.Schema, Iterator[pa.RecordBatch]]:
        """Check and count a write of `data` to `table`, creating the table if new; return its state, the
        schema the rows are written with and the conformed batches."""
        self._check_open()
        check_name(table, "table")
        schema, batches = to_batches(data, table)
        self._staging.writes[table] += 1
        state = self._staging.state(table)
        if state is None:
            self._staging.create(table, schema, None)
            state = self._staging.require(table)
        target, batches = self._conformed(table, state, schema, batches, evolve, drop_missing)
        return state, target, batches

    def _conformed(self, table: str, state: TableState, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
                   evolve: bool, drop_missing: bool = False) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        current = self._staging.rows.schema(state.schema)
        if schema.equals(current):  # a write of the table's own columns: nothing to check or convert
            return current, batches
        target, convert = conform_input(table, current, schema, evolve=evolve, drop_missing=drop_missing,
                                        key=state.primary_key)
        if not target.equals(current):
            self._staging.stage_schema(table, target)
        return target, (convert(b) for b in batches)


def _check_key(table: str, schema: pa.Schema, key: list[str] | None) -> tuple[str, ...] | None:
    if key is None:
        return None
    if isinstance(key, str):
        key = [key]
    missing = [k for k in key if k not in schema.names]
    if not key or missing:
        raise KeyViolation(f"table {table!r}: primary key column(s) {', '.join(missing) or '(none)'} not in the schema")
    return tuple(key)
