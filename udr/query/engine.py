"""Serving snapshots to DuckDB: every table becomes a view over its Parquet chunks and inline rows.

Parquet chunks are scanned in place (projection and filter pushdown apply); deleted rows are removed by
positional joins with keep-masks, one per thread's share of the rows; inline rows are scanned as Arrow
tables. Each view is made from a DuckDB relation that holds the Arrow data it reads (inline rows, masks),
so a connection's catalog (`SHOW TABLES`, `information_schema.tables`) lists the tables and nothing of how
they are read. Each chunk file is hashed once per `SnapshotServer` before DuckDB reads it, so a damaged or
missing chunk raises `CorruptionError` instead of a wrong answer. The views are built on cursors of the
lake's DuckDB database (`udr.query.database`). Connections are not shared between threads; the server
itself is safe across threads.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol, TypeAlias, cast

import duckdb
import numpy as np
import pyarrow as pa

from udr.errors import CorruptionError, SqlError
from udr.log.format import ROW_GROUP_ROWS, ChunkId
from udr.log.protocols import LakeLog
from udr.materialize.protocols import RowSource
from udr.materialize.schemas import stored_names
from udr.materialize.states import FragmentState, TableState
from udr.query.database import Database
from udr.query.sqltext import one_line, quote_ident, quote_str

# "name@REF" or "name@A..B" inside double quotes names a table at another version.
VERSIONED_NAME = re.compile(r'"([^"@]+)@([^"]+)"')

# The DuckDB types the facade hands out (`Lake.connect`, `Lake.sql`), named here so duckdb has one home.
Connection: TypeAlias = duckdb.DuckDBPyConnection
Relation: TypeAlias = duckdb.DuckDBPyRelation


def named_tables(query: str) -> set[str]:
    """Lower-cased names of the tables `query` reads (DuckDB matches names case-insensitively, quoted or
    not); empty if `query` is not valid SQL, which running it reports as `SqlError`."""
    try:
        return {name.lower() for name in duckdb.get_table_names(query)}
    except duckdb.Error:
        pass
    # DuckDB binds the names against an empty catalog, which fails for most writing statements and for
    # joins `USING` a column: sqlglot parses without binding (a plain import: it is only loaded here).
    import sqlglot
    from sqlglot import exp

    try:
        return {t.name.lower() for tree in sqlglot.parse(query, dialect="duckdb") if tree is not None
                for t in tree.find_all(exp.Table) if t.name}
    except sqlglot.errors.SqlglotError:
        return set()


Resolver = Callable[[str, str], "TableState | pa.Table"]


def _view_relation(con: duckdb.DuckDBPyConnection, query: str,
                   sources: dict[str, pa.Table | None]) -> duckdb.DuckDBPyRelation:
    """`query` as a relation; it may read each Arrow table of `sources` by its name (keep-masks, inline rows).

    DuckDB finds those by its replacement scan, which reads a variable of the calling frame by name: unlike
    `register`, that adds no name to the connection's catalog, and the relation (and a view made from it)
    keeps the Arrow data alive. The names vary with the table (a mask per share of its rows: DuckDB reads one
    source named more than once through a buffered fan-out), so `query` runs in a namespace holding exactly them.
    """
    namespace = {**sources, "con": con, "query": query}
    return cast(duckdb.DuckDBPyRelation, eval("con.sql(query)", namespace))  # noqa: S307 - a constant expression


def _no_rows(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> str:
    """A subquery with the columns of `schema` (as DuckDB types them) and no rows."""
    typed = con.from_arrow(schema.empty_table())
    cols = ", ".join(f"CAST(NULL AS {kind}) AS {quote_ident(name)}" for name, kind in zip(typed.columns, typed.types))
    return f"(SELECT {cols or '1 AS __udr_none'} WHERE false) AS e"


def _threads(con: duckdb.DuckDBPyConnection) -> int:
    """The threads DuckDB runs a query on (its `threads` setting)."""
    return int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])


def _shares(frags: list[FragmentState], threads: int) -> list[tuple[list[FragmentState], range | None]]:
    """`frags` cut into about `threads` shares of similar rows, in order: runs of whole fragments (None), and
    row ranges of a fragment larger than a share, cut at row groups (each share of at least one row group)."""
    share = -(-sum(f.rows for f in frags) // max(threads, 1))
    share = max(1, -(-share // ROW_GROUP_ROWS)) * ROW_GROUP_ROWS
    shares: list[tuple[list[FragmentState], range | None]] = []
    run: list[FragmentState] = []
    run_rows = 0
    for frag in frags:
        if frag.rows > share:
            shares.extend(([frag], range(start, min(start + share, frag.rows))) for start in range(0, frag.rows, share))
            continue
        if run and run_rows + frag.rows > share:
            shares.append((run, None))
            run, run_rows = [], 0
        run.append(frag)
        run_rows += frag.rows
    return shares + ([(run, None)] if run else [])


_PLACE = (pa.field("__frag", pa.uint32()), pa.field("__pos", pa.uint32()))


class _Places:
    """Where each row of a positioned view is stored (`SnapshotServer.register_positioned`)."""

    def __init__(self, state: TableState) -> None:
        self._index = {f.chunk: i for i, f in enumerate(state.fragments)}

    def parquet(self, frags: list[FragmentState]) -> str:
        """The `__frag` and `__pos` select items of one `read_parquet` over `frags`, from DuckDB's virtual
        columns `file_index` (the file's index in the list read) and `file_row_number`."""
        indices = [self._index[f.chunk] for f in frags]
        if indices == list(range(indices[0], indices[0] + len(indices))):
            frag = f"(file_index + {indices[0]})"
        else:
            frag = f"({indices})[file_index::BIGINT + 1]"
        return f"{frag}::UINTEGER AS __frag, file_row_number::UINTEGER AS __pos"

    def deleted(self, reader: RowSource, frags: list[FragmentState]) -> pa.Table:
        """The places (`__dfrag`, `__dpos`) of the deleted rows of `frags`."""
        parts = [(self._index[f.chunk], reader.deleted_positions(f)) for f in frags if f.deletes is not None]
        frag = [np.full(len(p), i, dtype=np.uint32) for i, p in parts]
        return pa.table({"__dfrag": pa.array(np.concatenate(frag) if frag else [], pa.uint32()),
                         "__dpos": pa.concat_arrays([p.cast(pa.uint32()) for _, p in parts]
                                                    or [pa.array([], pa.uint32())])})

    def inline(self, rows: pa.Table, frag: FragmentState) -> pa.Table:
        """Live rows of inline fragment `frag` (with their `__pos`) given their `__frag`."""
        index = pa.array(np.full(rows.num_rows, self._index[frag.chunk], dtype=np.uint32))
        return rows.append_column(_PLACE[0], index).select([*rows.column_names[:-1], "__frag", "__pos"])


class LogViewSource(Protocol):
    """The views of the log a connection gets on request (`udr.query.logviews.LogViews`)."""

    def register(self, con: duckdb.DuckDBPyConnection, taken: set[str]) -> None:
        """Register the views on `con`, except those named in `taken` (lower case: user tables win)."""


class SnapshotServer:
    """Builds DuckDB connections whose views are the tables of a snapshot (and, on request, the log's)."""

    def __init__(self, database: Database, log: LakeLog, rows: RowSource, log_views: LogViewSource) -> None:
        self._database = database
        self._log = log
        self._rows = rows
        self._log_views = log_views

    def connect(self, tables: dict[str, TableState], rows: RowSource | None = None, *, log_views: bool = False,
                named: set[str] | None = None,
                without: str | None = None) -> tuple[duckdb.DuckDBPyConnection, dict[str, CorruptionError]]:
        """A new DuckDB cursor with one view per table (and, with `log_views`, the views of
        `udr.query.logviews`), and the tables whose data is damaged.

        A damaged table's view raises the `CorruptionError` message as a DuckDB error whenever it is
        scanned, so one damaged chunk leaves every other table queryable. `rows` reads the tables (a
        transaction passes its own, which sees its staged blobs). `named`: the tables the query to run
        names (`named_tables`); when each is one of `tables` (or a `"table@REF"`), only those get views.
        Each view costs a few milliseconds, which a job over a lake of many tables would otherwise pay
        for every table on every statement. Otherwise (a query of the catalog, `SHOW TABLES`, a misspelled
        name) every table gets one, so DuckDB's answer or hint lists them all. `without`: a table that gets
        no view even so (the caller shows it another way, e.g. a positioned view of a write's target).
        """
        con = self._database.cursor()
        damaged: dict[str, CorruptionError] = {}
        found = {n for n in named or () if "@" not in n}
        if found and found <= {n.lower() for n in tables}:
            tables = {n: t for n, t in tables.items() if n.lower() in found}
        for name, state in sorted(tables.items()):
            if name == without:
                continue
            try:
                self.register(con, name, name, state, rows)
            except CorruptionError as exc:
                damaged[name] = exc
                self._register_damaged(con, name, (rows or self._rows).schema(state.schema), exc)
        if log_views:
            self._log_views.register(con, {name.lower() for name in tables})
        return con, damaged

    def _register_damaged(self, con: duckdb.DuckDBPyConnection, view: str, schema: pa.Schema,
                          exc: CorruptionError) -> None:
        # Every column and the filter call error(): DuckDB folds neither away, so any query that reads
        # the view (even count(*) or a filter on a column) fails instead of returning no rows.
        fail = f"error({quote_str(f'udr: {exc}')})"
        relation = con.from_arrow(schema.empty_table())
        cols = ", ".join(f"CAST({fail} AS {kind}) AS {quote_ident(name)}"
                         for name, kind in zip(relation.columns, relation.types)) or "1"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote_ident(view)} AS SELECT {cols} WHERE {fail} IS NULL")

    def register(self, con: duckdb.DuckDBPyConnection, view: str, table: str, state: TableState | pa.Table,
                 rows: RowSource | None = None) -> None:
        """Create view `view` on `con` showing `state` (a table snapshot, or a ready Arrow table), read
        through `rows` (default: the server's reader). No other name is added to `con`'s catalog."""
        relation = con.from_arrow(state) if isinstance(state, pa.Table) else self._relation(con, table, state,
                                                                                            rows or self._rows)
        con.register(view, relation)

    def register_positioned(self, con: duckdb.DuckDBPyConnection, view: str, table: str, state: TableState,
                            rows: RowSource | None = None, *, deleted: str | None = None,
                            where: tuple[str, str] | None = None) -> None:
        """Create view `view` on `con` showing the live rows of `state` with two more columns, `__frag` (the
        index of the row's fragment in `state.fragments`) and `__pos` (its row position in that fragment),
        both UINTEGER: a write reads the rows it changes and where they are stored in one scan.

        With `deleted`, `view` shows the deleted rows of chunk files too, and view `deleted` lists their
        places (`__dfrag`, `__dpos`): a caller that filters first and drops those places after joins only
        the rows its filter keeps (DuckDB places a filter such as `id % 100 = 7` above the view's anti-join).
        With `where` (an alias, and a condition over the table's columns that may qualify them by it), `view`
        shows only the rows the condition keeps: it is evaluated inside the Parquet scan, which DuckDB does
        not do for a filter above a view that adds `__frag` and `__pos` (~10% of a 1M-row scan).

        Raises:
            SqlError: DuckDB rejected `where`.
        """
        try:
            relation, places = self._positioned_relation(con, table, state, rows or self._rows,
                                                         live=deleted is None, where=where)
        except duckdb.Error as exc:  # DuckDB binds `where` here
            raise SqlError(one_line(exc)) from exc
        con.register(view, relation)
        if deleted is not None:
            con.register(deleted, con.from_arrow(places))

    def _relation(self, con: duckdb.DuckDBPyConnection, table: str, state: TableState,
                  reader: RowSource) -> duckdb.DuckDBPyRelation:
        schema = reader.schema(state.schema)
        cols = ", ".join(quote_ident(n) for n in schema.names) or "*"
        parts: list[str] = []
        plain = [f for f in state.fragments if not f.inline and f.deletes is None]
        pruned = [f for f in state.fragments if not f.inline and f.deletes is not None]
        inline = [f for f in state.fragments if f.inline]
        # A positional join with a keep-mask drops deleted rows without hashing (an anti-join on
        # file_row_number cost more). DuckDB runs each positional join on one thread: the fragments of the
        # current schema are cut into one share per thread, each one scan and one mask of its own.
        current = [f for f in pruned if f.schema == state.schema]
        shares = _shares(current, _threads(con)) if current else []
        keep = {f: reader.keep_mask(f) for f in pruned}
        sources: dict[str, pa.Table | None] = {}
        for group, cut in shares + [([f], None) for f in pruned if f.schema != state.schema]:
            mask = f"__udr_keep_{len(sources)}"
            bits = np.concatenate([keep[f] for f in group]) if cut is None else keep[group[0]][cut.start:cut.stop]
            sources[mask] = pa.table({mask: bits})  # not a plain name such as "k": the table may have that column
            scan = self._scan(con, table, group, state, schema, reader)
            if cut is not None:  # a filter on the virtual column DuckDB evaluates inside the scan, row groups pruned
                scan = (f"(SELECT * FROM {scan} WHERE file_row_number >= {cut.start} "
                        f"AND file_row_number < {cut.stop}) AS s")
            parts.append(f"SELECT {cols} FROM {scan} POSITIONAL JOIN {mask} WHERE {mask}.{mask}")
        # After the joins: DuckDB starts a union's parts in order, and a plain scan runs on every thread.
        if plain:
            parts.append(f"SELECT {cols} FROM {self._scan(con, table, plain, state, schema, reader)}")
        if inline:
            sources["__udr_inline"] = pa.concat_tables([reader.live_as(f, schema, table=table) for f in inline])
            parts.append(f"SELECT {cols} FROM __udr_inline")
        if not parts:
            parts.append(f"SELECT {cols} FROM {_no_rows(con, schema)}")
        return _view_relation(con, " UNION ALL ".join(parts), sources)

    def _positioned_relation(self, con: duckdb.DuckDBPyConnection, table: str, state: TableState,
                             reader: RowSource, *, live: bool,
                             where: tuple[str, str] | None) -> tuple[duckdb.DuckDBPyRelation, pa.Table]:
        """The positioned view of `state` (only its live rows if `live`, only those `where` keeps) and the
        places of its deleted rows."""
        schema = reader.schema(state.schema)
        places = _Places(state)
        cols = ", ".join([*(quote_ident(n) for n in schema.names), "__frag", "__pos"])
        files = [f for f in state.fragments if not f.inline]
        inline = [f for f in state.fragments if f.inline]
        parts: list[str] = []
        deleted = places.deleted(reader, files)
        if files:
            # Deleted rows leave by an anti-join on their place, not a positional join with a keep-mask (as
            # in `_relation`): the join runs on every thread.
            anti = " ANTI JOIN __udr_keep ON __frag = __dfrag AND __pos = __dpos" if live and deleted.num_rows else ""
            scan = self._scan(con, table, files, state, schema, reader, places, where)
            parts.append(f"SELECT {cols} FROM {scan}{anti}")
        rows = None
        if inline:
            # Inline rows are few: the deleted ones leave here whether `live` or not.
            rows = pa.concat_tables([places.inline(reader.live_as(f, schema, table=table, with_position=True), f)
                                     for f in inline])
            parts.append(f"SELECT {cols} FROM __udr_inline" + (f" AS {where[0]} WHERE {where[1]}" if where else ""))
        if not parts:
            parts.append(f"SELECT {cols} FROM {_no_rows(con, schema.append(_PLACE[0]).append(_PLACE[1]))}")
        return _view_relation(con, " UNION ALL ".join(parts), {"__udr_keep": deleted, "__udr_inline": rows}), deleted

    def _scan(self, con: duckdb.DuckDBPyConnection, table: str, frags: list[FragmentState], state: TableState,
              schema: pa.Schema, reader: RowSource, where: _Places | None = None,
              keep: tuple[str, str] | None = None) -> str:
        """A scan of `frags` under `schema` (with `where`, their places too; with `keep`, only the rows
        whose alias and condition it holds keeps, see `register_positioned`)."""
        kept = f" AS {keep[0]} WHERE {keep[1]}" if keep else ""
        if all(f.schema == state.schema for f in frags):
            if where is None:
                return f"read_parquet({self._files(table, frags)}) AS t"
            return f"(SELECT *, {where.parquet(frags)} FROM read_parquet({self._files(table, frags)}){kept}) AS t"
        # Chunks of older schemas: columns matched by id (renamed ones under their stored names), those
        # they lack filled by a union by name with no rows of the full schema.
        parts = []
        for schema_id in dict.fromkeys(f.schema for f in frags):
            group = [f for f in frags if f.schema == schema_id]
            names = stored_names(reader.schema(schema_id), schema)
            cols = ", ".join([f"{quote_ident(stored)} AS {quote_ident(name)}" for name, stored in names.items()]
                             + ([where.parquet(group)] if where is not None else []))
            parts.append(f"SELECT {cols or '1 AS __udr_none'} FROM read_parquet({self._files(table, group)})")
        empty = schema if where is None else schema.append(_PLACE[0]).append(_PLACE[1])
        union = f"{' UNION ALL BY NAME '.join(parts)} UNION ALL BY NAME SELECT * FROM {_no_rows(con, empty)}"
        return f"(SELECT * FROM ({union}){kept}) AS t" if keep else f"({union}) AS t"

    def _files(self, table: str, frags: list[FragmentState]) -> str:
        paths = [self._verified_path(f.chunk, table) for f in frags]
        return "[" + ", ".join(quote_str(p) for p in paths) + "]"

    def _verified_path(self, chunk: ChunkId, table: str) -> str:
        try:
            return str(self._log.chunks.verified_path(chunk))
        except CorruptionError as exc:
            raise CorruptionError(f"table {table!r}: {exc}") from exc

    def sql(self, con: duckdb.DuckDBPyConnection, query: str, resolve: Resolver) -> duckdb.DuckDBPyRelation:
        """Run `query` on `con`, first registering every quoted `"table@REF"` it names via `resolve`.

        Raises:
            SqlError: DuckDB rejected the query.
        """
        self.register_versions(con, query, resolve)
        try:
            return con.sql(query)
        except duckdb.Error as exc:
            raise SqlError(one_line(exc)) from exc

    def register_versions(self, con: duckdb.DuckDBPyConnection, query: str, resolve: Resolver) -> None:
        """Register a view for every quoted `"table@REF"` that `query` names, via `resolve`."""
        for table, ref in sorted({(m.group(1), m.group(2)) for m in VERSIONED_NAME.finditer(query)}):
            self.register(con, f"{table}@{ref}", table, resolve(table, ref))

    def fetch(self, con: duckdb.DuckDBPyConnection, query: str, resolve: Resolver) -> pa.Table:
        """Run `query` to completion and return its rows.

        Raises:
            SqlError: DuckDB rejected the query or failed while producing rows.
        """
        relation = self.sql(con, query, resolve)
        try:
            return relation.to_arrow_table()
        except duckdb.Error as exc:
            raise SqlError(one_line(exc)) from exc

    def positions_where(self, name: str, state: TableState, where: str, rows: RowSource | None = None) -> pa.Table:
        """(__frag, __pos) of the live rows of a table matching SQL predicate `where`.

        `rows` reads the table (a transaction passes its own, which sees its staged blobs).

        Raises:
            SqlError: the predicate is not valid SQL over the table's columns.
        """
        data = (rows or self._rows).table(name, state, with_position=True)
        with self._database.session() as con:
            try:
                con.register("__udr_rows", data)
                return con.sql(f"SELECT __frag, __pos FROM __udr_rows WHERE ({where})").to_arrow_table()
            except duckdb.Error as exc:
                raise SqlError(f"bad predicate for table {name!r}: {one_line(exc)}") from exc
