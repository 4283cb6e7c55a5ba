"""Running writing SQL (DML and DDL) as UDR writes: each statement becomes calls on a `WriteTarget`.

Rows a statement leaves are the rows DuckDB leaves for it. Three ways, fastest first:
- keyed `UPDATE` (keys untouched) is rewritten (sqlglot) into one `SELECT` over a positioned view of the
  target (`udr.query.sqldiff`) giving only the rows whose values change and where they are stored; keyed
  `DELETE` into a `SELECT` of the doomed keys, then a delete by keys: no table is materialized;
- `CREATE TABLE t AS <query>` has DuckDB write a new table's chunks (`udr.query.chunkcopy`), or, for an
  existing keyed table of the same columns, find the changed rows against it (`udr.query.sqldiff`);
  `CREATE TABLE t (...)` and `INSERT` (plain or `OR REPLACE`) not reading its own table run unchanged in a
  scratch in-memory catalog against an empty table, and the rows they produce are appended or upserted;
- anything else (`MERGE`, `ON CONFLICT`, unkeyed `UPDATE`/`DELETE`, self-reading `INSERT`) copies the
  target table into the scratch catalog (with its primary key), runs the real statement, and replaces
  the table's rows with the result, which stores only the rows that differ.
The scratch catalog is attached per statement under a unique name and detached after; the target's view
is renamed away in that cursor so the statement's name binds to the scratch table. Not thread-safe per
target (a transaction belongs to one thread).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
from sqlglot import exp

from udr.errors import SqlError, UsageError
from udr.query.chunkcopy import copy_rows, copyable
from udr.query.diff import KeyedDiff
from udr.query.incremental import KEYS, KeyLocal, key_filter, key_local, restricted
from udr.query.parse import Statement, column_name, parse_script, reads_table
from udr.query.sqldiff import (
    FRAG,
    IN,
    POS,
    changes_sql,
    old_name,
    overwrite_diff,
    split,
)
from udr.query.sqltext import one_line, quote_ident


class WriteTarget(Protocol):
    """What a transaction offers the SQL writer: its tables as it sees them, and its write methods."""

    def tables(self) -> list[str]: ...

    def schema(self, table: str) -> pa.Schema: ...

    def primary_key(self, table: str) -> list[str] | None: ...

    def connect(self, sql: str = "") -> duckdb.DuckDBPyConnection: ...

    def create_table(self, table: str, schema: pa.Schema, *, primary_key: list[str] | None = None) -> None: ...

    def drop_table(self, table: str) -> None: ...

    def append(self, table: str, data: pa.Table, *, evolve: bool = False) -> None: ...

    def upsert(self, table: str, data: pa.Table) -> None: ...

    def delete(self, table: str, where: str | None = None, *, keys: pa.Table | None = None) -> int: ...

    def replace_rows(self, table: str, data: pa.Table) -> None: ...

    def add_column(self, table: str, name: str, type: pa.DataType, default: object = None) -> None: ...

    def drop_column(self, table: str, name: str) -> None: ...

    def rename_column(self, table: str, old: str, new: str) -> None: ...

    def alter_column_type(self, table: str, name: str, type: pa.DataType) -> None: ...

    def set_primary_key(self, table: str, columns: list[str]) -> None: ...


class DirectWrites(Protocol):
    """Writes to the target that skip a copy of the rows through Arrow."""

    def temp_dir(self) -> Path: ...

    def add_files(self, table: str, files: list[tuple[Path, int]]) -> None: ...

    def connect_positioned(self, sql: str, table: str, view: str, *, deleted: str | None = None,
                           plain: bool = True, where: tuple[str, str] | None = None) -> duckdb.DuckDBPyConnection: ...

    def stage_diff(self, table: str, diff: KeyedDiff, *, replaced: bool) -> None: ...

    def live_rows(self, table: str) -> int: ...

    def add_positioned(self, con: duckdb.DuckDBPyConnection, table: str, view: str, *, deleted: str | None = None,
                       where: tuple[str, str] | None = None) -> None: ...

    def changed_keys(self, table: str, plan: KeyLocal) -> pa.Table | None: ...

    def record_build(self, table: str, plan: KeyLocal) -> None: ...

    def filtered_inputs(self, con: duckdb.DuckDBPyConnection, plan: KeyLocal) -> dict[str, str]: ...


# The name of the positioned view of the table a statement writes (`DirectWrites.connect_positioned`), and
# of the places of its deleted rows.
_TARGET = "__udr_target"
_DELETED = "__udr_deleted"
# The positioned view of the target's rows whose keys changed in the inputs (an incremental rebuild).
_CHANGED = "__udr_changed"


def execute_script(target: WriteTarget, sql: str, direct: DirectWrites) -> None:
    """Run every statement of `sql` against `target` (and `direct`), in order; all are checked before the
    first runs.

    Raises:
        UsageError: a statement UDR cannot run (nothing ran).
        SqlError: DuckDB rejected a statement.
        TableNotFound, SchemaError, KeyViolation: as the corresponding write method.
    """
    for statement in parse_script(sql):
        _run(target, direct, statement)


def _run(target: WriteTarget, direct: DirectWrites, st: Statement) -> None:
    table = _lake_name(target, st.table)
    if st.kind == "CREATE TABLE":
        _create(target, direct, st, table)
        return
    if table not in target.tables():
        if st.kind == "DROP TABLE" and st.tree.args.get("exists"):
            return
        target.schema(table)  # raises TableNotFound, naming close matches
    if st.kind == "DROP TABLE":
        target.drop_table(table)
    elif st.kind == "ALTER TABLE":
        _alter(target, st, table)
    elif ((st.kind == "INSERT" and _insert(target, st, table))
          or (st.kind == "UPDATE" and _keyed_update(target, direct, st, table))
          or (st.kind == "DELETE" and _keyed_delete(target, st, table))):
        return
    elif st.kind in {"INSERT", "UPDATE", "DELETE", "MERGE"}:
        with _scratch(target, st, table) as (con, scratch):
            _copy_in(con, target, table)
            _sql(con, st.text)
            rows = _fetch(con, f"SELECT * FROM {scratch}")
        target.replace_rows(table, rows)


def _lake_name(target: WriteTarget, name: str) -> str:
    """The lake's table that DuckDB would bind `name` to (identifiers match case-insensitively)."""
    tables = target.tables()
    if name in tables:
        return name
    matches = [t for t in tables if t.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else name


def _sql(con: duckdb.DuckDBPyConnection, text: str) -> None:
    try:
        con.execute(text)
    except duckdb.Error as exc:
        raise SqlError(one_line(exc)) from exc


def _fetch(con: duckdb.DuckDBPyConnection, text: str) -> pa.Table:
    try:
        return con.sql(text).to_arrow_table()
    except duckdb.Error as exc:
        raise SqlError(one_line(exc)) from exc


@contextmanager
def _scratch(target: WriteTarget, st: Statement, table: str | None) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """A cursor over the target's views using a fresh scratch catalog, and the scratch table's full name.

    `table`'s own view is renamed to `__udr_src` so that the statement's unqualified name binds to the
    scratch table (DuckDB searches temp objects first).
    """
    con = target.connect(st.text)
    catalog = f"__udr_w_{uuid.uuid4().hex}"
    try:
        _sql(con, f"ATTACH ':memory:' AS {catalog}")
        try:
            if table is not None and table in target.tables():
                _sql(con, f"ALTER VIEW temp.main.{quote_ident(table)} RENAME TO __udr_src")
            _sql(con, f"USE {catalog}")
            yield con, f"{catalog}.main.{quote_ident(st.table)}"
        finally:
            con.execute("USE memory")
            con.execute(f"DETACH {catalog}")
    finally:
        con.close()


def _copy_in(con: duckdb.DuckDBPyConnection, target: WriteTarget, table: str, *, empty: bool = False,
             keyed: bool = True) -> None:
    """Create the scratch copy of `table` (its rows unless `empty`), with its primary key if `keyed`."""
    relation = con.sql("SELECT * FROM temp.main.__udr_src")
    cols = [f"{quote_ident(n)} {t}" for n, t in zip(relation.columns, relation.types)]
    key = target.primary_key(table) if keyed else None
    if key:
        cols.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in key)})")
    _sql(con, f"CREATE TABLE {quote_ident(table)} ({', '.join(cols)})")
    if not empty:
        _sql(con, f"INSERT INTO {quote_ident(table)} SELECT * FROM temp.main.__udr_src")


def _create(target: WriteTarget, direct: DirectWrites, st: Statement, table: str) -> None:
    tree = st.tree
    exists = table in target.tables()
    if exists and tree.args.get("exists"):
        return
    if exists and not tree.args.get("replace"):
        raise UsageError(f"table {table!r} already exists; use CREATE OR REPLACE TABLE, or DROP TABLE first")
    _check_constraints(tree)
    query = tree.args.get("expression")
    if isinstance(query, exp.Query) and not isinstance(tree.this, exp.Schema):
        _create_as(target, direct, st, table, query, exists=exists)
        return
    with _scratch(target, st, None) as (con, scratch):
        _sql(con, st.text)
        rows = _fetch(con, f"SELECT * FROM {scratch}")
        found = con.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() WHERE database_name = ? "
            "AND constraint_type = 'PRIMARY KEY'", [scratch.split(".")[0]]).fetchall()
    key = list(found[0][0]) if found else None
    if exists:
        if _same_columns(target.schema(table), rows.schema) and query is not None and key in (
                None, target.primary_key(table)):
            # A keyed (or multiset) overwrite keeps the table and stores only the rows that changed.
            target.replace_rows(table, rows)
            return
        target.drop_table(table)
    target.create_table(table, rows.schema, primary_key=key)
    if rows.num_rows:
        target.append(table, rows)


def _same_columns(a: pa.Schema, b: pa.Schema) -> bool:
    return a.names == b.names and all(x.type.equals(y.type) for x, y in zip(a, b))


def _create_as(target: WriteTarget, direct: DirectWrites, st: Statement, table: str, tree: exp.Query, *,
               exists: bool) -> None:
    """`CREATE [OR REPLACE] TABLE t AS <query>`: the query's rows as they are, not first copied into a DuckDB
    table. A new table's chunks are written by DuckDB itself (`udr.query.chunkcopy`); an existing keyed table
    of the same columns gets only the rows that changed, found by DuckDB (`udr.query.sqldiff`)."""
    # Views for the tables the query reads: the statement also names the table it creates, which would
    # make every table of the lake get one.
    query = tree.sql(dialect="duckdb")
    with target.connect(query) as con:
        schema = _fetch(con, f"SELECT * FROM ({query}) LIMIT 0").schema
        if exists and _same_columns(target.schema(table), schema):
            key = target.primary_key(table)
            if key:
                _keyed_overwrite(target, direct, con, tree, table, key)
            else:
                # A multiset overwrite keeps the table and stores only the rows that changed.
                target.replace_rows(table, _fetch(con, query))
            return
        if exists:
            target.drop_table(table)
        target.create_table(table, schema)
        copied = copy_rows(con, query, target.schema(table), direct.temp_dir()) if copyable(schema) else None
        if isinstance(copied, list):
            direct.add_files(table, copied)
            return
        rows = _fetch(con, query) if copied is None else copied
    if rows.num_rows:
        target.append(table, rows)


def _keyed_overwrite(target: WriteTarget, direct: DirectWrites, con: duckdb.DuckDBPyConnection, query: exp.Query,
                     table: str, key: list[str]) -> None:
    """Make keyed `table` the rows of `query`, staging only the rows that change: found among the keys
    changed in the inputs since the same key-local query built `table` (`udr.query.incremental`), else by
    comparing every row."""
    schema = target.schema(table)
    keys = {name: target.primary_key(name) for name in target.tables()}
    plan = key_local(query, key, keys, schema.field(key[0]).type) if len(key) == 1 else None
    if plan is not None and table in plan.inputs:
        plan = None
    changed = direct.changed_keys(table, plan) if plan is not None else None
    if plan is not None and changed is not None:
        con.register(KEYS, changed)
        direct.add_positioned(con, table, _CHANGED, where=key_filter(_CHANGED, plan.key))
        query_text = restricted(query, plan.key, direct.filtered_inputs(con, plan))
        diff = overwrite_diff(con, query_text, _CHANGED, schema.names, key, schema, live_rows=None, table=table)
    else:
        direct.add_positioned(con, table, _TARGET)
        diff = overwrite_diff(con, query.sql(dialect="duckdb"), _TARGET, schema.names, key, schema,
                              live_rows=direct.live_rows(table), table=table)
    direct.stage_diff(table, diff, replaced=True)
    if plan is not None:
        direct.record_build(table, plan)


def _check_constraints(tree: exp.Expr) -> None:
    for constraint in tree.find_all(exp.ColumnConstraint):
        if not isinstance(constraint.args.get("kind"), exp.PrimaryKeyColumnConstraint):
            raise UsageError(f"CREATE TABLE: UDR keeps primary keys only, not {constraint.sql(dialect='duckdb')}; "
                             "drop the constraint (check values in the query that writes them)")
    schema = tree.this
    if isinstance(schema, exp.Schema):
        for item in schema.expressions:
            if not isinstance(item, (exp.ColumnDef, exp.PrimaryKey)):
                raise UsageError(f"CREATE TABLE: UDR keeps primary keys only, not {item.sql(dialect='duckdb')}")


def _insert(target: WriteTarget, st: Statement, table: str) -> bool:
    """Run a plain or `OR REPLACE` insert against an empty scratch table; False if it needs the full copy."""
    tree = st.tree
    alternative = str(tree.args.get("alternative") or "").upper()
    if tree.args.get("conflict") or alternative not in {"", "REPLACE"} or reads_table(tree, table, skip=tree.this):
        return False
    key = target.primary_key(table)
    if alternative == "REPLACE" and not key:
        return False  # DuckDB's error for a table without a key comes from running it for real
    with _scratch(target, st, table) as (con, scratch):
        # The key constraint catches duplicates within the statement, as DuckDB would.
        _copy_in(con, target, table, empty=True)
        _sql(con, st.text)
        rows = _fetch(con, f"SELECT * FROM {scratch}")
    if alternative == "REPLACE":
        target.upsert(table, rows)
    elif rows.num_rows:
        target.append(table, rows)
    return True


def _target_sql(tree: exp.Expr) -> tuple[str, str]:
    """The target as written (`t AS x`) and the name its columns are qualified with (`x`)."""
    target = tree.this
    return target.sql(dialect="duckdb"), quote_ident(target.alias_or_name)


def _with(tree: exp.Expr) -> str:
    """The statement's WITH clause, to lead the SELECT it is rewritten into ("" if none)."""
    clause = tree.args.get("with_")
    return f"{clause.sql(dialect='duckdb')} " if clause is not None else ""


def _where(tree: exp.Expr) -> str:
    clause = tree.args.get("where")
    return f" {clause.sql(dialect='duckdb')}" if clause is not None else ""


def _keyed_update(target: WriteTarget, direct: DirectWrites, st: Statement, table: str) -> bool:
    """`UPDATE` of a keyed table as one `SELECT` of the rows whose values change, with where each is stored
    (`udr.query.sqldiff`), then staged as their new versions; False if not rewritable (a key changes)."""
    key = target.primary_key(table)
    tree = st.tree
    if not key:
        return False
    assignments = {column_name(eq.this).lower(): eq.expression for eq in tree.expressions}
    if any(k.lower() in assignments for k in key):
        return False  # a key change is a delete plus an insert: run for real
    schema = target.schema(table)
    unknown = set(assignments) - {n.lower() for n in schema.names}
    if unknown:
        raise SqlError(f"Binder Error: table {table!r} has no column(s) {', '.join(sorted(unknown))}")
    rows = None
    plain = reads_table(tree, table, skip=tree.this)  # else the target is read only as `_TARGET`
    if tree.args.get("from_") is None:
        # The rows the WHERE keeps, filtered before deleted rows are dropped (DuckDB would filter every
        # stored row after the drop). The WHERE then also sees deleted rows: if it fails on one, the
        # statement runs again the other way, where it sees only live rows, as DuckDB's own UPDATE does.
        # The WHERE goes into the view's scan, unless it may read the statement's WITH (the view cannot).
        clause = tree.args.get("where")
        where = None
        if clause is not None and tree.args.get("with_") is None:
            where = (quote_ident(tree.this.alias_or_name), clause.this.sql(dialect="duckdb"))
        try:
            with direct.connect_positioned(st.text, table, _TARGET, deleted=_DELETED, plain=plain,
                                           where=where) as con:
                rows = _fetch(con, _update_query(con, tree, key, filtered_first=True, scanned=where is not None))
        except SqlError:
            rows = None
    if rows is None:
        with direct.connect_positioned(st.text, table, _TARGET, plain=plain) as con:
            rows = _fetch(con, _update_query(con, tree, key, filtered_first=False))
    direct.stage_diff(table, split(rows, schema, key, table=table), replaced=False)
    return True


def _update_query(con: duckdb.DuckDBPyConnection, tree: exp.Expr, key: list[str], *, filtered_first: bool,
                  scanned: bool = False) -> str:
    """The `changes_sql` query of an `UPDATE` of the positioned view `_TARGET` (`filtered_first`: it shows
    deleted rows, listed in `_DELETED`, and the statement has no FROM; `scanned`: it shows only the rows
    the WHERE keeps)."""
    relation = con.sql(f"SELECT * FROM {_TARGET}")
    names, kinds = relation.columns[:-2], relation.types[:-2]
    alias = quote_ident(tree.this.alias_or_name)
    assignments = {column_name(eq.this).lower(): eq.expression for eq in tree.expressions}
    cols, olds = [], []
    for index, (name, kind) in enumerate(zip(names, kinds)):
        value = assignments.get(name.lower())
        cols.append(f"{alias}.{quote_ident(name)}" if value is None
                    else f"CAST({value.sql(dialect='duckdb')} AS {kind}) AS {quote_ident(name)}")
        olds.append(f"{alias}.{quote_ident(name)} AS {old_name(index)}")
    places = f"true AS {IN}, {alias}.__frag AS {FRAG}, {alias}.__pos AS {POS}"
    select = f"SELECT {', '.join(cols)}, {places}, {', '.join(olds)} FROM "
    if filtered_first:
        kept = f"(SELECT * FROM {_TARGET} AS {alias}{'' if scanned else _where(tree)}) AS {alias}"
        query = f"{select}{kept} ANTI JOIN {_DELETED} ON {alias}.__frag = __dfrag AND {alias}.__pos = __dpos"
    else:
        sources = [f"{_TARGET} AS {alias}"]
        from_ = tree.args.get("from_")
        if from_ is not None:
            sources.append(from_.this.sql(dialect="duckdb"))
            sources.extend(j.sql(dialect="duckdb").removeprefix("JOIN ") for j in from_.args.get("joins") or [])
        query = f"{select}{', '.join(sources)}{_where(tree)}"
        if from_ is not None:
            # UPDATE ... FROM with several matching source rows updates a row once, with one of them.
            keys = ", ".join(f"{alias}.{quote_ident(k)}" for k in key)
            query += f" QUALIFY row_number() OVER (PARTITION BY {keys}) = 1"
    return _with(tree) + changes_sql(list(names), key, query)


def _keyed_delete(target: WriteTarget, st: Statement, table: str) -> bool:
    """`DELETE` from a keyed table as a `SELECT` of the doomed keys, then a delete by keys."""
    key = target.primary_key(table)
    tree = st.tree
    if not key:
        return False
    with target.connect(st.text) as con:
        written, alias = _target_sql(tree)
        sources = [written] + [u.sql(dialect="duckdb") for u in tree.args.get("using") or []]
        keys = ", ".join(f"{alias}.{quote_ident(k)}" for k in key)
        query = f"{_with(tree)}SELECT DISTINCT {keys} FROM {', '.join(sources)}{_where(tree)}"
        rows = _fetch(con, query)
    if rows.num_rows:
        target.delete(table, keys=rows)
    return True


def _arrow_type(con: duckdb.DuckDBPyConnection, kind: exp.Expr) -> pa.DataType:
    return _fetch(con, f"SELECT CAST(NULL AS {kind.sql(dialect='duckdb')}) AS x").schema.field(0).type


def _column(target: WriteTarget, table: str, name: str) -> str:
    """The table's column DuckDB would bind `name` to."""
    names = target.schema(table).names
    matches = [n for n in names if n == name] or [n for n in names if n.lower() == name.lower()]
    return matches[0] if matches else name


def _alter(target: WriteTarget, st: Statement, table: str) -> None:
    action = st.tree.args["actions"][0]
    if isinstance(action, exp.ColumnDef):
        name = action.name
        if action.args.get("exists") and name.lower() in {n.lower() for n in target.schema(table).names}:
            return
        default: object = None
        with target.connect() as con:
            kind = _arrow_type(con, action.args["kind"])
            for constraint in action.args.get("constraints") or []:
                value = constraint.args.get("kind")
                if not isinstance(value, exp.DefaultColumnConstraint):
                    raise UsageError(f"ALTER TABLE ADD COLUMN: UDR keeps no {constraint.sql(dialect='duckdb')} "
                                     "constraint; add the plain column (a DEFAULT fills existing rows)")
                cast = f"CAST({value.this.sql(dialect='duckdb')} AS {action.args['kind'].sql(dialect='duckdb')})"
                default = _fetch(con, f"SELECT {cast} AS x").column(0)[0].as_py()
        target.add_column(table, name, kind, default=default)
    elif isinstance(action, exp.Drop):
        name = _column(target, table, column_name(action.args["tables"][0]))
        if action.args.get("exists") and name not in target.schema(table).names:
            return
        target.drop_column(table, name)
    elif isinstance(action, exp.RenameColumn):
        target.rename_column(table, _column(target, table, column_name(action.this)), column_name(action.args["to"]))
    elif isinstance(action, exp.AlterColumn):
        if action.args.get("using") or action.args.get("dtype") is None:
            raise UsageError("ALTER COLUMN: UDR changes a column's type (widening, no USING) and nothing else")
        with target.connect() as con:
            kind = _arrow_type(con, action.args["dtype"])
        target.alter_column_type(table, _column(target, table, action.name), kind)
    else:
        primary = action.expressions[0]
        target.set_primary_key(table, [_column(target, table, column_name(c)) for c in primary.expressions])


