"""The `Lake` facade: one handle on one lake directory, tying the layers together.

`udr.open(path)` returns a `Lake`. It is safe to share across threads; each transaction belongs to one
thread or task. Reads never block and see one consistent commit.
"""

from __future__ import annotations

import getpass
import os
import re
import warnings
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from udr.api import blame, branches, erasure, history, lineage, replay, retention
from udr.api.audit import audit_report
from udr.api.changes import LakeChanges, commit_value
from udr.api.context import LakeContext
from udr.api.inputs import TableData
from udr.api.logsearch import log_window, ref_log, search_log
from udr.api.maintenance import stats
from udr.api.refmoves import fast_forward, reset_branch
from udr.api.transaction import Isolation, Transaction
from udr.errors import ConflictError, TableNotFound, UdrError, UsageError, close_matches
from udr.log import format as lake_format
from udr.log import graph, refspec
from udr.log.format import MAINTENANCE_FLUSH_INLINE, MAINTENANCE_KEY, CommitId
from udr.log.groups import Cursor, ack_hook
from udr.log.refs import check_name
from udr.log.refspec import Ref
from udr.log.store import CommitHook, LogStore
from udr.materialize.data import RowReader
from udr.materialize.snapshot import Materializer, TableState
from udr.publish import iceberg
from udr.query.engine import (
    Connection,
    Relation,
    SnapshotServer,
    named_tables,
    quote_ident,
)
from udr.query.logviews import names_log_view
from udr.query.statements import check_not_writing, writing_kind
from udr.stream.admin import delete_group, group_infos, group_resume, reset_group
from udr.stream.subscription import PendingAck, Subscription
from udr.values import (
    AuditReport,
    Commit,
    ExpireReport,
    GroupInfo,
    Hold,
    LakeStats,
    RefMove,
    RetentionPolicy,
    TableChange,
    VerifyReport,
)

Progress = Callable[[int, int], None]

# "s3://bucket/x", "file:///tmp/x", "https://...": a scheme, then "://".
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def os_user() -> str:
    """The OS user name ("unknown" if the system cannot tell)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def open(path: str | os.PathLike[str] = "lake", *, create: bool = True) -> Lake:
    """Open the lake at `path`, creating an empty one (with a root commit on `main`) if it is missing.

    Args:
        path: a local directory.
        create: whether a missing lake is created; False raises `LakeNotFound` instead.

    Raises:
        UsageError: `path` is a URL (object storage is not supported yet); nothing was touched.
        LakeNotFound: no lake at `path` and `create` is False.
        FormatError: `path` is not a lake, or was written by a newer version of udr.
    """
    if isinstance(path, str) and _URL.match(path):
        raise UsageError(f"cannot open {path!r}: object storage is not supported yet; give a local directory")
    return Lake(Path(path), create=create)


class Lake:
    """A handle on one lake directory. Use as a context manager or call `close()`."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self._log = LogStore(path, create=create)
        self._materializer = Materializer(self._log)
        self._rows = RowReader(self._log, self._log.get_blob)
        self._server = SnapshotServer(self._log, self._rows)
        self._ctx = LakeContext(path, self._log, self._materializer, self._rows, self._server)
        self._changes = LakeChanges(self._ctx)
        self._open_transactions: set[Transaction] = set()
        self._os_user: str | None = None
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the lake's files. Open transactions are aborted; subscriptions end (their iteration
        stops) and give their groups' leases back."""
        for tx in list(self._open_transactions):
            tx.abort()
        for sub in list(self._subscriptions):
            sub._detach()
        self._server.close()
        self._log.close()

    def __repr__(self) -> str:
        return f"udr.Lake({str(self.path)!r})"

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
        return Transaction(self, branch=branch, message=message, author=author or self._default_author(),
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
        return sorted(self._materializer.snapshot(self._resolve(at, branch)))

    def schema(self, table: str, branch: str = "main", at: Ref = None) -> pa.Schema:
        """The Arrow schema of `table` at a version.

        Raises:
            TableNotFound, RefNotFound: no such table at that version, or no such ref.
        """
        return self._rows.schema(self._table(table, branch, at).schema)

    def primary_key(self, table: str, branch: str = "main", at: Ref = None) -> list[str] | None:
        """The primary key columns of `table`, None if it has none."""
        pk = self._table(table, branch, at).primary_key
        return list(pk) if pk is not None else None

    def read(self, table: str, branch: str = "main", at: Ref = None, *, columns: list[str] | None = None,
             where: str | None = None) -> pa.Table:
        """The rows of `table` at a version, optionally only some columns and rows (SQL predicate `where`).

        Raises:
            TableNotFound, RefNotFound, SqlError, CorruptionError: no such table or ref, a bad query, damaged data.
        """
        state = self._table(table, branch, at)
        if columns is not None:
            schema = self._rows.schema(state.schema)
            unknown = [c for c in columns if c not in schema.names]
            if unknown:
                raise UsageError(f"table {table!r} has no column(s) {', '.join(unknown)}")
        con = self._server.cursor()
        try:
            self._server.register(con, table, table, state)
            cols = ", ".join(quote_ident(c) for c in columns) if columns is not None else "*"
            query = f"SELECT {cols} FROM {quote_ident(table)}" + (f" WHERE ({where})" if where else "")
            return self._server.fetch(con, query, self._resolver(branch))
        finally:
            con.close()

    def connect(self, branch: str = "main", at: Ref = None) -> Connection:
        """A DuckDB connection with the tables of that version and the log (`udr.query.logviews`) as views; close it.

        A table whose stored data is damaged still has its view, but reading it raises a DuckDB error
        naming the damage (`verify()` lists it); the other tables stay readable.
        """
        con, _ = self._server.connect(dict(self._snapshot(branch, at)), log_views=True)
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
        return self._server.sql(self._connect_for(query, branch, at), query, self._resolver(branch))

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
            return self._server.fetch(con, query, self._resolver(branch))
        finally:
            con.close()

    def _connect_for(self, query: str, branch: str, at: Ref) -> Connection:
        """`connect`, raising `CorruptionError` now if `query` names a damaged table (rather than a
        DuckDB error when its rows are fetched)."""
        named = named_tables(query)
        con, damaged = self._server.connect(self._snapshot(branch, at), log_views=names_log_view(query), named=named)
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
        return self._table(table, branch, at).rows

    def log(self, branch: str = "main", table: str | None = None, limit: int | None = None, *,
            author: str | None = None, since: Ref = None, until: Ref = None, grep: str | None = None,
            metadata: Mapping[str, str] | None = None) -> list[Commit]:
        """Every commit reachable from `branch`'s head, newest first, that passes each filter given: see
        `udr.api.logsearch.search_log` (`since`/`until`: refs, datetimes or ISO-8601 times).

        Raises:
            RefNotFound, UsageError: no such branch, a bound naming nothing, or a malformed time.
        """
        return search_log(self._log, self._head(branch), table=table, author=author, grep=grep,
                          span=log_window(self._log, since, until, branch), metadata=metadata, limit=limit)

    def commit_info(self, ref: Ref) -> Commit:
        """The commit a ref names.

        Raises:
            RefNotFound: the ref names no commit.
        """
        cid = self._resolve(ref, "main")
        return commit_value(cid, self._log.get_commit(cid))

    def reflog(self, name: str | None = None) -> list[RefMove]:
        """Every recorded move of branch or tag `name` (None: of every ref), newest first: who, when, from, to, why.

        Raises:
            RefNotFound: `name` is no branch or tag and never was one.
        """
        return ref_log(self._log, name)

    def audit(self, since: Ref = None, until: Ref = None, *, table: str | None = None) -> AuditReport:
        """The commits, ref moves and hash-chain check between `since` and `until`; see `udr.api.audit`.

        Raises:
            RefNotFound, UsageError: a bound names nothing, or is a malformed time.
        """
        return audit_report(self._log, since, until, table=table, live=retention.kept_data(self._ctx))

    def resolve(self, ref: Ref, branch: str = "main") -> str:
        """The full commit id a ref names (`None`: the head of `branch`).

        Raises:
            RefNotFound: the ref names no commit.
        """
        return self._resolve(ref, branch)

    # -- row-level history -----------------------------------------------------------------------------

    def changes(self, table: str, since: Ref = None, until: Ref = None, branch: str = "main") -> pa.Table:
        """Every row-level change to `table` by the commits after `since` up to and including `until`.

        Returns the table's columns plus `_change` (`insert`, `update_before`, `update_after`, `delete`),
        `_commit_id`, `_commit_seq` and `_commit_time`, in commit order. Updates of keyed tables come as
        `update_before` + `update_after` pairs; compactions change nothing. `since=None` starts at the
        beginning of the lake; `until=None` is the head of `branch`.

        Raises:
            TableNotFound, RefNotFound: no such table, or no such ref.
        """
        start = self._resolve(since, branch) if since is not None else None
        return history.changes(self._ctx, table, start, self._resolve(until, branch))

    def history(self, table: str, key: Mapping[str, object], branch: str = "main") -> pa.Table:
        """Every version of one row (by primary key) through every parent, oldest first, with `_change`,
        `_commit_id`, `_commit_time`, `_author`, `_message` and `_metadata` (see `udr.api.lineage`).

        Raises:
            TableNotFound, RefNotFound, UsageError: no such table or ref; key columns do not match the table's key.
        """
        return lineage.row_history(self._ctx, table, dict(key), self._head(branch))

    def diff(self, table: str, a: Ref, b: Ref = None, *, branch: str = "main") -> pa.Table:
        """The net row changes to `table` from ref `a` to ref `b` (same columns as `changes`).

        Raises:
            TableNotFound, RefNotFound: no such table, or no such ref.
        """
        return history.diff(self._ctx, table, self._resolve(a, branch), self._resolve(b, branch))

    def diff_summary(self, a: Ref, b: Ref = None, *, branch: str = "main") -> dict[str, TableChange]:
        """Per changed table, the net rows inserted, updated and deleted from ref `a` to ref `b`."""
        return history.diff_summary(self._ctx, self._resolve(a, branch), self._resolve(b, branch))

    def compact(self, table: str, *, branch: str = "main", author: str | None = None) -> Commit:
        """Rewrite `table`'s live rows into fresh chunks (dropping deletion vectors and small inline
        fragments) as a new commit that changes no row and no query answer.

        Raises:
            TableNotFound, ConflictError: no such table; the branch moved meanwhile.
        """
        return self._one_commit(branch, f"compact {table}", author or "udr", lambda tx: tx.compact(table))

    # -- branches and tags -----------------------------------------------------------------------------

    def create_branch(self, name: str, from_: str = "main", at: Ref = None) -> Commit:
        """Create branch `name` at `at` (default: the head of `from_`); O(1), no data is copied.

        Returns the new branch's head commit.

        Raises:
            InvalidName, RefNotFound, UsageError: a bad name; no such ref; the branch exists.
        """
        source = self._resolve(at, from_) if at is not None else self._resolve(from_, from_)
        retention.check_readable(self._ctx, source, self._materializer.snapshot(source))
        branches.create_branch(self, name, source, author=self._default_author())
        return self.commit_info(source)

    def branches(self) -> dict[str, str]:
        """Every branch: name -> head commit id."""
        return dict(self._log.branches())

    def delete_branch(self, name: str, *, force: bool = False) -> None:
        """Delete a branch; its commits stay in the log and reachable by id.

        Raises:
            RefNotFound, UsageError: no such branch; `main`, or unmerged work without `force=True`.
        """
        branches.delete_branch(self, name, force=force, author=self._default_author())

    def tag(self, name: str, ref: Ref = None) -> Commit:
        """Tag the commit `ref` names (default: head of main); tags never move.

        Raises:
            InvalidName, RefNotFound, UsageError: a bad name; no such ref; the tag exists.
        """
        target = self._resolve(ref, "main")
        branches.create_tag(self, name, target, author=self._default_author())
        return self.commit_info(target)

    def tags(self) -> dict[str, str]:
        """Every tag: name -> commit id."""
        return dict(self._log.tags())

    def delete_tag(self, name: str) -> None:
        """Delete a tag.

        Raises:
            RefNotFound: no such branch or ref.
        """
        branches.delete_tag(self, name, author=self._default_author())

    def merge(self, source: str, into: str = "main", *, message: str | None = None, author: str | None = None,
              strategy: str | None = None) -> Commit:
        """Merge `source` (a branch or any ref) into branch `into`.

        Fast-forwards when `into` has no commits of its own; otherwise makes a two-parent merge commit
        from a three-way merge per table, per row and per column for keyed tables.

        Raises:
            MergeConflict: conflicting changes (`.conflicts`); nothing was written. Pass
                `strategy="ours"` or `"theirs"` to resolve every conflict one way.
            ConflictError: `into` moved while merging; retry.
        """
        branches.check_strategy(strategy)
        ours = self._head(into)
        theirs = self._resolve(source, into)
        base = branches.merge_base(self, ours, theirs)
        if base == theirs:
            return self.commit_info(ours)
        if base == ours:
            retention.check_readable(self._ctx, theirs, self._materializer.snapshot(theirs))
            fast_forward(self._log, into, ours, theirs, source, author or self._default_author())
            return self.commit_info(theirs)
        return branches.three_way(
            self, branch=into, base=base, ours=ours, theirs=theirs, parents=(ours, theirs),
            message=message or f"merge {source} into {into}", author=author or self._default_author(), strategy=strategy,
        ).commit()

    def reset(self, branch: str, to: Ref) -> Commit:
        """Move `branch`'s head to `to` (the old head stays in the log, reachable by id).

        Raises:
            RefNotFound, ConflictError: no such branch or ref; the branch moved meanwhile.
        """
        head = self._head(branch)
        target = self._resolve(to, branch)
        retention.check_readable(self._ctx, target, self._materializer.snapshot(target))
        reset_branch(self._log, branch, head, target, self._default_author())
        return self.commit_info(target)

    def revert(self, commit: Ref, branch: str = "main", *, author: str | None = None) -> Commit:
        """Commit the inverse of one commit on `branch` (a three-way merge of its parent over it).

        Raises:
            RefNotFound, UsageError, MergeConflict: no such ref; not revertible; later commits changed its cells.
        """
        return replay.revert(self._ctx, branches.reapplier(self, "revert", author or self._default_author()), commit, branch, author or self._default_author())

    def cherry_pick(self, commit: Ref, onto: str = "main", *, author: str | None = None) -> Commit:
        """Re-apply one commit's changes cell by cell as a new commit on branch `onto` (see `udr.api.replay`).

        Raises:
            RefNotFound, UsageError, MergeConflict: no such ref; the root; `onto` changed its cells (nothing written).
        """
        return replay.cherry_pick(self._ctx, branches.reapplier(self, "cherry-pick", author or self._default_author()), self._resolve(commit, onto), onto, author)

    def replay(self, onto: str, start: Ref, until: Ref = None, *, source: str = "main", skip: tuple[Ref, ...] = (),
               tables: list[str] | None = None, on_conflict: str = "raise", author: str | None = None) -> Commit:
        """Create branch `onto` at `start` and re-apply there each later commit of `source` up to `until` but those
        in `skip` (only changes to `tables` if given), keeping author, message and metadata; see `udr.api.replay`.
        The ref log credits the moves of `onto` to `author` (default: this user).

        Raises:
            RefNotFound, UsageError, MergeConflict: bad ref or arguments; conflicts name their commit; `onto` not made.
        """
        return replay.replay(self._ctx, branches.reapplier(self, "replay", author or self._default_author()), self, onto=onto, start=start, until=until,
                             source=source, skip=skip, tables=tables, on_conflict=on_conflict)

    def blame(self, table: str, key: Mapping[str, object] | None = None, branch: str = "main") -> pa.Table:
        """Who last set each cell of keyed `table` (or row `key`): `<col>__commit`, `<col>__author`, `<col>__time`.

        Raises:
            TableNotFound, RefNotFound, UsageError: no such table or ref; no primary key, or `key` does not match it.
        """
        return blame.blame(self._ctx, table, key, self._head(branch))

    # -- change streams --------------------------------------------------------------------------------

    def subscribe(self, tables: list[str] | str | None = None, *, group: str | None = None, member: str | None = None,
                  partitions: int | None = None, start: Ref = "earliest", branch: str = "main") -> Subscription:
        """Follow the row changes committed to `branch`: one `udr.ChangeBatch` per commit and table.

        Use as `async with db.subscribe(...) as sub: async for batch in sub: ...; await sub.ack(batch)`.
        Commits by any process on this machine arrive promptly; an idle subscriber uses no CPU.

        Args:
            tables: the tables to follow (None: every table).
            group: a consumer group: acks are durable, the group resumes after its last ack (ignoring
                `start`), and only one live subscriber may consume it (unless each names a `member`). None: an
                ephemeral subscription.
            member: this subscriber's name in `group`: the group's partitions are split between its live
                members and rebalanced as they join, leave or die (see docs/groups.md).
            partitions: the partition count of a new group with members (default 8; fixed once made).
            start: `"earliest"`, `"latest"` (the head now), or a ref: delivery begins after that commit.
            branch: the branch whose first-parent history is delivered.

        Raises:
            TableNotFound, RefNotFound, InvalidName: no such table or ref, or a bad group or member name.
            UsageError: no table named, or `group` consumes another branch.
            GroupBusy: another live subscriber consumes `group` (with `member`: that member is live).
        """
        head = self._head(branch)
        resume = group_resume(self._log, check_name(group, "group"), branch) if group is not None else None
        if member is not None:
            check_name(member, "member")
        if start == "earliest":
            after = Cursor(-1)
        else:
            first = head if start == "latest" else self._resolve(start, branch)
            after = Cursor(self._log.get_commit(first).seq)
        wanted: frozenset[str] | None = None
        if tables is not None:
            names = [tables] if isinstance(tables, str) else list(tables)
            if not names:
                raise UsageError("subscribe() needs at least one table name, or tables=None for every table")
            self._check_streamed_tables(names, head, resume or after)
            wanted = frozenset(names)
        sub = Subscription(
            self._log, branch=branch, tables=wanted, group=group, start=after, source=self._changes, member=member,
            partitions=partitions)
        self._subscriptions.add(sub)
        return sub

    def groups(self) -> list[GroupInfo]:
        """Every consumer group (that acknowledged a batch or was reset), with its position and lag."""
        return group_infos(self._log)

    def reset_group(self, name: str, to: Ref, *, branch: str = "main") -> None:
        """Make group `name` resume after commit `to` on `branch`: rewind (redeliver) or skip ahead.

        Raises:
            RefNotFound, InvalidName: no such ref, or a bad group name.
            GroupBusy: a live subscriber consumes the group; close it first.
        """
        check_name(name, "group")
        self._head(branch)
        reset_group(self._log, name, seq=self._log.get_commit(self._resolve(to, branch)).seq, branch=branch)

    def delete_group(self, name: str) -> None:
        """Forget consumer group `name`: its positions, leases and members.

        Raises:
            InvalidName, UsageError: a bad group name, or no such group.
            GroupBusy: a live subscriber consumes the group; close it first.
        """
        delete_group(self._log, check_name(name, "group"))

    # -- maintenance --------------------------------------------------------------------------------

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Check every commit's hash and chain links and every referenced chunk and blob."""
        return retention.verify(self._ctx, progress)

    def rebuild(self, progress: Progress | None = None) -> int:
        """Discard all derived state and rebuild it by replaying the log; return commits replayed."""
        return self._materializer.rebuild(progress)

    def gc(self, progress: Callable[[int], None] | None = None) -> int:
        """Delete chunks no commit in the log references (after `expire`: that no kept version needs, and
        their inline rows in the log); return bytes freed."""
        return retention.collect_garbage(self._ctx, progress)

    def set_retention(self, keep_days: float | None = None, keep_commits: int | None = None, *,
                      table: str | None = None) -> RetentionPolicy:
        """Keep old versions' data `keep_days` days or the newest `keep_commits` per branch (see
        `udr.RetentionPolicy`), lake-wide or for one `table`; both None removes the policy. `expire` applies it.

        Raises:
            UsageError, InvalidName: a bad policy value, or a bad table name.
        """
        return retention.set_retention(self._ctx, keep_days, keep_commits, table)

    def retention(self) -> list[RetentionPolicy]:
        """Every retention policy, the lake's first."""
        return retention.policies(self._ctx)

    def expire(self, now: datetime | None = None) -> ExpireReport:
        """Expire the data of versions outside the retention window, except branch heads, tags, holds and
        what consumer groups still need; `gc` then frees it. Reading it later raises `udr.Expired`."""
        return retention.expire(self._ctx, now)

    def hold(self, name: str, ref: Ref, reason: str, *, author: str | None = None) -> Hold:
        """Keep the version `ref` names from expiring until `release(name)`.

        Raises:
            InvalidName, RefNotFound, UsageError, Expired: a bad name; no such ref; the hold exists; too late.
        """
        return retention.hold(self._ctx, name, self._resolve(ref, "main"), reason, author or self._default_author())

    def release(self, name: str) -> None:
        """Remove hold `name` (its version may expire at the next `expire`).

        Raises:
            InvalidName, RefNotFound: a bad name, or no such hold.
        """
        retention.release(self._ctx, name)

    def holds(self) -> list[Hold]:
        """Every hold, by name."""
        return retention.holds(self._ctx)

    def erase(self, table: str, keys: TableData, *, reason: str, branch: str | None = None,
              author: str | None = None) -> Commit:
        """Remove the rows with primary key in `keys` from every version of `table` in the lake's history, in an
        erasure commit on `branch` (default main) recording who, when, why and a hash of each key; `gc` then
        deletes the old bytes. See `udr.api.erasure`.

        Raises:
            TableNotFound, KeyViolation, UsageError, ConflictError: no such table; no primary key; bad keys; retry.
        """
        commit = erasure.erase(self._ctx, table, keys, reason=reason, branch=branch or "main",
                               author=author or self._default_author())
        self._after_commit(commit)
        return commit

    def publish_iceberg(self, dest: str | os.PathLike[str], tables: list[str] | None = None, *,
                        branch: str = "main") -> iceberg.PublishReport:
        """Publish tables as Apache Iceberg tables at `dest/<table>/` reading UDR's chunks in place (zero copy);
        incremental and idempotent. See `udr.publish.iceberg`.

        Raises:
            RefNotFound, TableNotFound, SchemaError: no such ref or table, or a column type Iceberg cannot describe.
            ConflictError: another publisher wrote `dest` meanwhile; publish again.
        """
        return iceberg.publish_iceberg(self._log, self._materializer, self._rows, Path(dest), tables, branch)

    def unpublish_iceberg(self, dest: str | os.PathLike[str]) -> list[str]:
        """Delete the Iceberg tables this lake published at `dest` and let `gc` free what only they used;
        return the tables removed."""
        return iceberg.unpublish_iceberg(self._log, Path(dest))

    def stats(self) -> LakeStats:
        """Commits, chunks and bytes (logical vs stored) of the lake."""
        return stats(self._log)

    # -- internals ----------------------------------------------------------------------------------

    def _default_author(self) -> str:
        """`UDR_AUTHOR`, else the OS user name (looked up once per handle: it costs a passwd read)."""
        author = os.environ.get("UDR_AUTHOR")
        if author:
            return author
        if self._os_user is None:
            self._os_user = os_user()
        return self._os_user

    def _one_commit(self, branch: str, message: str, author: str | None, write: Callable[[Transaction], object],
                    *, metadata: Mapping[str, str] | None = None) -> Commit:
        """Run `write` in a transaction of its own on `branch` and return the commit it made."""
        with self.transaction(branch, message=message, author=author, metadata=metadata) as tx:
            write(tx)
        assert tx.committed is not None
        return tx.committed

    def _head(self, branch: str) -> CommitId:
        return refspec.branch_head(self._log, branch)

    def _resolve(self, ref: Ref, branch: str) -> CommitId:
        return refspec.resolve(self._log, ref, branch)

    def _snapshot(self, branch: str, at: Ref) -> dict[str, TableState]:
        cid = self._resolve(at, branch)
        snap = self._materializer.snapshot(cid)
        retention.check_readable(self._ctx, cid, snap)
        return snap

    def _table(self, table: str, branch: str, at: Ref) -> TableState:
        cid = self._resolve(at, branch)
        snap = self._materializer.snapshot(cid)
        if not isinstance(table, str) or table not in snap:
            where = f"at {at}" if at is not None else f"on branch {branch!r}"
            raise TableNotFound(f"table {table!r} does not exist {where}" + close_matches(str(table), snap))
        retention.check_readable(self._ctx, cid, (table,))
        return snap[table]

    def _resolver(self, branch: str) -> Callable[[str, str], TableState | pa.Table]:
        """How a query on `branch` reads a quoted `"table@REF"` or `"table@A..B"` (B defaults to its head)."""

        def resolve(table: str, ref: str) -> TableState | pa.Table:
            if ".." in ref:
                since, until = ref.split("..", 1)
                return self.changes(table, since=since or None, until=until or None, branch=branch)
            return self._table(table, branch, ref)

        return resolve

    def _check_streamed_tables(self, names: list[str], head: CommitId, after: Cursor) -> None:
        # A table counts if it exists now or some commit after `after` touched it (e.g. dropped it).
        known = set(self._materializer.snapshot(head))
        missing = [n for n in names if not isinstance(n, str) or n not in known]
        for _, record in graph.first_parents(self._log, head):
            if not missing or record.seq < after.seq:
                break
            known |= set(record.tables)
            missing = [n for n in missing if n not in known]
        if missing:
            name = missing[0]
            raise TableNotFound(f"table {name!r} does not exist on this branch" + close_matches(str(name), known))

    def _hook_for(self, hooks: list[PendingAck]) -> CommitHook | None:
        return ack_hook([pending.ack for pending in hooks]) if hooks else None

    def _after_commit(self, commit: Commit) -> None:
        self._changes.committed(commit)

    def _flush_small_writes(self, branch: str, snapshot: Mapping[str, TableState], tables: list[str]) -> None:
        """After a commit (whose `snapshot` the writer folded), flush the tables whose run of inline writes
        reached `udr.log.format.INLINE_FLUSH_FRAGMENTS` into Parquet, in a maintenance commit of its own (see
        `Transaction._flush_inline`).

        Best effort: the caller's commit is already durable, so a failure here only warns (a commit that
        raised would be retried and applied twice), and a concurrent writer's move means the next commit
        flushes instead.
        """
        limit = lake_format.INLINE_FLUSH_FRAGMENTS
        due = [t for t in tables if t in snapshot and len(snapshot[t].inline_tail()) >= limit]
        if not due:
            return
        try:
            tx = self.transaction(branch, message=f"flush small writes of {', '.join(due)}", author="udr",
                                  metadata={MAINTENANCE_KEY: MAINTENANCE_FLUSH_INLINE})
            tx._maintenance = True
            with tx:
                for table in due:
                    tx._flush_inline(table)
        except ConflictError:
            pass
        except (UdrError, OSError) as exc:
            warnings.warn(f"udr: flushing the small writes of {', '.join(due)} failed ({exc}); "
                          "the data is intact and stays inlined", RuntimeWarning, stacklevel=3)
