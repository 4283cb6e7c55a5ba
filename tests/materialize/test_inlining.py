"""udr.materialize.inlining: the bound of a piece's size is never below Arrow's `nbytes`, so rows are inlined
exactly when their exact size allows it."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udr.log.format import INLINE_MAX_BYTES
from udr.materialize.inlining import buffer_slots, inline_candidate

STRINGS = pa.array([f"value {i}" * (i % 7) for i in range(2000)])
NUMBERS = pa.array(range(2000), pa.int64())
STRUCT = pa.StructArray.from_arrays([NUMBERS, NUMBERS], names=["a", "b"])  # one buffer referenced twice


def _tables() -> list[pa.Table]:
    return [
        pa.table({"s": STRINGS, "n": NUMBERS}),
        pa.table({"n": NUMBERS, "again": NUMBERS}),  # two columns share their buffers
        pa.table({"st": STRUCT}),
        pa.table({"d": STRINGS.dictionary_encode()}),
        pa.table({"l": pa.array([[i] * (i % 5) for i in range(2000)])}),
        pa.table({"m": pa.array([{"k": i} for i in range(2000)], pa.map_(pa.string(), pa.int64()))}),
        pa.Table.from_batches([pa.record_batch({"s": STRINGS}).slice(10, 50)] * 40),  # one slice, many times
    ]


@pytest.mark.parametrize("table", _tables(), ids=lambda t: ",".join(map(str, t.schema.types)))
@settings(max_examples=30, deadline=None)
@given(start=st.integers(0, 1999), length=st.integers(0, 2000))
def test_the_bound_never_is_below_the_exact_size(table: pa.Table, start: int, length: int) -> None:
    piece = table.slice(min(start, table.num_rows), length)
    slots = buffer_slots(piece.schema)
    assert slots is not None
    _, bound = inline_candidate(iter([piece]), slots)
    assert bound >= piece.nbytes


@pytest.mark.parametrize("rows", [10, 5_000, 40_000, 200_000])
def test_rows_are_inlined_exactly_when_their_exact_size_allows(rows: int) -> None:
    table = pa.table({"n": pa.array(range(rows), pa.int64()), "s": pa.array(["x" * 3] * rows)})
    pieces = [table.slice(i, 1000) for i in range(0, rows, 1000)]
    head, size = inline_candidate(iter(pieces), buffer_slots(table.schema))
    exact_head, exact = inline_candidate(iter(pieces), None)
    assert len(head) == len(exact_head)
    assert (size <= INLINE_MAX_BYTES) == (exact <= INLINE_MAX_BYTES)
    if exact > INLINE_MAX_BYTES:
        assert size == exact


def test_string_views_are_measured_exactly() -> None:
    assert buffer_slots(pa.schema([pa.field("v", pa.string_view())])) is None
    assert buffer_slots(pa.schema([pa.field("s", pa.string()), pa.field("d", pa.dictionary(pa.int8(), pa.string()))])
                        ) == [3, 6]
