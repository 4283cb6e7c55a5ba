"""The keys a transaction's keyed writes touched, hashed into their ops so the log can place them over
concurrent keyed writes of other keys (`udr.log.keyplace`) instead of the writer re-applying them.

An op carries its keys' hashes only while upserts and deletes by key are the only writes staged for its table
(any other write makes a row change the hashes would not name), only for a single-column key of an integer,
temporal or string type (the key index's), and only up to `KEY_HASHES_MAX` keys. A key's canonical bytes are
its integer value (temporal types: the integer Arrow stores) as 8 big-endian bytes, or its UTF-8 bytes: the
bytes two writers of one table hash alike. A `KeyedWrites` belongs to one `Staging` and its thread.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from udr.log.commits import TableOp
from udr.log.format import KEY_HASHES_MAX
from udr.log.hashing import key_hashes
from udr.materialize.schemas import key_field


def canonical_keys(keys: pa.Table, schema: pa.Schema, primary_key: tuple[str, ...] | None) -> list[bytes] | None:
    """The canonical bytes of each key in `keys` (a keyed write's rows or keys), None when they are not hashed
    (a key of several columns or another type, too many keys, a null key, or keys not of the key's type)."""
    field = key_field(schema, primary_key)
    if field is None or keys.num_rows > KEY_HASHES_MAX or field.name not in keys.column_names:
        return None
    column = keys.column(field.name)
    if column.null_count:
        return None
    try:
        values = column.cast(field.type).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
        return [str(v).encode() for v in values.to_pylist()]
    if pa.types.is_temporal(field.type):
        values = values.view(pa.int32() if field.type.bit_width == 32 else pa.int64())
    wide = np.asarray(values.to_numpy(zero_copy_only=False)).astype(">i8")
    return [wide[i:i + 1].tobytes() for i in range(len(wide))]


class KeyedWrites:
    """The keys written per table, valid while the table's staged op is the one its last keyed write left."""

    def __init__(self) -> None:
        self._tables: dict[str, tuple[TableOp | None, frozenset[bytes]]] = {}

    def record(self, table: str, before: TableOp | None, after: TableOp | None, keys: list[bytes] | None) -> None:
        """Note a keyed write of `keys` (None: not hashable) that turned `table`'s staged op from `before` (None:
        nothing staged) into `after`."""
        held = self._tables.get(table)
        if keys is None or (before is not None and (held is None or held[0] is not before)):
            self._tables.pop(table, None)  # another kind of write came first: the op changes unnamed rows
            return
        earlier = held[1] if held is not None and before is not None else frozenset()
        self._tables[table] = (after, earlier | frozenset(keys))

    def hashed(self, ops: Mapping[str, TableOp]) -> dict[str, tuple[int, ...]]:
        """The hashes of the keys of each table whose staged op in `ops` only keyed writes made (of at most
        `KEY_HASHES_MAX` keys); forgets them. Call before anything replaces the ops (matched by identity)."""
        valid = {t: keys for t, (op, keys) in self._tables.items() if op is not None and ops.get(t) is op}
        self._tables.clear()
        return {table: key_hashes(keys) for table, keys in valid.items() if len(keys) <= KEY_HASHES_MAX}
