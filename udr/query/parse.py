"""Parsing writing statements for `execute` with sqlglot (a SQL parser with a DuckDB dialect): the syntax
tree that names a statement's target table and the parts `udr.query.dml` rewrites.

Imported only when a writing statement runs: reads never load sqlglot (see `statements._copy_from`).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from udr.errors import UsageError
from udr.query.statements import READS, WRITES, kind_name, split_statements

# ALTER TABLE actions `execute` supports (sqlglot node types).
_ALTER_ACTIONS = (exp.ColumnDef, exp.Drop, exp.RenameColumn, exp.AlterColumn, exp.AddConstraint)


@dataclass(frozen=True, slots=True)
class Statement:
    """One writing statement: its kind ("INSERT", "CREATE TABLE", ...), its text, target table and tree."""

    kind: str
    text: str
    table: str
    tree: exp.Expr


def parse_script(sql: str) -> list[Statement]:
    """Every statement of `sql`, checked to be one UDR can run, before anything runs.

    Raises:
        SqlError: the script does not parse.
        UsageError: a statement UDR cannot run (named by its kind), or one that only reads.
    """
    out = []
    for statement in split_statements(sql):
        kind = WRITES.get(statement.type)
        if kind is None:
            name = kind_name(statement)
            if statement.type in READS:
                raise UsageError(f"{name} writes nothing; run it with db.query() or db.sql() (udr sql), not execute")
            raise UsageError(f"{name} statements cannot run in a UDR lake: execute runs CREATE TABLE, DROP TABLE, "
                             "INSERT, UPDATE, DELETE, MERGE and ALTER TABLE")
        text = statement.query.strip().rstrip(";")
        try:
            tree = sqlglot.parse_one(text, dialect="duckdb")
        except sqlglot.errors.ParseError as exc:
            raise UsageError(f"UDR cannot analyse this {kind} statement ({' '.join(str(exc).split())[:200]}); "
                             "write it more plainly") from exc
        out.append(_checked(kind, text, tree))
    return out


def _checked(kind: str, text: str, tree: exp.Expr) -> Statement:
    if isinstance(tree, (exp.Create, exp.Drop, exp.Alter)):
        object_kind = str(tree.args.get("kind") or "").upper()
        kind = f"{kind} {object_kind}".strip()
        if object_kind != "TABLE":
            raise UsageError(f"{kind} statements cannot run in a UDR lake (it has tables only); "
                             "execute runs CREATE TABLE, DROP TABLE and ALTER TABLE")
        if isinstance(tree, exp.Create) and (tree.args.get("properties") or tree.args.get("clone")):
            props = tree.args.get("properties")
            if props is not None and any(isinstance(p, exp.TemporaryProperty) for p in props.expressions):
                raise UsageError("CREATE TEMP TABLE cannot run in a UDR lake; use a CTE or db.connect()")
        if isinstance(tree, exp.Alter):
            actions = tree.args.get("actions") or []
            bad = [a for a in actions if not isinstance(a, _ALTER_ACTIONS)
                   or (isinstance(a, exp.Drop) and str(a.args.get("kind") or "").upper() != "COLUMN")
                   or (isinstance(a, exp.AddConstraint)
                       and not all(isinstance(c, exp.PrimaryKey) for c in a.expressions))]
            if bad or len(actions) != 1:
                raise UsageError("this ALTER TABLE cannot run in a UDR lake: it runs ADD COLUMN, DROP COLUMN, "
                                 "RENAME COLUMN, ALTER COLUMN ... TYPE and ADD PRIMARY KEY, one per statement")
    if isinstance(tree, exp.Drop):
        tables = tree.args.get("tables") or []
        if len(tables) != 1:
            raise UsageError("DROP TABLE names one table per statement in UDR")
        target = tables[0]
    else:
        target = tree.this
    while isinstance(target, exp.Schema):  # CREATE TABLE t (...): the table sits inside the column list
        target = target.this
    if not isinstance(target, exp.Table) or target.args.get("db") or target.args.get("catalog"):
        raise UsageError(f"{kind}: UDR writes lake tables named plainly (no schema or catalog prefix); "
                         f"got {target.sql(dialect='duckdb') if isinstance(target, exp.Expr) else target!r}")
    if isinstance(tree, (exp.Insert, exp.Update, exp.Delete)) and tree.args.get("returning"):
        raise UsageError(f"{kind} ... RETURNING cannot run in execute (it returns a commit); query the rows after")
    return Statement(kind=kind, text=text, table=target.name, tree=tree)


def column_name(node: exp.Expr) -> str:
    """The plain name of a column or identifier node."""
    return node.name if isinstance(node, (exp.Column, exp.Identifier)) else node.sql(dialect="duckdb")


def reads_table(tree: exp.Expr, table: str, *, skip: exp.Expr) -> bool:
    """Whether `tree` reads `table` anywhere other than at node `skip` (the statement's target)."""
    lowered = table.lower()
    return any(t is not skip and t.name.lower() == lowered for t in tree.find_all(exp.Table))
