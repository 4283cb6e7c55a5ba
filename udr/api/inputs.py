"""Turning what users pass as data into Arrow record batches, and checking it against a table's schema."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, TypeAlias, cast

import pyarrow as pa

from udr.api.sources import read_source
from udr.errors import SchemaError, UsageError

TableData: TypeAlias = pa.Table | pa.RecordBatch | pa.RecordBatchReader | Mapping[str, object] | object
"""Anything UDR accepts as rows: pyarrow Table, RecordBatch or RecordBatchReader, a pandas or polars
DataFrame, a dict of columns, any object exporting the Arrow C stream interface, or the path of a Delta
table, an Iceberg table, a directory of Parquet files or a glob of them (see `udr.read_source`)."""


# The one method of a polars DataFrame used here: polars is not a dependency, so it is not imported.
class _PolarsFrame(Protocol):
    def to_arrow(self) -> pa.Table: ...


def to_batches(data: TableData, table: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Return the schema and a (possibly streaming) iterator of record batches of `data`.

    Raises:
        UsageError: `data` is not something Arrow can convert.
        SchemaError: `data` has two columns of one name.
    """
    schema, batches = _to_batches(data)
    names = schema.names
    repeated = [] if len(set(names)) == len(names) else sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise SchemaError(f"table {table!r}: the data has duplicate column name(s) {', '.join(repeated)}")
    return schema, batches


def _to_batches(data: TableData) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    if isinstance(data, pa.Table):  # first: the common case, and checking for a path (an ABC) costs more
        return data.schema, iter(data.to_batches())
    if isinstance(data, (str, os.PathLike)):
        reader = read_source(data)
        return reader.schema, iter(reader)
    if isinstance(data, pa.RecordBatch):
        return data.schema, iter([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.schema, iter(data)
    if isinstance(data, Mapping):
        try:
            table = pa.table(dict(data))
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise UsageError(f"cannot convert the dict of columns to Arrow: {exc}") from exc
        return table.schema, iter(table.to_batches())
    module = type(data).__module__.split(".")[0]
    try:
        if module == "pandas":
            table = pa.Table.from_pandas(data, preserve_index=False)
        elif module == "polars":
            # The module check above is the narrowing: this is a polars DataFrame.
            table = cast(_PolarsFrame, data).to_arrow()
        elif hasattr(data, "__arrow_c_stream__"):
            table = pa.table(data)
        else:
            raise UsageError(
                f"cannot write a {type(data).__name__}: pass a pyarrow Table, RecordBatch or RecordBatchReader, "
                "a pandas or polars DataFrame, or a dict of columns"
            )
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise UsageError(f"cannot convert the {type(data).__name__} to Arrow: {exc}") from exc
    table = table.replace_schema_metadata(None)
    return table.schema, iter(table.to_batches())


def _kind(t: pa.DataType) -> str:
    checks = [
        ("null", pa.types.is_null), ("bool", pa.types.is_boolean), ("int", pa.types.is_integer),
        ("float", pa.types.is_floating), ("decimal", pa.types.is_decimal), ("string", pa.types.is_string),
        ("string", pa.types.is_large_string), ("string", pa.types.is_string_view),
        ("binary", pa.types.is_binary), ("binary", pa.types.is_large_binary),
        ("date", pa.types.is_date), ("timestamp", pa.types.is_timestamp), ("time", pa.types.is_time),
        ("duration", pa.types.is_duration), ("dictionary", pa.types.is_dictionary),
    ]
    for name, check in checks:
        if check(t):
            return name
    return str(t)


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    if source.equals(target) or pa.types.is_null(source):
        return True
    if pa.types.is_dictionary(source):
        return _castable(source.value_type, target)
    if _kind(source) == "int" and _kind(target) == "float":
        return True  # whole numbers in a float column (a CSV column that happens to hold no fraction)
    return _kind(source) == _kind(target) and _kind(source) in {"int", "float", "string", "binary", "date", "timestamp"}


def conform_input(
    table: str, current: pa.Schema, incoming: pa.Schema, *, evolve: bool, drop_missing: bool = False,
    key: tuple[str, ...] | None = None,
) -> tuple[pa.Schema, Callable[[pa.RecordBatch], pa.RecordBatch]]:
    """Check incoming columns against a table's schema; return the target schema and a batch converter.

    With `evolve` and `drop_missing`, the table's columns the data lacks leave the schema (never a key column).

    Raises:
        SchemaError: extra or missing columns (without `evolve`), a column of another type, or a key
            column missing with `drop_missing`.
    """
    names = set(current.names)
    extra = [n for n in incoming.names if n not in names]
    missing = [n for n in current.names if n not in set(incoming.names)]
    if len(set(incoming.names)) != len(incoming.names):
        raise SchemaError(f"table {table!r}: the data has duplicate column names")
    if (extra or missing) and not evolve:
        parts = []
        if extra:
            parts.append(f"new column(s) {', '.join(extra)}")
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        raise SchemaError(
            f"table {table!r}: the data has {' and '.join(parts)}; pass evolve=True (udr import --evolve) "
            "to add new columns as nullable and fill missing ones with nulls"
        )
    wrong = [
        f"{f.name} is {f.type}, table has {current.field(f.name).type}"
        for f in incoming
        if f.name in names and not _castable(f.type, current.field(f.name).type)
    ]
    if wrong:
        raise SchemaError(f"table {table!r}: column types do not match: {'; '.join(wrong)}")
    target = current
    if evolve and drop_missing and missing:
        lost = [n for n in missing if key is not None and n in key]
        if lost:
            raise SchemaError(f"table {table!r}: the data lacks key column(s) {', '.join(lost)}")
        target = pa.schema([f for f in current if f.name not in set(missing)])
    for f in incoming:
        if f.name not in names:
            target = target.append(pa.field(f.name, f.type if not pa.types.is_null(f.type) else pa.string(), True))

    def convert(batch: pa.RecordBatch) -> pa.RecordBatch:
        if batch.schema.equals(target):
            return batch
        columns = []
        for field in target:
            index = batch.schema.get_field_index(field.name)
            if index < 0:
                columns.append(pa.nulls(batch.num_rows, field.type))
                continue
            try:
                columns.append(batch.column(index).cast(field.type))
            except pa.ArrowInvalid as exc:
                raise SchemaError(f"table {table!r}: column {field.name} does not fit {field.type}: {exc}") from exc
        return pa.RecordBatch.from_arrays(columns, schema=target)

    return target, convert
