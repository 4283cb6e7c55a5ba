"""`udr init`, `udr import` and `udr tables`: create a lake, load files into tables, list the tables."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click
import pyarrow as pa
from rich.console import Console
from rich.table import Table
from rich.text import Text

import udr
from udr.cli.common import (
    BadInput,
    Failure,
    console,
    lake_exists,
    open_lake,
    parse_ref,
    progress,
)
from udr.cli.output import say
from udr.cli.readers import INPUT_FORMATS, guarded, open_input


@click.command()
@click.argument("path", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def init(lake: Path, path: Path | None) -> None:
    """Create an empty lake (a directory) at PATH, else at --lake."""
    lake = path if path is not None else lake
    existed = lake_exists(lake)
    with udr.open(lake) as db:
        head = db.commit_info("main")
    state = "already holds a lake" if existed else "now holds an empty lake"
    say(console(), f"{lake} {state} (main at {head.short_id})")


@click.command("import")
@click.argument("table")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--mode", type=click.Choice(["append", "overwrite", "upsert"]), default="append", show_default=True,
              help="Add rows, replace every row, or insert-or-replace rows by primary key.")
@click.option("--key", metavar="COL[,COL]",
              help="Primary key of the table when this import creates it (needed to create one for upsert).")
@click.option("--branch", default="main", show_default=True, help="Branch to commit to.")
@click.option("-m", "--message", default="", help="Commit message.")
@click.option("--evolve", is_flag=True, help="Add the file's new columns to the table (nullable) instead of failing.")
@click.option("--history", is_flag=True,
              help="A Delta or Iceberg SOURCE: one commit per source version, oldest first, each replacing the rows.")
@click.pass_obj
def import_file(lake: Path, table: str, source: Path, mode: str, key: str | None, branch: str, message: str,
                evolve: bool, history: bool) -> None:
    """Import SOURCE into TABLE in one commit, streaming it.

    SOURCE is a file (.parquet, .csv, .jsonl/.ndjson, .arrow/.feather), a Delta table directory, an Iceberg
    table (directory or metadata file), a directory of Parquet files, or a quoted glob ('data/*.parquet').
    """
    key_columns = [c.strip() for c in key.split(",") if c.strip()] if key is not None else None
    if key_columns == []:
        raise click.BadParameter("give at least one column name", param_hint="--key")
    if history:
        _import_history(lake, table, source, key=key_columns, branch=branch, evolve=evolve)
        return
    out = console()
    with open_lake(lake) as db, contextlib.ExitStack() as stack:
        reader, total = _open_source(stack, source)
        with progress(out, f"importing {source.name}", total) as update:
            commit, changed = _import(
                db, table, guarded(reader, source, update), mode=mode, key=key_columns, branch=branch,
                message=message or f"import {source.name} into {table} ({mode})", evolve=evolve,
            )
    _report(out, table, branch, commit, changed)


def _open_source(stack: contextlib.ExitStack, source: Path) -> tuple[pa.RecordBatchReader, int | None]:
    """A streaming reader over a file or table source, and its row count when known up front."""
    if udr.source_kind(source) is not None:
        return udr.read_source(source), None
    fmt = INPUT_FORMATS.get(source.suffix.lower())
    if not source.exists():
        raise BadInput(f"{str(source)!r} does not exist")
    if fmt is None:
        known = ", ".join(sorted(INPUT_FORMATS))
        raise BadInput(f"cannot import {source.name!r}: unknown file type (use one of {known}, a Delta or Iceberg "
                       "table, a directory of Parquet files or a glob)")
    try:
        return open_input(stack, source, fmt)
    except (pa.ArrowException, OSError) as exc:
        raise Failure(f"cannot read {source}: {exc}") from exc


def _import_history(lake: Path, table: str, source: Path, *, key: list[str] | None, branch: str,
                    evolve: bool) -> None:
    """One commit per version of a Delta or Iceberg table, carrying its author, message and time over."""
    out = console()
    versions = udr.source_versions(source)
    with open_lake(lake) as db:
        for version in versions:
            metadata = {"source": str(source), "source.version": str(version.version),
                        "source.time": version.time.isoformat()}
            commit, changed = _import(
                db, table, udr.read_source(source, version.version), mode="overwrite", key=key, branch=branch,
                message=version.message, evolve=evolve, author=version.author, metadata=metadata,
            )
            _report(out, table, branch, commit, changed, label=f"version {version.version}: ")


def _report(out: Console, table: str, branch: str, commit: udr.Commit, changed: bool, label: str = "") -> None:
    if not changed:
        say(out, f"{label}{table}: no row changed, so no commit was made ({branch} stays at {commit.short_id})")
        return
    change = commit.tables.get(table, udr.TableChange())
    say(out, f"{label}{table}: {change.inserted:,} inserted, {change.updated:,} updated, {change.deleted:,} deleted "
             f"in commit {commit.short_id} on {commit.branch}")


def _import(db: udr.Lake, table: str, reader: pa.RecordBatchReader, *, mode: str, key: list[str] | None,
            branch: str, message: str, evolve: bool, author: str | None = None,
            metadata: dict[str, str] | None = None) -> tuple[udr.Commit, bool]:
    """Commit the rows; return the commit and whether one was made (rows identical to the table's make none)."""
    with db.transaction(branch, message=message, author=author, metadata=metadata) as tx:
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


@click.command()
@click.option("--branch", default="main", show_default=True, help="Branch to list.")
@click.option("--at", metavar="REF|TIME", help="List the tables of an older version.")
@click.pass_obj
def tables(lake: Path, branch: str, at: str | None) -> None:
    """List the tables with their row counts and primary keys."""
    version = parse_ref(at)
    out = console()
    with open_lake(lake) as db:
        names = db.tables(branch, version)
        if not names:
            say(out, "no tables yet; add one with: udr import TABLE FILE")
            return
        grid = Table("table", "rows", "primary key", "columns")
        for name in names:
            key = db.primary_key(name, branch, version)
            grid.add_row(Text(name), f"{db.row_count(name, branch, version):,}", Text(", ".join(key) if key else "-"),
                         str(len(db.schema(name, branch, version))))
    out.print(grid)
