"""`udr sql`: run a SQL query over the tables of a version and print or write its rows."""

from __future__ import annotations

from pathlib import Path

import click

from udr.cli.common import open_lake, parse_ref
from udr.cli.rows import RowOutput, emit_rows, row_options


@click.command()
@click.argument("query")
@click.option("--branch", default="main", show_default=True, help="Branch whose tables the query sees.")
@click.option("--at", metavar="REF|TIME",
              help='A version: tag, commit id, "main~3", or an ISO time ("2024-05-01T12:00", local unless offset).')
@row_options
@click.pass_obj
def sql(lake: Path, query: str, branch: str, at: str | None, rows: RowOutput) -> None:
    """Run a SQL QUERY (DuckDB dialect); "table@REF" in double quotes names a table at another version."""
    if not query.strip():
        raise click.UsageError('give a SQL query, e.g. udr sql "SELECT * FROM orders"')
    version = parse_ref(at)
    with open_lake(lake) as db:
        # `query`, not the lazy `sql` relation: every DuckDB error, including one raised while rows are
        # produced (a failed cast), arrives here as `udr.SqlError`.
        result = db.query(query, branch, version)
    emit_rows(result, rows)
