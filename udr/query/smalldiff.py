"""The keyed diff of a few rows (an upsert of ten keys against the ten rows they match) in plain Python.

`udr.query.diff.keyed_diff` compares columns with Arrow kernels and aligns keys with numpy: each call has a
fixed cost of tens of microseconds, and a diff of ten rows makes dozens of them (~0.6 ms). Here the few rows
are compared as Python values, one dict lookup per key, and Arrow is called once per column to gather the
before-image. The result equals `keyed_diff`'s, before-image included row for row (tests compare the two).

Only single-column keys and columns whose Python values compare as the diff does are taken (integers,
floats with NaN equal to NaN, booleans, strings, binaries, decimals, temporal types by their integer);
anything else returns None and the caller runs `keyed_diff`. Pure functions, safe from any thread.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from udr.errors import KeyViolation
from udr.materialize.currentrows import CurrentRows
from udr.query.diff import KeyedDiff

# At most this many rows on either side: beyond it the vectorized diff is the cheaper one.
SMALL_ROWS = 64
# Before-image masks are 64 bits wide: wider tables get no before-image (as `keyed_diff`).
_MASK_BITS = 64


def _comparable(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_decimal(t)
            or (pa.types.is_temporal(t) and not pa.types.is_interval(t)))


def _values(column: pa.ChunkedArray) -> list[object]:
    """Python values that compare as the column's values do: temporal ones as their integer."""
    if pa.types.is_temporal(column.type):
        width = pa.int32() if column.type.bit_width == 32 else pa.int64()
        column = pa.chunked_array([chunk.view(width) for chunk in column.chunks], width)
    return list(column.to_pylist())


def _distinct(a: object, b: object) -> bool:
    """`a IS DISTINCT FROM b`, NaN equal to NaN."""
    if a is None or b is None:
        return a is not b
    if a == b:
        return False
    return not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def small_keyed_diff(current: CurrentRows, new: pa.Table, key: list[str], *, table: str,
                     remove_missing: bool) -> KeyedDiff | None:
    """`keyed_diff(current, new, key, ...)` computed in Python for a few rows; None when the rows are not few
    or a column's type is not one compared here (the caller runs `keyed_diff`).

    Raises:
        KeyViolation: `new` has a null or duplicate key.
    """
    old = current.rows
    if (len(key) != 1 or new.num_rows > SMALL_ROWS or old.num_rows > SMALL_ROWS
            or not all(_comparable(f.type) for f in new.schema)
            # Float keys: NaN is one key to the diff, never equal to itself in a dict.
            or pa.types.is_floating(new.schema.field(key[0]).type)
            or not all(old.schema.get_field_index(f.name) >= 0 and old.schema.field(f.name).type.equals(f.type)
                       for f in new.schema)):
        return None
    name = key[0]
    keys = _values(new.column(name))
    if None in keys:
        raise KeyViolation(f"table {table!r}: null in primary key column {name!r} of the written data")
    live = range(old.num_rows) if current.live is None else np.flatnonzero(current.live).tolist()
    stored = _values(old.column(name))
    where = {stored[i]: i for i in live}
    if len(set(keys)) != len(keys):
        repeated = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise KeyViolation(f"table {table!r}: duplicate primary key {{{name!r}: {repeated!r}}} in the written data")
    values = [c for c in new.column_names if c != name]
    news = [_values(new.column(c)) for c in values]
    olds = [_values(old.column(c)) for c in values]
    inserted: list[int] = []
    updated: list[int] = []
    prior: list[int] = []
    masks: list[int] = []
    for row, k in enumerate(keys):
        at = where.get(k)
        if at is None:
            inserted.append(row)
            continue
        mask = sum(1 << bit for bit, (n, o) in enumerate(zip(news, olds)) if _distinct(n[row], o[at]))
        if mask:
            updated.append(row)
            prior.append(at)
            masks.append(mask)
    matched = set(keys)
    gone = [i for i in live if stored[i] not in matched] if remove_missing else []
    diff = KeyedDiff(_rows(new, inserted), _rows(new, updated), current.positions(np.array(prior, np.int64)),
                     current.positions(np.array(gone, np.int64)), None)
    if len(values) >= _MASK_BITS:
        return diff
    return KeyedDiff(diff.inserted, diff.updated, diff.replaced, diff.removed,
                     _before_image(old, new.schema, name, values, prior, masks, gone))


def _rows(table: pa.Table, rows: list[int]) -> pa.Table:
    """`table.take(rows)` (`rows` increasing), without a take when they are all or none of its rows."""
    if len(rows) == table.num_rows:
        return table
    return table.slice(0, 0) if not rows else table.take(pa.array(rows, pa.int64()))


def _before_image(old: pa.Table, schema: pa.Schema, key: str, values: list[str], prior: list[int],
                  masks: list[int], gone: list[int]) -> pa.Table:
    """As `udr.query.diff.before_image`: per updated row (old row `prior`, changed columns `masks`) its key,
    mask, False and the old value of each changed cell; per removed row (`gone`) its key, a full mask, True
    and every old value."""
    full = (1 << len(values)) - 1
    rows = pa.array(prior + gone, pa.int64())
    image_schema = pa.schema(
        [schema.field(key), pa.field("__mask", pa.uint64()), pa.field("__deleted", pa.bool_())]
        + [schema.field(c).with_nullable(True) for c in values])
    columns = [old.column(key).take(rows), pa.array(masks + [full] * len(gone), pa.uint64()),
               pa.array([False] * len(prior) + [True] * len(gone), pa.bool_())]
    for bit, c in enumerate(values):
        cells = pa.array([i if m >> bit & 1 else None for i, m in zip(prior, masks)] + gone, pa.int64())
        columns.append(old.column(c).take(cells))
    return pa.Table.from_arrays([c if c.type.equals(f.type) else c.cast(f.type) for c, f in zip(columns, image_schema)],
                                schema=image_schema)
