r"""Pins: durable records that keep chunk files alive for an owner outside the log (`pins` sub-database).

Some chunks are referenced by no commit but by something the lake serves to the outside, such as the
Parquet copies of inline fragments that a published Iceberg table names. An owner (an opaque string, e.g.
`iceberg:/abs/dest`) pins each such chunk under a name of its choosing; `LogStore.collect_garbage` keeps
every pinned chunk, and `release` drops all of an owner's pins at once. The log does not interpret owners
or names. Keys: `OWNER \0 NAME` (UTF-8) -> chunk id (ASCII hex). Each method is one LMDB transaction;
safe across threads and processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from udr.errors import ConflictError, UsageError
from udr.log.chunks import ChunkStore
from udr.log.envtypes import Environment, IndexTxn, LogEnvironments
from udr.log.format import DB_INTENTS, DB_PINS, ChunkId

_SEP = b"\0"


def _prefix(owner: str) -> bytes:
    if not owner or "\0" in owner:
        raise UsageError(f"pin owner {owner!r} must be a non-empty string without NUL characters")
    return owner.encode() + _SEP


class PinnedLog(Protocol):
    """What pins need of a lake's log (a `LogStore`): its environment, and its chunk files to check."""

    @property
    def env(self) -> Environment:
        """The log's durable environment."""
        ...

    @property
    def chunks(self) -> ChunkStore:
        """The lake's chunk files."""
        ...


class PinStore:
    """The pins of one lake's log."""

    def __init__(self, log: PinnedLog) -> None:
        self._log = log

    def pin(self, owner: str, chunks: Mapping[str, ChunkId]) -> None:
        """Pin each chunk under `owner` and its name, and clear the chunks' write intents (they are now
        kept by the pin), in one durable write.

        Raises:
            ConflictError: a chunk file vanished before it was pinned (a concurrent gc); retry.
        """
        prefix = _prefix(owner)
        env = self._log.env
        with env.write() as txn:
            for name, chunk in chunks.items():
                if not self._log.chunks.exists(chunk):
                    raise ConflictError(f"chunk {chunk} vanished before it was pinned (concurrent gc?); retry")
                txn.put(prefix + name.encode(), chunk.encode(), db=env.db(DB_PINS))
                txn.delete(chunk.encode(), db=env.db(DB_INTENTS))

    def pins(self, owner: str) -> dict[str, ChunkId]:
        """Every pin of `owner`: name -> chunk id."""
        prefix = _prefix(owner)
        env = self._log.env
        out: dict[str, ChunkId] = {}
        with env.read() as txn:
            cursor = txn.cursor(db=env.db(DB_PINS))
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    out[key[len(prefix):].decode()] = ChunkId(value.decode())
        return out

    def unpin(self, owner: str, names: Sequence[str]) -> None:
        """Drop the pins of `owner` with these names (their chunks become garbage unless kept otherwise)."""
        prefix = _prefix(owner)
        env = self._log.env
        with env.write() as txn:
            for name in names:
                txn.delete(prefix + name.encode(), db=env.db(DB_PINS))

    def pinned(self) -> set[ChunkId]:
        """Every chunk some owner pins."""
        env = self._log.env
        with env.read() as txn:
            return {ChunkId(value.decode()) for _, value in txn.cursor(db=env.db(DB_PINS))}

    def release(self, owner: str) -> int:
        """Drop every pin of `owner` (its chunks become garbage unless a commit references them);
        return how many were dropped."""
        prefix = _prefix(owner)
        env = self._log.env
        with env.write() as txn:
            keys = self._owner_keys(txn, prefix)
            for key in keys:
                txn.delete(key, db=env.db(DB_PINS))
        return len(keys)

    def _owner_keys(self, txn: IndexTxn, prefix: bytes) -> list[bytes]:
        cursor = txn.cursor(db=self._log.env.db(DB_PINS))
        keys: list[bytes] = []
        if cursor.set_range(prefix):
            for key in cursor.iternext(keys=True, values=False):
                if not key.startswith(prefix):
                    break
                keys.append(key)
        return keys



def hold_chunk(log: LogEnvironments, chunk: ChunkId) -> None:
    """Note that an open transaction of this process will commit `chunk`, so gc keeps it until
    `release_chunks` (any handle of the lake in this process sees the hold)."""
    log.env.hold(chunk)


def release_chunks(log: LogEnvironments, chunks: Iterable[ChunkId]) -> None:
    """The transaction that held `chunks` (`hold_chunk`) committed or ended."""
    log.env.release(chunks)
