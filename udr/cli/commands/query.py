"""`udr sql`: run a SQL query over the tables of a version and print or write its rows."""

from __future__ import annotations

from pathlib import Path

import click

import udr
from udr.cli.common import console, open_lake, parse_ref
from udr.cli.output import say
from udr.cli.rows import RowOutput, emit_rows, row_options


@click.command()
@click.argument("query")
@click.option("--branch", default="main", show_default=True, help="Branch whose tables the query sees.")
@click.option("--at", metavar="REF|TIME",
              help='A version: tag, commit id, "main~3", or an ISO time ("2024-05-01T12:00", local unless offset).')
@click.option("-m", "--message", default="", help="Commit message for writing statements.")
@row_options
@click.pass_obj
def sql(lake: Path, query: str, branch: str, at: str | None, message: str, rows: RowOutput) -> None:
    """Run a SQL QUERY (DuckDB dialect); "table@REF" in double quotes names a table at another version.

    Writing statements (CREATE TABLE, INSERT, UPDATE, DELETE, MERGE, ALTER TABLE, DROP TABLE) run in one
    commit on --branch."""
    if not query.strip():
        raise click.UsageError('give a SQL query, e.g. udr sql "SELECT * FROM orders"')
    version = parse_ref(at)
    with open_lake(lake) as db:
        if db.is_write(query):
            if at is not None:
                raise click.UsageError("--at reads an older version; writing statements commit to --branch")
            _execute(db, query, branch, message)
            return
        # `query`, not the lazy `sql` relation: every DuckDB error, including one raised while rows are
        # produced (a failed cast), arrives here as `udr.SqlError`.
        result = db.query(query, branch, version)
    emit_rows(result, rows)


def _execute(db: udr.Lake, script: str, branch: str, message: str) -> None:
    """Run writing statements in one commit and say what changed."""
    out = console()
    before = db.commit_info(branch).id if branch in db.branches() else None
    commit = db.execute(script, branch, message=message or None)
    if commit.id == before:
        say(out, f"no row changed, so no commit was made ({branch} stays at {commit.short_id})")
        return
    for table, change in sorted(commit.tables.items()):
        say(out, f"{table}: {change.inserted:,} inserted, {change.updated:,} updated, {change.deleted:,} deleted")
    say(out, f"commit {commit.short_id} on {commit.branch}")
