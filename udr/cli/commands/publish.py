"""`udr publish iceberg` and `udr unpublish iceberg`: make tables readable by other engines in place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import click
from rich import filesize

import udr
from udr.cli.common import console, open_lake
from udr.cli.output import say


@click.group()
def publish() -> None:
    """Make tables readable by other engines, in place."""


@publish.command("iceberg")
@click.argument("dest")
@click.option("--table", "tables", multiple=True, help="A table to publish (repeatable; default: every table).")
@click.option("--branch", default="main", show_default=True,
              help="Branch to publish (as the Iceberg branch of that name).")
@click.option("--follow", is_flag=True, help="Keep publishing each new commit until Ctrl-C.")
@click.pass_obj
def publish_iceberg(lake: Path, dest: str, tables: tuple[str, ...], branch: str, follow: bool) -> None:
    """Publish tables as Apache Iceberg tables at DEST/<table>/ whose data files are the lake's own chunks.

    DEST is a directory, or for a lake in object storage a URL (such as s3://bucket/lake/iceberg)."""
    out = console()
    with open_lake(lake) as db:
        def once() -> None:
            report = db.publish_iceberg(dest, list(tables) or None, branch=branch)
            added = ", ".join(f"{name} +{n}" for name, n in report.snapshots.items())
            say(out, f"published {report.dest}: {added or 'no tables'} snapshots "
                     f"({report.files_written:,} files, {filesize.decimal(report.bytes_written)})")
            out.file.flush()

        # Subscribed before the first publish, so a commit landing in between is published too.
        sub = db.subscribe(list(tables) or None, start="latest", branch=branch) if follow else None
        once()
        if sub is not None:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how --follow ends: exit 0
                asyncio.run(_follow(sub, once))


async def _follow(sub: udr.Subscription, publish_once: Callable[[], None]) -> None:
    async with sub:
        async for _ in sub:
            publish_once()


@click.group()
def unpublish() -> None:
    """Remove published tables and let gc free what only they used."""


@unpublish.command("iceberg")
@click.argument("dest")
@click.pass_obj
def unpublish_iceberg(lake: Path, dest: str) -> None:
    """Delete the Iceberg tables this lake published at DEST."""
    with open_lake(lake) as db:
        removed = db.unpublish_iceberg(dest)
    say(console(), f"unpublished {len(removed)} table{'s' if len(removed) != 1 else ''} from {dest}")
