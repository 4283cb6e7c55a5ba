"""The `udr` command line: import files, query with SQL, read the log, check and repair a lake.

It sits above every layer and uses only the public `udr` API (plus `read_format`, to refuse to create a
lake by accident). It is the one place that turns a `udr.UdrError` into one line on stderr and exit code
1; a problem with the command line itself (a bad option, a missing or unknown input file) exits with 2,
Ctrl-C with 130. Output files are written under a temporary name and renamed when complete, so a failed
command never leaves a half-written file behind.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, Any

import anyio
import click
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

import udr
from udr._demo import run_demo
from udr.log.store import read_format

_INPUT_FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".arrow": "arrow",
    ".feather": "arrow",
}
_READ_BATCH_ROWS = 65_536
_TABLE_MAX_ROWS = 1_000
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ].*)?$")

Update = Callable[[int, "int | None"], None]


class _Failure(click.ClickException):
    """A failure reported as one `error: ...` line on stderr (no usage text, no traceback)."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(_one_line(message))
        self.exit_code = exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the one line to stderr."""
        click.echo(f"error: {self.message}", err=True)


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


class _UdrGroup(click.Group):
    """The command group: translates UDR errors and Ctrl-C for every command."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, turning a `udr.UdrError` into one line and exit 1, Ctrl-C into exit 130."""
        try:
            return super().invoke(ctx)
        except udr.UdrError as exc:
            raise _Failure(str(exc) or type(exc).__name__) from exc
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None


@click.group(cls=_UdrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--lake",
    type=click.Path(path_type=Path),
    envvar="UDR_LAKE",
    default="lake",
    show_default="$UDR_LAKE, else ./lake",
    help="The lake directory.",
)
@click.version_option(udr.__version__, prog_name="udr")
@click.pass_context
def cli(ctx: click.Context, lake: Path) -> None:
    """UDR: versioned tables with cross-table transactions and time travel, in one local directory."""
    ctx.obj = lake


def main() -> None:
    """Run the `udr` console script."""
    cli.main(prog_name="udr")


# -- helpers --------------------------------------------------------------------------------------------


def _console() -> Console:
    return Console(highlight=False)


@contextlib.contextmanager
def _open_lake(path: Path) -> Iterator[udr.Lake]:
    # `udr.open` creates a missing lake; only `init` may do that, so a mistyped --lake changes nothing.
    if read_format(path) is None:
        raise udr.FormatError(f"there is no lake at {path}; create one with: udr --lake {path} init")
    with udr.open(path) as db:
        yield db


@contextlib.contextmanager
def _progress(console: Console, description: str, total: int | None = None) -> Iterator[Update | None]:
    """Show a progress bar on a terminal and yield its `update(done, total)`; yield None when piped."""
    if not console.is_terminal:
        yield None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, new_total: int | None = None) -> None:
            bar.update(task, completed=done, total=new_total)

        yield update


def _say(console: Console, message: str) -> None:
    """One plain line: no markup (names may hold brackets) and no wrapping, so scripts can grep it."""
    console.print(Text(message), soft_wrap=True)


def _ref(at: str | None) -> str | datetime | None:
    """Return `at` as a ref string, or as a datetime when it looks like an ISO date or time."""
    if at is None or not _ISO_TIME.match(at):
        return at
    try:
        return datetime.fromisoformat(at)
    except ValueError as exc:
        raise click.BadParameter(f"{at!r} looks like a time but is not ISO 8601: {exc}", param_hint="--at") from exc


def _changes(change: udr.TableChange) -> str:
    return f"+{change.inserted:,} ~{change.updated:,} -{change.deleted:,}"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


# -- init, import ---------------------------------------------------------------------------------------


@cli.command()
@click.pass_obj
def init(lake: Path) -> None:
    """Create an empty lake (a directory) at --lake."""
    existed = read_format(lake) is not None
    with udr.open(lake) as db:
        head = db.commit_info("main")
    state = "already holds a lake" if existed else "now holds an empty lake"
    _say(_console(), f"{lake} {state} (main at {head.short_id})")


@cli.command("import")
@click.argument("table")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--mode", type=click.Choice(["append", "overwrite", "upsert"]), default="append", show_default=True,
              help="Add rows, replace every row, or insert-or-replace rows by primary key.")
@click.option("--key", metavar="COL[,COL]",
              help="Primary key of the table when this import creates it (needed to create one for upsert).")
@click.option("--branch", default="main", show_default=True, help="Branch to commit to.")
@click.option("-m", "--message", default="", help="Commit message.")
@click.pass_obj
def import_file(lake: Path, table: str, file: Path, mode: str, key: str | None, branch: str, message: str) -> None:
    """Import FILE (.parquet, .csv, .jsonl/.ndjson, .arrow/.feather) into TABLE in one commit, streaming it."""
    fmt = _INPUT_FORMATS.get(file.suffix.lower())
    if not file.exists() or file.is_dir():
        raise _Failure(f"{str(file)!r} {'is a directory' if file.is_dir() else 'does not exist'}", exit_code=2)
    if fmt is None:
        known = ", ".join(sorted(_INPUT_FORMATS))
        raise _Failure(f"cannot import {file.name!r}: unknown file type (use one of {known})", exit_code=2)
    key_columns = [c.strip() for c in key.split(",") if c.strip()] if key is not None else None
    if key_columns == []:
        raise click.BadParameter("give at least one column name", param_hint="--key")
    console = _console()
    with _open_lake(lake) as db, contextlib.ExitStack() as stack:
        try:
            reader, total = _open_input(stack, file, fmt)
        except (pa.ArrowException, OSError) as exc:
            raise _Failure(f"cannot read {file}: {exc}") from exc
        with _progress(console, f"importing {file.name}", total) as update:
            commit = _import(
                db, table, _guarded(reader, file, update), mode=mode, key=key_columns, branch=branch,
                message=message or f"import {file.name} into {table} ({mode})",
            )
    change = commit.tables.get(table, udr.TableChange())
    _say(console, f"{table}: {change.inserted:,} inserted, {change.updated:,} updated, {change.deleted:,} deleted "
                  f"in commit {commit.short_id} on {commit.branch}")


def _open_input(stack: contextlib.ExitStack, file: Path, fmt: str) -> tuple[pa.RecordBatchReader, int | None]:
    """Return a streaming reader over `file` and its row count when the file says it up front."""
    if fmt == "parquet":
        # pre_buffer=False: otherwise the reader fetches the whole file ahead of iteration.
        parquet = stack.enter_context(pq.ParquetFile(file, pre_buffer=False))
        batches = parquet.iter_batches(batch_size=_READ_BATCH_ROWS)
        return pa.RecordBatchReader.from_batches(parquet.schema_arrow, batches), parquet.metadata.num_rows
    if fmt == "csv":
        return stack.enter_context(pa_csv.open_csv(file)), None
    if fmt == "jsonl":
        rows = pa_json.read_json(file)
        return rows.to_reader(max_chunksize=_READ_BATCH_ROWS), rows.num_rows
    source = stack.enter_context(pa.memory_map(str(file)))
    ipc = pa.ipc.open_file(source)
    # Memory-mapped batches are zero-copy, so counting their rows reads no data.
    total = sum(ipc.get_batch(i).num_rows for i in range(ipc.num_record_batches))
    batches = (ipc.get_batch(i) for i in range(ipc.num_record_batches))
    return pa.RecordBatchReader.from_batches(ipc.schema, batches), total


def _guarded(reader: pa.RecordBatchReader, file: Path, update: Update | None) -> pa.RecordBatchReader:
    """Re-wrap `reader` to advance the progress bar and to name the file when its bytes do not parse."""

    def batches() -> Iterator[pa.RecordBatch]:
        done = 0
        try:
            for batch in reader:
                done += batch.num_rows
                if update is not None:
                    update(done, None)
                yield batch
        except pa.ArrowException as exc:
            raise _Failure(f"cannot read {file} (after {done:,} rows): {exc}") from exc

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _import(db: udr.Lake, table: str, reader: pa.RecordBatchReader, *, mode: str, key: list[str] | None,
            branch: str, message: str) -> udr.Commit:
    with db.transaction(branch, message=message) as tx:
        if table in tx.tables():
            current = db.primary_key(table, branch, at=tx.base)
            if key is not None and key != current:
                has = f"primary key ({', '.join(current)})" if current else "no primary key"
                raise udr.KeyViolation(
                    f"table {table!r} already exists with {has}; --key only applies when import creates the table"
                )
        elif key is not None:
            tx.create_table(table, reader.schema, primary_key=key)
        elif mode == "upsert":
            raise udr.KeyViolation(f"table {table!r} does not exist; give --key COL to create it for upsert")
        if mode == "append":
            tx.append(table, reader)
        elif mode == "overwrite":
            tx.overwrite(table, reader)
        else:
            tx.upsert(table, reader)
        return tx.commit()


# -- sql ------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("query")
@click.option("--branch", default="main", show_default=True, help="Branch whose tables the query sees.")
@click.option("--at", metavar="REF|TIME",
              help='A version: tag, commit id, "main~3", or an ISO time ("2024-05-01T12:00", local unless offset).')
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table",
              show_default=True, help="Output format (parquet needs --output).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout.")
@click.pass_obj
def sql(lake: Path, query: str, branch: str, at: str | None, fmt: str, output: Path | None) -> None:
    """Run a SQL QUERY (DuckDB dialect); "table@REF" in double quotes names a table at another version."""
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet writes binary data: give --output FILE")
    version = _ref(at)
    console = _console()
    with _open_lake(lake) as db:
        relation = db.sql(query, branch, version)
        with relation.to_arrow_reader(_READ_BATCH_ROWS) as reader:
            if fmt == "table" and output is None:
                _print_rows(reader, console)
                return
            with _sink(output) as sink:
                try:
                    _WRITERS[fmt](reader, sink)
                except pa.ArrowException as exc:
                    raise _Failure(f"cannot write the result as {fmt}: {exc}") from exc


@contextlib.contextmanager
def _sink(output: Path | None) -> Iterator[IO[bytes]]:
    """Yield stdout, or a temp file beside `output` that is renamed over it only when writing succeeded."""
    if output is None:
        stdout = click.get_binary_stream("stdout")
        yield stdout
        stdout.flush()
        return
    tmp = output.parent / f".{output.name}.{uuid.uuid4().hex}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise _Failure(f"cannot write {output}: {exc.strerror}", exit_code=2) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


def _rows_table(reader: pa.RecordBatchReader) -> tuple[Table, int, bool]:
    """Return a rich table of at most `_TABLE_MAX_ROWS` rows, the rows shown, and whether more were left out."""
    grid = Table()
    for field in reader.schema:
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_decimal(field.type)
        grid.add_column(field.name, justify="right" if numeric else "left")
    shown = 0
    for batch in reader:
        room = _TABLE_MAX_ROWS - shown
        if room == 0 and batch.num_rows:
            return grid, shown, True
        # Column-wise, not `to_pylist()` dicts, so duplicate column names (`SELECT a, a`) keep every value.
        columns = [column.to_pylist() for column in batch.slice(0, room).columns]
        for values in zip(*columns, strict=True):
            grid.add_row(*(Text("NULL", style="dim") if v is None else Text(str(v)) for v in values))
        shown += min(room, batch.num_rows)
        if batch.num_rows > room:
            return grid, shown, True
    return grid, shown, False


def _print_rows(reader: pa.RecordBatchReader, console: Console) -> None:
    grid, shown, more = _rows_table(reader)
    console.print(grid)
    if more:
        _say(console, f"(showing the first {shown:,} rows; use --format csv, json or parquet for all of them)")
    else:
        _say(console, f"({shown:,} row{'s' if shown != 1 else ''})")


def _write_table(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    grid, _, _ = _rows_table(reader)
    width = Console(file=io.StringIO()).measure(grid).maximum
    text = io.StringIO()
    Console(file=text, width=max(width, 20), no_color=True, highlight=False).print(grid)
    sink.write(text.getvalue().encode())


def _write_csv(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    with pa_csv.CSVWriter(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def _write_parquet(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    with pq.ParquetWriter(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def _write_json(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    """Write a JSON array of row objects, a batch at a time."""
    sink.write(b"[")
    first = True
    for batch in reader:
        for row in batch.to_pylist():
            sink.write((b"\n" if first else b",\n") + json.dumps(_json_value(row), default=_json_scalar).encode())
            first = False
    sink.write(b"\n]\n" if not first else b"]\n")


def _json_value(value: object) -> object:
    """Return `value` with NaN and infinities as null, which JSON cannot spell."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pa.MonthDayNano):
        return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def _json_scalar(value: object) -> object:
    """Spell a value json cannot: times in ISO 8601, durations in seconds, bytes in base64, decimals as text."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    # Decimals (exact, unlike a JSON number), UUIDs and anything else: their text.
    return str(value)


_WRITERS: dict[str, Callable[[pa.RecordBatchReader, IO[bytes]], None]] = {
    "table": _write_table,
    "csv": _write_csv,
    "json": _write_json,
    "parquet": _write_parquet,
}


# -- tables, log, show ----------------------------------------------------------------------------------


@cli.command()
@click.option("--branch", default="main", show_default=True, help="Branch to list.")
@click.option("--at", metavar="REF|TIME", help="List the tables of an older version.")
@click.pass_obj
def tables(lake: Path, branch: str, at: str | None) -> None:
    """List the tables with their row counts and primary keys."""
    version = _ref(at)
    console = _console()
    with _open_lake(lake) as db:
        names = db.tables(branch, version)
        if not names:
            _say(console, "no tables yet; add one with: udr import TABLE FILE")
            return
        counts = dict(db.sql(_count_query(names), branch, version).fetchall())
        grid = Table("table", "rows", "primary key", "columns")
        for name in names:
            key = db.primary_key(name, branch, version)
            grid.add_row(Text(name), f"{counts[name]:,}", Text(", ".join(key) if key else "-"),
                         str(len(db.schema(name, branch, version))))
    console.print(grid)


def _count_query(names: list[str]) -> str:
    def ident(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def literal(name: str) -> str:
        return "'" + name.replace("'", "''") + "'"

    return " UNION ALL ".join(f"SELECT {literal(n)} AS name, count(*) AS n FROM {ident(n)}" for n in names)


@cli.command()
@click.option("--branch", default="main", show_default=True, help="Branch whose history to show.")
@click.option("--table", help="Only commits that changed this table.")
@click.option("-n", "limit", type=click.IntRange(min=1), help="At most this many commits.")
@click.pass_obj
def log(lake: Path, branch: str, table: str | None, limit: int | None) -> None:
    """Show the commits of a branch, newest first."""
    console = _console()
    with _open_lake(lake) as db:
        commits = db.log(branch, table=table, limit=limit)
    if not commits:
        _say(console, f"no commits on {branch} touch table {table!r}")
        return
    grid = Table("commit", "time", "author", "message", "changes (+ins ~upd -del)")
    for commit in commits:
        changes = "\n".join(f"{name} {_changes(c)}" for name, c in sorted(commit.tables.items()))
        grid.add_row(commit.short_id, _when(commit.time), Text(commit.author), Text(commit.message), Text(changes))
    console.print(grid)


@cli.command()
@click.argument("ref")
@click.pass_obj
def show(lake: Path, ref: str) -> None:
    """Show one commit: id, parents, author, message, metadata and rows changed per table."""
    console = _console()
    with _open_lake(lake) as db:
        commit = db.commit_info(ref)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("commit", commit.id)
    head.add_row("seq", str(commit.seq))
    head.add_row("branch", Text(commit.branch))
    head.add_row("time", _when(commit.time))
    head.add_row("author", Text(commit.author))
    head.add_row("message", Text(commit.message))
    head.add_row("parents", "\n".join(commit.parents) or "(none: the first commit)")
    for name, value in sorted(commit.metadata.items()):
        head.add_row("metadata", Text(f"{name} = {value}"))
    console.print(head)
    if not commit.tables:
        _say(console, "no table changes")
        return
    grid = Table("table", "inserted", "updated", "deleted")
    for name, change in sorted(commit.tables.items()):
        grid.add_row(Text(name), f"{change.inserted:,}", f"{change.updated:,}", f"{change.deleted:,}")
    console.print(grid)


# -- change streams -------------------------------------------------------------------------------------


@cli.command()
@click.argument("tables", nargs=-1)
@click.option("--group", help="Consumer group: resume after its last ack, and ack each batch once printed.")
@click.option("--from", "start", metavar="REF", default="latest", show_default=True,
              help="Print changes after this commit ('earliest': all history); a group that acked resumes instead.")
@click.option("--branch", default="main", show_default=True, help="Branch to follow.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="A table per commit and table, or one JSON object per changed row.")
@click.pass_obj
def tail(lake: Path, tables: tuple[str, ...], group: str | None, start: str, branch: str, fmt: str) -> None:
    """Print row changes to TABLES (default: every table) as they are committed, until Ctrl-C."""
    console = _console()
    with _open_lake(lake) as db:
        sub = db.subscribe(list(tables) or None, group=group, start=start, branch=branch)
        try:
            anyio.run(_tail, sub, fmt, console)
        except KeyboardInterrupt:
            return  # Ctrl-C is how tail ends: exit 0


async def _tail(sub: udr.Subscription, fmt: str, console: Console) -> None:
    async with sub:
        async for batch in sub:
            if fmt == "json":
                for row in batch.changes.to_pylist():
                    line = {"table": batch.table, **row}
                    console.file.write(json.dumps(_json_value(line), default=_json_scalar) + "\n")
            else:
                commit = batch.commit
                _say(console, f"{commit.short_id} seq {commit.seq} {_when(commit.time)} {commit.author}: "
                              f"{batch.table} ({batch.changes.num_rows:,} change rows) {commit.message}")
                _print_rows(pa.RecordBatchReader.from_batches(batch.changes.schema, batch.changes.to_batches()),
                            console)
            console.file.flush()
            await sub.ack(batch)


@cli.command()
@click.pass_obj
def groups(lake: Path) -> None:
    """Show consumer groups: position, lag behind their branch, last ack, and whether one is consuming."""
    console = _console()
    with _open_lake(lake) as db:
        infos = db.groups()
    if not infos:
        _say(console, "no consumer groups")
        return
    grid = Table("group", "branch", "position", "lag commits", "lag rows", "last ack", "active")
    for info in infos:
        grid.add_row(Text(info.name), Text(info.branch), info.position[:10], f"{info.lag_commits:,}",
                     f"{info.lag_rows:,}", _when(info.last_ack), "yes" if info.active else "no")
    console.print(grid)


# -- maintenance ----------------------------------------------------------------------------------------


@cli.command()
@click.pass_context
def verify(ctx: click.Context) -> None:
    """Check every commit, chunk and blob against its hash; exit 1 if anything is wrong."""
    console = _console()
    with _open_lake(ctx.obj) as db, _progress(console, "verifying") as update:
        report = db.verify(progress=update)
    if report.ok:
        _say(console, f"ok: {report.commits_checked:,} commits and {report.chunks_checked:,} chunks verified")
        return
    for problem in report.problems:
        _say(console, f"problem: {problem}")
    count = len(report.problems)
    click.echo(f"error: verify found {count} problem{'s' if count != 1 else ''} in {ctx.obj}", err=True)
    ctx.exit(1)


@cli.command()
@click.pass_obj
def rebuild(lake: Path) -> None:
    """Throw away derived state (caches) and rebuild it by replaying the log."""
    console = _console()
    with _open_lake(lake) as db, _progress(console, "rebuilding") as update:
        replayed = db.rebuild(progress=update)
    _say(console, f"rebuilt derived state from {replayed:,} commits")


@cli.command()
@click.pass_obj
def gc(lake: Path) -> None:
    """Delete chunk files that no commit references; print the bytes freed."""
    console = _console()
    with _open_lake(lake) as db, _progress(console, "collecting garbage") as update:
        freed = db.gc(progress=(lambda n: update(n + 1, None)) if update is not None else None)
    _say(console, f"freed {freed:,} bytes ({filesize.decimal(freed)})")


@cli.command()
@click.pass_obj
def stats(lake: Path) -> None:
    """Show commits, chunks, and logical versus stored bytes (deduplication)."""
    console = _console()
    with _open_lake(lake) as db:
        figures = db.stats()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_row("commits", f"{figures.commits:,}")
    grid.add_row("chunks", f"{figures.chunks:,}")
    grid.add_row("logical bytes", f"{figures.logical_bytes:,} ({filesize.decimal(figures.logical_bytes)})")
    grid.add_row("stored bytes", f"{figures.stored_bytes:,} ({filesize.decimal(figures.stored_bytes)})")
    grid.add_row("dedup ratio", f"{figures.dedup_ratio:.2f}x")
    console.print(grid)


@cli.command()
@click.argument("path", required=False, type=click.Path(file_okay=False, path_type=Path))
def demo(path: Path | None) -> None:
    """Walk through atomic transactions, failure, SQL and time travel on a fresh lake (PATH or a temp dir)."""
    run_demo(path, _console())


if __name__ == "__main__":
    main()
