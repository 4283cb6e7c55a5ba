"""Before-images of large keyed writes that this process committed, kept in memory instead of in the log.

A keyed write's before-image (the old values of the cells it changed and of the rows it removed) is
redundant with the lake: those rows are still in the parent version's chunks, at the positions the write's
deletion vectors name. The writer leaves it out of the log only when it is large and deriving it decodes a
bounded number of stored rows per image row (`stores_image`); a bulk refresh's image would be a third of
what each night stores. The change feed derives a missing image
from the parent's chunks, which decodes every Parquet row group the write touched; so the writing process
keeps the images it computed anyway, and its own feeds and subscribers read them at the stored image's cost.

Derived state: nothing depends on it for correctness. An image is handed out only for the very op it was
kept with: once an erasure replaced a chunk of that op (`Materializer.replaced`), the op differs and the
feed derives from the rewritten chunks instead, so an erased value never comes back from memory. Bounded
by bytes, oldest dropped first; safe across threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import pyarrow as pa

from udr.log.commits import TableOp
from udr.log.format import BEFORE_IMAGE_DERIVE_RATIO, BEFORE_IMAGE_MAX_ROWS, CommitId
from udr.materialize.states import TableState

# Decoded images kept per lake handle: one night of the nightly refresh keeps 8.5 MB at 200,000 parcels (73 tables
# over the row limit), so ~36 MB at 856,000: the budget holds the last night or two.
KEPT_BEFORES_BYTES = 64 << 20


def stores_image(image_rows: int, op: TableOp, base: TableState | None) -> bool:
    """Whether the log stores the before-image of `op` (a keyed write to `base`) of `image_rows` rows: when it
    is small, or when deriving it would decode the fragments it deletes from for too few of their rows."""
    if image_rows <= BEFORE_IMAGE_MAX_ROWS:
        return True
    sizes = {fragment.chunk: fragment.rows for fragment in base.fragments} if base is not None else {}
    decoded = sum(sizes.get(deletes.chunk, 0) for deletes in op.deletes)
    return decoded > image_rows * BEFORE_IMAGE_DERIVE_RATIO


class KeptBefores:
    """Before-images by (commit, table), each with the op it belongs to, within a byte budget."""

    def __init__(self, budget: int = KEPT_BEFORES_BYTES) -> None:
        self._budget = budget
        self._images: OrderedDict[tuple[CommitId, str], tuple[TableOp, pa.Table]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def keep(self, commit: CommitId, table: str, op: TableOp, image: pa.Table) -> None:
        """Keep `image`, the before-image of `op` (table `table`'s op in commit `commit`)."""
        size = image.get_total_buffer_size()
        if size > self._budget:
            return
        with self._lock:
            if (commit, table) in self._images:
                return
            self._images[commit, table] = (op, image)
            self._bytes += size
            while self._bytes > self._budget:
                _, (_, old) = self._images.popitem(last=False)
                self._bytes -= old.get_total_buffer_size()

    def image(self, commit: CommitId, table: str, op: TableOp) -> pa.Table | None:
        """The image kept for `table` in `commit`, if `op` (that op as readers now see it) is the one it
        was kept with; else None."""
        with self._lock:
            found = self._images.get((commit, table))
        if found is None or found[0] != op:
            return None
        return found[1]
