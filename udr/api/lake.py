"""The `Lake` facade: one handle on one lake directory, tying the layers together.

`udr.open(path)` returns a `Lake`. It is safe to share across threads; each transaction belongs to one
thread or task. Reads never block and see one consistent commit. Its methods are grouped by concern in
`lake_refs`, `lake_history`, `lake_streams` and `lake_maintenance`; they all work through one `Handle`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import final

import pyarrow as pa

from udr.api import committing, remote_upkeep
from udr.api.changes import LakeChanges
from udr.api.context import LakeContext
from udr.api.handle import Handle
from udr.api.inputs import TableData
from udr.api.lake_history import HistoryMethods
from udr.api.lake_maintenance import MaintenanceMethods
from udr.api.lake_refs import RefMethods
from udr.api.lake_streams import StreamMethods
from udr.api.transaction import Isolation, Transaction
from udr.errors import UsageError
from udr.log.memory import MemoryLogStore
from udr.log.refspec import Ref
from udr.log.retention import RetentionStore
from udr.log.store import LogStore
from udr.materialize.data import RowReader
from udr.materialize.snapshot import Materializer
from udr.query.database import Database
from udr.query.engine import (
    Connection,
    Relation,
    SnapshotServer,
    named_tables,
)
from udr.query.logviews import LogViews, names_log_view
from udr.query.sqltext import quote_ident
from udr.query.statements import check_not_writing, writing_kind
from udr.remote.leases import LEASE_SECONDS
from udr.remote.mirror import Mirror, open_mirror
from udr.remote.store import is_url
from udr.values import Commit

# `udr.open(":memory:")`: a lake in memory, as DuckDB's `duckdb.connect(":memory:")`.
MEMORY_LAKE = ":memory:"


def open(path: str | os.PathLike[str] = "lake", *, create: bool = True, cache: str | os.PathLike[str] | None = None,
         storage_options: Mapping[str, str] | None = None, group_lease: float = LEASE_SECONDS) -> Lake:
    """Open the lake at `path`, creating an empty one (with a root commit on `main`) if it is missing.

    Args:
        path: a local directory, the URL of a lake in object storage (`s3://bucket/prefix`, `gs://...`,
            `az://...`; see docs/remote.md), or ":memory:" for a new lake held in memory (its chunk files in a
            temporary directory) that is gone once closed, for tests and scratch work.
        create: whether a missing lake is created; False raises `LakeNotFound` instead.
        cache: for a URL, the local directory that caches the remote lake (default
            `~/.cache/udr/<hash of the URL>`); it may be deleted at any time and is rebuilt from the remote lake.
        storage_options: for a URL, obstore options ("endpoint", "access_key_id", "region", "allow_http", ...)
            overriding the usual environment variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...).
        group_lease: for a URL, the seconds a consumer-group subscriber of this handle stays live without
            renewing its lease (renewed every third of it); other machines take its partitions once it lapses.

    Raises:
        UsageError: an unsupported URL scheme or storage option, `cache` is a local lake, or `group_lease` is
            not positive; nothing was touched.
        LakeNotFound: no lake at `path` (or no such bucket) and `create` is False.
        FormatError: `path` is not a lake, or was written by a newer version of udr.
        StorageError: object storage failed (no credentials, access denied, network); `retryable` when it may pass.
    """
    if str(path) == MEMORY_LAKE:
        return Lake(Path(MEMORY_LAKE))
    if isinstance(path, str) and is_url(path):
        mirror = open_mirror(path, cache=cache, options=storage_options, create=create, lease=group_lease)
        return Lake(mirror.root, create=False, remote=mirror)
    return Lake(Path(path), create=create)


@final
class Lake(RefMethods, HistoryMethods, StreamMethods, MaintenanceMethods):
    """A handle on one lake directory (or a lake in memory). Use as a context manager or call `close()`."""

    def __init__(self, path: Path, *, create: bool = True, remote: Mirror | None = None) -> None:
        self.path = path
        log = (MemoryLogStore() if str(path) == MEMORY_LAKE
               else LogStore(path, create=create, durable=remote is None))  # a remote lake's truth is remote
        if remote is not None:  # a lake in object storage (udr.remote): `path` is its cache
            remote.attach(log)
        rows = RowReader(log.chunks, log.get_blob)
        database = Database()
        ctx = LakeContext(log.root, log, Materializer(log), rows, database, RetentionStore(log))
        server = SnapshotServer(database, log, rows, LogViews(log))
        self._handle = Handle(ctx, server, LakeChanges(ctx), committing.commit, remote)

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the lake's files. Open transactions are aborted; subscriptions end (their iteration
        stops) and give their groups' leases back."""
        self._handle.close()
        self._handle.ctx.database.close()
        if self._handle.remote is not None:
            self._handle.remote.close()
        self._handle.ctx.log.close()

    def __repr__(self) -> str:
        remote = self._handle.remote
        return f"udr.Lake({remote.url if remote is not None else str(self.path)!r})"

    def refresh(self) -> int:
        """Apply the commits other writers published to this lake in object storage since this handle last
        looked; return how many remote log entries were applied (0 for a local lake). When they include an
        erasure, the cache's copies of the bytes it replaced are deleted.

        Raises:
            StorageError: object storage failed; nothing was applied.
        """
        return remote_upkeep.refresh(self._handle)

    # -- transactions -------------------------------------------------------------------------------

    def transaction(
        self,
        branch: str = "main",
        *,
        message: str = "",
        author: str | None = None,
        metadata: Mapping[str, str] | None = None,
        isolation: Isolation = "snapshot",
    ) -> Transaction:
        """Begin a transaction on `branch`; use it as a context manager or call `commit()`.

        If other writers commit to the branch meanwhile, the transaction's changes are re-applied on top of
        theirs when they do not conflict (docs/concurrency.md). `isolation="snapshot"` (the default) conflicts
        only on overlapping writes (the same key's same cell, a row deleted on one side and changed on the
        other, or a table recreated, overwritten or reshaped); "serializable" also conflicts when a table the
        transaction read (`tx.read`, `tx.sql`, `tx.connect`) was changed by a commit it did not see, which
        prevents write skew.

        Raises:
            RefNotFound: no such branch.
            UsageError: an unknown isolation level.
        """
        return Transaction(self._handle, branch=branch, message=message, author=self._handle.author(author),
                           metadata=metadata or {}, isolation=isolation)

    def create_table(self, table: str, schema: pa.Schema, *, primary_key: list[str] | None = None,
                     branch: str = "main", message: str = "", author: str | None = None) -> Commit:
        """Create an empty table in its own commit (see `Transaction.create_table`)."""
        return self._one_commit(branch, message or f"create {table}", author,
                                lambda tx: tx.create_table(table, schema, primary_key=primary_key))

    def append(self, table: str, data: TableData, *, branch: str = "main", message: str = "",
               author: str | None = None, evolve: bool = False, drop_missing: bool = False) -> Commit:
        """Append rows in a commit of their own (see `Transaction.append`)."""
        return self._one_commit(branch, message or f"append to {table}", author,
                                lambda tx: tx.append(table, data, evolve=evolve, drop_missing=drop_missing))

    def overwrite(self, table: str, data: TableData, *, branch: str = "main", message: str = "",
                  author: str | None = None, evolve: bool = False, drop_missing: bool = False) -> Commit:
        """Replace a table's rows in a commit of their own (see `Transaction.overwrite`)."""
        return self._one_commit(branch, message or f"overwrite {table}", author,
                                lambda tx: tx.overwrite(table, data, evolve=evolve, drop_missing=drop_missing))

    def upsert(self, table: str, data: TableData, *, branch: str = "main", message: str = "",
               author: str | None = None) -> Commit:
        """Upsert rows by key in a commit of their own (see `Transaction.upsert`)."""
        return self._one_commit(branch, message or f"upsert into {table}", author,
                                lambda tx: tx.upsert(table, data))

    def delete(self, table: str, where: str | None = None, *, keys: TableData | None = None,
               branch: str = "main", message: str = "", author: str | None = None) -> Commit:
        """Delete rows in a commit of their own (see `Transaction.delete`)."""
        return self._one_commit(branch, message or f"delete from {table}", author,
                                lambda tx: tx.delete(table, where, keys=keys))

    def drop_table(self, table: str, *, branch: str = "main", message: str = "",
                   author: str | None = None) -> Commit:
        """Drop a table in a commit of its own (history keeps its rows)."""
        return self._one_commit(branch, message or f"drop {table}", author,
                                lambda tx: tx.drop_table(table))

    def execute(self, sql: str, branch: str = "main", *, message: str | None = None, author: str | None = None,
                metadata: Mapping[str, str] | None = None) -> Commit:
        """Run writing SQL (DuckDB dialect) in one atomic commit; see `Transaction.execute`.

        Returns the new commit (the current head when nothing changed).

        Raises:
            UsageError, SqlError, TableNotFound, SchemaError, KeyViolation: nothing was written.
            ConflictError: a concurrent commit changed one of the same tables; nothing was written.
        """
        return self._one_commit(branch, message or " ".join(sql.split())[:200], author, lambda tx: tx.execute(sql),
                                metadata=metadata)

    @staticmethod
    def is_write(sql: str) -> bool:
        """Whether `sql` holds a statement that writes (run it with `execute`, not `sql`/`query`)."""
        return writing_kind(sql) is not None

    # -- reading ------------------------------------------------------------------------------------

    def tables(self, branch: str = "main", at: Ref = None) -> list[str]:
        """Names of the tables at a version (default: the head of `branch`)."""
        return sorted(self._handle.ctx.materializer.snapshot(self._handle.resolve(at, branch)))

    def schema(self, table: str, branch: str = "main", at: Ref = None) -> pa.Schema:
        """The Arrow schema of `table` at a version.

        Raises:
            TableNotFound, RefNotFound: no such table at that version, or no such ref.
        """
        return self._handle.ctx.rows.schema(self._handle.table(table, branch, at).schema)

    def primary_key(self, table: str, branch: str = "main", at: Ref = None) -> list[str] | None:
        """The primary key columns of `table`, None if it has none."""
        pk = self._handle.table(table, branch, at).primary_key
        return list(pk) if pk is not None else None

    def read(self, table: str, branch: str = "main", at: Ref = None, *, columns: list[str] | None = None,
             where: str | None = None) -> pa.Table:
        """The rows of `table` at a version, optionally only some columns and rows (SQL predicate `where`).

        Raises:
            TableNotFound, RefNotFound, SqlError, CorruptionError: no such table or ref, a bad query, damaged data.
        """
        state = self._handle.table(table, branch, at)
        if columns is not None:
            schema = self._handle.ctx.rows.schema(state.schema)
            unknown = [c for c in columns if c not in schema.names]
            if unknown:
                raise UsageError(f"table {table!r} has no column(s) {', '.join(unknown)}")
        con = self._handle.ctx.database.cursor()
        try:
            self._handle.server.register(con, table, table, state)
            cols = ", ".join(quote_ident(c) for c in columns) if columns is not None else "*"
            query = f"SELECT {cols} FROM {quote_ident(table)}" + (f" WHERE ({where})" if where else "")
            return self._handle.server.fetch(con, query, self._handle.resolver(branch))
        finally:
            con.close()

    def connect(self, branch: str = "main", at: Ref = None) -> Connection:
        """A DuckDB connection with the tables of that version and the log (`udr.query.logviews`) as views; close it.

        A table whose stored data is damaged still has its view, but reading it raises a DuckDB error
        naming the damage (`verify()` lists it); the other tables stay readable.
        """
        con, _ = self._handle.server.connect(dict(self._handle.snapshot(branch, at)), log_views=True)
        return con

    def sql(self, query: str, branch: str = "main", at: Ref = None) -> Relation:
        """Run SQL over the tables of a version; `"table@REF"` names a table at another version.

        Returns a DuckDB relation: lazy, run when fetched. Methods that behave the same on every DuckDB
        UDR supports (1.5 to 2.x): `.fetchall()`, `.to_arrow_table()`, `.df()`, `.pl()`, `.columns`,
        `.types`. Not portable: `.arrow()` (a Table on 1.x, a RecordBatchReader on 2.x) and `.fetchone()`
        (gone in 2.0; use `.fetchall()[0]`). For an Arrow table in one call, use `query`.

        Raises:
            SqlError, RefNotFound, TableNotFound: a bad query, or a ref or table it names does not exist.
            UsageError: `query` writes (use `execute`).
            CorruptionError: the query names a table whose stored data is damaged.
        """
        check_not_writing(query)
        return self._handle.server.sql(self._connect_for(query, branch, at), query, self._handle.resolver(branch))

    def query(self, query: str, branch: str = "main", at: Ref = None) -> pa.Table:
        """Run SQL like `sql` and return the whole result as a pyarrow Table.

        Unlike a lazy relation, every DuckDB error (including ones raised while rows are produced, such as
        a failed cast) surfaces here as `SqlError`.

        Raises:
            SqlError, RefNotFound, TableNotFound: a bad query, or a ref or table it names does not exist.
            UsageError: `query` writes (use `execute`).
            CorruptionError: the query names a table whose stored data is damaged.
        """
        check_not_writing(query)
        con = self._connect_for(query, branch, at)
        try:
            return self._handle.server.fetch(con, query, self._handle.resolver(branch))
        finally:
            con.close()

    def _connect_for(self, query: str, branch: str, at: Ref) -> Connection:
        """`connect`, raising `CorruptionError` now if `query` names a damaged table (rather than a
        DuckDB error when its rows are fetched)."""
        named = named_tables(query)
        con, damaged = self._handle.server.connect(self._handle.snapshot(branch, at),
                                                   log_views=names_log_view(query), named=named)
        if damaged:
            hit = sorted(name for name in damaged if name.lower() in named)
            if hit:
                con.close()
                raise damaged[hit[0]]
        return con

    def row_count(self, table: str, branch: str = "main", at: Ref = None) -> int:
        """The number of rows of `table` at a version, from the snapshot alone (no data is read).

        Raises:
            TableNotFound, RefNotFound: no such table at that version, or no such ref.
        """
        return self._handle.table(table, branch, at).rows

    def compact(self, table: str, *, branch: str = "main", author: str | None = None) -> Commit:
        """Rewrite `table`'s live rows into fresh chunks (dropping deletion vectors and small inline
        fragments) as a new commit that changes no row and no query answer.

        Raises:
            TableNotFound, ConflictError: no such table; the branch moved meanwhile.
        """
        return self._one_commit(branch, f"compact {table}", author or "udr", lambda tx: tx.compact(table))

    # -- internals ----------------------------------------------------------------------------------

    def _one_commit(self, branch: str, message: str, author: str | None, write: Callable[[Transaction], object],
                    *, metadata: Mapping[str, str] | None = None) -> Commit:
        """Run `write` in a transaction of its own on `branch` and return the commit it made."""
        with self.transaction(branch, message=message, author=author, metadata=metadata) as tx:
            write(tx)
        assert tx.committed is not None
        return tx.committed
