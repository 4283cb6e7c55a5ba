"""What every `udr` command shares: the one-line failure, the console, opening a lake, progress bars,
parsing `--at`-style refs and writing output files whole or not at all.

Nothing here registers a command. Heavy modules (rich's progress bar) are imported inside the functions that
need them, so `udr --help` stays quick.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console

import udr

Update = Callable[[int, "int | None"], None]

_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ].*)?$")


class Failure(click.ClickException):
    """A failure reported as one `error: ...` line on stderr (no usage text, no traceback)."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the one line to stderr."""
        click.echo(f"error: {self.message}", err=True)


class BadInput(Failure):
    """A failure of the command line itself (a missing or unknown input file): one line and exit 2."""

    exit_code = 2


def one_line(message: str) -> str:
    """`message` with its lines joined by single spaces, so an error is always one line."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def console() -> Console:
    """A console for plain output: no highlighting of numbers or names."""
    return Console(highlight=False)


def lake_exists(path: Path | str) -> bool:
    """Whether `path` holds a lake (its FORMAT file), checked without opening or creating anything (a URL:
    False; opening it tells)."""
    return isinstance(path, Path) and (path / "FORMAT").is_file()


@contextlib.contextmanager
def open_lake(path: Path | str) -> Iterator[udr.Lake]:
    """Open the existing lake at `path` (a directory or a URL); a missing lake is an error, never created (only
    `init` creates one)."""
    with udr.open(path, create=False) as db:
        yield db


@contextlib.contextmanager
def progress(out: Console, description: str, total: int | None = None) -> Iterator[Update | None]:
    """Show a progress bar on a terminal and yield its `update(done, total)`; yield None when piped."""
    if not out.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=out, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, new_total: int | None = None) -> None:
            bar.update(task, completed=done, total=new_total)

        yield update


def parse_ref(at: str | None, option: str = "--at") -> str | datetime | None:
    """Return `at` (given as `option`) as a ref string, or as a datetime when it looks like an ISO date or time."""
    if at is None or not _ISO_TIME.match(at):
        return at
    try:
        return datetime.fromisoformat(at)
    except ValueError as exc:
        raise click.BadParameter(f"{at!r} looks like a time but is not ISO 8601: {exc}", param_hint=option) from exc


@contextlib.contextmanager
def sink(output: Path | None) -> Iterator[IO[bytes]]:
    """Yield stdout, or a temp file beside `output` that is renamed over it only when writing succeeded."""
    if output is None:
        stdout = sys.stdout.buffer
        yield stdout
        stdout.flush()
        return
    tmp = output.parent / f".{output.name}.{uuid.uuid4().hex}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise BadInput(f"cannot write {output}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        # The rename makes the file appear whole: a failed or interrupted command leaves no partial output.
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
