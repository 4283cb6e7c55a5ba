"""How `Staging.add_rows` decides which rows stay inline in the log: the run of row-group pieces that makes one
chunk, and whether its size in bytes (Arrow's `nbytes`, the bytes of the buffer ranges the pieces reference)
is within `INLINE_MAX_BYTES`.

`nbytes` walks every buffer of every array and cost a small write (100 rows, W2) ~9% of its commit's CPU. A bound
of it decides alike while the bound stays under the limit: each buffer a piece references is at most the size of
its largest buffer, which its whole buffers' size (`get_total_buffer_size`, 0.3 us) covers, and the number of
buffers an array of a type references follows from the type (`buffer_slots`). Above the limit, or for types whose
arrays reference a variable number of buffers (string and binary views), the exact size decides. Pure functions.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from udr.log.format import INLINE_MAX_BYTES, ROW_GROUPS_PER_CHUNK

# An array's own buffers: at most validity, offsets (or type ids, run ends) and data (or sizes, value offsets).
_OWN_BUFFERS = 3


def buffer_slots(schema: pa.Schema) -> list[int] | None:
    """For each column of `schema`, at most how many buffers one array of it references (its children's and
    dictionary's included); None when a column's type does not bound it."""
    slots = [_slots(field.type) for field in schema]
    return None if any(s is None for s in slots) else [s for s in slots if s is not None]


def _slots(dtype: pa.DataType) -> int | None:
    if isinstance(dtype, pa.BaseExtensionType):
        return _slots(dtype.storage_type)
    if pa.types.is_string_view(dtype) or pa.types.is_binary_view(dtype):
        return None  # its strings live in any number of data buffers
    if pa.types.is_dictionary(dtype):
        parts = [_slots(dtype.index_type), _slots(dtype.value_type)]
    elif pa.types.is_run_end_encoded(dtype):
        parts = [_OWN_BUFFERS, _slots(dtype.run_end_type), _slots(dtype.value_type)]
    else:
        parts = [_OWN_BUFFERS, *(_slots(dtype.field(i).type) for i in range(dtype.num_fields))]
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


def inline_candidate(pieces: Iterator[pa.Table], slots: list[int] | None) -> tuple[list[pa.Table], int]:
    """Pull row-group pieces until they outgrow an inline chunk, fill a chunk, or run out; return them and their
    size in bytes: exact once it exceeds `INLINE_MAX_BYTES`, else a bound of it (`slots`: `buffer_slots` of the
    pieces' schema; None: always exact)."""
    head: list[pa.Table] = []
    size = 0
    exact = slots is None
    for piece in pieces:
        head.append(piece)
        size += piece.nbytes if exact else _bound(piece, slots or [])
        if size > INLINE_MAX_BYTES and not exact:
            exact = True
            size = sum(p.nbytes for p in head)
        if size > INLINE_MAX_BYTES or len(head) == ROW_GROUPS_PER_CHUNK:
            break
    return head, size


def _bound(piece: pa.Table, slots: list[int]) -> int:
    """At least `piece.nbytes`: as many buffers as its arrays reference, each at most all its buffers' size."""
    references: int = sum(int(column.num_chunks) * s for column, s in zip(piece.columns, slots, strict=True))
    return int(piece.get_total_buffer_size()) * references
