"""`Subscription`: an async iterator over a branch's change batches, with ordered, durable acks.

A subscription pulls batches from the log (`feed.Feed`) and, when the log has nothing new, sleeps on a
`notify.Waiter` until some process commits. Reading chunk files and LMDB writes run in worker threads, so
the event loop never waits on a disk. One trip to a worker thread reads ahead what is already committed,
up to `READ_AHEAD_BATCHES` batches or `READ_AHEAD_ROWS` rows, so draining a backlog does not pay a thread
hand-off per batch while memory stays bounded. The live case, a commit of a few inline rows, is read on
the event loop: it touches only LMDB's memory map (pages the committing process just wrote) and takes less
time than the hand-off to a worker thread (~0.2-0.35 ms after an idle wait), which would be most of the
delivery latency.

Invariants:
- Acks come in delivery order, each batch once; anything else raises `AckError` and changes nothing.
- A batch holds at most `max_rows` rows: a commit's larger changes to a table come in parts
  (`ChangeBatch.part` of `parts`), each delivered and acknowledged like a batch of its own, so a group
  resumes at the part after its last acknowledged one.
- With a group, the lease is taken when the subscription is made and given back by `aclose()`. The
  group's position moves only by compare-and-swap from the position this subscriber last acknowledged:
  in a write of its own (`ack`) or inside the commit of a transaction (`stage_ack`, via
  `Transaction.ack`), so outputs and position are durable together. After a crash the group resumes just
  after its last acknowledged batch: unacknowledged batches come again (at-least-once), and outputs
  committed with their ack are neither lost nor repeated (exactly-once).
- Without a group nothing is written; acks only check the order, and batches more than
  `EPHEMERAL_WINDOW` deliveries old count as acknowledged, so an ephemeral consumer that never acks
  holds no growing state.
- With a member of a group with several members (`member.MemberFeed`), batches come from the partitions
  the member owns and each ack moves its batch's partition; acks still follow delivery order. An idle
  member looks at the group again every `MEMBER_RECHECK` seconds: another member's death writes nothing.
- One task iterates at a time; acks are serialized. `wake` (the commit listener) is safe from any thread.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import final

import anyio
import anyio.lowlevel
import anyio.to_thread

from udr.errors import AckError, StorageError, UsageError
from udr.log.activity import last_write, published, wait_published
from udr.log.format import LOG_DATA_FILE, LOG_DIR
from udr.log.groups import Ack, GroupAck, GroupStore, write_acks
from udr.log.positions import Cursor, Position
from udr.log.protocols import LakeLog
from udr.stream.feed import MAX_ROWS, Feed
from udr.stream.leases import LeaseKeeper, LocalLeases
from udr.stream.member import Delivery, MemberFeed
from udr.stream.notify import open_waiter
from udr.stream.pauses import freeze_long_lived_objects
from udr.stream.source import ChangeSource
from udr.values import ChangeBatch, Commit

EPHEMERAL_WINDOW = 4096
READ_AHEAD_BATCHES = 64
READ_AHEAD_ROWS = 65_536
MEMBER_RECHECK = 0.5



@dataclass(frozen=True, slots=True)
class PendingAck:
    """An ack staged in a transaction: `ack` runs inside its commit, `done()` after the commit succeeded."""

    subscription: Subscription
    ack: GroupAck
    delivery: Delivery

    def done(self) -> None:
        """Tell the subscription its batch is now durably acknowledged."""
        self.subscription._acknowledged(self.delivery)


@final
class Subscription:
    """The change batches of one branch, as an async iterator: `async for batch in sub: ...`.

    Made by `udr.Lake.subscribe`. Use as an async context manager or call `aclose()`; closing gives a
    group's lease back.
    """

    def __init__(self, log: LakeLog, *, branch: str, tables: frozenset[str] | None, group: str | None,
                 start: Cursor, source: ChangeSource, member: str | None = None,
                 partitions: int | None = None, max_rows: int = MAX_ROWS, leases: LeaseKeeper | None = None) -> None:
        """Deliver what follows `start` (a group resumes from its position) in batches of <= `max_rows` rows
        (`leases`: how the group's lease stays live; default `LocalLeases`, a lake on this machine).

        Raises:
            GroupBusy: another live subscriber consumes `group` (with `member`: that member is live).
            UsageError: `partitions` differs from the group's, `member` without `group`, or `max_rows` < 1.
        """
        if max_rows < 1:
            raise UsageError(f"max_rows={max_rows}: a batch holds at least one row; pass max_rows >= 1")
        self.branch, self.group, self.max_rows = branch, group, max_rows
        self.tables = tuple(sorted(tables)) if tables is not None else None
        self._log, self._leases = log, leases or LocalLeases()
        self._groups = GroupStore.of(log, self._leases.alive)
        self._token = secrets.token_hex(16)
        self._unacked: deque[Delivery] = deque()
        self._member: MemberFeed | None = None
        if (member is not None or partitions is not None) and group is None:
            raise UsageError("a member belongs to a group: subscribe with group=... and member=...")
        if partitions is not None and member is None:
            raise UsageError("partitions= splits a group between members: give this subscriber a member=... name")
        if member is not None and group is not None:
            self._member = MemberFeed(log, group=group, member=member, partitions=partitions, branch=branch,
                                      tables=tables, start=start, source=source, max_rows=max_rows, leases=self._leases)
        after = start
        stored = self._acquire(group) if group is not None and member is None else None
        # Tables the group stopped following when they were dropped: not followed again on resume.
        self._dropped_before = stored.dropped if stored is not None else ()
        if stored is not None:
            after = stored.cursor
            if tables is not None:
                tables = tables - set(self._dropped_before)
        try:
            self._feed: Feed | MemberFeed = self._member or Feed(log, branch=branch, tables=tables, after=after,
                                                                 source=source, max_rows=max_rows)
            self._waiter = open_waiter(log.root / LOG_DIR / LOG_DATA_FILE)
        except BaseException:
            self._released = False
            self._release()
            raise
        self._acked = after
        # A group's first ack creates its position; later ones compare-and-swap it.
        self._has_position = stored is not None
        self._source = source
        source.add_listener(self._on_commit)
        freeze_long_lived_objects()
        self._ready: deque[tuple[ChangeBatch, Cursor]] = deque()
        # The log's newest write transaction when the last look began (-1: look again at once): with no
        # newer one, the log holds nothing that look did not read.
        self._looked_at = -1
        self._iterating = False
        self._ack_lock: anyio.Lock | None = None
        # Set while no worker-thread step (a look or an ack) runs: a step whose awaiting task was cancelled
        # by asyncio itself (which anyio's shielding cannot stop) keeps running, and applies its own
        # result, so the next step waits for it instead of losing or racing it.
        self._worker_idle = threading.Event()
        self._worker_idle.set()
        self._closed = self._waiter_closed = self._released = False

    @property
    def path(self) -> Path:
        """The directory of the lake this subscription follows."""
        return self._log.root

    def __repr__(self) -> str:
        what = ", ".join(self.tables) if self.tables is not None else "all tables"
        return f"udr.Subscription(branch={self.branch!r}, group={self.group!r}, tables=[{what}])"

    # -- async context manager and iterator ------------------------------------------------------------

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ChangeBatch:
        """Wait for the next batch; the iteration ends when the subscription is closed or every table it
        follows was dropped.

        Raises:
            RefNotFound: the branch was deleted.
            UsageError: another task is already waiting on this subscription.
        """
        if self._iterating:
            raise UsageError("another task is already waiting on this subscription; iterate from one task")
        self._iterating = True
        try:
            while not self._closed:
                await self._settled()
                newest = last_write(self._log)
                if not self._ready and newest != self._looked_at:
                    quick = self._quick_look(newest)
                    if quick is None:
                        await self._in_worker(self._look)
                    else:
                        self._ready.extend(quick)
                        # Read on the event loop: give other tasks and cancel scopes their turn.
                        await anyio.lowlevel.checkpoint()
                if self._ready:
                    batch, cursor = self._ready.popleft()
                    self._delivered(cursor, batch.partition)
                    return batch
                if self._feed.finished:
                    break
                try:
                    await self._wait_for_commit()
                except anyio.ClosedResourceError:
                    break  # aclose() from another task
            raise StopAsyncIteration
        finally:
            self._iterating = False

    async def _wait_for_commit(self) -> None:
        # LMDB writes a commit's data pages before its meta page, and each write wakes the waiter: a wake
        # with no write transaction newer than the last look started from has nothing to read yet.
        while True:
            if self._member is None:
                await self._waiter.wait()
            else:
                with anyio.move_on_after(MEMBER_RECHECK) as idle:
                    await self._waiter.wait()
                if idle.cancelled_caught:
                    self._member.recheck()
                    self._looked_at = -1
            if self._closed or last_write(self._log) != self._looked_at:
                return

    # -- acknowledging --------------------------------------------------------------------------------

    async def ack(self, batch: ChangeBatch) -> None:
        """Acknowledge `batch`, the oldest delivered batch not yet acknowledged.

        With a group the new position is durable when this returns: the group resumes after `batch`,
        even after a crash. To commit outputs and the ack atomically use `Transaction.ack` instead.

        Raises:
            AckError: `batch` was acknowledged already, comes after an unacknowledged batch, or was never
                delivered by this subscription.
            ConflictError: the group was reset since this subscriber read its position.
            GroupBusy: this subscriber lost the group's lease.
        """
        if self._ack_lock is None:
            self._ack_lock = anyio.Lock()
        async with self._ack_lock:
            await self._settled()
            delivery = self._expect(batch, 0)
            if self.group is None:
                self._acknowledged(delivery)
                return
            record = self._ack_record(delivery, 0)

            def write() -> None:
                write_acks(self._log, [record])
                self._acknowledged(delivery)

            await self._in_worker(write)

    def stage_ack(self, batch: ChangeBatch, *, earlier: int) -> PendingAck:
        """Prepare acknowledging `batch` inside a transaction that already stages `earlier` acks of this
        subscription (used by `Transaction.ack`).

        Raises:
            AckError: as for `ack`, or the subscription has no group.
        """
        if self.group is None:
            raise AckError("a transactional ack needs a durable position: subscribe with group=...")
        if self._closed:
            raise UsageError("this subscription is closed")
        delivery = self._expect(batch, earlier)
        return PendingAck(self, self._ack_record(delivery, earlier), delivery)

    # -- closing --------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the subscription and give its group's lease back. Idempotent."""
        if self._waiter_closed:
            return
        self._waiter_closed = True
        self._stop_following()
        # Shielded: closing on cancellation (Ctrl-C, a timeout) must still give the lease back. asyncio's
        # own cancellation gets through a shield, so the release itself does not await.
        with anyio.CancelScope(shield=True):
            try:
                await self._waiter.aclose()
            finally:
                self._release()

    def detach(self) -> None:
        """End the iteration and give the group's lease back now (the lake handle calls this as it closes,
        while the log is still open; `aclose` then only releases the waiter)."""
        if self._closed:
            return
        self._stop_following()
        self._release()
        self._waiter.wake()  # a task waiting for a commit sees the subscription closed

    def _release(self) -> None:
        """Give the group's lease back (once)."""
        if self.group is not None and not self._released:
            self._released = True
            try:
                if self._member is not None:
                    self._member.leave()
                else:
                    self._groups.release(self.group, self._token)
            except StorageError:
                pass  # a lake in object storage out of reach: the lease lapses at its deadline, freeing the same
            finally:
                self._leases.drop(self._token)  # a member's own token: dropped by `leave`; this one was not held

    def _acquire(self, group: str) -> Position | None:
        """Take `group`'s lease (live from before it is recorded) and return the group's position."""
        self._leases.hold(self._token)
        try:
            return self._groups.acquire(group, self._token)
        except BaseException:
            self._leases.drop(self._token)
            raise

    def _stop_following(self) -> None:
        self._closed = True
        self._source.remove_listener(self._on_commit)

    # -- internals ------------------------------------------------------------------------------------

    async def _settled(self) -> None:
        """Wait until no worker-thread step left behind by a cancelled task is still running."""
        if not self._worker_idle.is_set():
            await anyio.to_thread.run_sync(self._worker_idle.wait)

    async def _in_worker(self, step: Callable[[], None]) -> None:
        """Run `step` in a worker thread; it applies its own result, so cancelling the wait loses nothing."""
        await self._settled()
        self._worker_idle.clear()
        # A cancelled wait may keep the worker from ever calling `run`: whichever side claims first decides
        # whether the step runs, and the idle flag is set either way.
        claim = threading.Lock()
        claimed: list[str] = []

        def run() -> None:
            with claim:
                if claimed:
                    return
                claimed.append("worker")
            try:
                step()
            finally:
                self._worker_idle.set()

        try:
            await anyio.to_thread.run_sync(run)
        except BaseException:
            with claim:
                if not claimed:
                    claimed.append("caller")
                    self._worker_idle.set()
            raise

    def _on_commit(self, commit: Commit) -> None:
        self._waiter.wake()

    def _quick_look(self, looked_at: int) -> list[tuple[ChangeBatch, Cursor]] | None:
        """Read the next batch here when that needs no file and no waiting, else None (use `_look`).
        `looked_at` is the log's newest write transaction, read just before."""
        if not published(self._log, looked_at) or not self._feed.next_is_light():
            return None
        item = self._feed.next_batch()
        # One batch only: anything after it is read in the next look, which starts at once.
        self._looked_at = -1 if item is not None else looked_at
        return [item] if item is not None else []

    def _look(self) -> None:
        """Read ahead into the ready queue (in a worker thread)."""
        self._looked_at = last_write(self._log)
        # A wake-up may come from a commit LMDB has written but not yet shown to readers: let it land first.
        wait_published(self._log)
        found: list[tuple[ChangeBatch, Cursor]] = []
        rows = 0
        while True:
            if len(found) >= READ_AHEAD_BATCHES or rows >= READ_AHEAD_ROWS:
                self._looked_at = -1  # stopped early: the next look must not wait for a new commit
                break
            try:
                item = self._feed.next_batch()
            except Exception:
                if found:
                    self._looked_at = -1  # deliver what was read; the feed raises again on the next read
                    break
                raise
            if item is None:
                break
            found.append(item)
            rows += item[0].changes.num_rows
        self._ready.extend(found)

    def _delivered(self, cursor: Cursor, partition: int | None) -> None:
        self._unacked.append((cursor, partition))
        if self.group is None and len(self._unacked) > EPHEMERAL_WINDOW:
            self._acked = self._unacked.popleft()[0]

    def _expect(self, batch: ChangeBatch, earlier: int) -> Delivery:
        if not isinstance(batch, ChangeBatch):
            raise AckError(f"ack() needs a udr.ChangeBatch, got {type(batch).__name__}")
        # A part ends on a multiple of `max_rows` (see `Feed`): its cursor follows from its number.
        offset = None if batch.last_part else (batch.part + 1) * self.max_rows
        delivery = (Cursor(batch.commit.seq, batch.table, offset), batch.partition)
        if earlier < len(self._unacked) and self._unacked[earlier] == delivery:
            return delivery
        where = f"batch of table {batch.table!r} in commit {batch.commit.short_id} (seq {batch.commit.seq})"
        if batch.parts > 1:
            where += f", part {batch.part + 1} of {batch.parts}"
        if batch.partition is not None:
            where += f", partition {batch.partition}"
        if delivery in self._unacked:
            if list(self._unacked).index(delivery) < earlier:
                raise AckError(f"{where} is already acknowledged in this transaction")
            first = self._unacked[earlier]
            raise AckError(f"{where} is acknowledged out of order: acknowledge {first[0]}"
                           + (f" of partition {first[1]}" if first[1] is not None else "") + " first")
        if (self._member.acked(delivery) if self._member is not None
                else delivery[0].sort_key() <= self._acked.sort_key()):
            raise AckError(f"{where} is already acknowledged")
        raise AckError(f"{where} was not delivered by this subscription")

    def _acknowledged(self, delivery: Delivery) -> None:
        while self._unacked:
            if self._unacked.popleft() == delivery:
                break
        if self._member is not None:
            self._member.acknowledged(delivery)
        self._acked = delivery[0]
        self._has_position = True

    def _ack_record(self, delivery: Delivery, earlier: int) -> GroupAck:
        assert self.group is not None
        if self._member is not None:
            return self._member.ack_record(delivery, list(self._unacked)[:earlier])
        cursor = delivery[0]
        expected = (self._acked if self._has_position else None) if earlier == 0 else self._unacked[earlier - 1][0]
        dropped = {*self._dropped_before,
                   *(t for t, at in self._feed.dropped.items() if at.sort_key() <= cursor.sort_key())}
        position = Position(cursor, time.time_ns() // 1000, self.branch, self.tables, tuple(sorted(dropped)))
        return Ack(self.group, self._token, expected, position)
