"""How a reader learns cheaply whether some process wrote to the log, and what the writes it must fold changed.

Readers above `udr.log` (subscriptions, group members, the materializer) poll these between reads instead of
reading the log: `last_write` is a number that changes whenever any process commits a write to the log,
read without a transaction and without blocking. Nothing here writes; safe from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from udr.log.envtypes import LogEnvironments
from udr.log.format import DB_ERASURES, DB_EXPIRED


@dataclass(frozen=True, slots=True)
class Pruning:
    """What erasures and retention did to the log, as of one write.

    Attributes:
        write: the `last_write` these figures were read at.
        erasures: how many erasures the lake holds (readers cache snapshots per count).
        expired: whether retention expired some version's data.
    """

    write: int
    erasures: int
    expired: bool


def last_write(log: LogEnvironments) -> int:
    """The id of the newest write to `log` by any process (from memory: no disk access, never blocks); a
    change means some process committed a write since."""
    return log.env.last_txnid()


def published(log: LogEnvironments, write: int) -> bool:
    """Whether new readers of `log` already see write `write` (see `wait_published`)."""
    return log.env.published(write)


def wait_published(log: LogEnvironments, limit: float = 1.0) -> None:
    """Wait (at most `limit` seconds) until new readers see every write of `log`: a commit can wake a
    watcher of the log a moment before readers see it (`udr.log.index.LmdbEnvironment.wait_published`)."""
    log.env.wait_published(limit)


def pruning(log: LogEnvironments) -> Pruning:
    """How many erasures `log` holds and whether any version expired, read in one snapshot."""
    env = log.env
    with env.read() as txn:
        return Pruning(int(txn.id()), int(txn.stat(env.db(DB_ERASURES))["entries"]),
                       int(txn.stat(env.db(DB_EXPIRED))["entries"]) > 0)
