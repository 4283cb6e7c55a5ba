"""Iceberg schemas for UDR tables: Arrow types mapped to Iceberg types, with stable field ids.

A column keeps its field id for as long as a column of that name and type exists in any schema the
published table has had: ids are assigned once and looked up by (name, type), so adding a column gives it
a fresh id and old data files still map (a column dropped and re-added with another type gets a new id).
UDR's Parquet chunks carry no Parquet field ids, so readers map columns by name through the table
property `schema.name-mapping.default` (the Iceberg way to read files written without ids). Pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from udr.errors import SchemaError

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


def known_ids(schemas: Sequence[IcebergSchema]) -> dict[tuple[str, str], int]:
    """(name, type) -> field id over every schema a published table has had."""
    out: dict[tuple[str, str], int] = {}
    for schema in schemas:
        for f in schema["fields"]:
            out[(f["name"], f["type"])] = f["id"]
    return out


def to_iceberg(arrow: pa.Schema, table: str, ids: Mapping[tuple[str, str], int], last_id: int,
               schema_id: int) -> tuple[IcebergSchema, int]:
    """The Iceberg schema of `arrow` (every column optional), reusing `ids`; returns it and the new last id."""
    fields = []
    for field in arrow:
        kind = iceberg_type(field, table)
        fid = ids.get((field.name, kind))
        if fid is None:
            last_id += 1
            fid = last_id
        fields.append({"id": fid, "name": field.name, "required": False, "type": kind})
    return {"type": "struct", "schema-id": schema_id, "fields": fields}, last_id


def same_fields(a: IcebergSchema, b: IcebergSchema) -> bool:
    """Whether two schemas have the same columns (ignoring their schema ids)."""
    return bool(a["fields"] == b["fields"])


def name_mapping(schemas: Sequence[IcebergSchema]) -> str:
    """The `schema.name-mapping.default` property: for each field id, the column names it was known by."""
    names: dict[int, str] = {}
    for schema in schemas:
        for f in schema["fields"]:
            names.setdefault(f["id"], f["name"])
    # Ids of one name (a column re-added with another type): the newest, which current files use, wins.
    newest: dict[str, int] = {}
    for fid, name in sorted(names.items()):
        newest[name] = fid
    return json.dumps([{"field-id": fid, "names": [name]} for name, fid in sorted(newest.items(), key=lambda x: x[1])])
