"""Table snapshots: what every table holds at a commit, folded from the log and cached.

`udr.materialize.fold.fold` applies a commit to its first parent's snapshot, live and in `rebuild`
alike. `Materializer` caches folded snapshots in the cache environment,
keyed by commit id (immutable), so a cache entry is never stale and opening any version costs one
lookup whatever the history length. Safe across threads and processes.
"""

from __future__ import annotations

import json
import marshal
from collections.abc import Callable, Mapping
from functools import partial
from operator import itemgetter
from typing import TypeAlias

from udr.log.activity import last_write, pruning
from udr.log.commits import CommitRecord
from udr.log.erasure import Erasure, ErasureStore, replace_record
from udr.log.format import (
    CACHE_STATE_TAG,
    CommitId,
)
from udr.log.hashing import content_id
from udr.log.protocols import LakeLog
from udr.log.snapcache import CacheView, SnapshotCache
from udr.materialize.fold import fold
from udr.materialize.states import FragmentState, TableState

_MEMORY_CACHE = 512
_MEMORY_SEGMENTS = 100_000
_SEGMENT_MARK = 64
# The two-hex-digit endings of chunk ids that end a segment (their value is a multiple of _SEGMENT_MARK).
_SEGMENT_ENDS = frozenset(f"{v:02x}" for v in range(0, 256, _SEGMENT_MARK))
# A snapshot is stored in the cache environment every this many first-parent steps.
CHECKPOINT_EVERY = 16


# Cached states are marshal bytes (decoding a 10,000-fragment manifest takes ~3 ms, JSON ~15 ms), tagged
# with the Python version (`CACHE_STATE_TAG`). Marshal version 2 writes no back-references: from version 3
# on, the bytes depend on which objects happen to be shared (their reference counts), and equal states
# must encode to equal bytes.
_MARSHAL_VERSION = 2
# What a cached state record holds: nested tuples of ids, names, counts and flags, all types marshal encodes.
_CacheRecord: TypeAlias = str | int | bool | tuple["_CacheRecord", ...] | None
# Where a fold starts: the commits to fold (newest first), the snapshot under the oldest and its checkpoint depth.
_Start: TypeAlias = tuple[list[tuple[CommitId, CommitRecord]], dict[str, TableState], int]


def _pack(value: _CacheRecord) -> bytes:
    return CACHE_STATE_TAG + b"\0" + marshal.dumps(value, _MARSHAL_VERSION)


def encode_state(state: TableState) -> bytes:
    """The canonical bytes of a whole table state (materializations are compared by them; the cache
    stores the same records cut into segments)."""
    return _pack((state.schema, state.primary_key, tuple(map(tuple, state.fragments))))


def split_segments(fragments: tuple[FragmentState, ...]) -> list[tuple[FragmentState, ...]]:
    """Cut a manifest where a fragment's chunk id ends a segment (about one in 64, decided by the id).

    Boundaries depend on the fragments themselves, not their positions, so the snapshots of a table at
    successive versions share all segments but the ones that changed: the cache stores each segment once
    and a process decodes it once.
    """
    out: list[tuple[FragmentState, ...]] = []
    start = 0
    for end, chunk in enumerate(map(itemgetter(0), fragments), 1):
        if chunk[-2:] in _SEGMENT_ENDS:
            out.append(fragments[start:end])
            start = end
    if start < len(fragments):
        out.append(fragments[start:])
    return out


def _untag(data: bytes | None) -> bytes | None:
    if data is None:
        return None
    tag, _, body = bytes(data).partition(b"\0")
    return body if tag == CACHE_STATE_TAG else None


_new_fragment = partial(tuple.__new__, FragmentState)


def _fragments(rows: list[tuple[object, ...]]) -> tuple[FragmentState, ...]:
    """Fragment records from decoded field tuples (C-speed: a cold open decodes thousands)."""
    if set(map(len, rows)) - {len(FragmentState._fields)}:
        raise ValueError("a cached fragment record has the wrong number of fields")
    return tuple(map(_new_fragment, rows))


class FragmentPool(dict[tuple[object, ...], FragmentState]):
    """Interns fragment records: snapshots decoded from the cache share one object per fragment.

    Consecutive snapshots of a table repeat almost all of their fragments; without sharing, opening many
    versions keeps hundreds of thousands of duplicate objects alive and Python's cyclic collector then
    stalls for tens of milliseconds walking them.
    """

    def intern_all(self, rows: list[tuple[object, ...]]) -> tuple[FragmentState, ...]:
        """The pooled record of each decoded field tuple (added to the pool when new)."""
        return tuple(map(self.setdefault, rows, _fragments(rows)))


def decode_state(data: bytes) -> TableState | None:
    """Parse `encode_state` bytes; None if another Python version wrote them."""
    body = _untag(data)
    if body is None:
        return None
    schema, pk, fragments = marshal.loads(body)  # noqa: S302 - our own cache record, see _pack
    return TableState(schema, pk, _fragments(fragments))


class Materializer:
    """Folds the log into snapshots on demand, caching them by commit id.

    Every snapshot is kept in memory (bounded); a snapshot is written to the cache environment only when
    it is `CHECKPOINT_EVERY` first-parent steps past the last stored one, so each commit costs O(1) cache
    work however big its tables' manifests grow, and opening any version folds at most that many commits.
    """

    def __init__(self, log: LakeLog) -> None:
        self._log = log
        self._memory: dict[CommitId, tuple[dict[str, TableState], int]] = {}
        self._pool = FragmentPool()
        self._segments: dict[str, tuple[FragmentState, ...]] = {}
        # The reverse, for segments this process stored: storing the next checkpoint re-encodes and
        # re-hashes only the segments that changed since (loads do not fill it: that would hash every
        # fragment of a cold open).
        self._segment_ids: dict[tuple[FragmentState, ...], str] = {}
        # Erasures replace chunks in every version (udr.log.erasure): snapshots are folded through their
        # maps, and cached per generation (how many erasures there are), so none outlives a new erasure.
        self._erasures = ErasureStore.of(log)
        self._cache = SnapshotCache(log)
        self._generation = 0
        self._maps: tuple[Erasure, ...] = ()
        # The log write transaction the two figures below were read at, and whether any version expired.
        self._seen = -1
        self._expired = False

    def replaced(self, record: CommitRecord) -> CommitRecord:
        """`record` as readers see it: every chunk and blob an erasure replaced, replaced."""
        self._refresh()
        return replace_record(record, self._maps)

    def any_expired(self) -> bool:
        """Whether retention expired some version's data (`udr.log.retention`): readers check only then."""
        self._refresh()
        return self._expired

    def _refresh(self) -> None:
        # Read from memory: unchanged means no write since the figures were read.
        if last_write(self._log) == self._seen:
            return
        found = pruning(self._log)
        self._expired = found.expired
        if found.erasures != self._generation:
            self._maps = tuple(self._erasures.erasures())
            self._memory.clear()
            self._generation = found.erasures
        self._seen = found.write

    def _key(self, cid: CommitId) -> bytes:
        return cid.encode() if not self._generation else f"{cid}:{self._generation}".encode()

    def snapshot(self, cid: CommitId) -> dict[str, TableState]:
        """The snapshot at commit `cid` (folding from the nearest cached ancestor)."""
        self._refresh()
        # Generation first, then maps (`_refresh` sets them the other way round): a snapshot folded while
        # an erasure lands is never cached under the new generation with the old maps.
        generation = self._generation
        maps = self._maps
        found = self._memory.get(cid)
        if found is not None:
            return found[0]
        chain, base, depth = self._from_memory(cid) or self._from_checkpoint(cid)
        for commit, record in reversed(chain):
            base = fold(base, replace_record(record, maps))
            if generation == self._generation:
                depth = self._keep(commit, base, depth + 1)
        return base

    def _from_memory(self, cid: CommitId) -> _Start | None:
        """The commits from `cid` back to the nearest ancestor whose snapshot is in memory, newest first, and that
        snapshot with its depth; None if none is within `CHECKPOINT_EVERY` first-parent steps.

        With several writers, each new head is the previous one plus the few commits the others made: walking
        back first finds the snapshot this process folded last, without a look in the cache per commit.
        """
        chain: list[tuple[CommitId, CommitRecord]] = []
        cursor: CommitId | None = cid
        while cursor is not None and len(chain) < CHECKPOINT_EVERY:
            hit = self._memory.get(cursor)
            if hit is not None:
                return chain, hit[0], hit[1]
            record = self._log.get_commit(cursor)
            chain.append((cursor, record))
            cursor = record.parents[0] if record.parents else None
        return None

    def _from_checkpoint(self, cid: CommitId) -> _Start:
        """As `_from_memory`, back to the nearest ancestor in memory or stored in the cache (or the root)."""
        chain: list[tuple[CommitId, CommitRecord]] = []
        cursor: CommitId | None = cid
        base: dict[str, TableState] = {}
        depth = CHECKPOINT_EVERY
        while cursor is not None:
            hit = self._memory.get(cursor)
            if hit is not None:
                base, depth = hit
                break
            record = self._log.get_commit(cursor)
            parent = record.parents[0] if record.parents else None
            # A commit whose parent is in memory (the next commit on a followed branch) folds from it
            # without looking for a stored checkpoint.
            if parent not in self._memory:
                stored = self._load(cursor)
                if stored is not None:
                    base, depth = stored, 0
                    self._remember(cursor, base, 0)
                    break
            chain.append((cursor, record))
            cursor = parent
        return chain, base, depth

    def table(self, cid: CommitId, name: str) -> TableState | None:
        """The state of table `name` at commit `cid`, None if it does not exist there."""
        return self.snapshot(cid).get(name)

    def remember_commit(self, cid: CommitId, parent: CommitId, snap: dict[str, TableState]) -> None:
        """Keep the snapshot a writer already folded for the commit it just made."""
        known = self._memory.get(parent)
        if known is not None:  # else an erasure since made the writer's parent stale: fold `cid` afresh
            self._keep(cid, snap, known[1] + 1)

    def _keep(self, cid: CommitId, snap: dict[str, TableState], depth: int) -> int:
        if depth >= CHECKPOINT_EVERY:
            # Processes folding the same history (a writer and its subscribers) reach the same
            # checkpoints: the first one stores it, the others find it there.
            if not self._stored(cid):
                self._store(cid, snap)
            depth = 0
        self._remember(cid, snap, depth)
        return depth

    def _remember(self, cid: CommitId, snap: dict[str, TableState], depth: int) -> None:
        if len(self._memory) >= _MEMORY_CACHE:
            self._memory.pop(next(iter(self._memory)))
        self._memory[cid] = (snap, depth)

    def _forget_segments(self) -> None:
        self._segments.clear()
        self._segment_ids.clear()
        self._pool.clear()

    def _stored(self, cid: CommitId) -> bool:
        return self._cache.snapshot(self._key(cid)) is not None

    def _load(self, cid: CommitId) -> dict[str, TableState] | None:
        key = self._key(cid)
        if self._cache.snapshot(key) is None:  # most ancestors a fold walks have none: no view for those
            return None
        with self._cache.reading() as view:
            raw = view.snapshot(key)
            if raw is None:
                return None
            out: dict[str, TableState] = {}
            try:
                for name, state_id in json.loads(raw).items():
                    record = _untag(view.state(state_id))
                    if record is None:
                        return None
                    schema, pk, segment_ids = marshal.loads(record)  # noqa: S302 - our own cache record
                    fragments: tuple[FragmentState, ...] = ()
                    for segment_id in segment_ids:
                        segment = self._segment(view, segment_id)
                        if segment is None:
                            return None
                        fragments += segment
                    out[name] = TableState(schema, pk, fragments)
            except (ValueError, KeyError, TypeError, AttributeError, EOFError):
                # A damaged cache entry is only lost work: fold the snapshot from the log instead.
                return None
        return out

    def _segment(self, view: CacheView, segment_id: str) -> tuple[FragmentState, ...] | None:
        found = self._segments.get(segment_id)
        if found is None:
            data = _untag(view.state(segment_id))
            if data is None:
                return None
            found = self._segments[segment_id] = self._pool.intern_all(marshal.loads(data))  # noqa: S302 - our own cache
        return found

    def _store(self, cid: CommitId, snap: Mapping[str, TableState]) -> None:
        if len(self._segments) > _MEMORY_SEGMENTS:
            self._forget_segments()
        with self._cache.writing() as view:
            ids: dict[str, str] = {}
            for name, state in snap.items():
                segment_ids = []
                for segment in split_segments(state.fragments):
                    segment_id = self._segment_ids.get(segment)
                    if segment_id is None:
                        data = _pack(tuple(map(tuple, segment)))
                        segment_id = content_id(data)
                        view.put_state(segment_id, data)
                        self._segments.setdefault(segment_id, segment)
                        self._segment_ids[segment] = segment_id
                    segment_ids.append(segment_id)
                record = _pack((state.schema, state.primary_key, tuple(segment_ids)))
                state_id = content_id(record)
                view.put_state(state_id, record)
                ids[name] = state_id
            view.put_snapshot(self._key(cid), json.dumps(ids, sort_keys=True).encode())

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Throw every cached snapshot away and fold the whole log again; return commits replayed."""
        self._cache.clear()
        self._memory.clear()
        self._forget_segments()
        total = self._log.last_seq() + 1
        done = 0
        for seq, cid in self._log.commits_from(0):
            self.snapshot(cid)
            done = seq + 1
            if progress is not None:
                progress(done, total)
        return done
