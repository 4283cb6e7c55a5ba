"""The row-printing options every command that prints rows shares (`sql`, `changes`, `history`, `diff`):
`--limit N`, `--format table|csv|json|parquet` and `-o FILE`, and the one function that honours them.

Rows are cut to the limit before anything formats them, so printing a page of a huge result costs a page.
The table view prints a page (`PAGE` rows unless `--limit` says otherwise) and a footer saying how many rows
were left out; csv, json and parquet write every row unless `--limit` is given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import pyarrow as pa

from udr.cli.common import Failure, console, sink
from udr.cli.output import WRITERS, print_rows, say

PAGE = 1_000


@dataclass(frozen=True, slots=True)
class RowOutput:
    """How to print rows: the format, where to (None: stdout) and at most how many (None: the default)."""

    fmt: str
    output: Path | None
    limit: int | None

    def cut(self) -> int | None:
        """The number of rows to print: `--limit`, else a page for the table view on a terminal, else all."""
        if self.limit is not None:
            return self.limit or None
        return PAGE if self.fmt == "table" and self.output is None else None

    def fetch(self) -> int | None:
        """How many rows a command that can stop early should compute: one past `cut`, to tell whether
        rows were left out (None: all)."""
        cut = self.cut()
        return cut + 1 if cut is not None else None


def row_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add `--limit`, `--format` and `-o/--output` to a click callback, which gets them as `rows: RowOutput`."""

    @functools.wraps(command)
    def with_rows(*args: object, fmt: str, limit: int | None, output: Path | None, **kwargs: object) -> None:
        if fmt == "parquet" and output is None:
            raise click.UsageError("--format parquet writes binary data: give -o/--output FILE")
        command(*args, rows=RowOutput(fmt, output, limit), **kwargs)

    options = [
        click.option("--limit", type=click.IntRange(min=0), metavar="N",
                     help=f"Print at most N rows; 0 for all (default: {PAGE:,} in the table view, all otherwise)."),
        click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table",
                     show_default=True, help="Output format (parquet needs -o)."),
        click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write to FILE (whole, or not at all), not stdout."),
    ]
    wrapped: Callable[..., None] = with_rows
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


def emit_rows(rows: pa.Table, how: RowOutput, *, shown: Callable[[pa.Table], pa.Table] = lambda t: t,
              counted: bool = True) -> None:
    """Print `rows` as `how` says; `shown` turns the cut rows into what the table view displays.

    `counted` False: `rows` was itself cut just past the limit (`RowOutput.fetch`), so rows beyond the limit
    are reported as "more rows" without a count.

    Raises:
        Failure: the rows cannot be written in the chosen format, or the output file cannot be created.
    """
    limit = how.cut()
    cut = rows.slice(0, limit) if limit is not None else rows
    more = rows.num_rows - cut.num_rows
    left_out = f"{more:,} more rows" if counted else "more rows"
    out = console()
    if how.fmt == "table" and how.output is None:
        printed = print_rows(shown(cut).to_reader(), out)
        say(out, f"({printed:,} row{'s' if printed != 1 else ''}" + (f"; {left_out}; "
                 "use --limit N, or --format csv|json|parquet -o FILE for all)" if more else ")"))
        return
    with sink(how.output) as file:
        try:
            WRITERS[how.fmt]((shown(cut) if how.fmt == "table" else cut).to_reader(), file)
        except pa.ArrowException as exc:
            raise Failure(f"cannot write the rows as {how.fmt}: {exc}") from exc
    if more:
        click.echo(f"note: {left_out} left out by --limit {limit:,}", err=True)
