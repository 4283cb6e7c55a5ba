"""How `Staging.add_rows` groups a write's row-group pieces into chunks: the pieces of one chunk, and whether
they are small enough to stay inline in the log. A pure function, out of `udr.materialize.staging` to keep
that module within its size."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from udr.log.format import INLINE_MAX_BYTES, ROW_GROUPS_PER_CHUNK


def inline_candidate(pieces: Iterator[pa.Table]) -> tuple[list[pa.Table], int]:
    """Pull row-group pieces until they outgrow an inline chunk, fill a chunk, or run out; return them and
    their size in bytes, exact (`nbytes`) once it nears the limit, else a bound of it.

    The bound is the size of the whole buffers a piece references (`get_total_buffer_size`, ~0.2 us where
    `nbytes`, which measures the referenced part of each buffer, costs ~5 us a piece: ~6% of a small commit).
    It overstates only slices of larger buffers, so only a sum over the limit is measured again exactly.
    """
    head: list[pa.Table] = []
    size = 0
    for piece in pieces:
        head.append(piece)
        size += piece.get_total_buffer_size()
        if size > INLINE_MAX_BYTES:
            size = sum(p.nbytes for p in head)
        if size > INLINE_MAX_BYTES or len(head) == ROW_GROUPS_PER_CHUNK:
            break
    return head, size
