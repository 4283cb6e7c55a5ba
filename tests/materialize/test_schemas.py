"""Schema evolution rules and stable column ids."""

from __future__ import annotations

import pyarrow as pa
import pytest

from udr.errors import SchemaError
from udr.materialize.schemas import (
    as_target,
    field_id,
    renamed,
    stored_names,
    widens,
    with_fresh_ids,
    with_type,
    without_column,
)


@pytest.mark.parametrize(("old", "new", "ok"), [
    (pa.int8(), pa.int64(), True), (pa.int64(), pa.int32(), False), (pa.uint32(), pa.int64(), True),
    (pa.uint32(), pa.int32(), False), (pa.int32(), pa.float64(), True), (pa.int64(), pa.float64(), False),
    (pa.float32(), pa.float64(), True), (pa.float64(), pa.float32(), False),
    (pa.decimal128(10, 2), pa.decimal128(12, 2), True), (pa.decimal128(10, 2), pa.decimal128(10, 3), False),
    (pa.string(), pa.large_string(), True), (pa.large_string(), pa.string(), False),
    (pa.string(), pa.int64(), False), (pa.int32(), pa.int32(), True),
])
def test_widening(old: pa.DataType, new: pa.DataType, ok: bool) -> None:
    assert widens(old, new) is ok


def test_narrowing_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="widening"):
        with_type("t", pa.schema([("a", pa.int64())]), "a", pa.int32())


def test_key_and_last_columns_cannot_be_dropped() -> None:
    schema = pa.schema([("k", pa.int64()), ("v", pa.string())])
    with pytest.raises(SchemaError, match="primary key"):
        without_column("t", schema, "k", ("k",))
    with pytest.raises(SchemaError, match="only column"):
        without_column("t", pa.schema([("v", pa.string())]), "v", None)


def test_a_rename_keeps_the_id_and_reads_the_stored_name() -> None:
    stored = pa.schema([("a", pa.int64()), ("b", pa.string())])
    current = renamed("t", stored, "a", "z")
    assert field_id(current.field("z")) == "a" and field_id(current.field("b")) == "b"
    assert stored_names(stored, current) == {"z": "a", "b": "b"}
    data = pa.table({"a": [1], "b": ["x"], "__pos": [0]})
    assert as_target(data, stored, current).column_names == ["z", "b", "__pos"]


def test_a_name_added_back_after_a_drop_gets_a_fresh_id() -> None:
    old = pa.schema([("k", pa.int64())])
    back = with_fresh_ids(old.append(pa.field("v", pa.string())), old, taken={"k", "v"})
    assert field_id(back.field("v")) == "v#1"
    assert stored_names(pa.schema([("k", pa.int64()), ("v", pa.string())]), back) == {"k": "k"}
