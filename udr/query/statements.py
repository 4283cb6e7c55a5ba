"""Classifying SQL statements: which ones write, which table they write, and whether UDR can run them.

DuckDB splits a script and names each statement's type (its own parser, so the split and the type match
what DuckDB would run); sqlglot, a SQL parser with a DuckDB dialect, gives the syntax tree that names the
target table and that `udr.query.dml` rewrites. Pure functions, safe from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

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
@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a script: DuckDB's type for it and its text."""

    type: duckdb.StatementType
    query: str


def split_statements(sql: str) -> list[Statement]:
    """The statements of `sql`, as DuckDB splits and types them.

    Raises:
        SqlError: DuckDB cannot parse the script.
    """
    try:
        found = list(duckdb.extract_statements(sql))
        if all(statement.query.strip() for statement in found):
            return [Statement(statement.type, statement.query) for statement in found]
        # DuckDB 1.5 expands some statements (ALTER TABLE ... ADD COLUMN ... DEFAULT) into a transaction of
        # statements without text: split at the script's semicolons and type each piece on its own.
        return [typed for piece in _pieces(sql) if (typed := _typed(piece)) is not None]
    except duckdb.Error as exc:
        raise SqlError(" ".join(str(exc).split())) from exc


def _pieces(sql: str) -> list[str]:
    """`sql` cut at its statement-separating semicolons (not those inside strings, identifiers or comments)."""
    cuts = [position for position, kind in duckdb.tokenize(sql)
            if kind == duckdb.token_type.operator and sql[position] == ";"]
    bounds = zip([0, *(c + 1 for c in cuts)], [*cuts, len(sql)])
    return [piece for start, end in bounds if (piece := sql[start:end]).strip()]


def _typed(piece: str) -> Statement | None:
    """`piece` typed as the first statement DuckDB makes of it besides the transaction around an expansion
    (None: it holds no statement, only a comment)."""
    found = list(duckdb.extract_statements(piece))
    if not found:
        return None
    typed = next((s.type for s in found if s.type != duckdb.StatementType.TRANSACTION), found[0].type)
    return Statement(typed, piece)


def kind_name(statement: Statement) -> str:
    """The statement's kind as DuckDB names it, with spaces for underscores (e.g. "SELECT", "VARIABLE SET")."""
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
