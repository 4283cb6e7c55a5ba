"""A query's result written as Parquet chunks by DuckDB's own writer (`COPY ... TO`), for `CREATE TABLE AS`.

DuckDB runs the query and encodes its rows in one parallel pass, where fetching them to Arrow and encoding
them with pyarrow takes two, the second on one thread per chunk. The files keep the chunk layout of
docs/FORMAT.md ("Data chunks"): snappy, row groups of `ROW_GROUP_ROWS` rows, `ROW_GROUPS_PER_CHUNK` of
them per file, each column's Parquet field id, and the Arrow schema pyarrow would store (so pyarrow reads
back the table's types and column metadata); DuckDB picks the encodings (Parquet 2 pages: integers
delta-encoded, as pyarrow's chunks). They are written into the lake's tmp directory under this process's
pid, so `gc` removes them if the process dies before they are stored. Safe from any thread with its own
connection.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from udr.errors import SqlError
from udr.log.format import (
    INLINE_MAX_BYTES,
    PARQUET_COMPRESSION,
    ROW_GROUP_ROWS,
    ROW_GROUPS_PER_CHUNK,
)
from udr.materialize.data import chunk_schema
from udr.materialize.schemas import parquet_field_id
from udr.query.sqltext import one_line, quote_str

# Files up to this size are read back and stored as the other writes store them: rows that fit an inline
# chunk (`INLINE_MAX_BYTES` of Arrow data) never take more Parquet bytes than this.
_READ_BACK_BYTES = 2 * INLINE_MAX_BYTES


def copyable(schema: pa.Schema) -> bool:
    """Whether DuckDB's Parquet files of rows of `schema` read back exactly as `schema`'s types (flat types
    whose Parquet form is unambiguous; others take the Arrow path)."""
    return len(schema) > 0 and all(_copyable(f.type) for f in schema)


def _copyable(t: pa.DataType) -> bool:
    if pa.types.is_timestamp(t) or pa.types.is_time64(t):
        return bool(t.unit == "us")
    return bool(pa.types.is_integer(t) or pa.types.is_float32(t) or pa.types.is_float64(t)
                or pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_binary(t)
                or pa.types.is_date32(t) or pa.types.is_decimal128(t))


def copy_rows(con: duckdb.DuckDBPyConnection, query: str, schema: pa.Schema,
              directory: Path) -> list[tuple[Path, int]] | pa.Table | None:
    """Run `query` (whose result has the columns and types of table schema `schema`) and write its rows as
    chunk files in `directory`.

    Returns:
        Each file with its row count, in the query's row order; or, for a small result, its rows (the files
        removed: the caller stores them as any write would, inline if they fit); or None, no file left, when
        a file does not read back as `schema` (a DuckDB that writes a type differently).

    Raises:
        SqlError: DuckDB rejected the query or failed running it.
    """
    stored = chunk_schema(schema)
    prefix = f"{os.getpid()}-{uuid.uuid4().hex}"
    ids = ", ".join(f"{quote_str(f.name)}: {parquet_field_id(f)}" for f in stored)
    arrow = base64.b64encode(stored.serialize().to_pybytes()).decode()
    options = (f"FORMAT parquet, COMPRESSION {PARQUET_COMPRESSION}, ROW_GROUP_SIZE {ROW_GROUP_ROWS}, "
               f"ROW_GROUPS_PER_FILE {ROW_GROUPS_PER_CHUNK}, PARQUET_VERSION V2, FIELD_IDS {{{ids}}}, "
               f"KV_METADATA {{'ARROW:schema': '{arrow}'}}, FILENAME_PATTERN '{prefix}_{{i}}', "
               # The directory holds other writers' temp files: write beside them, never clear it.
               "OVERWRITE_OR_IGNORE true")
    try:
        con.execute(f"COPY ({query}) TO {quote_str(str(directory))} ({options})")
    except duckdb.Error as exc:
        _remove(directory, prefix)
        raise SqlError(one_line(exc)) from exc
    files = sorted(directory.glob(f"{prefix}_*.parquet"), key=lambda p: int(p.stem.rpartition("_")[2]))
    found: list[tuple[Path, int]] = []
    for path in files:
        with pq.ParquetFile(path) as parquet:
            read, rows = parquet.schema_arrow, parquet.metadata.num_rows
        if not _reads_as(read, schema):
            _remove(directory, prefix)
            return None
        if rows:
            found.append((path, rows))
    if len(found) <= 1 and sum(p.stat().st_size for p, _ in found) <= _READ_BACK_BYTES:
        rows = pa.concat_tables([pq.read_table(p).cast(schema) for p, _ in found] or [schema.empty_table()])
        _remove(directory, prefix)
        return rows
    for path in set(files) - {p for p, _ in found}:
        path.unlink()
    return found


def _reads_as(read: pa.Schema, schema: pa.Schema) -> bool:
    return read.names == schema.names and all(a.type.equals(b.type) for a, b in zip(read, schema))


def _remove(directory: Path, prefix: str) -> None:
    for path in directory.glob(f"{prefix}_*.parquet"):
        path.unlink(missing_ok=True)
