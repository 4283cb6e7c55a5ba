"""`Lake`'s methods for change streams: subscriptions and consumer groups."""

from __future__ import annotations

from udr.api.handle import Handle
from udr.errors import TableNotFound, UsageError, close_matches
from udr.log import graph
from udr.log.format import CommitId
from udr.log.positions import Cursor
from udr.log.refs import check_name
from udr.log.refspec import Ref
from udr.stream.admin import delete_group, group_infos, group_resume, reset_group
from udr.stream.leases import LeaseKeeper, LocalLeases
from udr.stream.subscription import Subscription
from udr.values import GroupInfo


class StreamMethods:
    """Part of `udr.Lake` (see there)."""

    _handle: Handle

    # -- change streams --------------------------------------------------------------------------------

    def subscribe(self, tables: list[str] | str | None = None, *, group: str | None = None, member: str | None = None,
                  partitions: int | None = None, start: Ref = "earliest", branch: str = "main", max_rows: int = 65_536,
                  ) -> Subscription:
        """Follow the row changes committed to `branch`: one `udr.ChangeBatch` per commit and table.

        Use as `async with db.subscribe(...) as sub: async for batch in sub: ...; await sub.ack(batch)`.
        Commits by any process on this machine arrive promptly; an idle subscriber uses no CPU.

        Args:
            tables: the tables to follow (None: every table).
            group: a consumer group: acks are durable, the group resumes after its last ack (ignoring
                `start`), and only one live subscriber may consume it (unless each names a `member`). None: an
                ephemeral subscription.
            member: this subscriber's name in `group`: the group's partitions are split between its live
                members and rebalanced as they join, leave or die (see docs/groups.md).
            partitions: the partition count of a new group with members (default 8; fixed once made).
            start: `"earliest"`, `"latest"` (the head now), or a ref: delivery begins after that commit.
            branch: the branch whose first-parent history is delivered.
            max_rows: the most rows a batch holds; larger changes come in parts (`ChangeBatch.part`), acked singly.

        Raises:
            TableNotFound, RefNotFound, InvalidName: no such table or ref, or a bad group or member name.
            UsageError: no table named, `group` consumes another branch, or `max_rows` < 1.
            GroupBusy: another live subscriber consumes `group` (with `member`: that member is live).
        """
        if self._handle.remote is not None:
            self._handle.remote.start_polling()
        head = self._handle.head(branch)
        resume = group_resume(self._handle.ctx.log, check_name(group, "group"), branch) if group is not None else None
        if member is not None:
            check_name(member, "member")
        first = None if start == "earliest" else head if start == "latest" else self._handle.resolve(start, branch)
        after = Cursor(self._handle.ctx.log.get_commit(first).seq if first is not None else -1)
        wanted: frozenset[str] | None = None
        if tables is not None:
            names = [tables] if isinstance(tables, str) else list(tables)
            if not names:
                raise UsageError("subscribe() needs at least one table name, or tables=None for every table")
            self._check_streamed_tables(names, head, resume or after)
            wanted = frozenset(names)
        sub = Subscription(
            self._handle.ctx.log, branch=branch, tables=wanted, group=group, start=after, source=self._handle.changes,
            member=member, partitions=partitions, max_rows=max_rows, leases=self._leases)
        self._handle.subscriptions.add(sub)
        return sub

    def groups(self) -> list[GroupInfo]:
        """Every consumer group (that acknowledged a batch or was reset), with its position and lag."""
        self._refresh_groups()
        return group_infos(self._handle.ctx.log, self._leases.alive)

    def reset_group(self, name: str, to: Ref, *, branch: str = "main") -> None:
        """Make group `name` resume after commit `to` on `branch`: rewind (redeliver) or skip ahead.

        Raises:
            RefNotFound, InvalidName: no such ref, or a bad group name.
            GroupBusy: a live subscriber consumes the group; close it first.
        """
        check_name(name, "group")
        self._handle.head(branch)
        self._refresh_groups()
        seq = self._handle.ctx.log.get_commit(self._handle.resolve(to, branch)).seq
        reset_group(self._handle.ctx.log, name, seq=seq, branch=branch, alive=self._leases.alive)

    def delete_group(self, name: str) -> None:
        """Forget consumer group `name`: its positions, leases and members.

        Raises:
            InvalidName, UsageError: a bad group name, or no such group.
            GroupBusy: a live subscriber consumes the group; close it first.
        """
        self._refresh_groups()
        delete_group(self._handle.ctx.log, check_name(name, "group"), self._leases.alive)

    @property
    def _leases(self) -> LeaseKeeper:
        """How this lake's group leases stay live: renewed in object storage for a remote lake."""
        return self._handle.remote.leases if self._handle.remote is not None else LocalLeases()

    def _refresh_groups(self) -> None:
        """Apply what other machines committed, so a remote lake's groups read as the remote log has them."""
        if self._handle.remote is not None:
            self._handle.remote.pull()

    def _check_streamed_tables(self, names: list[str], head: CommitId, after: Cursor) -> None:
        # A table counts if it exists now or some commit after `after` touched it (e.g. dropped it).
        known = set(self._handle.ctx.materializer.snapshot(head))
        missing = [n for n in names if not isinstance(n, str) or n not in known]
        for _, record in graph.first_parents(self._handle.ctx.log, head):
            if not missing or record.seq < after.seq:
                break
            known |= set(record.tables)
            missing = [n for n in missing if n not in known]
        if missing:
            name = missing[0]
            raise TableNotFound(f"table {name!r} does not exist on this branch" + close_matches(str(name), known))
