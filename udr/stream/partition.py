"""Which partition of a consumer group a change belongs to, and which member owns which partition.

Both are part of the on-disk contract (`docs/FORMAT.md`, "Consumer groups with members"): partition
positions are durable, so a row must map to the same partition in every process and every release.

- A keyed table's change rows go by their key: each key column is cast to its canonical bytes (integers,
  decimals, dates and times through Arrow's cast to UTF-8 text; strings as UTF-8; binary as is), each
  value is hashed with a 64-bit polynomial hash (`_POLY`, wrapping arithmetic), the columns' hashes are
  combined in key order, and the result goes through the splitmix64 finalizer; the partition is that
  modulo the partition count. All of it runs as whole-array NumPy operations, never per row in Python.
- A batch of a table without a key (and a batch with no rows, a drop's) goes whole to partition
  `commit seq mod count`, so one commit's unkeyed batches stay together.
- Partition `n` belongs to the `n mod k`-th of the `k` live members in name order (`assign`).

Pure functions; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

_POLY = 0x100000001B3  # FNV-1's 64-bit prime
_COMBINE = 0x9E3779B97F4A7C15

U64 = npt.NDArray[np.uint64]


def assign(count: int, live: Sequence[str]) -> dict[int, str]:
    """Partition -> owning member, for `count` partitions and the live members `live` (none: empty)."""
    members = sorted(live)
    return {n: members[n % len(members)] for n in range(count)} if members else {}


def split(rows: pa.Table, key: Sequence[str] | None, count: int, seq: int) -> dict[int, pa.Table]:
    """`rows` (a batch of commit `seq`) by partition: partition -> its rows (in their order), only
    partitions that get rows, except that an unkeyed or empty batch goes whole to `seq mod count`."""
    if not key or rows.num_rows == 0:
        return {seq % count: rows}
    parts = partitions_of(rows, key, count)
    order = np.argsort(parts, kind="stable")
    bounds = np.searchsorted(parts[order], np.arange(count + 1))
    out: dict[int, pa.Table] = {}
    for n in range(count):
        if bounds[n] < bounds[n + 1]:
            out[n] = rows.take(pa.array(order[bounds[n]:bounds[n + 1]]))
    return out


def partitions_of(rows: pa.Table, key: Sequence[str], count: int) -> npt.NDArray[np.int64]:
    """The partition of each row of `rows`, by the columns `key`."""
    combined = np.zeros(rows.num_rows, dtype=np.uint64)
    for name in key:
        combined = combined * np.uint64(_COMBINE) + _column_hash(rows.column(name))
    return (_finalize(combined) % np.uint64(count)).astype(np.int64)


def _column_hash(column: pa.ChunkedArray) -> U64:
    values = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)):
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = pc.cast(values, pa.large_string())
        values = pc.cast(values, pa.large_binary())
    values = pc.cast(pc.fill_null(values, b""), pa.large_binary())
    return _bytes_hash(values)


def _bytes_hash(values: pa.Array) -> U64:
    """Horner's rule over the byte positions, one vectorised step per position: rows sorted by length,
    longest first, so step `j` updates exactly the leading rows that have a byte `j` (total work: the
    number of bytes). Result: sum of byte_i * P**(len-1-i) plus the length, modulo 2**64."""
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset:values.offset + n + 1]
    data_buffer = values.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")
    starts, by_length = offsets[:-1][order], lengths[order]
    # Rows with a byte at position j: the first `active[j]` of the sorted rows.
    active = np.searchsorted(-by_length, -np.arange(int(by_length[0]) if n else 0), side="left")
    h = np.zeros(n, dtype=np.uint64)
    poly = np.uint64(_POLY)
    for j, k in enumerate(active.tolist()):
        h[:k] = h[:k] * poly + data[starts[:k] + j]
    out = np.empty(n, dtype=np.uint64)
    out[order] = h + by_length.astype(np.uint64)
    return out


def _finalize(h: U64) -> U64:
    """splitmix64's finalizer: every input bit affects every output bit."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))
