"""`udr clone`, `udr push`, `udr pull`: move commits between lakes (directories or s3://, gs://, az:// URLs)."""

from __future__ import annotations

from pathlib import Path

import click

import udr
from udr.cli.common import console
from udr.cli.output import say


@click.command()
@click.argument("src")
@click.argument("dest")
def clone(src: str, dest: str) -> None:
    """Copy the lake at SRC to DEST (a new directory or URL): the same commits, refs and chunks."""
    copied = udr.clone(src, dest)
    say(console(), f"cloned {src} to {dest} ({copied} commits)")


@click.command()
@click.argument("remote")
@click.argument("branches", nargs=-1)
@click.pass_obj
def push(lake: Path | str, remote: str, branches: tuple[str, ...]) -> None:
    """Send the lake's new commits to REMOTE and fast-forward its BRANCHES (default: every branch and tag).

    Named BRANCHES send only the commits they need.
    """
    sent = udr.push(lake, remote, list(branches) or None)
    say(console(), f"{remote} is up to date" if not sent else f"pushed {sent} commits to {remote}")


@click.command()
@click.argument("remote")
@click.argument("branches", nargs=-1)
@click.pass_obj
def pull(lake: Path | str, remote: str, branches: tuple[str, ...]) -> None:
    """Fetch REMOTE's new commits into the lake and fast-forward its BRANCHES (default: every branch and tag).

    Named BRANCHES fetch only the commits they need.
    """
    got = udr.pull(lake, remote, list(branches) or None)
    say(console(), f"{lake} is up to date" if not got else f"pulled {got} commits from {remote}")
