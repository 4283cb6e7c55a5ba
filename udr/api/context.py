"""The narrow context the facade's modules work through: the lower layers' public objects for one lake.

`Lake` builds one `LakeContext` when it opens and hands it to `udr.api.history` (and, as the facade is
taken apart, the other modules), so they depend on the layers' public APIs rather than on `Lake`'s
privates. Immutable; its objects are safe across threads as their own modules state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from udr.log.format import CommitId
from udr.log.protocols import LakeLog, ReadableCheck
from udr.materialize.befores import KeptBefores
from udr.materialize.data import RowReader
from udr.materialize.keyindex import KeyIndex
from udr.materialize.protocols import Snapshots
from udr.query.database import Database


@dataclass(frozen=True, slots=True)
class LakeContext:
    """One open lake's layers.

    Attributes:
        path: the lake directory.
        log: commits, refs, blobs and chunks (`udr.log`).
        materializer: snapshots per commit (`udr.materialize`).
        rows: reads rows of table states (`udr.materialize`).
        database: the lake's DuckDB database, for comparisons that run in SQL (`udr.query.database`).
        retention: which versions' data retention expired (`udr.log.retention`).
        befores: before-images of large keyed writes this process committed (`udr.materialize.befores`).
        keys: the key index: sorted key columns of chunks, which keyed writes find their rows through
            (`udr.materialize.keyindex`).
    """

    path: Path
    log: LakeLog
    materializer: Snapshots
    rows: RowReader
    database: Database
    retention: ReadableCheck
    befores: KeptBefores = field(default_factory=KeptBefores)
    keys: KeyIndex = field(default_factory=KeyIndex)

    def check_readable(self, commit: CommitId, tables: Iterable[str]) -> None:
        """Raise `udr.Expired` if the data of one of `tables` at `commit` has expired (`udr.log.retention`)."""
        if self.materializer.any_expired():  # no read pays for the lookup before the first `expire`
            self.retention.check_readable(commit, tables)
