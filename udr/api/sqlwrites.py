"""What SQL writes (`udr.query.dml`) do to a transaction besides calling its write methods: store chunk files
DuckDB wrote, read a table together with where each row is stored, and stage a keyed change DuckDB found.

Each of these skips a copy of the rows through Arrow (see `udr.query.dml`). Belongs to the transaction's
thread, as the transaction does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from udr.api import writes
from udr.api.context import LakeContext
from udr.api.sqlbuilds import Builds
from udr.log.format import TMP_DIR
from udr.materialize.staging import Staging
from udr.query.diff import KeyedDiff
from udr.query.engine import Connection, SnapshotServer
from udr.query.incremental import KeyLocal, key_filter


class DirectWrites:
    """The `udr.query.dml.DirectWrites` of one transaction: its staging, the lake's snapshot server (which
    builds positioned views), and `connect(sql, without)` its connections (`without`: a table given no view)."""

    def __init__(self, ctx: LakeContext, server: SnapshotServer, staging: Staging,
                 connect: Callable[[str, str | None], Connection]) -> None:
        self._ctx = ctx
        self._server = server
        self._staging = staging
        self._connect = connect
        self._builds = Builds(ctx, staging)

    def temp_dir(self) -> Path:
        """The lake's directory for chunk files being written (files there move into the store by rename)."""
        path = self._ctx.log.root / TMP_DIR
        path.mkdir(exist_ok=True)
        return path

    def add_files(self, table: str, files: list[tuple[Path, int]]) -> None:
        """Move Parquet chunk files of `table`'s current schema (each with its row count) into the store and
        stage them as inserted rows of `table`, in order."""
        self._staging.add_files(table, files)

    def connect_positioned(self, sql: str, table: str, view: str, *, deleted: str | None = None,
                           plain: bool = True, where: tuple[str, str] | None = None) -> Connection:
        """A connection as the transaction's `connect(sql)`, plus view `view`: `table`'s live rows with their
        `__frag` and `__pos` (with `deleted`, the deleted ones too, listed in view `deleted`; see
        `udr.query.engine.SnapshotServer.register_positioned`; `where` an alias and a condition: only the
        rows it keeps). Without `plain`, `table` gets no view of its own name: building one costs
        milliseconds a statement that reads `table` only as `view` wastes."""
        con = self._connect(sql, None if plain else table)
        try:
            self.add_positioned(con, table, view, deleted=deleted, where=where)
        except BaseException:
            con.close()
            raise
        return con

    def add_positioned(self, con: Connection, table: str, view: str, *, deleted: str | None = None,
                       where: tuple[str, str] | None = None) -> None:
        """Add to `con` view `view`: `table`'s live rows (those `where` keeps), positioned (see
        `connect_positioned`)."""
        self._server.register_positioned(con, view, table, self._staging.require(table), self._staging.rows,
                                             deleted=deleted, where=where)

    def changed_keys(self, table: str, plan: KeyLocal) -> pa.Table | None:
        """The keys whose input rows changed since keyed `table` was built by `plan` (None: build it all);
        see `udr.api.sqlbuilds.Builds.changed_keys`."""
        return self._builds.changed_keys(table, plan)

    def filtered_inputs(self, con: Connection, plan: KeyLocal) -> dict[str, str]:
        """Add to `con` a view of each input of `plan` whose chunk files have deleted rows, holding only its
        rows whose key is in relation `KEYS` (filtered inside the Parquet scan, on every thread, where a
        filter above its plain view reads every row through a one-thread positional join: ~2x at 856k rows).
        Return the views by lower-case table name (`udr.query.incremental.restricted`)."""
        views = {}
        for i, name in enumerate(plan.inputs):
            if any(not f.inline and f.deletes is not None for f in self._staging.require(name).fragments):
                views[name.lower()] = f"__udr_input_{i}"
                self.add_positioned(con, name, views[name.lower()], where=key_filter(views[name.lower()], plan.key))
        return views

    def record_build(self, table: str, plan: KeyLocal) -> None:
        """Note that `table`, as now staged, holds the rows of `plan`'s query (`udr.api.sqlbuilds`)."""
        self._builds.record(table, plan)

    def live_rows(self, table: str) -> int:
        """How many rows `table` has as the transaction sees it."""
        return self._staging.require(table).rows

    def stage_diff(self, table: str, diff: KeyedDiff, *, replaced: bool) -> None:
        """Stage `diff`, found against keyed `table` as this transaction sees it, as a write of `table`;
        `replaced`: it replaces the table's rows (a keyed overwrite, as `writes.stage_keyed_diff` says)."""
        state = self._staging.require(table)
        first = table not in self._staging.ops
        self._staging.writes[table] += 1
        writes.stage_keyed_diff(self._staging, table, diff, self._staging.rows.schema(state.schema), first=first,
                                replaced=replaced)
