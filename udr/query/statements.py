"""Classifying SQL statements: which ones write, which table they write, and whether UDR can run them.

DuckDB splits a script and names each statement's type (its own parser, so the split and the type match
what DuckDB would run); sqlglot, a SQL parser with a DuckDB dialect, gives the syntax tree that names the
target table and that `udr.query.dml` rewrites. Pure functions, safe from any thread.
"""

from __future__ import annotations

import duckdb

from udr.errors import SqlError, UsageError

# DuckDB statement types that only read: `db.sql` runs them, `execute` refuses them.
READS = frozenset({
    duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN, duckdb.StatementType.PRAGMA,
    duckdb.StatementType.CALL, duckdb.StatementType.RELATION,
})
WRITES = {
    duckdb.StatementType.INSERT: "INSERT",
    duckdb.StatementType.UPDATE: "UPDATE",
    duckdb.StatementType.DELETE: "DELETE",
    duckdb.StatementType.MERGE_INTO: "MERGE",
    duckdb.StatementType.CREATE: "CREATE",
    duckdb.StatementType.DROP: "DROP",
    duckdb.StatementType.ALTER: "ALTER",
}
def split_statements(sql: str) -> list[duckdb.Statement]:
    try:
        return list(duckdb.extract_statements(sql))
    except duckdb.Error as exc:
        raise SqlError(" ".join(str(exc).split())) from exc


def kind_name(statement: duckdb.Statement) -> str:
    return str(statement.type).rpartition(".")[2].replace("_", " ")


def writing_kind(sql: str) -> str | None:
    """The kind of the first statement of `sql` that is not a read (None if all read or it does not parse).

    A script that does not parse gets None: running it reports the syntax error.
    """
    try:
        statements = split_statements(sql)
    except SqlError:
        return None
    for statement in statements:
        if statement.type == duckdb.StatementType.COPY and not _copy_from(statement.query):
            continue  # COPY ... TO writes a file from the lake's tables: a read of the lake
        if statement.type not in READS:
            return WRITES.get(statement.type) or kind_name(statement)
    return None


def _copy_from(text: str) -> bool:
    import sqlglot  # only for COPY: importing it costs every process ~16k GC-tracked objects (W7 p99 x20)
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(text, dialect="duckdb")
    except sqlglot.errors.ParseError:
        return True
    return isinstance(tree, exp.Copy) and bool(tree.args.get("kind"))


def check_not_writing(sql: str) -> None:
    """Raise `UsageError` if `sql` writes (pointing to `execute`): reading APIs never silently ignore a write.

    Raises:
        UsageError: `sql` holds a writing statement.
    """
    kind = writing_kind(sql)
    if kind is not None:
        raise UsageError(f"{kind} changes the lake; run it with db.execute(sql) (or tx.execute, or `udr sql`), "
                         "which commits it; db.sql and db.query only read")
