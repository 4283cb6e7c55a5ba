"""Publications: the destinations outside the lake that mirror its tables (`publications` sub-database).

A publisher records each destination it writes, with the branches and tables it published there, so the lake
can bring every copy up to date when it must: after an erasure, published copies have to drop the erased rows
too. Key: the destination (UTF-8, an absolute path, or a URL
for a lake in object storage). Value: JSON `{"kind": "iceberg", "branches": {BRANCH:
[TABLE, ...] | null}}` (null: every table of the branch). Each method is one LMDB transaction; safe across
threads and processes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from udr.log.format import DB_PUBLICATIONS
from udr.log.protocols import LakeLog


@dataclass(frozen=True, slots=True)
class Publication:
    """One destination: its kind and, per published branch, the tables published (None: every table)."""

    dest: str
    kind: str
    branches: Mapping[str, tuple[str, ...] | None]


class PublicationStore:
    """The publications of one lake's log."""

    def __init__(self, log: LakeLog) -> None:
        self._env = log.env

    def record(self, dest: str, kind: str, branch: str, tables: Sequence[str] | None) -> None:
        """Note that `tables` (None: every table) of `branch` were published to `dest`."""
        db = self._env.db(DB_PUBLICATIONS)
        with self._env.write() as txn:
            raw = txn.get(dest.encode(), db=db)
            branches: dict[str, list[str] | None] = json.loads(raw)["branches"] if raw is not None else {}
            known = branches.get(branch, [])
            branches[branch] = None if tables is None or (branch in branches and known is None) else sorted(
                set(known or ()) | set(tables))
            txn.put(dest.encode(), json.dumps({"kind": kind, "branches": branches}, sort_keys=True).encode(), db=db)

    def remove(self, dest: str) -> None:
        """Forget `dest` (it was unpublished)."""
        with self._env.write() as txn:
            txn.delete(dest.encode(), db=self._env.db(DB_PUBLICATIONS))

    def all(self) -> list[Publication]:
        """Every publication, by destination."""
        with self._env.read() as txn:
            rows = [(key.decode(), json.loads(value)) for key, value in txn.cursor(db=self._env.db(DB_PUBLICATIONS))]
        return [Publication(dest, doc["kind"], {b: tuple(t) if t is not None else None
                                                for b, t in doc["branches"].items()})
                for dest, doc in rows]
