"""Merging the small gaps bodies of deletion vector payloads (format 5, `docs/FORMAT.md`, "Data chunks"), for
the log's placement of keyed writes (`udr.log.keyplace`), which folds a chain's few small links into one.

Plain Python, no numpy (the log layer does without it): the bodies it merges hold a keyed write's few positions
each. `udr.materialize.vectors` encodes and decodes the same bodies, large ones too, with numpy. Pure: safe from
any thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, pairwise

from udr.log.format import GAPS_VECTOR_MAX, VECTOR_GAPS_MAGIC

_HEADER = len(VECTOR_GAPS_MAGIC) + 1


def merged_gaps(bodies: Sequence[bytes]) -> bytes | None:
    """One gaps body holding every position of `bodies` (each a gaps body, their positions disjoint); None when
    one is not a gaps body, is damaged, or the positions are too many for one (`GAPS_VECTOR_MAX`)."""
    positions: list[int] = []
    for body in bodies:
        width = body[len(VECTOR_GAPS_MAGIC)] if len(body) > len(VECTOR_GAPS_MAGIC) else 0
        magic = body[:len(VECTOR_GAPS_MAGIC)]
        if magic != VECTOR_GAPS_MAGIC or width not in (1, 2, 4) or (len(body) - _HEADER) % width:
            return None
        steps = (int.from_bytes(body[i:i + width], "little") for i in range(_HEADER, len(body), width))
        positions.extend(accumulate(steps))
    positions.sort()
    if len(positions) >= GAPS_VECTOR_MAX or any(b <= a for a, b in pairwise(positions)):
        return None
    gaps = [b - a for a, b in zip([0, *positions], positions)]
    top = max(gaps, default=0)
    width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4
    return VECTOR_GAPS_MAGIC + bytes([width]) + b"".join(g.to_bytes(width, "little") for g in gaps)
