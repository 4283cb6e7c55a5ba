"""`ChangeSource`: what a subscription needs from the layer above to turn commits into change batches.

The stream layer reads commits from the log itself; the row changes of a commit, the public `udr.Commit`
value and in-process commit notifications come from the facade (`udr.api.changes.LakeChanges`), which
implements this Protocol. Implementations must be safe to call from worker threads.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Protocol

import pyarrow as pa

from udr.log.commits import CommitRecord
from udr.log.format import CommitId
from udr.values import Commit

CommitListener = Callable[[Commit], None]


class ChangeSource(Protocol):
    """Change rows and commit values of one lake, and in-process commit notifications."""

    def commit_changes(self, table: str, cid: CommitId, record: CommitRecord) -> pa.Table | None:
        """The stamped change rows commit `cid` made to `table` (None: it did not change its rows)."""
        ...

    def net_changes(self, a: CommitId, b: CommitId, tables: AbstractSet[str] | None) -> dict[str, pa.Table]:
        """The net change rows of every table (of `tables`; None: all) that differs from `a` to `b`,
        stamped with `b`."""
        ...

    def primary_key(self, table: str, commit: Commit) -> tuple[str, ...] | None:
        """The primary key columns of `table` as `commit` left it (as before it, for a drop)."""
        ...

    def commit_value(self, cid: CommitId, record: CommitRecord) -> Commit:
        """The public value of a commit."""
        ...

    def add_listener(self, listener: CommitListener) -> None:
        """Call `listener` with every commit made through this handle, right after its commit point."""
        ...

    def remove_listener(self, listener: CommitListener) -> None:
        """Stop calling `listener` (no error if it was not listening)."""
        ...
