"""How the `udr` command line prints: plain lines, rich tables of rows, CSV, JSON and Parquet writers.

Pure presentation for the `udr.cli` commands: nothing here opens a lake, cuts rows to a page or decides an
exit code. Values are always wrapped in `rich.text.Text`, so table names and cell values holding brackets are
never read as markup. Formatting is vectorized (pyarrow compute), never a Python loop over every row.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table
from rich.text import Text

import udr


def when(moment: datetime) -> str:
    """A commit time as `YYYY-MM-DD HH:MM:SS UTC`."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def change_counts(change: udr.TableChange) -> str:
    """Rows changed as `+inserted ~updated -deleted`."""
    return f"+{change.inserted:,} ~{change.updated:,} -{change.deleted:,}"


def say(console: Console, message: str) -> None:
    """One plain line: no markup (names may hold brackets) and no wrapping, so scripts can grep it."""
    console.print(Text(message), soft_wrap=True)


def rows_table(reader: pa.RecordBatchReader) -> tuple[Table, int]:
    """Return a rich table of every row of `reader` (the caller cuts it to a page) and the number of rows."""
    grid = Table()
    for field in reader.schema:
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_decimal(field.type)
        grid.add_column(field.name, justify="right" if numeric else "left")
    shown = 0
    for batch in reader:
        # Column-wise, not `to_pylist()` dicts, so duplicate column names (`SELECT a, a`) keep every value.
        columns = [column.to_pylist() for column in batch.columns]
        for values in zip(*columns, strict=True):
            grid.add_row(*(Text("NULL", style="dim") if v is None else Text(str(v)) for v in values))
        shown += batch.num_rows
    return grid, shown


def print_rows(reader: pa.RecordBatchReader, console: Console) -> int:
    """Print rows as a rich table; return how many were printed."""
    grid, shown = rows_table(reader)
    console.print(grid)
    return shown


def write_table(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    """Write rows as a plain-text table, as wide as it needs."""
    grid, _ = rows_table(reader)
    width = Console(file=io.StringIO()).measure(grid).maximum
    text = io.StringIO()
    Console(file=text, width=max(width, 20), no_color=True, highlight=False).print(grid)
    sink.write(text.getvalue().encode())


def write_csv(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    """Write rows as CSV with a header line."""
    import pyarrow.csv as pa_csv

    with pa_csv.CSVWriter(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def write_parquet(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    """Write rows as one Parquet file."""
    import pyarrow.parquet as pq

    with pq.ParquetWriter(sink, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def write_json(reader: pa.RecordBatchReader, sink: IO[bytes]) -> None:
    """Write a JSON array of row objects, a batch at a time."""
    sink.write(b"[")
    first = True
    for batch in reader:
        for row in batch.to_pylist():
            sink.write((b"\n" if first else b",\n") + json.dumps(json_value(row), default=json_scalar).encode())
            first = False
    sink.write(b"\n]\n" if not first else b"]\n")


def json_value(value: object) -> object:
    """Return `value` with NaN and infinities as null, which JSON cannot spell."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pa.MonthDayNano):
        return {"months": value.months, "days": value.days, "nanoseconds": value.nanoseconds}
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value


def json_scalar(value: object) -> object:
    """Spell a value json cannot: times in ISO 8601, durations in seconds, bytes in base64, decimals as text."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    # Decimals (exact, unlike a JSON number), UUIDs and anything else: their text.
    return str(value)


def versions_table(history: pa.Table) -> pa.Table:
    """The versions of a row (`Lake.history`) as shown: change, short commit id, time, author, message, metadata
    (blank when none), values.

    An update's before-image is left out: it is the version on the line above. `update_after` reads `update`.
    """
    stamps = ["_change", "_commit_id", "_commit_time", "_author", "_message", "_metadata"]
    history = history.filter(pc.not_equal(history.column("_change"), "update_before"))
    shown = pa.table({
        "change": pc.replace_substring(history.column("_change"), "update_after", "update"),
        "commit": pc.utf8_slice_codeunits(history.column("_commit_id"), 0, 10),
        "time": commit_times(history.column("_commit_time")),
        "author": history.column("_author"),
        "message": history.column("_message"),
        "metadata": pc.if_else(pc.equal(history.column("_metadata"), "{}"), "", history.column("_metadata")),
    })
    for field, column in zip(history.schema, history.columns, strict=True):
        if field.name not in stamps:
            shown = shown.append_column(field, column)
    return shown


def changes_table(rows: pa.Table) -> pa.Table:
    """Change rows (`Lake.changes`, `Lake.diff`) as shown: commit ids cut to 10 digits, times as `when`."""
    if "_commit_id" not in rows.column_names:
        return rows
    index = rows.schema.get_field_index("_commit_id")
    rows = rows.set_column(index, "_commit_id", pc.utf8_slice_codeunits(rows.column(index), 0, 10))
    index = rows.schema.get_field_index("_commit_time")
    return rows.set_column(index, "_commit_time", commit_times(rows.column(index)))


def commit_times(times: pa.ChunkedArray) -> pa.ChunkedArray:
    """Commit times (UTC timestamps) as `when` spells them, computed column-wise."""
    seconds = pc.cast(times, pa.timestamp("s", tz="UTC"), safe=False)
    return pc.strftime(seconds, format="%Y-%m-%d %H:%M:%S UTC")


def summary_table(summary: dict[str, udr.TableChange]) -> pa.Table:
    """Net rows changed per table (`Lake.diff_summary`) as rows: table, inserted, updated, deleted."""
    schema = pa.schema([("table", pa.string()), ("inserted", pa.int64()), ("updated", pa.int64()),
                        ("deleted", pa.int64())])
    rows = [{"table": name, "inserted": c.inserted, "updated": c.updated, "deleted": c.deleted}
            for name, c in sorted(summary.items())]
    return pa.Table.from_pylist(rows, schema=schema)


WRITERS: dict[str, Callable[[pa.RecordBatchReader, IO[bytes]], None]] = {
    "table": write_table,
    "csv": write_csv,
    "json": write_json,
    "parquet": write_parquet,
}


def conflicts_table(conflicts: list[udr.Conflict]) -> Table:
    """A table of merge conflicts: one row per conflicting cell, row, or table."""
    grid = Table("table", "key", "column", "base", "ours", "theirs")
    for conflict in conflicts:
        key = ", ".join(f"{name}={value}" for name, value in conflict.key.items()) if conflict.key else "-"
        # A whole-row conflict (column None) holds rows, None meaning the row is gone on that side.
        whole_row = conflict.column is None and conflict.key is not None
        sides = (_conflict_side(v, whole_row) for v in (conflict.base, conflict.ours, conflict.theirs))
        grid.add_row(Text(conflict.table), Text(key), Text(conflict.column or "-"), *sides)
    return grid


def _conflict_side(value: object, whole_row: bool) -> Text:
    if value is None:
        return Text("(no row)" if whole_row else "NULL", style="dim")
    if isinstance(value, dict):
        return Text(", ".join(f"{name}={v}" for name, v in value.items()))
    return Text(str(value))
