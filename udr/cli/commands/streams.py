"""`udr tail` and `udr groups`: follow row changes as they are committed, and show consumer groups."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

import udr
from udr.cli.common import console, open_lake
from udr.cli.output import json_scalar, json_value, say, when
from udr.cli.rows import RowOutput, emit_rows


@click.command()
@click.argument("tables", nargs=-1)
@click.option("--group", help="Consumer group: resume after its last ack, and ack each batch once printed.")
@click.option("--member", help="This tail's member name in --group: print only its share of the group's partitions.")
@click.option("--from", "start", metavar="REF", default="latest", show_default=True,
              help="Print changes after this commit ('earliest': all history); a group that acked resumes instead.")
@click.option("--branch", default="main", show_default=True, help="Branch to follow.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="A table per commit and table, or one JSON object per changed row.")
@click.pass_obj
def tail(lake: Path, tables: tuple[str, ...], group: str | None, member: str | None, start: str, branch: str,
         fmt: str) -> None:
    """Print row changes to TABLES (default: every table) as they are committed, until Ctrl-C."""
    out = console()
    with open_lake(lake) as db:
        sub = db.subscribe(list(tables) or None, group=group, member=member, start=start, branch=branch)
        try:
            asyncio.run(_tail(sub, fmt, out))
        except KeyboardInterrupt:
            return  # Ctrl-C is how tail ends: exit 0


async def _tail(sub: udr.Subscription, fmt: str, out: Console) -> None:
    async with sub:
        async for batch in sub:
            if fmt == "json":
                for row in batch.changes.to_pylist():
                    line = {"table": batch.table, **row}
                    out.file.write(json.dumps(json_value(line), default=json_scalar) + "\n")
            else:
                commit = batch.commit
                part = f", part {batch.part + 1} of {batch.parts}" if batch.parts > 1 else ""
                say(out, f"{commit.short_id} seq {commit.seq} {when(commit.time)} {commit.author}: "
                          f"{batch.table} ({batch.changes.num_rows:,} change rows{part}) {commit.message}")
                emit_rows(batch.changes, RowOutput("table", None, None))
            out.file.flush()
            await sub.ack(batch)


@click.group(invoke_without_command=True)
@click.pass_context
def groups(ctx: click.Context) -> None:
    """Show consumer groups: position, lag behind their branch, last ack, whether one is consuming, and
    for a group with several members its members and partitions. Subcommands move or delete a group."""
    if ctx.invoked_subcommand is not None:
        return
    out = console()
    with open_lake(ctx.obj) as db:
        infos = db.groups()
    if not infos:
        say(out, "no consumer groups")
        return
    grid = Table("group", "branch", "position", "lag commits", "lag rows", "last ack", "active", "members")
    for info in infos:
        members = ", ".join(f"{m.name}{'' if m.active else ' (gone)'}" for m in info.members)
        grid.add_row(Text(info.name), Text(info.branch), info.position[:10], f"{info.lag_commits:,}",
                     f"{info.lag_rows:,}", when(info.last_ack), "yes" if info.active else "no", Text(members or "-"))
    out.print(grid)
    parts = Table("group", "partition", "member", "position", "seq", "last ack")
    for info in infos:
        for p in info.partitions:
            parts.add_row(Text(info.name), str(p.number), Text(p.member or "-"), p.position[:10] or "start",
                          str(p.seq), when(p.last_ack))
    if parts.row_count:
        out.print(parts)


@groups.command("reset")
@click.argument("name")
@click.argument("ref")
@click.option("--branch", default="main", show_default=True, help="Branch the group consumes from now on.")
@click.pass_obj
def reset_group(lake: Path, name: str, ref: str, branch: str) -> None:
    """Make group NAME resume after commit REF (every partition of a group with members)."""
    with open_lake(lake) as db:
        db.reset_group(name, ref, branch=branch)
    say(console(), f"group {name} resumes after {ref} on {branch}")


@groups.command("delete")
@click.argument("name")
@click.pass_obj
def delete_group(lake: Path, name: str) -> None:
    """Forget group NAME: its positions, leases and members."""
    with open_lake(lake) as db:
        db.delete_group(name)
    say(console(), f"deleted group {name}")
