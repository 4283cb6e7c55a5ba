"""File readers for `udr import`: each input format as a streaming `pyarrow.RecordBatchReader`.

Readers never touch a lake. A malformed file is reported before any row is read where that can be known
up front (an unterminated quote in a CSV), and otherwise when the bad bytes are reached, naming the file;
either way the import's transaction is not committed, so nothing is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from udr.cli.common import Failure, Update

INPUT_FORMATS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".arrow": "arrow",
    ".feather": "arrow",
}
READ_BATCH_ROWS = 65_536
_BLOCK_BYTES = 1 << 20


def open_input(stack: contextlib.ExitStack, file: Path, fmt: str) -> tuple[pa.RecordBatchReader, int | None]:
    """Return a streaming reader over `file` and its row count when the file says it up front.

    Raises:
        Failure: a CSV holds a quote that never closes.
        pyarrow.ArrowException, OSError: the file cannot be opened or its header read.
    """
    if fmt == "parquet":
        import pyarrow.parquet as pq

        # pre_buffer=False: otherwise the reader fetches the whole file ahead of iteration.
        parquet = stack.enter_context(pq.ParquetFile(file, pre_buffer=False))
        batches = parquet.iter_batches(batch_size=READ_BATCH_ROWS)
        return pa.RecordBatchReader.from_batches(parquet.schema_arrow, batches), parquet.metadata.num_rows
    if fmt == "csv":
        import pyarrow.csv as pa_csv

        check_quotes(file)
        return stack.enter_context(pa_csv.open_csv(file)), None
    if fmt == "jsonl":
        import pyarrow.json as pa_json

        rows = pa_json.read_json(file)
        return rows.to_reader(max_chunksize=READ_BATCH_ROWS), rows.num_rows
    source = stack.enter_context(pa.memory_map(str(file)))
    ipc = pa.ipc.open_file(source)
    # Memory-mapped batches are zero-copy, so counting their rows reads no data.
    total = sum(ipc.get_batch(i).num_rows for i in range(ipc.num_record_batches))
    batches = (ipc.get_batch(i) for i in range(ipc.num_record_batches))
    return pa.RecordBatchReader.from_batches(ipc.schema, batches), total


def check_quotes(file: Path) -> None:
    """Refuse a CSV whose quotes do not pair up, naming the line of the quote that never closes.

    pyarrow reads an unterminated quote as one value running to the end of the file, so a broken file
    would import as one row. Quotes in valid CSV come in pairs (escaped ones are doubled), so counting
    them (at C speed, a block at a time) finds the problem; only then are lines walked to name it.

    Raises:
        Failure: the number of quote characters is odd.
    """
    quotes = 0
    with file.open("rb") as fh:
        while block := fh.read(_BLOCK_BYTES):
            quotes += block.count(b'"')
    if quotes % 2 == 0:
        return
    opened_at, inside = 0, False
    with file.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if line.count(b'"') % 2:
                inside = not inside
                opened_at = number if inside else opened_at
    raise Failure(f"cannot import {file}: the quote opened on line {opened_at:,} never closes; "
                  "close it, or double each quote inside a quoted value (\"\"); nothing was imported")


def guarded(reader: pa.RecordBatchReader, file: Path, update: Update | None) -> pa.RecordBatchReader:
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
            raise Failure(f"cannot read {file} (after {done:,} rows): {exc}") from exc

    return pa.RecordBatchReader.from_batches(reader.schema, batches())
