"""How `Staging.add_rows` groups a write's row-group pieces into chunks: the pieces of one chunk, and whether
they are small enough to stay inline in the log. A pure function, out of `udr.materialize.staging` to keep
that module within its size."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from udr.log.format import INLINE_MAX_BYTES, ROW_GROUPS_PER_CHUNK


def inline_candidate(pieces: Iterator[pa.Table]) -> tuple[list[pa.Table], int]:
    """Pull row-group pieces until they outgrow an inline chunk, fill a chunk, or run out; return them and
    their size in bytes (Arrow computes `nbytes` anew on each call)."""
    head: list[pa.Table] = []
    size = 0
    for piece in pieces:
        head.append(piece)
        size += piece.nbytes
        if size > INLINE_MAX_BYTES or len(head) == ROW_GROUPS_PER_CHUNK:
            break
    return head, size
