"""The snapshot cache: derived records the materializer stores in the lake's cache environment.

Two sub-databases (docs/FORMAT.md "cache"): `snapshots` maps a snapshot key to the ids of its table states,
`tablestates` maps a content id to a table-state record or a segment of one. The materializer decides what the
records hold; this module only stores and reads them, so no LMDB transaction leaves `udr.log`. The cache is
derived: a lost or damaged record costs a fold from the log, never data. Safe across threads and processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from udr.log.envtypes import Environment, IndexTxn, LogEnvironments
from udr.log.format import DB_SNAPSHOTS, DB_TABLESTATES


@dataclass(frozen=True, slots=True)
class CacheView:
    """The cache as one transaction sees it; valid only inside `SnapshotCache.reading`/`writing`."""

    env: Environment
    txn: IndexTxn

    def snapshot(self, key: bytes) -> bytes | None:
        """The record stored under snapshot key `key`, if any."""
        return self.txn.get(key, db=self.env.db(DB_SNAPSHOTS))

    def state(self, state_id: str) -> bytes | None:
        """The table-state record or segment stored under `state_id`, if any."""
        return self.txn.get(state_id.encode(), db=self.env.db(DB_TABLESTATES))

    def put_snapshot(self, key: bytes, record: bytes) -> None:
        """Store (or replace) the record of snapshot key `key`."""
        self.txn.put(key, record, db=self.env.db(DB_SNAPSHOTS))

    def put_state(self, state_id: str, record: bytes) -> None:
        """Store a record under its content id (kept if already there: equal ids hold equal bytes)."""
        self.txn.put(state_id.encode(), record, db=self.env.db(DB_TABLESTATES), overwrite=False)


class SnapshotCache:
    """The snapshot cache of one lake's log."""

    def __init__(self, log: LogEnvironments) -> None:
        """The cache `log` keeps beside it."""
        self._log = log

    def snapshot(self, key: bytes) -> bytes | None:
        """The record stored under snapshot key `key`, if any, read on its own (no view: a fold asks once per
        ancestor it walks, and most have none)."""
        env = self._log.cache
        with env.read() as txn:
            return txn.get(key, db=env.db(DB_SNAPSHOTS))

    @contextmanager
    def reading(self) -> Iterator[CacheView]:
        """A consistent view of the cache for several reads."""
        env = self._log.cache
        with env.read() as txn:
            yield CacheView(env, txn)

    @contextmanager
    def writing(self) -> Iterator[CacheView]:
        """A view whose writes commit together on clean exit (never synced: the cache is derived)."""
        env = self._log.cache
        with env.write() as txn:
            yield CacheView(env, txn)

    def clear(self) -> None:
        """Throw every cached record away (before a rebuild)."""
        self._log.cache.clear()
