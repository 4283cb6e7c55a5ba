"""What the code that reads table states needs of a row reader: the `RowSource` Protocol, no implementation.

`udr.materialize.data.RowReader` implements it (chunk files and inline blobs, verified as read, with its
decode caches). The query layer (`udr.query.engine`'s views, `udr.query.diff`'s keyed comparisons) and the
pure readers of `udr.materialize` (`current`, `changes`) take a `RowSource`, so reading rows does not mean
depending on how chunks are encoded, cached and written. Safe across threads as the implementation is.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pyarrow as pa

from udr.log.format import BlobId
from udr.materialize.states import FragmentState, TableState


class RowSource(Protocol):
    """Reads the rows of table fragments back as Arrow."""

    def schema(self, schema_id: BlobId) -> pa.Schema:
        """The Arrow schema stored as blob `schema_id`."""
        ...

    def live_as(self, frag: FragmentState, schema: pa.Schema, *, table: str = "?",
                with_position: bool = False) -> pa.Table:
        """The live rows of one fragment under table schema `schema`: columns matched by id, missing ones
        null; `with_position` adds `__pos`.

        Raises:
            CorruptionError: a chunk or blob does not hash to its id, or is missing.
        """
        ...

    def rows_at_as(self, frag: FragmentState, positions: np.ndarray, schema: pa.Schema, *,
                   table: str = "?") -> pa.Table:
        """The rows at `positions` of one fragment under table schema `schema` (deleted ones included)."""
        ...

    def keep_mask(self, frag: FragmentState) -> np.ndarray:
        """One bool per row of the fragment: True for the rows not deleted."""
        ...

    def deleted_positions(self, frag: FragmentState) -> pa.Array:
        """Row positions deleted from a fragment (empty if none)."""
        ...

    def vector_payload(self, vector: BlobId) -> bytes:
        """The DELETES payload of deletion vector `vector` (raises `CorruptionError` when it is missing)."""
        ...

    def table(self, name: str, state: TableState, columns: list[str] | None = None,
              with_position: bool = False) -> pa.Table:
        """The live rows of table `name` in `state` (`with_position` adds `__frag` and `__pos`).

        Raises:
            CorruptionError: a chunk or blob does not hash to its id, or is missing.
        """
        ...

    def rows_at_hits(self, name: str, state: TableState, hits: pa.Table) -> pa.Table:
        """The live rows at (`__frag`, `__pos`) `hits` of table `name`, conformed to its schema, with `__pos`
        and `__frag`."""
        ...
