"""A branch's change stream after a cursor, pulled from the log one batch at a time.

The stream of a branch is the first-parent chain of its head, oldest first: a fast-forward merge brings
the merged commits into it, and a merge commit contributes its net effect relative to its first parent.
Each commit yields one batch per table it changed (in the sorted table order of the commit record) whose
row changes are not empty; changes of more than `max_rows` rows come as consecutive parts of `max_rows`
rows (part `i` holds rows `i*max_rows` up to `(i+1)*max_rows`, in the order the source computes them, which
is deterministic). A cursor (`udr.log.positions.Cursor`) says what is already delivered: commits up to its seq,
within commit `seq` the tables up to and including its `table`, and with an `offset` only that table's first
`offset` rows (its parts before that row): a resumed feed computes the table's changes again and goes on
with the part after them.

Nothing is buffered beyond the commit in hand, the sequence numbers of the commits still to visit (8 bytes
each) and at most `_KEEP_RECORDS` commit records, so a slow consumer's memory stays bounded however far
behind it is (its batches wait in the log, not in memory), and writers never wait for it.
A `Feed` belongs to one thread at a time. Row changes and commit values come from callables the facade
supplies, so this layer never depends on how they are computed.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

import pyarrow as pa

from udr.errors import RefNotFound
from udr.log import graph
from udr.log.commits import CommitRecord, TableOp
from udr.log.format import CommitId
from udr.log.positions import Cursor
from udr.log.protocols import LakeLog
from udr.stream.source import ChangeSource
from udr.values import ChangeBatch, Commit

# Records met while walking back from a new head are kept for the deliveries that follow: all of them when
# the walk is short (the live case), else the oldest ones, which are delivered first; the rest are re-read.
_KEEP_RECORDS = 1024
# How many commits `next_is_light` looks through: a longer stretch is a backlog for a worker thread.
_LIGHT_COMMITS = 16
# The default bound on a batch's rows (`max_rows`): a 65,536-row part of a wide table is tens of MB.
MAX_ROWS = 65_536


class Feed:
    """The change batches of `branch` after a cursor, for every table or only `tables`."""

    def __init__(self, log: LakeLog, *, branch: str, tables: frozenset[str] | None, after: Cursor,
                 source: ChangeSource, wants: Callable[[Commit, str], bool] | None = None,
                 max_rows: int = MAX_ROWS) -> None:
        self._log = log
        self._max_rows = max_rows
        # Which (commit, table) batches the reader may want: the others' rows are never computed (a group
        # member skips other members' unkeyed batches). None: all.
        self._wants = wants
        self._branch = branch
        self._tables = set(tables) if tables is not None else None
        # Followed tables dropped so far, with the cursor of their final batch.
        self.dropped: dict[str, Cursor] = {}
        self._source = source
        # What a jump asks for: the tables followed when the feed began (None: all).
        self._jump_tables = frozenset(tables) if tables is not None else None
        # Set by `_walk` when the head's first-parent line does not pass the last commit visited: the next
        # commit (the head) is then delivered as the net change from this commit, not from its parent.
        self._jump_from: CommitId | None = None
        self._jumped: dict[str, pa.Table] | None = None
        self._seen_head: CommitId | None = None
        self._scanned_seq = after.seq
        self._scanned_id = log.commit_at_seq(after.seq) if after.seq >= 0 else None
        self._plan = array("q")
        self._next = 0
        self._records: dict[int, tuple[CommitId, CommitRecord]] = {}
        self._commit: tuple[CommitId, CommitRecord, Commit] | None = None
        self._todo: list[str] = []
        # The table whose changes are being delivered in parts: its batch (all rows) and the next row.
        self._parts: tuple[ChangeBatch, int] | None = None
        # A table of the first commit whose first rows were delivered already (resuming inside its parts).
        self._skip: tuple[str, int] | None = None
        if after.table is not None and self._scanned_id is not None:
            # Resume inside a commit whose earlier tables (and parts) were delivered.
            self._start_commit(self._scanned_id, log.get_commit(self._scanned_id), after.table,
                               within=after.offset is not None)
            if after.offset is not None:
                self._skip = (after.table, after.offset)

    @property
    def finished(self) -> bool:
        """True once every table the feed follows was dropped: nothing more can come."""
        return self._tables is not None and not self._tables and not self._todo and self._parts is None

    def next_batch(self) -> tuple[ChangeBatch, Cursor] | None:
        """The next batch and the cursor just after it, or None when the stream has nothing more now.

        Raises:
            RefNotFound: the branch was deleted.
        """
        while True:
            if self._parts is not None:
                return self._next_part()
            while self._todo:
                table = self._todo[0]
                assert self._commit is not None
                cid, record, commit = self._commit
                if self._jumped is not None:
                    rows = self._jumped.get(table)
                elif self._wants is None or self._wants(commit, table):
                    rows = self._source.commit_changes(table, cid, record)
                else:
                    rows = None
                # Only now is the table done: if computing its changes raised, the next call retries it.
                self._todo.pop(0)
                op = record.tables.get(table)
                if op is not None and op.drop and self._tables is not None:
                    # The drop is the table's last batch: all its rows as deletes, then nothing more.
                    self._tables.discard(table)
                    self.dropped[table] = Cursor(record.seq, table)
                skip = self._skip[1] if self._skip is not None and self._skip[0] == table else 0
                self._skip = None
                if rows is not None and skip and skip >= rows.num_rows:
                    continue  # every part of it was delivered already
                if rows is not None and (rows.num_rows or (op is not None and op.drop)):
                    if rows.num_rows <= self._max_rows and not skip:
                        return ChangeBatch(commit, table, rows), Cursor(record.seq, table)
                    self._parts = (ChangeBatch(commit, table, rows), skip)
                    return self._next_part()
            if self._next >= len(self._plan) and not self._walk():
                return None
            seq = self._plan[self._next]
            self._next += 1
            kept = self._records.pop(seq, None)
            cid, record = kept if kept is not None else self._at(seq)
            jump_from, self._jump_from = self._jump_from, None
            self._jumped = (self._source.net_changes(jump_from, cid, self._jump_tables)
                            if jump_from is not None else None)
            self._scanned_seq, self._scanned_id = seq, cid
            self._start_commit(cid, record, None)

    def next_is_light(self) -> bool:
        """Whether `next_batch` is cheap now: the next commit with followed tables (if any) only adds
        inline rows to existing tables or rewrites them, so computing it reads no chunk file and no old
        rows, and at most `_LIGHT_COMMITS` commits lie before it. Reads only commit records."""
        if self._parts is not None:
            return True
        if self._todo:
            assert self._commit is not None
            return self._jumped is not None or all(_light(self._commit[1].tables[t]) for t in self._todo)
        if self._next >= len(self._plan):
            head = self._log.head(self._branch)
            if head is None or head == self._seen_head:
                return True  # nothing new (or a deleted branch, which `next_batch` reports)
            if self._log.get_commit(head).seq - self._scanned_seq > _LIGHT_COMMITS:
                return False  # a backlog: walking it is work for a worker thread
            if not self._plan_to(head):
                return True
        if self._jump_from is not None:
            return False  # a net change between two lines of history reads old rows
        for seq in self._plan[self._next:self._next + _LIGHT_COMMITS]:
            if seq not in self._records:
                self._records[seq] = self._at(seq)  # for `next_batch`, which takes it from there
            ops = [op for table, op in self._records[seq][1].tables.items()
                   if self._tables is None or table in self._tables]
            if ops:
                return all(_light(op) for op in ops)
        return len(self._plan) - self._next <= _LIGHT_COMMITS

    def _next_part(self) -> tuple[ChangeBatch, Cursor]:
        """The next part of the batch being delivered in parts, and the cursor just after it."""
        assert self._parts is not None
        whole, start = self._parts
        total, size = whole.changes.num_rows, self._max_rows
        part = start // size
        # Parts end on multiples of `max_rows`, so a resume under another `max_rows` stays on the grid.
        end = min(total, (part + 1) * size)
        last = end >= total
        self._parts = None if last else (whole, end)
        batch = ChangeBatch(whole.commit, whole.table, whole.changes.slice(start, end - start),
                            part=part, parts=-(-total // size))
        return batch, Cursor(whole.commit.seq, whole.table, None if last else end)

    def _start_commit(self, cid: CommitId, record: CommitRecord, after_table: str | None, *,
                      within: bool = False) -> None:
        """Begin delivering commit `cid`: its tables after `after_table` (`within`: from `after_table`)."""
        touched = self._jumped if self._jumped is not None else record.tables
        todo = [t for t in sorted(touched) if self._tables is None or t in self._tables]
        if after_table is not None:
            todo = [t for t in todo if t > after_table or (within and t == after_table)]
        self._todo = todo
        self._commit = (cid, record, self._source.commit_value(cid, record)) if todo else None

    def _walk(self) -> bool:
        """Plan the commits between the last one visited and the branch head; False if there are none."""
        head = self._log.head(self._branch)
        if head is None:
            raise RefNotFound(f"branch {self._branch!r} was deleted while a subscriber followed it")
        if head == self._seen_head:
            return False
        return self._plan_to(head)

    def _plan_to(self, head: CommitId) -> bool:
        """Plan the commits between the last one visited and `head`, a new head of the branch."""
        plan = array("q")
        records: dict[int, tuple[CommitId, CommitRecord]] = {}
        cursor: CommitId | None = head
        while cursor is not None and cursor != self._scanned_id:
            record = self._log.get_commit(cursor)
            if record.seq <= self._scanned_seq:
                break  # the head moved to a line that does not pass the last commit visited
            plan.append(record.seq)
            records[record.seq] = (cursor, record)
            if len(records) > _KEEP_RECORDS:
                records.pop(next(iter(records)))  # the newest: delivered last, re-read then
            cursor = record.parents[0] if record.parents else None
        if cursor != self._scanned_id and plan:
            # E.g. a fast-forward to a merge that holds the last commit visited only as a second parent, or
            # new commits after a reset: that line's commits were never applied to what was delivered, so
            # deliver the net change from the last commit visited to the head, as the head's batches.
            plan = plan[:1]
            records = {plan[0]: records[plan[0]]} if plan[0] in records else {}
            self._jump_from = self._scanned_id
        plan.reverse()
        self._seen_head = head
        self._plan, self._next = plan, 0
        self._records = records
        return len(plan) > 0

    def _at(self, seq: int) -> tuple[CommitId, CommitRecord]:
        cid = self._log.commit_at_seq(seq)
        if cid is None:
            raise RefNotFound(f"commit seq {seq} vanished from the log")
        return cid, self._log.get_commit(cid)


def _light(op: TableOp) -> bool:
    return op.rewrite or (not (op.create or op.drop or op.truncate or op.deletes or op.before)
                          and all(f.inline for f in op.add))


def lag(log: LakeLog, branch: str, tables: tuple[str, ...] | None, after: Cursor) -> tuple[int, int]:
    """(commits, rows) of `branch`'s stream after `after` for `tables` (None: all), from the commits' counts.

    Raises:
        RefNotFound: no such branch.
    """
    head = log.head(branch)
    if head is None:
        raise RefNotFound(f"branch {branch!r} does not exist")
    wanted = set(tables) if tables is not None else None
    commits = rows = 0
    for _, record in graph.first_parents(log, head):
        if record.seq < after.seq:
            break
        changed = sum(
            op.inserted + op.updated + op.deleted
            for name, op in record.tables.items()
            if (wanted is None or name in wanted) and not op.rewrite
            and (record.seq > after.seq or (after.table is not None and name > after.table))
        )
        if record.seq == after.seq and after.table is not None and after.offset is not None:
            op = record.tables.get(after.table)
            if op is not None and (wanted is None or after.table in wanted):
                # The offset counts change rows, where an update has two (its before and after images).
                total, images = op.inserted + op.updated + op.deleted, op.inserted + 2 * op.updated + op.deleted
                changed += total - total * after.offset // max(images, 1)
        if changed:
            commits += 1
            rows += changed
    return commits, rows
