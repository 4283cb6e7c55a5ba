"""`udr.materialize.parquetread.read_chunk` gives exactly what `pq.read_table` gives, whichever string
columns it decodes through their dictionaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from udr.materialize.parquetread import _dictionary_strings, read_chunk


def sample(rows: int) -> pa.Table:
    rng = np.random.default_rng(3)
    words = pa.array(["open", "closed", None, "pending"]).take(pa.array(rng.integers(0, 4, rows)))
    return pa.table({
        "id": pa.array(np.arange(rows, dtype=np.int64)),
        "status": words,  # a few values: a small dictionary
        "name": pa.array([f"unique name {i:09d}" for i in range(rows)]),  # its dictionary falls back to plain
        "amount": pa.array(rng.random(rows)),
        "tags": pa.array([["a", "b"]] * rows, pa.list_(pa.string())),  # nested: read as it is
    })


@pytest.mark.parametrize("columns", [None, ["status", "amount"], ["name"], ["id", "tags"]])
def test_reads_what_read_table_reads(tmp_path: Path, columns: list[str] | None) -> None:
    path = tmp_path / "chunk.parquet"
    pq.write_table(sample(300_000), path, row_group_size=122_880)
    expected = pq.read_table(path, columns=columns)
    for threads in (True, False):
        got = read_chunk(path, columns, threads=threads)
        assert got.equals(expected) and got.schema.equals(expected.schema, check_metadata=True)


def test_only_small_dictionaries_of_plain_strings_are_read_as_dictionaries(tmp_path: Path) -> None:
    path = tmp_path / "chunk.parquet"
    pq.write_table(sample(300_000), path, row_group_size=122_880)
    meta = pq.ParquetFile(path).metadata
    schema = pq.ParquetFile(path).schema_arrow
    assert _dictionary_strings(meta, schema, None) == ["status"]
    assert _dictionary_strings(meta, schema, ["name", "amount"]) == []
    pq.write_table(sample(1000), path, use_dictionary=False)  # no dictionary pages at all
    assert _dictionary_strings(pq.ParquetFile(path).metadata, schema, None) == []
