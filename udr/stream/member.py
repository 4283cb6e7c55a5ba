"""`MemberFeed`: one member's share of a consumer group with several members, and its acks.

The member joins the group (`udr.log.members.MemberStore.join`) when the feed is made. Before each read it
syncs with the group's records when the log changed since the last sync (or `recheck` asked for it):
the live members give the target assignment (`udr.stream.partition.assign`); the member gives back the
partitions it owns but should not, once none of their batches awaits an ack (it delivers no new batch of
them meanwhile), and claims the partitions it should own that are free or whose owner's lease is dead.
The rebalance is cooperative between live members and needs no coordinator: a joining member waits for
the others to give its partitions back, a leaving one gives them back in `leave`, and a dead one's are
taken over at once. Its in-flight batches are delivered again to the new owner from the partition's
durable position; an ack it might still send carries a stale lease and is refused by `MemberStore`.

Reading: one `Feed` over the group's tables starts at the oldest position of the partitions owned; each
of its batches is split by partition (`partition.split`), and a partition gets only the batches after the
last one it was delivered or acknowledged, so gaining a partition (which restarts the feed further back)
repeats nothing. Acks are in delivery order within the member; each moves its own partition's position.

Like `Feed`, a `MemberFeed` belongs to one thread at a time; the subscription serializes its use.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import replace

from udr.errors import AckError, GroupBusy
from udr.log.activity import last_write
from udr.log.members import GroupState, MemberStore, PartitionAck
from udr.log.positions import Cursor, Lease, Position
from udr.log.protocols import LakeLog
from udr.stream.feed import Feed
from udr.stream.leases import LeaseKeeper, LocalLeases
from udr.stream.partition import assign, split
from udr.stream.source import ChangeSource
from udr.values import ChangeBatch, Commit

# (cursor, partition) of a delivered batch: what an ack names.
Delivery = tuple[Cursor, int | None]
# How long a member trusts that another member's process is alive (or gone): checking takes two /proc
# reads per member, and a member syncs after every commit or ack of any member of its group.
LIVENESS_TTL = 0.25


class MemberFeed:
    """The batches of the partitions member `member` of `group` owns, and the records acknowledging them."""

    def __init__(self, log: LakeLog, *, group: str, member: str, partitions: int | None, branch: str,
                 tables: frozenset[str] | None, start: Cursor, source: ChangeSource, max_rows: int,
                 leases: LeaseKeeper | None = None) -> None:
        """Join the group as `member` (making its partitions, from `start`, if it has none); `leases` keeps
        the member's lease live and tells whether others' are (default: `LocalLeases`).

        Raises:
            GroupBusy: `member` is live already.
            UsageError: `partitions` differs from the group's.
            StorageError: (a lake in object storage) the store failed.
        """
        self.group, self.member, self.branch = group, member, branch
        self.token = secrets.token_hex(16)
        self._log = log
        self._leases = leases or LocalLeases()
        self._store = MemberStore.of(log, self._leases.alive)
        self._source = source
        self._max_rows = max_rows
        origin = Position(start, time.time_ns() // 1000, branch, tuple(sorted(tables)) if tables is not None else None)
        self._leases.hold(self.token)
        try:
            state = self._store.join(group, member, self.token, partitions=partitions, start=origin)
        except BaseException:
            self._leases.drop(self.token)
            raise
        self.count = len(state.partitions)
        self.tables = state.partitions[0].position.tables
        # Owned partitions: their durable position, and the last cursor delivered or acknowledged.
        self._durable: dict[int, Position] = {}
        self._delivered: dict[int, Cursor] = {}
        self._active: set[int] = set()
        # Batches handed to the subscription and not yet acknowledged, by partition: a partition is given
        # back only when it has none (they may still wait in the subscription's read-ahead queue).
        self._outstanding: Counter[int] = Counter()
        self._feed: Feed | None = None
        self._split: deque[tuple[ChangeBatch, Cursor]] = deque()
        self._synced_at = -1
        self._alive_at: dict[str, tuple[float, bool]] = {}
        # The cursor of the last batch the current feed read (None: no feed): idle partitions may move
        # up to it with an ack. Moves staged with a delivery's ack, applied when it is acknowledged.
        self._scanned: Cursor | None = None
        self._idle: dict[Delivery, tuple[tuple[int, Cursor, Position], ...]] = {}
        self.dropped: dict[str, Cursor] = {}

    # -- the feed interface the subscription reads --------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once every table followed was dropped (for the partitions owned now)."""
        return self._feed is not None and self._feed.finished and not self._split

    def recheck(self) -> None:
        """Sync with the group's records on the next read even if the log did not change (a member may
        have died: a death writes nothing)."""
        self._synced_at = -1

    def next_batch(self) -> tuple[ChangeBatch, Cursor] | None:
        """The next batch of an owned partition, or None when there is nothing more now.

        Raises:
            GroupBusy: this member lost its lease (the group was deleted).
            RefNotFound: the branch was deleted.
        """
        self._sync(may_write=True)
        while True:
            if self._split:
                batch, cursor = self._split.popleft()
                assert batch.partition is not None
                self._delivered[batch.partition] = cursor
                self._outstanding[batch.partition] += 1
                return batch, cursor
            if self._feed is None:
                self._feed = self._open_feed()
                if self._feed is None:
                    return None
            item = self._feed.next_batch()
            if item is None:
                return None
            self._scanned = item[1]
            self._split_batch(*item)

    def next_is_light(self) -> bool:
        """Whether `next_batch` needs neither a write (a claim) nor a chunk file."""
        if not self._sync(may_write=False):
            return False
        if self._split:
            return True
        if self._feed is None:
            return not self._active  # opening a feed may start on a backlog: work for a worker thread
        return self._feed.next_is_light()

    # -- acks ---------------------------------------------------------------------------------------

    def acked(self, delivery: Delivery) -> bool:
        """Whether `delivery`'s partition is already at or past it."""
        cursor, n = delivery
        durable = self._durable.get(n) if n is not None else None
        return durable is not None and cursor.sort_key() <= durable.cursor.sort_key()

    def ack_record(self, delivery: Delivery, earlier: Sequence[Delivery]) -> PartitionAck:
        """The ack of `delivery`, staged after the `earlier` deliveries' acks (same member, in order).

        Raises:
            AckError: the batch's partition is not owned by this member any more.
        """
        cursor, n = delivery
        if n is None or n not in self._durable:
            raise AckError(f"partition {n} of group {self.group!r} was rebalanced away from member {self.member!r}; "
                           "its new owner gets the batch again")
        expected = next((c for c, p in reversed(earlier) if p == n), self._durable[n].cursor)
        # Only the first ack a transaction stages moves idle partitions: two such moves would collide.
        idle = () if earlier else self._idle_moves(cursor, n)
        self._idle[delivery] = idle
        return PartitionAck(self.group, self.member, self.token, n, expected, self._moved(n, cursor), idle)

    def acknowledged(self, delivery: Delivery) -> None:
        """`delivery`'s ack is durable."""
        cursor, n = delivery
        if n is not None and n in self._durable:
            self._durable[n] = replace(self._durable[n], cursor=cursor)
            self._outstanding[n] -= 1
        for q, expected, new in self._idle.pop(delivery, ()):
            if q in self._durable and self._durable[q].cursor == expected:
                self._durable[q] = new
                self._delivered[q] = max(self._delivered[q], new.cursor, key=Cursor.sort_key)

    def leave(self) -> None:
        """Give the member's lease and partitions back.

        Raises:
            StorageError: (a lake in object storage) the store failed; the lease lapses at its deadline.
        """
        try:
            self._store.leave(self.group, self.member, self.token)
        finally:
            self._leases.drop(self.token)

    # -- internals ----------------------------------------------------------------------------------

    def _moved(self, n: int, cursor: Cursor) -> Position:
        """Partition `n`'s position once it acknowledged `cursor`."""
        stored = self._durable[n]
        dropped = {*stored.dropped, *(t for t, at in self.dropped.items() if at.sort_key() <= cursor.sort_key())}
        return Position(cursor, time.time_ns() // 1000, self.branch, stored.tables, tuple(sorted(dropped)))

    def _idle_moves(self, cursor: Cursor, n: int) -> tuple[tuple[int, Cursor, Position], ...]:
        """The active partitions other than `n` that may move to `cursor` with its ack: the current feed
        read past `cursor`, so every batch they had up to it was handed out, and all of those are
        acknowledged (none awaits an ack or waits in the split queue)."""
        if self._scanned is None or cursor.sort_key() > self._scanned.sort_key():
            return ()
        pending = {batch.partition for batch, _ in self._split}
        return tuple((q, self._durable[q].cursor, self._moved(q, cursor)) for q in sorted(self._active - pending - {n})
                     if self._outstanding[q] <= 0 and self._durable[q].cursor.sort_key() < cursor.sort_key())

    def _sync(self, *, may_write: bool) -> bool:
        """Bring ownership up to date with the group's records; False if that needs a write and
        `may_write` is False (nothing changed then)."""
        txnid = last_write(self._log)
        if txnid == self._synced_at:
            return True
        state = self._store.state(self.group)
        if state is None:
            raise GroupBusy(f"group {self.group!r} was deleted while member {self.member!r} consumed it")
        target = {n for n, m in assign(self.count, state.live(self._alive)).items() if m == self.member}
        mine = {p.number for p in state.partitions if p.owner == self.token}
        give = {n for n in mine - target if self._outstanding[n] <= 0}
        # A claim checks liveness afresh: a partition is taken only from an owner that is gone now.
        take = {n for n in target - mine if not state.owned_live(state.partitions[n], self._alive)}
        if give or take:
            if not may_write:
                return False
            state = self._store.claim(self.group, self.member, self.token, take=take, give=give)
            mine = {p.number for p in state.partitions if p.owner == self.token}
        self._synced_at = txnid
        self._adopt(state, mine, mine & target)
        return True

    def _alive(self, lease: Lease) -> bool:
        if lease.token == self.token:
            return True
        now = time.monotonic()
        checked = self._alive_at.get(lease.token)
        if checked is None or now - checked[0] > LIVENESS_TTL:
            checked = self._alive_at[lease.token] = (now, self._leases.alive(lease))
        return checked[1]

    def _adopt(self, state: GroupState, mine: set[int], active: set[int]) -> None:
        """Take the owned partitions `mine`, delivering new batches of `active` only."""
        for n in set(self._durable) - mine:
            del self._durable[n]
            self._delivered.pop(n, None)
            self._outstanding.pop(n, None)
        gained = mine - set(self._durable)
        for n in gained:
            self._durable[n] = state.partitions[n].position
            self._delivered[n] = state.partitions[n].position.cursor
        if gained or active != self._active:
            # Restart the feed from the oldest position now owned; what was delivered is skipped.
            self._active = active
            self._feed = None
            self._scanned = None
            self._split.clear()

    def _open_feed(self) -> Feed | None:
        if not self._active:
            return None
        after = min((self._delivered[n] for n in self._active), key=Cursor.sort_key)
        tables = frozenset(self.tables) if self.tables is not None else None
        if tables is not None:
            # Tables every active partition stopped following when they were dropped are not read again.
            gone = set.intersection(*(set(self._durable[n].dropped) for n in self._active))
            tables = tables - gone
        feed = Feed(self._log, branch=self.branch, tables=tables, after=after, source=self._source, wants=self._wants,
                    max_rows=self._max_rows)
        feed.dropped = self.dropped
        self._scanned = after
        return feed

    def _wants(self, commit: Commit, table: str) -> bool:
        """Whether a batch may hold rows of an active partition: any keyed batch, an unkeyed one (or one
        without rows) only in its commit's partition."""
        return commit.seq % self.count in self._active or self._source.primary_key(table, commit) is not None

    def _split_batch(self, batch: ChangeBatch, cursor: Cursor) -> None:
        wanted = [n for n in sorted(self._active)
                  if cursor.sort_key() > self._delivered[n].sort_key() and batch.table not in self._durable[n].dropped]
        if not wanted:
            return
        key = self._source.primary_key(batch.table, batch.commit)
        parts = split(batch.changes, key, self.count, batch.commit.seq)
        for n in wanted:
            if n in parts:
                self._split.append((replace(batch, changes=parts[n], partition=n), cursor))
