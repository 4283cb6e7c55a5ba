"""Arrow types to Iceberg types, and field ids that stay put as a table's schema grows."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from udr.errors import SchemaError
from udr.materialize.schemas import parquet_field_id
from udr.publish.schema import iceberg_type, name_mapping, to_iceberg


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


def _ids(schema: dict[str, object]) -> dict[str, int]:
    return {f["name"]: f["id"] for f in schema["fields"]}  # type: ignore[attr-defined]


def test_field_ids_derive_from_column_ids_and_match_the_chunks() -> None:
    first, last, ids = to_iceberg(pa.schema([("a", pa.int64()), ("b", pa.string())]), "t", 0, 0)
    second, last2, _ = to_iceberg(pa.schema([("a", pa.int64()), ("b", pa.string()), ("c", pa.float64())]), "t",
                                  last, 1)
    assert _ids(second) == {**_ids(first), "c": parquet_field_id(pa.field("c", pa.float64()))}
    assert _ids(first)["a"] == parquet_field_id(pa.field("a", pa.int8())) > 0
    assert last == max(_ids(first).values()) and last2 == max(_ids(second).values())
    assert ids == {str(_ids(first)["a"]): "a", str(_ids(first)["b"]): "b"}
    assert len(json.loads(name_mapping([first, second]))) == 3


def test_a_renamed_column_keeps_its_field_id_and_maps_both_names() -> None:
    def column(name: str, cid: str) -> pa.Field:
        return pa.field(name, pa.int64(), metadata={b"udr.id": cid.encode()})

    first, last, _ = to_iceberg(pa.schema([column("k", "k"), column("bal", "bal")]), "t", 0, 0)
    second, _, _ = to_iceberg(pa.schema([column("k", "k"), column("balance", "bal"), column("bal", "bal#2")]),
                              "t", last, 1)
    k, bal, bal2 = (_ids(second)[n] for n in ("k", "balance", "bal"))
    assert (k, bal) == (_ids(first)["k"], _ids(first)["bal"]) and len({k, bal, bal2}) == 3
    # "bal" now names the newer column, which current chunks use; the renamed one keeps "balance".
    mapping = {m["field-id"]: m["names"] for m in json.loads(name_mapping([first, second]))}
    assert mapping == {k: ["k"], bal: ["balance"], bal2: ["bal"]}
    renamed_only, _, _ = to_iceberg(pa.schema([column("k", "k"), column("balance", "bal")]), "t", last, 1)
    mapping = {m["field-id"]: m["names"] for m in json.loads(name_mapping([first, renamed_only]))}
    assert mapping == {k: ["k"], bal: ["balance", "bal"]}
