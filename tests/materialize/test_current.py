"""udr.materialize.current: the stored rows a keyed write compares, with the live ones marked and each row's
place (fragment, position) the same as `RowReader.table(with_position=True)` gives for the live rows."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from udr.log.format import BlobId, BlobKind
from udr.log.hashing import content_id
from udr.log.store import LogStore
from udr.materialize.current import read_current
from udr.materialize.currentrows import CurrentRows
from udr.materialize.data import (
    RowReader,
    encode_chunk,
    encode_schema,
)
from udr.materialize.states import FragmentState, TableState
from udr.materialize.vectors import encode_positions


def _state(log: LogStore, parts: list[tuple[pa.Table, list[int]]]) -> TableState:
    """A table whose fragments hold `parts` (rows, deleted positions): big ones as files, small ones inline."""
    schema_id, payload = encode_schema(parts[0][0].schema)
    log.put_blobs_now({schema_id: (BlobKind.SCHEMA, payload)})
    frags = []
    for rows, deleted in parts:
        encoded = encode_chunk(rows, schema_id, log.chunks.put_written)
        if encoded.payload is not None:
            log.put_blobs_now({BlobId(encoded.fragment.chunk): (BlobKind.ROWS, encoded.payload)})
        f = encoded.fragment
        frag = FragmentState(f.chunk, f.rows, f.inline, f.schema)
        if deleted:
            vector = encode_positions(pa.array(deleted, pa.uint32()))
            blob = BlobId(content_id(vector))
            log.put_blobs_now({blob: (BlobKind.DELETES, vector)})
            frag = frag._replace(deletes=blob, deleted=len(deleted))
        frags.append(frag)
    return TableState(schema_id, ("id",), tuple(frags))


def test_live_rows_and_places_match_the_positioned_read(log: LogStore, make_big: Callable[..., pa.Table]) -> None:
    big = make_big(rows=40_000)
    state = _state(log, [(big, [0, 7, 39_999]), (big.slice(0, 5), []), (big.slice(5, 4), [1, 3])])
    reader = RowReader(log.chunks, log.get_blob)
    current = read_current(reader, "t", state)
    assert current.rows.num_rows == 40_000 + 5 + 4  # deleted rows stay, marked
    assert current.live is not None and int(current.live.sum()) == 40_000 - 3 + 5 + 2
    # Chunks as read, never concatenated: a comparison that lines rows up reads them in place.
    assert all(current.rows.column(c).num_chunks >= len(state.fragments) for c in current.rows.column_names)
    expected = reader.table("t", state, with_position=True)
    assert current.positioned().sort_by([("__frag", "ascending"), ("__pos", "ascending")]).equals(
        expected.select(current.positioned().column_names).sort_by([("__frag", "ascending"), ("__pos", "ascending")]))


def test_places_of_rows_read_one_by_one_come_from_their_columns() -> None:
    read = pa.table({"id": [5, 9], "__frag": pa.array([3, 1], pa.uint32()), "__pos": pa.array([10, 2], pa.uint32())})
    current = CurrentRows.from_positioned(read)
    assert current.rows.column_names == ["id"]
    place = current.positions(pa.array([1, 0]).to_numpy())
    assert list(zip(place.column("__frag").to_pylist(), place.column("__pos").to_pylist())) == [(1, 2), (3, 10)]


def test_an_empty_table_has_its_schema_and_no_rows(log: LogStore) -> None:
    schema_id, payload = encode_schema(pa.schema([("id", pa.int64())]))
    log.put_blobs_now({schema_id: (BlobKind.SCHEMA, payload)})
    current = read_current(RowReader(log.chunks, log.get_blob), "t", TableState(schema_id, ("id",)))
    assert current.rows.num_rows == 0 and current.positioned().column_names == ["id", "__frag", "__pos"]
