"""The layout choices of what udr writes as Parquet: the column encodings of a chunk file (`docs/FORMAT.md`,
"Data chunks"), decided from its schema and first row group alone, and the before-image blobs of keyed writes.
"""

from __future__ import annotations

from typing import cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from udr.log.format import DICTIONARY_DECIMALS

# Before-images of at most this many rows skip zstd, dictionaries and statistics (`encode_before`).
_SMALL_BEFORE_ROWS = 64
# A short chunk's text column is judged mostly distinct on this many first values (~0.1 ms; all 25,600 of a
# flush of small writes took 2 ms, half of what leaving the dictionary out saves).
_TEXT_SAMPLE = 1024


def _delta_encoded(t: pa.DataType) -> bool:
    # Types stored as Parquet INT32/INT64 (decimals up to 18 digits are, with store_decimal_as_integer).
    # pyarrow is untyped: its calls return Any.
    return cast(bool, pa.types.is_integer(t) or pa.types.is_date(t) or pa.types.is_timestamp(t)
                or pa.types.is_time(t) or (pa.types.is_decimal(t) and t.precision <= 18))


def column_encodings(schema: pa.Schema, sample: pa.Table | None = None, *,
                     short: bool = False) -> tuple[list[str], dict[str, str]]:
    """Per-column encodings of a Parquet chunk (the columns given a dictionary; the others' encodings), from the
    schema and the chunk's first row group `sample` alone (so chunk bytes stay a function of their rows).

    Integer-like columns use DELTA_BINARY_PACKED instead of a dictionary: DuckDB decodes them faster
    (TPC-H Q1/Q6 0.6-0.8x the source files' time instead of ~1.05x) and the files are smaller. A decimal
    column with few distinct values in `sample` (prices' discounts and taxes, quantities) keeps its dictionary:
    DuckDB and polars both decode that faster than delta (polars much faster: bench/RESULTS.md, I3).
    In a `short` (zstd) chunk, a column whose sample is mostly distinct values gets no dictionary, whose
    indices zstd cannot shrink: a float column is BYTE_STREAM_SPLIT (zstd then finds the repeats in exponents
    and low mantissa bytes: a nightly refresh's changed rows take ~8% fewer bytes), a text or binary one PLAIN
    (judged on its first `_TEXT_SAMPLE` values: 256 flushed small writes of distinct strings take a quarter
    of the bytes and half the write time).
    """
    encodings = {f.name: "DELTA_BINARY_PACKED" for f in schema
                 if _delta_encoded(f.type) and not (sample is not None and pa.types.is_decimal(f.type)
                                                    and _few_values(sample.column(f.name)))}
    if short and sample is not None:
        encodings.update((f.name, "BYTE_STREAM_SPLIT") for f in schema
                         if pa.types.is_floating(f.type) and _mostly_distinct(sample.column(f.name)))
        encodings.update((f.name, "PLAIN") for f in schema
                         if _text(f.type) and _mostly_distinct(sample.column(f.name).slice(0, _TEXT_SAMPLE)))
    return [f.name for f in schema if f.name not in encodings], encodings


def _text(t: pa.DataType) -> bool:
    # pyarrow is untyped: its calls return Any.
    return cast(bool, pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
                or pa.types.is_large_binary(t))


def _mostly_distinct(column: pa.ChunkedArray) -> bool:
    """Whether more than half of `column`'s values are distinct (a dictionary would save little)."""
    return 2 * cast(int, pc.count_distinct(column).as_py()) > len(column)


def _few_values(column: pa.ChunkedArray) -> bool:
    """Whether a dictionary of `column`'s values stays small (at most `DICTIONARY_DECIMALS` distinct)."""
    return cast(int, pc.count_distinct(column).as_py()) <= DICTIONARY_DECIMALS


def encode_before(image: pa.Table) -> bytes:
    """Payload of a before-image blob: Parquet (zstd, integer columns delta-encoded), sorted by key.

    Parquet stores the mostly-null old-value columns in a few bytes, where Arrow IPC keeps full-width
    buffers: a refresh's before-image is ~4x smaller this way. An image of at most `_SMALL_BEFORE_ROWS` rows
    (an upsert of a few keys) is written snappy, without dictionaries or statistics: as small, and half the
    time (~0.07 ms where zstd and the encodings cost ~0.15, once per such commit).
    """
    sink = pa.BufferOutputStream()
    small = image.num_rows <= _SMALL_BEFORE_ROWS
    dictionary, encodings = (False, None) if small else column_encodings(image.schema)
    pq.write_table(image, sink, compression="snappy" if small else "zstd", use_dictionary=dictionary,
                   column_encoding=encodings or None, write_statistics=not small, store_decimal_as_integer=True)
    return cast(bytes, sink.getvalue().to_pybytes())  # pyarrow is untyped: its calls return Any


def decode_before(payload: bytes) -> pa.Table:
    """Parse a before-image blob payload."""
    return pq.read_table(pa.BufferReader(payload))
