"""What the code that reads table states needs of a row reader (`RowSource`) and of the snapshots it reads
them at (`Snapshots`): Protocols, no implementation.

`udr.materialize.data.RowReader` implements `RowSource` (chunk files and inline blobs, verified as read,
with its decode caches). The query layer (`udr.query.engine`'s views) and the pure readers of
`udr.materialize` (`current`, `changes`) take a `RowSource`, so reading rows does not mean depending on how
chunks are encoded, cached and written. `udr.materialize.snapshot.Materializer` implements `Snapshots`; the
facade's context holds it as one. Safe across threads as the implementations are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import pyarrow as pa

from udr.log.commits import CommitRecord
from udr.log.format import BlobId, CommitId
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


class Snapshots(Protocol):
    """What every table holds at each commit, folded from the log (`udr.materialize.snapshot.Materializer`).

    The facade's context and the collection of what kept versions need (`udr.materialize.retained`) read
    snapshots through it, not through the materializer's cache and erasure machinery.
    """

    def snapshot(self, cid: CommitId) -> dict[str, TableState]:
        """The snapshot at commit `cid` (folding from the nearest cached ancestor)."""
        ...

    def table(self, cid: CommitId, name: str) -> TableState | None:
        """The state of table `name` at commit `cid`, None if it does not exist there."""
        ...

    def replaced(self, record: CommitRecord) -> CommitRecord:
        """`record` as readers see it: every chunk and blob an erasure replaced, replaced."""
        ...

    def any_expired(self) -> bool:
        """Whether retention expired some version's data (`udr.log.retention`): readers check only then."""
        ...

    def remember_commit(self, cid: CommitId, parent: CommitId, snap: dict[str, TableState]) -> None:
        """Keep the snapshot a writer already folded for the commit it just made."""
        ...

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Throw every cached snapshot away and fold the whole log again; return commits replayed."""
        ...
