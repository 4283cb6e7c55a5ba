"""The `udr` command line: import files, query with SQL, read the log and row history, branch, tag and
merge, check and repair a lake.

It sits above every layer and uses only the public `udr` API (plus `read_format`, to refuse to create a
lake by accident). It is the one place that turns a `udr.UdrError` into one line on stderr and exit code
1; a problem with the command line itself (a bad option, a missing or unknown input file) exits with 2,
Ctrl-C with 130. Output files are written under a temporary name and renamed when complete, so a failed
command never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import anyio
import click
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from click.core import ParameterSource
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
from udr._cli_graph import log_graph
from udr._cli_output import (
    WRITERS,
    change_counts,
    changes_table,
    conflicts_table,
    json_scalar,
    json_value,
    print_rows,
    say,
    summary_table,
    versions_table,
    when,
)
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
        raise udr.FormatError(f"there is no lake at {path}; create one with: udr init {path}")
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


def _ref(at: str | None, option: str = "--at") -> str | datetime | None:
    """Return `at` (given as `option`) as a ref string, or as a datetime when it looks like an ISO date or time."""
    if at is None or not _ISO_TIME.match(at):
        return at
    try:
        return datetime.fromisoformat(at)
    except ValueError as exc:
        raise click.BadParameter(f"{at!r} looks like a time but is not ISO 8601: {exc}", param_hint=option) from exc


# -- init, import ---------------------------------------------------------------------------------------


@cli.command()
@click.argument("path", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def init(lake: Path, path: Path | None) -> None:
    """Create an empty lake (a directory) at PATH, else at --lake."""
    lake = path if path is not None else lake
    existed = read_format(lake) is not None
    with udr.open(lake) as db:
        head = db.commit_info("main")
    state = "already holds a lake" if existed else "now holds an empty lake"
    say(_console(), f"{lake} {state} (main at {head.short_id})")


@cli.command("import")
@click.argument("table")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--mode", type=click.Choice(["append", "overwrite", "upsert"]), default="append", show_default=True,
              help="Add rows, replace every row, or insert-or-replace rows by primary key.")
@click.option("--key", metavar="COL[,COL]",
              help="Primary key of the table when this import creates it (needed to create one for upsert).")
@click.option("--branch", default="main", show_default=True, help="Branch to commit to.")
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("--evolve", is_flag=True, help="Add the file's new columns to the table (nullable) instead of failing.")
@click.pass_obj
def import_file(lake: Path, table: str, file: Path, mode: str, key: str | None, branch: str, message: str,
                evolve: bool) -> None:
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
            commit, changed = _import(
                db, table, _guarded(reader, file, update), mode=mode, key=key_columns, branch=branch,
                message=message or f"import {file.name} into {table} ({mode})", evolve=evolve,
            )
    if not changed:
        say(console, f"{table}: no row changed, so no commit was made ({branch} stays at {commit.short_id})")
        return
    change = commit.tables.get(table, udr.TableChange())
    say(console, f"{table}: {change.inserted:,} inserted, {change.updated:,} updated, {change.deleted:,} deleted "
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
            branch: str, message: str, evolve: bool) -> tuple[udr.Commit, bool]:
    """Commit the rows; return the commit and whether one was made (rows identical to the table's make none)."""
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
            tx.append(table, reader, evolve=evolve)
        elif mode == "overwrite":
            tx.overwrite(table, reader, evolve=evolve)
        else:
            if evolve and table in tx.tables():
                tx.append(table, reader.schema.empty_table(), evolve=True)
            tx.upsert(table, reader)
        commit = tx.commit()
        return commit, commit.id != tx.base


# -- sql ------------------------------------------------------------------------------------------------


@cli.command()
@click.argument("query")
@click.option("--branch", default="main", show_default=True, help="Branch whose tables the query sees.")
@click.option("--at", metavar="REF|TIME",
              help='A version: tag, commit id, "main~3", or an ISO time ("2024-05-01T12:00", local unless offset).')
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]), default="table",
              show_default=True, help="Output format (parquet needs --output).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE, not stdout.")
@click.option("-m", "--message", default="", help="Commit message for writing statements.")
@click.pass_obj
def sql(lake: Path, query: str, branch: str, at: str | None, fmt: str, output: Path | None, message: str) -> None:
    """Run a SQL QUERY (DuckDB dialect); "table@REF" in double quotes names a table at another version.

    Writing statements (CREATE TABLE, INSERT, UPDATE, DELETE, MERGE, ALTER TABLE, DROP TABLE) run in one
    commit on --branch."""
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet writes binary data: give --output FILE")
    version = _ref(at)
    console = _console()
    with _open_lake(lake) as db:
        if db.is_write(query):
            if at is not None:
                raise click.UsageError("--at reads an older version; writing statements commit to --branch")
            before = db.commit_info(branch).id if branch in db.branches() else None
            commit = db.execute(query, branch, message=message or None)
            if commit.id == before:
                say(console, f"no row changed, so no commit was made ({branch} stays at {commit.short_id})")
                return
            for table, change in sorted(commit.tables.items()):
                say(console, f"{table}: {change.inserted:,} inserted, {change.updated:,} updated, "
                             f"{change.deleted:,} deleted")
            say(console, f"commit {commit.short_id} on {commit.branch}")
            return
        relation = db.sql(query, branch, version)
        with relation.to_arrow_reader(_READ_BATCH_ROWS) as reader:
            if fmt == "table" and output is None:
                print_rows(reader, console)
                return
            with _sink(output) as sink:
                try:
                    WRITERS[fmt](reader, sink)
                except pa.ArrowException as exc:
                    raise _Failure(f"cannot write the result as {fmt}: {exc}") from exc


@contextlib.contextmanager
def _sink(output: Path | None) -> Iterator[IO[bytes]]:
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
        raise _Failure(f"cannot write {output}: {exc.strerror}", exit_code=2) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


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
            say(console, "no tables yet; add one with: udr import TABLE FILE")
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
@click.option("--graph", is_flag=True,
              help="Draw the commits of every branch (or only --branch) as lanes with merges, like git log --graph.")
@click.pass_context
def log(ctx: click.Context, branch: str, table: str | None, limit: int | None, graph: bool) -> None:
    """Show the commits of a branch, newest first, or (--graph) of every branch with their merges."""
    console = _console()
    if graph:
        if table is not None:
            raise click.UsageError("--graph draws whole commits; it does not combine with --table")
        only = branch if ctx.get_parameter_source("branch") is not ParameterSource.DEFAULT else None
        with _open_lake(ctx.obj) as db:
            for line in log_graph(db, only, limit):
                say(console, line)
        return
    with _open_lake(ctx.obj) as db:
        commits = db.log(branch, table=table, limit=limit)
    if not commits:
        say(console, f"no commits on {branch} touch table {table!r}")
        return
    grid = Table("commit", "time", "author", "message", "changes (+ins ~upd -del)")
    for commit in commits:
        changes = "\n".join(f"{name} {change_counts(c)}" for name, c in sorted(commit.tables.items()))
        grid.add_row(commit.short_id, when(commit.time), Text(commit.author), Text(commit.message), Text(changes))
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
    head.add_row("time", when(commit.time))
    head.add_row("author", Text(commit.author))
    head.add_row("message", Text(commit.message))
    head.add_row("parents", "\n".join(commit.parents) or "(none: the first commit)")
    for name, value in sorted(commit.metadata.items()):
        head.add_row("metadata", Text(f"{name} = {value}"))
    console.print(head)
    if not commit.tables:
        say(console, "no table changes")
        return
    grid = Table("table", "inserted", "updated", "deleted")
    for name, change in sorted(commit.tables.items()):
        grid.add_row(Text(name), f"{change.inserted:,}", f"{change.updated:,}", f"{change.deleted:,}")
    console.print(grid)


# -- row history ----------------------------------------------------------------------------------------


@cli.command()
@click.argument("table")
@click.option("--key", "keys", multiple=True, required=True, metavar="COL=VALUE",
              help="A primary key column and its value; repeat it for each column of a composite key.")
@click.option("--branch", default="main", show_default=True, help="Branch whose history to read.")
@click.pass_obj
def history(lake: Path, table: str, keys: tuple[str, ...], branch: str) -> None:
    """Show every version of one row of TABLE, oldest first, with the commit, time, author and message."""
    texts = _key_texts(keys)
    console = _console()
    with _open_lake(lake) as db:
        key = _typed_key(db, table, branch, texts)
        versions = db.history(table, key, branch)
    described = ", ".join(f"{name}={value}" for name, value in key.items())
    if not versions.num_rows:
        say(console, f"no version of the row {described} in {table} on {branch}")
        return
    print_rows(versions_table(versions).to_reader(), console)


def _key_texts(keys: tuple[str, ...]) -> list[tuple[str, str]]:
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


def _typed_key(db: udr.Lake, table: str, branch: str, texts: list[tuple[str, str]]) -> dict[str, object]:
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


@cli.command()
@click.argument("table")
@click.option("--since", metavar="REF|TIME", help="Start after this commit (default: the first commit).")
@click.option("--until", metavar="REF|TIME", help="End at this commit, included (default: the head of --branch).")
@click.option("--branch", default="main", show_default=True, help="Branch whose first-parent history is read.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="Output format (csv and json keep full commit ids).")
@click.pass_obj
def changes(lake: Path, table: str, since: str | None, until: str | None, branch: str, fmt: str) -> None:
    """Print every row change to TABLE (insert, update_before/update_after, delete) in commit order."""
    start, end = _ref(since, "--since"), _ref(until, "--until")
    with _open_lake(lake) as db:
        rows = db.changes(table, since=start, until=end, branch=branch)
    _emit(rows, fmt, _console())


def _emit(rows: pa.Table, fmt: str, console: Console) -> None:
    """Print rows as a table (with short commit ids), or write every column as CSV or JSON."""
    if fmt == "table":
        print_rows(changes_table(rows).to_reader(), console)
        return
    with _sink(None) as sink:
        WRITERS[fmt](rows.to_reader(), sink)


@cli.command()
@click.argument("table")
@click.option("--branch", default="main", show_default=True, help="Branch to commit to.")
@click.pass_obj
def compact(lake: Path, table: str, branch: str) -> None:
    """Rewrite TABLE's live rows into fresh chunks, in a commit that changes no row and no query answer."""
    with _open_lake(lake) as db:
        commit = db.compact(table, branch=branch)
        rows = db.row_count(table, branch)
    say(_console(), f"compacted {table} ({rows:,} rows) in commit {commit.short_id} on {branch}; no row changed")


# -- branches, tags, merges -----------------------------------------------------------------------------


@cli.command()
@click.argument("name", required=False)
@click.option("--from", "start", metavar="REF|TIME",
              help="Where the new branch starts: a branch, tag, commit id, REF~N or time (default: main).")
@click.option("-d", "--delete", is_flag=True, help="Delete branch NAME; its commits stay in the log.")
@click.option("--force", is_flag=True, help="With -d: delete even if no other branch holds its commits.")
@click.pass_obj
def branch(lake: Path, name: str | None, start: str | None, delete: bool, force: bool) -> None:
    """List the branches, create branch NAME (no data is copied), or delete it with -d."""
    if force and not delete:
        raise click.UsageError("--force only applies with -d")
    if delete and name is None:
        raise click.UsageError("give the NAME of the branch to delete")
    if start is not None and (delete or name is None):
        raise click.UsageError("--from only applies when creating branch NAME")
    console = _console()
    with _open_lake(lake) as db:
        if delete and name is not None:
            old = db.resolve(None, name)
            db.delete_branch(name, force=force)
            say(console, f"deleted branch {name} (was {old[:10]}; its commits stay reachable by id)")
            return
        if name is not None:
            head = db.create_branch(name, at=_ref(start, "--from"))
            say(console, f"created branch {name} at {head.short_id} ({head.message}); no data was copied")
            return
        heads = {each: db.commit_info(cid) for each, cid in db.branches().items()}
    width = max(len(each) for each in heads)
    # There is no checked-out branch; `*` marks main, the default of every command.
    for each, commit in sorted(heads.items()):
        say(console, f"{'*' if each == 'main' else ' '} {each:<{width}}  {commit.short_id}  {commit.message}")


@cli.command()
@click.argument("name", required=False)
@click.argument("ref", required=False)
@click.option("-d", "--delete", is_flag=True, help="Delete tag NAME.")
@click.pass_obj
def tag(lake: Path, name: str | None, ref: str | None, delete: bool) -> None:
    """List the tags, tag REF (default: the head of main) as NAME, or delete tag NAME with -d. Tags never move."""
    if delete and (name is None or ref is not None):
        raise click.UsageError("-d takes the NAME of the tag to delete, and nothing else")
    console = _console()
    with _open_lake(lake) as db:
        if delete and name is not None:
            old = db.tags().get(name, "")  # not `resolve`: a branch of the same name would shadow the tag
            db.delete_tag(name)
            say(console, f"deleted tag {name} (was {old[:10]})")
            return
        if name is not None:
            commit = db.tag(name, _ref(ref, "REF"))
            say(console, f"tagged {commit.short_id} ({commit.message}) as {name}")
            return
        tagged = {each: db.commit_info(cid) for each, cid in db.tags().items()}
    if not tagged:
        say(console, "no tags yet; add one with: udr tag NAME REF")
        return
    width = max(len(each) for each in tagged)
    for each, commit in sorted(tagged.items()):
        say(console, f"{each:<{width}}  {commit.short_id}  {commit.message}")


@cli.command()
@click.argument("source")
@click.option("--into", default="main", show_default=True, help="Branch to merge into.")
@click.option("--strategy", type=click.Choice(["ours", "theirs"]),
              help="Resolve every conflict by taking this side (ours: --into, theirs: SOURCE).")
@click.option("-m", "--message", help="Message of the merge commit.")
@click.pass_obj
def merge(lake: Path, source: str, into: str, strategy: str | None, message: str | None) -> None:
    """Merge SOURCE (a branch or any ref) into a branch: fast-forward, or a three-way merge commit."""
    console = _console()
    with _open_lake(lake) as db:
        before = db.resolve(None, into)
        try:
            commit = db.merge(source, into, message=message, strategy=strategy)
        except udr.MergeConflict as exc:
            raise _conflicts(console, exc, f"merging {source} into {into}",
                             "make both sides agree, or retry with --strategy ours or theirs") from exc
        net = db.diff_summary(before, commit.id)
    if commit.id == before:
        say(console, f"{into} already contains {source}: nothing to merge ({into} stays at {before[:10]})")
        return
    if len(commit.parents) > 1 and commit.parents[0] == before:
        say(console, f"merged {source} into {into}: merge commit {commit.short_id} "
                     f"(parents {commit.parents[0][:10]} and {commit.parents[1][:10]})")
    else:
        say(console, f"fast-forwarded {into} from {before[:10]} to {commit.short_id}: no merge commit needed")
    for name, change in sorted(net.items()):
        say(console, f"  {name} {change_counts(change)}")


def _conflicts(console: Console, exc: udr.MergeConflict, doing: str, hint: str) -> _Failure:
    """Print the conflicts as a table; return the one-line error that ends the command."""
    console.print(conflicts_table(exc.conflicts))
    count = len(exc.conflicts)
    return _Failure(f"{count} conflict{'s' if count != 1 else ''} {doing}; nothing was written: {hint}")


@cli.command()
@click.argument("a")
@click.argument("b")
@click.option("--table", help="Show this table's changed rows instead of counts per table.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="Output format.")
@click.pass_obj
def diff(lake: Path, a: str, b: str, table: str | None, fmt: str) -> None:
    """Compare versions A and B (branches, tags, commit ids, REF~N, times): rows changed from A to B."""
    old, new = _ref(a, "A"), _ref(b, "B")
    console = _console()
    with _open_lake(lake) as db:
        if table is not None:
            _emit(db.diff(table, old, new), fmt, console)
            return
        summary = db.diff_summary(old, new)
    if not summary and fmt == "table":
        say(console, f"no row differs between {a} and {b}")
        return
    _emit(summary_table(summary), fmt, console)


@cli.command()
@click.argument("branch")
@click.argument("ref")
@click.pass_obj
def reset(lake: Path, branch: str, ref: str) -> None:
    """Move BRANCH's head to REF; the old head stays in the log, reachable by its id."""
    with _open_lake(lake) as db:
        before = db.resolve(None, branch)
        commit = db.reset(branch, _ref(ref, "REF"))
    say(_console(), f"moved {branch} from {before[:10]} to {commit.short_id} ({commit.message}); "
                    f"undo with: udr reset {branch} {before[:10]}")


@cli.command()
@click.argument("commit")
@click.option("--branch", default="main", show_default=True, help="Branch to commit the inverse to.")
@click.pass_obj
def revert(lake: Path, commit: str, branch: str) -> None:
    """Commit the inverse of COMMIT on a branch; later changes to other rows and cells stay."""
    console = _console()
    with _open_lake(lake) as db:
        try:
            done = db.revert(commit, branch)
        except udr.MergeConflict as exc:
            raise _conflicts(console, exc, f"reverting {commit} on {branch}",
                             "later commits changed the same cells; revert or change those first") from exc
    say(console, f"reverted {commit} on {branch} in commit {done.short_id}")
    for name, change in sorted(done.tables.items()):
        say(console, f"  {name} {change_counts(change)}")


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
                    console.file.write(json.dumps(json_value(line), default=json_scalar) + "\n")
            else:
                commit = batch.commit
                say(console, f"{commit.short_id} seq {commit.seq} {when(commit.time)} {commit.author}: "
                              f"{batch.table} ({batch.changes.num_rows:,} change rows) {commit.message}")
                print_rows(pa.RecordBatchReader.from_batches(batch.changes.schema, batch.changes.to_batches()),
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
        say(console, "no consumer groups")
        return
    grid = Table("group", "branch", "position", "lag commits", "lag rows", "last ack", "active")
    for info in infos:
        grid.add_row(Text(info.name), Text(info.branch), info.position[:10], f"{info.lag_commits:,}",
                     f"{info.lag_rows:,}", when(info.last_ack), "yes" if info.active else "no")
    console.print(grid)


# -- publishing -----------------------------------------------------------------------------------------


@cli.group()
def publish() -> None:
    """Make tables readable by other engines, in place."""


@publish.command("iceberg")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--table", "tables", multiple=True, help="A table to publish (repeatable; default: every table).")
@click.option("--branch", default="main", show_default=True, help="Branch to publish (as the Iceberg branch of that name).")
@click.option("--follow", is_flag=True, help="Keep publishing each new commit until Ctrl-C.")
@click.pass_obj
def publish_iceberg(lake: Path, dest: Path, tables: tuple[str, ...], branch: str, follow: bool) -> None:
    """Publish tables as Apache Iceberg tables at DEST/<table>/ whose data files are the lake's own chunks."""
    console = _console()
    with _open_lake(lake) as db:
        def once() -> None:
            report = db.publish_iceberg(dest, list(tables) or None, branch=branch)
            added = ", ".join(f"{name} +{n}" for name, n in report.snapshots.items())
            say(console, f"published {report.dest}: {added or 'no tables'} snapshots "
                         f"({report.files_written:,} files, {filesize.decimal(report.bytes_written)})")
            console.file.flush()

        # Subscribed before the first publish, so a commit landing in between is published too.
        sub = db.subscribe(list(tables) or None, start="latest", branch=branch) if follow else None
        once()
        if sub is not None:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how --follow ends: exit 0
                anyio.run(_follow, sub, once)


async def _follow(sub: udr.Subscription, publish_once: Callable[[], None]) -> None:
    async with sub:
        async for _ in sub:
            publish_once()


@cli.group()
def unpublish() -> None:
    """Remove published tables and let gc free what only they used."""


@unpublish.command("iceberg")
@click.argument("dest", type=click.Path(path_type=Path))
@click.pass_obj
def unpublish_iceberg(lake: Path, dest: Path) -> None:
    """Delete the Iceberg tables this lake published at DEST."""
    with _open_lake(lake) as db:
        removed = db.unpublish_iceberg(dest)
    say(_console(), f"unpublished {len(removed)} table{'s' if len(removed) != 1 else ''} from {dest}")


# -- maintenance ----------------------------------------------------------------------------------------


@cli.command()
@click.pass_context
def verify(ctx: click.Context) -> None:
    """Check every commit, chunk and blob against its hash; exit 1 if anything is wrong."""
    console = _console()
    with _open_lake(ctx.obj) as db, _progress(console, "verifying") as update:
        report = db.verify(progress=update)
    if report.ok:
        say(console, f"ok: {report.commits_checked:,} commits and {report.chunks_checked:,} chunks verified")
        return
    for problem in report.problems:
        say(console, f"problem: {problem}")
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
    say(console, f"rebuilt derived state from {replayed:,} commits")


@cli.command()
@click.pass_obj
def gc(lake: Path) -> None:
    """Delete chunk files that no commit references; print the bytes freed."""
    console = _console()
    with _open_lake(lake) as db, _progress(console, "collecting garbage") as update:
        freed = db.gc(progress=(lambda n: update(n + 1, None)) if update is not None else None)
    say(console, f"freed {freed:,} bytes ({filesize.decimal(freed)})")


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
    """Tour transactions, failure, SQL, time travel, branches and change streams on a new lake (PATH or temp)."""
    run_demo(path, _console())


if __name__ == "__main__":
    main()
