"""udr.materialize.data: encoding is deterministic (same rows, same chunk bytes, same id), and rows read
back through RowReader are the rows written, minus deletions, conformed to the table's schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from udr.errors import CorruptionError
from udr.log.chunks import MemoryChunkStore
from udr.log.format import INLINE_MAX_BYTES, BlobId, BlobKind, ChunkId
from udr.log.hashing import content_id
from udr.log.store import LogStore
from udr.materialize.data import (
    RowReader,
    decode_inline,
    decode_ipc,
    decode_schema,
    encode_chunk,
    encode_inline,
    encode_ipc,
    encode_schema,
    rebatch,
)
from udr.materialize.schemas import conform
from udr.materialize.states import FragmentState, TableState
from udr.materialize.vectors import (
    decode_positions,
    distinct_positions,
    encode_positions,
)

SMALL = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", "b", None]})


def _no_files(write: object) -> ChunkId:
    raise AssertionError("a small table must be inlined, not written as a file")


# -- schemas --------------------------------------------------------------------------------------------


def test_schema_id_ignores_schema_metadata() -> None:
    plain = SMALL.schema
    tagged = plain.with_metadata({b"pandas": b"{...}"})
    assert encode_schema(plain) == encode_schema(tagged)
    assert decode_schema(encode_schema(tagged)[1]).equals(plain)


def test_schema_id_changes_with_columns_types_and_nullability() -> None:
    base = encode_schema(SMALL.schema)[0]
    assert encode_schema(SMALL.schema.append(pa.field("x", pa.int8())))[0] != base
    assert encode_schema(pa.schema([("id", pa.int32()), ("name", pa.string())]))[0] != base
    assert encode_schema(pa.schema([pa.field("id", pa.int64(), False), ("name", pa.string())]))[0] != base


# -- chunks ---------------------------------------------------------------------------------------------


def test_small_tables_are_inlined_under_their_ipc_hash() -> None:
    encoded = encode_chunk(SMALL, BlobId("s"), _no_files)
    assert encoded.fragment.inline
    assert encoded.payload is not None
    assert encoded.fragment.chunk == content_id(encoded.payload)
    assert encoded.fragment.rows == 3
    assert decode_ipc(encoded.payload).equals(SMALL)


def test_inline_encoding_is_deterministic_whatever_the_metadata() -> None:
    one = encode_chunk(SMALL, BlobId("s"), _no_files)
    tagged = SMALL.replace_schema_metadata({"pandas": "index info"})
    assert encode_chunk(SMALL, BlobId("s"), _no_files) == one
    assert encode_chunk(tagged, BlobId("s"), _no_files) == one


def test_inline_encoding_is_deterministic_whatever_the_batching() -> None:
    split = pa.Table.from_batches(SMALL.to_batches(max_chunksize=1))
    assert split.column("id").num_chunks == 3
    assert encode_chunk(split, BlobId("s"), _no_files) == encode_chunk(SMALL, BlobId("s"), _no_files)


def test_big_tables_become_files_with_deterministic_bytes(make_big: Callable[..., pa.Table]) -> None:
    big = make_big()
    assert big.nbytes > INLINE_MAX_BYTES
    store = MemoryChunkStore()
    first = encode_chunk(big, BlobId("s"), store.put_written)
    second = encode_chunk(pa.Table.from_batches(big.to_batches(max_chunksize=3_000)), BlobId("s"), store.put_written)
    assert not first.fragment.inline and first.payload is None
    assert first.fragment.rows == big.num_rows
    assert first == second
    assert list(store.all_ids()) == [first.fragment.chunk], "same rows must give the same chunk bytes"


def test_different_rows_give_different_chunks(make_big: Callable[..., pa.Table]) -> None:
    store = MemoryChunkStore()
    a = encode_chunk(make_big(seed=1), BlobId("s"), store.put_written).fragment.chunk
    b = encode_chunk(make_big(seed=2), BlobId("s"), store.put_written).fragment.chunk
    assert a != b


def test_a_copy_number_changes_the_chunk_but_not_the_rows() -> None:
    plain = encode_chunk(SMALL, BlobId("s"), _no_files)
    copy = encode_chunk(SMALL, BlobId("s"), _no_files, copy=1)
    assert copy.fragment.chunk != plain.fragment.chunk
    assert copy.payload is not None
    assert decode_ipc(copy.payload).equals(SMALL)


def test_inline_chunk_ids_stay_as_released() -> None:
    """An inline chunk's id is its bytes' hash: a change of encoding would give old rows new ids (a table then
    holds the same rows under two names), so the bytes of one table are pinned here."""
    schema = pa.schema([pa.field("id", pa.int64(), metadata={"udr.id": "c1"}), pa.field("note", pa.string())],
                       metadata={"x": "y"})
    table = pa.table({"id": [1, 2, 3], "note": ["a", "b", None]}, schema=schema)
    ids = [encode_chunk(table, BlobId("b" * 64), _no_files, copy=copy).fragment.chunk for copy in (0, 2)]
    assert ids == ["a511fd79e8758f46a60670c1ef7b453b468bd7e587c82e8c421850319ddc0b3c",
                   "eb7304367bcc676fcd2393b6d0f1db72fe7e92e1e6e573ff3b692b56e83163d3"]


def test_ipc_round_trip() -> None:
    assert decode_ipc(encode_ipc(SMALL)).equals(SMALL)


# -- rebatch and positions ------------------------------------------------------------------------------


def test_rebatch_gives_exact_sizes_in_order() -> None:
    batches = [pa.record_batch({"x": pa.array(range(start, start + n), pa.int64())})
               for start, n in ((0, 7), (7, 0), (7, 2), (9, 11))]
    pieces = list(rebatch(iter(batches), rows=5))
    assert [p.num_rows for p in pieces] == [5, 5, 5, 5]
    assert pa.concat_tables(pieces).column("x").to_pylist() == list(range(20))
    assert list(rebatch(iter([]), rows=5)) == []


def test_rebatch_is_lazy() -> None:
    pulled: list[int] = []

    def source() -> Iterator[pa.RecordBatch]:
        for n in range(100):
            pulled.append(n)
            yield pa.record_batch({"x": pa.array([n], pa.int64())})

    first = next(rebatch(source(), rows=3))
    assert first.num_rows == 3
    assert len(pulled) == 3, "rebatch must not read the whole stream before yielding"


def test_positions_decode_sorted_and_distinct_whatever_the_input_order() -> None:
    payload = encode_positions(pa.array([5, 1, 5, 3, 4_000_000_000], pa.int64()))
    assert decode_positions(payload).to_pylist() == [1, 3, 5, 4_000_000_000]
    assert decode_positions(payload).type == pa.uint32()
    assert encode_positions(pa.array([3, 5, 1], pa.uint32())) == encode_positions(pa.array([1, 3, 5, 5], pa.uint32()))
    assert decode_positions(encode_positions(pa.array([], pa.uint32()))).to_pylist() == []


def test_distinct_positions_merges_parts_into_sorted_distinct_uint32() -> None:
    merged = distinct_positions(pa.array([9, 2, 2], pa.uint32()), pa.chunked_array([[7, 9], [0]], pa.uint32()))
    assert merged.tolist() == [0, 2, 7, 9] and merged.dtype == np.uint32
    assert distinct_positions(pa.array([], pa.uint32())).tolist() == []


# -- conform --------------------------------------------------------------------------------------------


def test_conform_reorders_adds_null_columns_and_keeps_markers_on_request() -> None:
    schema = pa.schema([("name", pa.string()), ("id", pa.int64()), ("extra", pa.float64())])
    data = SMALL.append_column("__pos", pa.array([0, 1, 2], pa.uint32()))
    out = conform(data, schema)
    assert out.schema.equals(schema)
    assert out.column("extra").null_count == 3
    assert conform(data, schema, extra=True).column_names == ["name", "id", "extra", "__pos"]


# -- RowReader over a real log --------------------------------------------------------------------------


def _store_inline(log: LogStore, table: pa.Table, schema_id: BlobId) -> FragmentState:
    encoded = encode_chunk(table, schema_id, _no_files)
    assert encoded.payload is not None
    log.put_blobs_now({BlobId(encoded.fragment.chunk): (BlobKind.ROWS, encoded.payload)})
    f = encoded.fragment
    return FragmentState(f.chunk, f.rows, f.inline, f.schema)


def _store_schema(log: LogStore, schema: pa.Schema) -> BlobId:
    schema_id, payload = encode_schema(schema)
    log.put_blobs_now({schema_id: (BlobKind.SCHEMA, payload)})
    return schema_id


def _store_deletes(log: LogStore, frag: FragmentState, positions: list[int]) -> FragmentState:
    payload = encode_positions(pa.array(positions, pa.uint32()))
    blob = BlobId(content_id(payload))
    log.put_blobs_now({blob: (BlobKind.DELETES, payload)})
    return FragmentState(frag.chunk, frag.rows, frag.inline, frag.schema, blob, len(positions))


def test_reader_returns_live_rows_of_inline_and_file_fragments(
    log: LogStore, make_big: Callable[..., pa.Table]
) -> None:
    big = make_big(rows=40_000)
    schema_id = _store_schema(log, big.schema)
    file_frag = encode_chunk(big, schema_id, log.chunks.put_written).fragment
    assert not file_frag.inline
    small = big.slice(0, 5)
    inline = _store_deletes(log, _store_inline(log, small, schema_id), [0, 4])
    state = TableState(schema_id, None, (FragmentState(file_frag.chunk, file_frag.rows, False, schema_id), inline))
    reader = RowReader(log.chunks, log.get_blob)
    rows = reader.table("t", state)
    assert rows.num_rows == 40_000 + 3
    assert rows.slice(40_000).equals(small.slice(1, 3))
    assert reader.table("t", state, columns=["b"]).column_names == ["b"]
    positioned = reader.table("t", state, with_position=True)
    assert positioned.column_names[-2:] == ["__pos", "__frag"]
    assert positioned.slice(40_000).column("__pos").to_pylist() == [1, 2, 3]
    assert set(positioned.slice(40_000).column("__frag").to_pylist()) == {1}


def test_reader_conforms_old_fragments_to_an_evolved_schema(log: LogStore) -> None:
    old_id = _store_schema(log, SMALL.schema)
    frag = _store_inline(log, SMALL, old_id)
    evolved = SMALL.schema.append(pa.field("score", pa.float64()))
    new_id = _store_schema(log, evolved)
    rows = RowReader(log.chunks, log.get_blob).table("t", TableState(new_id, None, (frag,)))
    assert rows.schema.equals(evolved)
    assert rows.column("score").null_count == 3


def test_an_empty_table_has_the_schema_and_no_rows(log: LogStore) -> None:
    schema_id = _store_schema(log, SMALL.schema)
    reader = RowReader(log.chunks, log.get_blob)
    assert reader.table("t", TableState(schema_id, None)).equals(SMALL.schema.empty_table())
    assert reader.table("t", TableState(schema_id, None), with_position=True).num_rows == 0


def test_a_row_count_mismatch_is_corruption_naming_table_and_chunk(log: LogStore) -> None:
    schema_id = _store_schema(log, SMALL.schema)
    frag = _store_inline(log, SMALL, schema_id)
    lying = FragmentState(frag.chunk, 4, True, schema_id)
    with pytest.raises(CorruptionError, match=f"'orders'.*{frag.chunk}"):
        RowReader(log.chunks, log.get_blob).table("orders", TableState(schema_id, None, (lying,)))


def test_a_missing_chunk_file_is_corruption_naming_the_table(log: LogStore, make_big: Callable[..., pa.Table]) -> None:
    big = make_big(rows=40_000)
    schema_id = _store_schema(log, big.schema)
    f = encode_chunk(big, schema_id, log.chunks.put_written).fragment
    log.chunks.delete(f.chunk)
    state = TableState(schema_id, None, (FragmentState(f.chunk, f.rows, False, schema_id),))
    with pytest.raises(CorruptionError, match=f"'orders'.*{f.chunk}"):
        RowReader(log.chunks, log.get_blob).table("orders", state)


def test_inline_rows_past_the_parquet_threshold_are_parquet_in_format_4_and_read_back_the_same() -> None:
    big = pa.table({"id": pa.array(range(3_000), pa.int64()), "kind": ["a", "b", "c"] * 1_000})
    schema_id, _ = encode_schema(big.schema)
    packed = encode_inline(big, schema_id, parquet=True)
    assert packed.payload is not None and packed.payload[:4] == b"PAR1"
    assert decode_inline(packed.payload).select(["id", "kind"]).to_pylist() == big.to_pylist()
    assert packed.rows is not None and packed.rows.equals(decode_inline(packed.payload))
    rebatched = pa.Table.from_batches(big.to_batches(max_chunksize=700))
    assert encode_inline(rebatched, schema_id, parquet=True).payload == packed.payload  # same rows, same bytes
    ipc = encode_inline(big, schema_id)  # an older lake: IPC whatever the size
    assert ipc.payload is not None and ipc.payload[:4] != b"PAR1" and decode_inline(ipc.payload).equals(big)
    assert len(packed.payload) < len(ipc.payload)
    tiny = encode_inline(SMALL, encode_schema(SMALL.schema)[0], parquet=True)
    assert tiny.payload is not None and decode_ipc(tiny.payload).equals(SMALL)  # under the threshold: IPC


def _encodings(payload: bytes, column: str) -> set[str]:
    meta = pq.ParquetFile(pa.BufferReader(payload)).metadata
    index = meta.schema.names.index(column)
    return {str(e) for g in range(meta.num_row_groups) for e in meta.row_group(g).column(index).encodings}


def test_a_short_chunk_keeps_a_dictionary_only_for_text_that_repeats() -> None:
    """Mostly distinct text gets no dictionary (its indices do not compress); repeating text keeps one."""
    n = 3_000
    table = pa.table({"note": [f"row {i}" for i in range(n)], "kind": ["a", "b", "c"] * (n // 3),
                      "half": [f"v{i // 2}" for i in range(n)]})
    packed = encode_inline(table, encode_schema(table.schema)[0], parquet=True)
    assert packed.payload is not None and packed.payload[:4] == b"PAR1"
    assert not any("DICT" in e for e in _encodings(packed.payload, "note"))
    assert any("DICT" in e for e in _encodings(packed.payload, "half"))  # half distinct: not mostly
    assert any("DICT" in e for e in _encodings(packed.payload, "kind"))
    assert decode_inline(packed.payload).select(["note", "kind", "half"]).equals(table)
