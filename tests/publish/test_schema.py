"""Arrow types to Iceberg types, and field ids that stay put as a table's schema grows."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from udr.errors import SchemaError
from udr.publish.schema import iceberg_type, known_ids, name_mapping, to_iceberg


@pytest.mark.parametrize(("arrow", "iceberg"), [
    (pa.int8(), "int"), (pa.uint16(), "int"), (pa.uint32(), "long"), (pa.int64(), "long"),
    (pa.float32(), "float"), (pa.float64(), "double"), (pa.bool_(), "boolean"), (pa.string(), "string"),
    (pa.large_string(), "string"), (pa.binary(), "binary"), (pa.date32(), "date"),
    (pa.decimal128(15, 2), "decimal(15, 2)"), (pa.timestamp("us"), "timestamp"),
    (pa.timestamp("ms", "UTC"), "timestamptz"), (pa.time64("us"), "time"),
])
def test_supported_types(arrow: pa.DataType, iceberg: str) -> None:
    assert iceberg_type(pa.field("c", arrow), "t") == iceberg


@pytest.mark.parametrize("arrow", [pa.uint64(), pa.timestamp("ns"), pa.list_(pa.int64())])
def test_types_iceberg_v2_cannot_describe_are_refused_with_the_column_named(arrow: pa.DataType) -> None:
    with pytest.raises(SchemaError, match="column 'c' of table 't'"):
        iceberg_type(pa.field("c", arrow), "t")


def test_an_added_column_gets_a_new_id_and_old_columns_keep_theirs() -> None:
    first, last, ids = to_iceberg(pa.schema([("a", pa.int64()), ("b", pa.string())]), "t", {}, 0, 0)
    second, last2, _ = to_iceberg(pa.schema([("a", pa.int64()), ("b", pa.string()), ("c", pa.float64())]), "t",
                                  known_ids([first], ids), last, 1)
    assert [f["id"] for f in first["fields"]] == [1, 2] and last == 2
    assert [f["id"] for f in second["fields"]] == [1, 2, 3] and last2 == 3
    assert json.loads(name_mapping([first, second])) == [
        {"field-id": 1, "names": ["a"]}, {"field-id": 2, "names": ["b"]}, {"field-id": 3, "names": ["c"]}]


def test_a_renamed_column_keeps_its_field_id_and_maps_both_names() -> None:
    def column(name: str, cid: str) -> pa.Field:
        return pa.field(name, pa.int64(), metadata={b"udr.id": cid.encode()})

    first, last, ids = to_iceberg(pa.schema([column("k", "k"), column("bal", "bal")]), "t", {}, 0, 0)
    second, last2, _ = to_iceberg(pa.schema([column("k", "k"), column("balance", "bal"), column("bal", "bal#2")]),
                                  "t", known_ids([first], ids), last, 1)
    assert [(f["name"], f["id"]) for f in second["fields"]] == [("k", 1), ("balance", 2), ("bal", 3)] and last2 == 3
    # "bal" now names the newer column, which current chunks use; the renamed one keeps "balance".
    assert json.loads(name_mapping([first, second])) == [
        {"field-id": 1, "names": ["k"]}, {"field-id": 2, "names": ["balance"]}, {"field-id": 3, "names": ["bal"]}]
    renamed_only, _, _ = to_iceberg(pa.schema([column("k", "k"), column("balance", "bal")]), "t",
                                    known_ids([first], ids), last, 1)
    assert json.loads(name_mapping([first, renamed_only])) == [
        {"field-id": 1, "names": ["k"]}, {"field-id": 2, "names": ["balance", "bal"]}]
