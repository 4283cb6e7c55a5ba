"""`udr reflog` and `udr audit`: who moved which ref when and why, and a verified report of a window of
the log."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from udr.cli.common import console, open_lake, parse_ref, sink
from udr.cli.output import say, when
from udr.cli.report import FORMATS, render


@click.command()
@click.argument("name", required=False)
@click.option("-n", "limit", type=click.IntRange(min=1), help="At most this many moves.")
@click.pass_obj
def reflog(lake: Path, name: str | None, limit: int | None) -> None:
    """Show every recorded move of branch or tag NAME (default: of every ref), newest first."""
    out = console()
    with open_lake(lake) as db:
        moves = db.reflog(name)[:limit]
    if not moves:
        say(out, "no ref move recorded" + (f" for {name}" if name else ""))
        return
    grid = Table("time", "ref", "action", "from", "to", "who", "why")
    for move in moves:
        grid.add_row(when(move.time), Text(f"{move.kind} {move.name}"), move.action,
                     (move.old or "-")[:10], (move.new or "-")[:10], Text(move.author), Text(move.message))
    out.print(grid)


@click.command()
@click.option("--since", metavar="REF|TIME", help="Start after this commit, or at this time (default: the start).")
@click.option("--until", metavar="REF|TIME", help="End at this commit or time, included (default: now).")
@click.option("--table", help="List only the commits that changed this table (all are verified).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="md", show_default=True,
              help="Markdown, JSON or a self-contained HTML page.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout.")
@click.pass_context
def audit(ctx: click.Context, since: str | None, until: str | None, table: str | None, fmt: str,
          output: Path | None) -> None:
    """Report the commits (author, message, metadata, rows per table) and ref moves of a window of the log,
    verify that stretch of the hash chain (ids, parent links, chunks), and end with a one-line verdict.
    Exits 1 when the verification fails."""
    start, end = parse_ref(since, "--since"), parse_ref(until, "--until")
    with open_lake(ctx.obj) as db:
        report = db.audit(start, end, table=table)
    with sink(output) as fh:
        fh.write(render(report, fmt).encode())
    if output is not None:
        say(console(), report.verdict)
    if not report.ok:
        click.echo(f"error: audit found {len(report.verification.problems)} problem(s) in {ctx.obj}", err=True)
        ctx.exit(1)
