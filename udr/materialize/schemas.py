"""Schema evolution rules: the new schema of a table after adding, dropping, renaming or widening a column,
and the stable column ids that let a fragment written under an older schema be read under a newer one.

A column's id is its Arrow field metadata `udr.id`, or its name when it has none (every column of a lake
written before ids existed). A rename keeps the id, so chunks written before it are read by id and no
data is rewritten; a column added under a name whose id is still stored in a chunk gets a fresh id, so
dropped values never come back. Pure functions over Arrow schemas; they raise `SchemaError` before
anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from udr.errors import SchemaError
from udr.log.hashing import content_id

ID_KEY = b"udr.id"


def field_id(field: pa.Field) -> str:
    """The stable id of a column: its `udr.id` metadata, else its name."""
    metadata = field.metadata or {}
    raw = metadata.get(ID_KEY)
    return raw.decode() if raw is not None else str(field.name)


def parquet_field_id(field: pa.Field) -> int:
    """The Parquet (and Iceberg) field id of a column: a positive int32 derived from its stable id, so it survives
    renames and widening, and the same column gets the same id in every chunk and every published schema."""
    return 1 + int(content_id(field_id(field).encode())[:8], 16) % (2**31 - 2)


def has_ids(schema: pa.Schema) -> bool:
    """Whether any column of `schema` carries an explicit id (data a version-1 reader would misread)."""
    return any(ID_KEY in (f.metadata or {}) for f in schema)


def stored_names(stored: pa.Schema, target: pa.Schema) -> dict[str, str]:
    """For each column of `target` present in a fragment written under `stored`: target name -> stored name."""
    if stored is target:
        # A fragment written under the schema it is read with (readers share one object per schema blob): the
        # common case, asked for every fragment of every table a keyed write reads; ids need not be compared.
        return {name: name for name in target.names}
    by_id = {field_id(f): f.name for f in stored}
    return {f.name: by_id[field_id(f)] for f in target if field_id(f) in by_id}


def as_target(data: pa.Table, stored: pa.Schema, target: pa.Schema) -> pa.Table:
    """`data` (columns named as in `stored`) with its columns renamed to `target`'s names by id; columns
    `target` lacks are dropped, except bookkeeping ones starting with `__`."""
    back = {s: t for t, s in stored_names(stored, target).items()}
    keep = [c for c in data.column_names if c in back or c.startswith("__")]
    return data.select(keep).rename_columns([back.get(c, c) for c in keep])


def conform(data: pa.Table, schema: pa.Schema, *, extra: bool = False) -> pa.Table:
    """Reorder `data`'s columns to `schema`, adding missing (nullable) ones as nulls; keeps `__*` if `extra`."""
    if data.schema.equals(schema):
        return data
    columns = []
    for field in schema:
        if field.name in data.column_names:
            columns.append(data.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(data.num_rows, field.type))
    names = list(schema.names)
    if extra:
        for name in data.column_names:
            if name.startswith("__"):
                columns.append(data.column(name))
                names.append(name)
    return pa.table(columns, names=names)


def rename_by_id(data: pa.Table, source: pa.Schema, target: pa.Schema) -> pa.Table:
    """`data` (named as in `source`) with every column `target` has by id under `target`'s name; other
    columns keep their names."""
    back = {s: t for t, s in stored_names(source, target).items()}
    return data.rename_columns([back.get(c, c) for c in data.column_names])


def with_fresh_ids(schema: pa.Schema, current: pa.Schema, taken: Iterable[str]) -> pa.Schema:
    """`schema` where each column new relative to `current` whose id is `taken` (still stored in some
    chunk, or used by another column) gets a fresh id `name#N`."""
    used = set(taken) | {field_id(f) for f in current}
    old = {field_id(f) for f in current}
    fields = []
    for f in schema:
        fid = field_id(f)
        if fid not in old and fid in used:
            n = 1
            while f"{fid}#{n}" in used:
                n += 1
            fid = f"{fid}#{n}"
            fields.append(f.with_metadata({**(f.metadata or {}), ID_KEY: fid.encode()}))
        else:
            fields.append(f)
        used.add(fid)
    return pa.schema(fields)


def _index(table: str, schema: pa.Schema, name: str) -> int:
    index = int(schema.get_field_index(name))
    if index < 0:
        raise SchemaError(f"table {table!r} has no column {name!r} (it has {', '.join(schema.names)})")
    return index


def with_column(table: str, schema: pa.Schema, name: str, kind: pa.DataType) -> pa.Schema:
    """`schema` plus a nullable column `name` of type `kind`.

    Raises:
        SchemaError: the column exists already.
    """
    if name in schema.names:
        raise SchemaError(f"table {table!r} already has a column {name!r}")
    return schema.append(pa.field(name, kind, True))


def without_column(table: str, schema: pa.Schema, name: str, key: tuple[str, ...] | None) -> pa.Schema:
    """`schema` without column `name`.

    Raises:
        SchemaError: no such column, it is a key column, or it is the only column.
    """
    index = _index(table, schema, name)
    if key is not None and name in key:
        raise SchemaError(f"column {name!r} is part of the primary key of table {table!r}; it cannot be dropped")
    if len(schema) == 1:
        raise SchemaError(f"column {name!r} is the only column of table {table!r}; drop the table instead")
    return schema.remove(index)


def renamed(table: str, schema: pa.Schema, old: str, new: str) -> pa.Schema:
    """`schema` with column `old` named `new`, keeping its id (so stored chunks still read).

    Raises:
        SchemaError: no column `old`, or a column `new` exists already.
    """
    index = _index(table, schema, old)
    if new in schema.names:
        raise SchemaError(f"table {table!r} already has a column {new!r}")
    field = schema.field(index)
    metadata = {**(field.metadata or {}), ID_KEY: field_id(field).encode()}
    return schema.set(index, field.with_name(new).with_metadata(metadata))


def _int_bits(t: pa.DataType) -> tuple[bool, int] | None:
    return (pa.types.is_signed_integer(t), t.bit_width) if pa.types.is_integer(t) else None


def widens(old: pa.DataType, new: pa.DataType) -> bool:
    """Whether every value of type `old` is exactly a value of type `new` (a widening cast)."""
    if old.equals(new):
        return True
    a, b = _int_bits(old), _int_bits(new)
    if a is not None and b is not None:
        # Signed to signed or unsigned to unsigned widen; unsigned fits a strictly wider signed type.
        return bool((a[0] == b[0] and b[1] > a[1]) or (not a[0] and b[0] and b[1] > a[1]))
    if a is not None and pa.types.is_floating(new):
        return bool(a[1] < new.bit_width - (11 if new.bit_width == 64 else 8))  # fits the mantissa exactly
    if pa.types.is_floating(old) and pa.types.is_floating(new):
        return bool(new.bit_width > old.bit_width)
    if pa.types.is_decimal(old) and pa.types.is_decimal(new):
        return bool(new.scale >= old.scale and new.precision - new.scale >= old.precision - old.scale)
    if a is not None and pa.types.is_decimal(new):
        digits = len(str(2 ** a[1]))
        return bool(new.precision - new.scale >= digits)
    strings = (pa.types.is_string(old) or pa.types.is_large_string(old), pa.types.is_large_string(new))
    return strings == (True, True)


def with_type(table: str, schema: pa.Schema, name: str, kind: pa.DataType) -> pa.Schema:
    """`schema` with column `name` of the wider type `kind`.

    Raises:
        SchemaError: no such column, or `kind` does not hold every value of the current type.
    """
    index = _index(table, schema, name)
    current = schema.field(index).type
    if not widens(current, kind):
        raise SchemaError(f"table {table!r}: column {name!r} cannot change from {current} to {kind}: only widening "
                          "changes are allowed (integers and floats to wider ones, decimals to more digits, "
                          "strings to large strings); add a new column and fill it with an UPDATE instead")
    return schema.set(index, schema.field(index).with_type(kind))


def indexable(field: pa.Field) -> bool:
    """Whether a key column of this type can be indexed (and compared by numpy as the scan would)."""
    kind = field.type
    return bool(pa.types.is_integer(kind) or pa.types.is_temporal(kind) or pa.types.is_string(kind)
                or pa.types.is_large_string(kind))


def key_field(schema: pa.Schema, primary_key: tuple[str, ...] | None) -> pa.Field | None:
    """The field of a table's primary key if it is one column the index can hold (None: callers scan)."""
    field = schema.field(primary_key[0]) if primary_key is not None and len(primary_key) == 1 else None
    return field if field is not None and indexable(field) else None
