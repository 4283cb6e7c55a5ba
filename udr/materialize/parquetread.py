"""Reading a Parquet chunk file whole into Arrow, string columns decoded through their dictionaries.

Arrow decodes a dictionary-encoded string column to plain strings about twice as slowly as it reads the
dictionary indices and casts them (a gather of a few distinct values): for a table of a few short strings
per row that is a third of a keyed refresh's decoding. Only a column whose every dictionary page is small
is read so: a writer falls back to plain pages only once its dictionary has grown large, and a column read
as a dictionary from plain pages would be hashed value by value. The result is the same table either way.
Pure function; safe from any thread.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Above this many bytes of dictionary page a column chunk may have fallen back to plain pages (Arrow's writer
# does at 1 MiB), and decoding through the dictionary gains little.
_SMALL_DICTIONARY = 64 * 1024


def read_chunk(path: Path, columns: list[str] | None, *, threads: bool) -> pa.Table:
    """The rows of Parquet file `path` (only `columns` if given), on several threads if `threads`."""
    file = pq.ParquetFile(path, memory_map=True)
    schema = file.schema_arrow
    strings = _dictionary_strings(file.metadata, schema, columns)
    if strings:
        file = pq.ParquetFile(path, memory_map=True, read_dictionary=strings)
    data = file.read(columns=columns, use_threads=threads)
    for name in strings:
        index = data.schema.get_field_index(name)
        data = data.set_column(index, schema.field(name), data.column(index).cast(pa.string()))
    return data


def _dictionary_strings(meta: pq.FileMetaData, schema: pa.Schema, columns: list[str] | None) -> list[str]:
    """The top-level string columns of `columns` (None: all) whose every chunk has a small dictionary page."""
    wanted = schema.names if columns is None else columns
    found = []
    for leaf in range(meta.num_columns):
        name = meta.schema.column(leaf).path
        if name not in wanted or "." in name or not schema.field(name).type.equals(pa.string()):
            continue
        groups = [meta.row_group(g).column(leaf) for g in range(meta.num_row_groups)]
        if groups and all(c.has_dictionary_page and c.dictionary_page_offset is not None
                          and 0 < c.data_page_offset - c.dictionary_page_offset <= _SMALL_DICTIONARY for c in groups):
            found.append(name)
    return found
