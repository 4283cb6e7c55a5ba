"""`udr verify`, `rebuild`, `gc`, `stats`, `compact` and `demo`: check, repair and tidy a lake, and tour one."""

from __future__ import annotations

from pathlib import Path

import click
from rich import filesize
from rich.table import Table

from udr.cli.common import console, open_lake, progress
from udr.cli.output import say


@click.command()
@click.pass_context
def verify(ctx: click.Context) -> None:
    """Check every commit, chunk and blob against its hash; exit 1 if anything is wrong."""
    out = console()
    with open_lake(ctx.obj) as db, progress(out, "verifying") as update:
        report = db.verify(progress=update)
    if report.ok:
        expired = f"; {report.expired:,} expired or erased (not damage)" if report.expired else ""
        say(out, f"ok: {report.commits_checked:,} commits and {report.chunks_checked:,} chunks verified{expired}")
        return
    for problem in report.problems:
        say(out, f"problem: {problem}")
    count = len(report.problems)
    click.echo(f"error: verify found {count} problem{'s' if count != 1 else ''} in {ctx.obj}", err=True)
    ctx.exit(1)


@click.command()
@click.pass_obj
def rebuild(lake: Path) -> None:
    """Throw away derived state (caches) and rebuild it by replaying the log."""
    out = console()
    with open_lake(lake) as db, progress(out, "rebuilding") as update:
        replayed = db.rebuild(progress=update)
    say(out, f"rebuilt derived state from {replayed:,} commits")


@click.command()
@click.pass_obj
def gc(lake: Path) -> None:
    """Delete chunk files that no commit references; print the bytes freed."""
    out = console()
    with open_lake(lake) as db, progress(out, "collecting garbage") as update:
        freed = db.gc(progress=(lambda n: update(n + 1, None)) if update is not None else None)
    say(out, f"freed {freed:,} bytes ({filesize.decimal(freed)})")


@click.command()
@click.pass_obj
def stats(lake: Path) -> None:
    """Show commits, chunks, and logical versus stored bytes (deduplication)."""
    out = console()
    with open_lake(lake) as db:
        figures = db.stats()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_row("commits", f"{figures.commits:,}")
    grid.add_row("chunks", f"{figures.chunks:,}")
    grid.add_row("logical bytes", f"{figures.logical_bytes:,} ({filesize.decimal(figures.logical_bytes)})")
    grid.add_row("stored bytes", f"{figures.stored_bytes:,} ({filesize.decimal(figures.stored_bytes)})")
    grid.add_row("dedup ratio", f"{figures.dedup_ratio:.2f}x")
    out.print(grid)


@click.command()
@click.argument("path", required=False)
def demo(path: str | None) -> None:
    """Tour transactions, failure, SQL, time travel, branches and change streams on a new lake (PATH, a URL such
    as s3://BUCKET/PREFIX, or a temp directory)."""
    from udr.cli.demo import run_demo

    run_demo(path if path is None or "://" in path else Path(path), console())


@click.command()
@click.argument("table")
@click.option("--branch", default="main", show_default=True, help="Branch to commit to.")
@click.pass_obj
def compact(lake: Path, table: str, branch: str) -> None:
    """Rewrite TABLE's live rows into fresh chunks, in a commit that changes no row and no query answer."""
    with open_lake(lake) as db:
        commit = db.compact(table, branch=branch)
        rows = db.row_count(table, branch)
    say(console(), f"compacted {table} ({rows:,} rows) in commit {commit.short_id} on {branch}; no row changed")
