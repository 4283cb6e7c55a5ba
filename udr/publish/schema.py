"""Iceberg schemas for UDR tables: Arrow types mapped to Iceberg types, with stable field ids.

A column's field id is derived from its UDR column id (`udr.materialize.schemas.parquet_field_id`), the same
id UDR writes into every Parquet chunk: a rename or a widening (an Iceberg type promotion) keeps it, and a
column dropped and added again gets a new column id, hence a new field id. The table property
`udr.column-ids` records each field id's UDR column id. Chunks written by UDR before field ids were embedded
(and inline fragments published earlier) carry none, so the table property `schema.name-mapping.default` (the
Iceberg way to read files written without ids) also lists every name a field had. Pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from udr.errors import SchemaError
from udr.materialize.schemas import field_id, parquet_field_id

IcebergSchema = dict[str, Any]


def iceberg_type(field: pa.Field, table: str) -> str:
    """The Iceberg primitive type of an Arrow column.

    Raises:
        SchemaError: the type has no Iceberg v2 equivalent that readers can map without a copy.
    """
    t = field.type
    simple = [(pa.types.is_boolean, "boolean"), (pa.types.is_float32, "float"), (pa.types.is_float64, "double"),
              (pa.types.is_date32, "date"), (pa.types.is_string, "string"), (pa.types.is_large_string, "string"),
              (pa.types.is_binary, "binary"), (pa.types.is_large_binary, "binary")]
    for check, name in simple:
        if check(t):
            return name
    if str(t) in ("string_view", "binary_view"):  # Parquet stores them as plain strings and binaries
        return str(t).removesuffix("_view")
    if pa.types.is_integer(t) and t.bit_width <= 32 and not (pa.types.is_unsigned_integer(t) and t.bit_width == 32):
        return "int"
    if pa.types.is_integer(t) and not (pa.types.is_unsigned_integer(t) and t.bit_width == 64):
        return "long"
    if pa.types.is_decimal(t) and t.precision <= 38:
        return f"decimal({t.precision}, {t.scale})"
    if pa.types.is_timestamp(t) and t.unit in ("us", "ms", "s"):
        return "timestamptz" if t.tz is not None else "timestamp"
    if pa.types.is_time64(t) and t.unit == "us":
        return "time"
    raise SchemaError(f"column {field.name!r} of table {table!r} has type {t}, which Iceberg v2 cannot describe "
                      "for files read in place; cast it (e.g. to int64, timestamp[us] or string) to publish it")


def to_iceberg(arrow: pa.Schema, table: str, last_id: int, schema_id: int) -> tuple[IcebergSchema, int, dict[str, str]]:
    """The Iceberg schema of `arrow` (every column optional).

    Returns the schema, the new last field id, and each of its field ids (as text) with its UDR column id.

    Raises:
        SchemaError: two columns' ids derive the same field id (about one table in 10^6 with 100 columns).
    """
    fields = []
    column_ids: dict[str, str] = {}
    for field in arrow:
        fid = parquet_field_id(field)
        if str(fid) in column_ids:
            raise SchemaError(f"columns {column_ids[str(fid)]!r} and {field_id(field)!r} of table {table!r} derive "
                              f"the same field id {fid}; rename one of them (drop and add it) to publish the table")
        fields.append({"id": fid, "name": field.name, "required": False, "type": iceberg_type(field, table)})
        column_ids[str(fid)] = field_id(field)
        last_id = max(last_id, fid)
    return {"type": "struct", "schema-id": schema_id, "fields": fields}, last_id, column_ids


def same_fields(a: IcebergSchema, b: IcebergSchema) -> bool:
    """Whether two schemas have the same columns (ignoring their schema ids)."""
    return bool(a["fields"] == b["fields"])


def name_mapping(schemas: Sequence[IcebergSchema]) -> str:
    """The `schema.name-mapping.default` property: for each field id, every column name it was known by.

    A name that two field ids had (a column renamed away and another added under its name) maps to the
    newest of them, which the current files use.
    """
    owner: dict[str, int] = {}
    for schema in schemas:  # oldest first: the newest schema holding a name owns it
        for f in schema["fields"]:
            owner[f["name"]] = f["id"]
    names: dict[int, list[str]] = {}
    for schema in reversed(schemas):  # the newest name first
        for f in schema["fields"]:
            if owner[f["name"]] == f["id"] and f["name"] not in names.setdefault(f["id"], []):
                names[f["id"]].append(f["name"])
    return json.dumps([{"field-id": fid, "names": names[fid]} for fid in sorted(names) if names[fid]])
