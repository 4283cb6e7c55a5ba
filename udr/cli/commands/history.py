"""`udr log`, `show`, `history`, `blame`, `changes` and `diff`: read the commit log, the versions of a row, who
set each cell, and the row changes of a range of commits or between two versions."""

from __future__ import annotations

from pathlib import Path

import click
import pyarrow as pa
import pyarrow.compute as pc
from click.core import ParameterSource
from rich.table import Table
from rich.text import Text

import udr
from udr.cli.common import console, open_lake, parse_ref
from udr.cli.graph import log_graph
from udr.cli.output import (
    change_counts,
    changes_table,
    commit_times,
    say,
    summary_table,
    versions_table,
    when,
)
from udr.cli.rows import RowOutput, emit_rows, row_options


@click.command()
@click.option("--branch", default="main", show_default=True, help="Branch whose history to show.")
@click.option("--table", help="Only commits that changed this table.")
@click.option("-n", "limit", type=click.IntRange(min=1), help="At most this many commits.")
@click.option("--author", help="Only commits by this author.")
@click.option("--since", metavar="REF|TIME", help="Only commits after this one, or at or after this time.")
@click.option("--until", metavar="REF|TIME", help="Only commits up to this one, or at or before this time.")
@click.option("--grep", help="Only commits whose message contains this text.")
@click.option("--meta", "meta", multiple=True, metavar="KEY=VALUE",
              help="Only commits with this metadata (repeatable).")
@click.option("--graph", is_flag=True,
              help="Draw the commits of every branch (or only --branch) as lanes with merges, like git log --graph.")
@click.pass_context
def log(ctx: click.Context, branch: str, table: str | None, limit: int | None, author: str | None,
        since: str | None, until: str | None, grep: str | None, meta: tuple[str, ...], graph: bool) -> None:
    """Show the commits of a branch, newest first, or (--graph) of every branch with their merges."""
    out = console()
    filters = {"table": table, "author": author, "since": since, "until": until, "grep": grep, "meta": meta or None}
    if graph:
        given = [f"--{name}" for name, value in filters.items() if value is not None]
        if given:
            raise click.UsageError(f"--graph draws whole commits; it does not combine with {', '.join(given)}")
        only = branch if ctx.get_parameter_source("branch") is not ParameterSource.DEFAULT else None
        with open_lake(ctx.obj) as db:
            for line in log_graph(db, only, limit):
                say(out, line)
        return
    with open_lake(ctx.obj) as db:
        commits = db.log(branch, table=table, limit=limit, author=author, since=parse_ref(since, "--since"),
                         until=parse_ref(until, "--until"), grep=grep, metadata=_pairs(meta, "--meta"))
    if not commits:
        say(out, f"no commit on {branch} matches " + ", ".join(f"{k} {v!r}" for k, v in filters.items() if v))
        return
    grid = Table("commit", "time", "author", "message", "changes (+ins ~upd -del)")
    for commit in commits:
        changes = "\n".join(f"{name} {change_counts(c)}" for name, c in sorted(commit.tables.items()))
        grid.add_row(commit.short_id, when(commit.time), Text(commit.author), Text(commit.message), Text(changes))
    out.print(grid)


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    """`KEY=VALUE` options as a dict (the value may be empty)."""
    out: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        out[key.strip()] = value
    return out


@click.command()
@click.argument("ref")
@click.pass_obj
def show(lake: Path, ref: str) -> None:
    """Show one commit: id, parents, author, message, metadata and rows changed per table."""
    out = console()
    with open_lake(lake) as db:
        commit = db.commit_info(ref)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("commit", commit.id)
    head.add_row("seq", str(commit.seq))
    head.add_row("branch", Text(commit.branch))
    head.add_row("time", when(commit.time))
    head.add_row("author", Text(commit.author))
    head.add_row("message", Text(commit.message))
    head.add_row("parents", "\n".join(commit.parents) or "(none: the first commit)")
    for name, value in sorted(commit.metadata.items()):
        head.add_row("metadata", Text(f"{name} = {value}"))
    out.print(head)
    if not commit.tables:
        say(out, "no table changes")
        return
    grid = Table("table", "inserted", "updated", "deleted")
    for name, change in sorted(commit.tables.items()):
        grid.add_row(Text(name), f"{change.inserted:,}", f"{change.updated:,}", f"{change.deleted:,}")
    out.print(grid)


@click.command()
@click.argument("table")
@click.option("--key", "keys", multiple=True, required=True, metavar="COL=VALUE",
              help="A primary key column and its value; repeat it for each column of a composite key.")
@click.option("--branch", default="main", show_default=True, help="Branch whose history to read.")
@row_options
@click.pass_obj
def history(lake: Path, table: str, keys: tuple[str, ...], branch: str, rows: RowOutput) -> None:
    """Show every version of one row of TABLE, oldest first, with the commit, time, author and message."""
    texts = key_texts(keys)
    with open_lake(lake) as db:
        key = typed_key(db, table, branch, texts)
        versions = db.history(table, key, branch)
    if not versions.num_rows and rows.fmt == "table":
        described = ", ".join(f"{name}={value}" for name, value in key.items())
        say(console(), f"no version of the row {described} in {table} on {branch}")
        return
    emit_rows(versions, rows, shown=versions_table)


@click.command()
@click.argument("table")
@click.option("--key", "keys", multiple=True, metavar="COL=VALUE",
              help="Only the row with this primary key; repeat it for each column of a composite key.")
@click.option("--branch", default="main", show_default=True, help="Branch whose current rows to blame.")
@row_options
@click.pass_obj
def blame(lake: Path, table: str, keys: tuple[str, ...], branch: str, rows: RowOutput) -> None:
    """Show, for each current row of keyed TABLE (or one --key), the commit, author and time that last set each
    cell: columns COL__commit, COL__author and COL__time per column COL."""
    with open_lake(lake) as db:
        key = typed_key(db, table, branch, key_texts(keys)) if keys else None
        found = db.blame(table, key, branch)
    emit_rows(found, rows, shown=_blame_shown)


def _blame_shown(found: pa.Table) -> pa.Table:
    """Blame as the table view shows it: commit ids cut to 10 digits, times as `when`."""
    for index, name in enumerate(found.column_names):
        if name.endswith("__commit"):
            found = found.set_column(index, name, pc.utf8_slice_codeunits(found.column(index).cast(pa.string()), 0, 10))
        elif name.endswith("__time"):
            found = found.set_column(index, name, commit_times(found.column(index)))
    return found


def key_texts(keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """Split each `--key COL=VALUE` (the value stays text until the column's type is known)."""
    pairs: list[tuple[str, str]] = []
    for item in keys:
        name, equals, text = item.partition("=")
        if not equals or not name.strip():
            raise click.BadParameter(f"{item!r} is not COL=VALUE", param_hint="--key")
        if name.strip() in (seen for seen, _ in pairs):
            raise click.BadParameter(f"column {name.strip()!r} is given twice", param_hint="--key")
        pairs.append((name.strip(), text))
    return pairs


def typed_key(db: udr.Lake, table: str, branch: str, texts: list[tuple[str, str]]) -> dict[str, object]:
    """Cast each `--key` value to its column's type; the columns must be the table's whole primary key."""
    schema = db.schema(table, branch)
    primary = db.primary_key(table, branch)
    if primary is not None and sorted(name for name, _ in texts) != sorted(primary):
        raise udr.UsageError(f"table {table!r} is keyed by ({', '.join(primary)}); "
                             "give one --key COL=VALUE for each of those columns")
    key: dict[str, object] = {}
    for name, text in texts:
        if name not in schema.names:
            raise udr.UsageError(f"table {table!r} has no column {name!r}")
        column_type = schema.field(name).type
        try:
            key[name] = pa.array([text]).cast(column_type)[0].as_py()
        except pa.ArrowException as exc:
            raise udr.UsageError(f"--key {name}={text}: cannot read {text!r} as {column_type} ({exc})") from exc
    return key


@click.command()
@click.argument("table")
@click.option("--since", metavar="REF|TIME", help="Start after this commit (default: the first commit).")
@click.option("--until", metavar="REF|TIME", help="End at this commit, included (default: the head of --branch).")
@click.option("--branch", default="main", show_default=True, help="Branch whose first-parent history is read.")
@row_options
@click.pass_obj
def changes(lake: Path, table: str, since: str | None, until: str | None, branch: str, rows: RowOutput) -> None:
    """Print every row change to TABLE (insert, update_before/update_after, delete) in commit order.

    The table view cuts commit ids to 10 digits; csv, json and parquet keep them whole.
    """
    start, end = parse_ref(since, "--since"), parse_ref(until, "--until")
    with open_lake(lake) as db:
        # Only the rows printed are computed: a page of a 3M-row commit reads one fragment, not the commit.
        found = db.changes(table, since=start, until=end, branch=branch, limit=rows.fetch())
    emit_rows(found, rows, shown=changes_table, counted=False)


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--table", help="Show this table's changed rows instead of counts per table.")
@row_options
@click.pass_obj
def diff(lake: Path, a: str, b: str, table: str | None, rows: RowOutput) -> None:
    """Compare versions A and B (branches, tags, commit ids, REF~N, times): rows changed from A to B."""
    old, new = parse_ref(a, "A"), parse_ref(b, "B")
    with open_lake(lake) as db:
        if table is not None:
            emit_rows(db.diff(table, old, new), rows, shown=changes_table)
            return
        summary = db.diff_summary(old, new)
    if not summary and rows.fmt == "table":
        say(console(), f"no row differs between {a} and {b}")
        return
    emit_rows(summary_table(summary), rows)
