"""Searching the log: the filters of `Lake.log` (table, author, a time or commit window, message text,
metadata) and the ref log as public values (`Lake.reflog`).

A window bound given as a commit (a branch, tag, id, `REF~N`) compares log positions like `Lake.changes`:
`since` excludes that commit, `until` includes it. A bound given as a time (a `datetime` or an ISO-8601
string) compares commit times, both ends included. Read-only; safe from any thread.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from udr.errors import RefNotFound, UsageError, close_matches
from udr.log import refspec
from udr.log.commits import CommitRecord, commit_value
from udr.log.format import CommitId
from udr.log.protocols import LakeLog
from udr.log.reflog import Move
from udr.values import Commit, RefMove

Bound = str | datetime | Commit | None


def _micros(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


@dataclass(frozen=True, slots=True)
class Window:
    """A window over the log: positions (from commit bounds) and times (from either kind of bound)."""

    since_seq: int | None = None
    since_us: int | None = None
    until_seq: int | None = None
    until_us: int | None = None

    def has_commit(self, record: CommitRecord) -> bool:
        """Whether a commit lies in the window (by position where a bound is a commit, else by time)."""
        if self.since_seq is not None:
            if record.seq <= self.since_seq:
                return False
        elif self.since_us is not None and record.time_us < self.since_us:
            return False
        if self.until_seq is not None:
            return record.seq <= self.until_seq
        return self.until_us is None or record.time_us <= self.until_us

    def has_time(self, time_us: int) -> bool:
        """Whether an event at `time_us` (a ref move) lies in the window."""
        return ((self.since_us is None or time_us >= self.since_us)
                and (self.until_us is None or time_us <= self.until_us))


def log_window(log: LakeLog, since: Bound, until: Bound, branch: str) -> Window:
    """The window between two bounds (None: open); a time bound is looked up on nothing, a ref on `branch`.

    Raises:
        RefNotFound, UsageError: a bound names nothing, or is a malformed time.
    """
    bounds: dict[str, int | None] = {}
    for side, ref in (("since", since), ("until", until)):
        if ref is None:
            continue
        found = refspec.time_or_commit(log, ref, branch)
        if isinstance(found, datetime):
            bounds[f"{side}_us"] = _micros(found)
            continue
        record = log.get_commit(found)
        bounds[f"{side}_seq"] = record.seq
        # A ref move made when the `since` commit was made belongs to that commit, so it is left out too.
        bounds[f"{side}_us"] = record.time_us + (1 if side == "since" else 0)
    return Window(**bounds)


def search_log(log: LakeLog, head: CommitId, *, table: str | None = None, author: str | None = None,
           span: Window | None = None, grep: str | None = None, metadata: Mapping[str, str] | None = None,
           limit: int | None = None) -> list[Commit]:
    """Every commit reachable from `head` (through any parent) that passes every filter given, newest first.

    Args:
        log: the lake's log.
        head: where the walk starts.
        table: only commits that changed this table.
        author: only commits by exactly this author.
        span: only commits in this window.
        grep: only commits whose message contains this text (case-sensitive).
        metadata: only commits whose metadata holds every one of these key/value pairs.
        limit: at most this many commits.

    Raises:
        UsageError: `limit` is negative.
    """
    if limit is not None and limit < 0:
        raise UsageError(f"limit must be 0 or more, not {limit}")
    span = span or Window()
    wanted = dict(metadata or {})
    out: list[Commit] = []
    heap = [(-log.get_commit(head).seq, head)]
    seen = {head}
    while heap and (limit is None or len(out) < limit):
        _, cid = heapq.heappop(heap)
        record = log.get_commit(cid)
        if span.since_seq is not None and record.seq <= span.since_seq:
            break  # popped newest first: every commit left is older still
        if (span.has_commit(record) and (table is None or table in record.tables)
                and (author is None or record.author == author) and (grep is None or grep in record.message)
                and all(record.metadata.get(k) == v for k, v in wanted.items())):
            out.append(commit_value(cid, record))
        for parent in record.parents:
            if parent not in seen:
                seen.add(parent)
                heapq.heappush(heap, (-log.get_commit(parent).seq, parent))
    return out


def ref_move(move: Move) -> RefMove:
    """The public value of a stored ref move."""
    return RefMove(name=move.name, kind=move.kind, old=move.old, new=move.new, action=move.reason.action,
                   message=move.reason.message, author=move.reason.author,
                   time=datetime.fromtimestamp(move.time_us / 1_000_000, tz=timezone.utc), position=move.position)


def ref_log(log: LakeLog, name: str | None = None) -> list[RefMove]:
    """Every recorded move of ref `name` (None: of every ref), newest first.

    Raises:
        RefNotFound: `name` is no branch or tag now and no move of it was ever recorded.
    """
    found = [ref_move(m) for m in log.ref_moves() if name is None or m.name == name]
    if name is not None and not found and log.head(name) is None and name not in log.tags():
        known = list(log.branches()) + list(log.tags())
        raise RefNotFound(f"no branch or tag named {name!r} ever moved" + close_matches(name, known))
    return found

