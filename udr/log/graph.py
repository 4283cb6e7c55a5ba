"""Walks over the commit graph: first-parent chains, ancestor sets, merge bases.

Every walk over `CommitRecord.parents` in udr lives here. The walks only read commits through a
`CommitReader` (a `LogStore`, or anything with its `get_commit`), so they are pure functions of the log and
safe from any thread.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Protocol

from udr.errors import RefNotFound, UsageError
from udr.log.commits import CommitRecord
from udr.log.format import CommitId


class CommitReader(Protocol):
    """What the walks need of a log: commits by id."""

    def get_commit(self, cid: CommitId) -> CommitRecord:
        """The commit record `cid` names."""
        ...


def first_parents(log: CommitReader, start: CommitId | None) -> Iterator[tuple[CommitId, CommitRecord]]:
    """`start` and its first-parent ancestors, newest first, with their records."""
    cursor = start
    while cursor is not None:
        record = log.get_commit(cursor)
        yield cursor, record
        cursor = record.parents[0] if record.parents else None


def first_parent_range(log: CommitReader, since: CommitId | None,
                       until: CommitId) -> list[tuple[CommitId, CommitRecord]]:
    """Commits after `since` up to and including `until` along first parents, oldest first.

    Raises:
        RefNotFound: `since` is not a first-parent ancestor of `until`.
    """
    chain: list[tuple[CommitId, CommitRecord]] = []
    for cid, record in first_parents(log, until):
        if cid == since:
            break
        chain.append((cid, record))
    else:
        if since is not None:
            raise RefNotFound(f"commit {since[:10]} is not an ancestor of {until[:10]} on its first-parent history")
    chain.reverse()
    return chain


def nth_first_parent(log: CommitReader, start: CommitId, steps: int) -> CommitId | None:
    """The commit `steps` first parents back from `start` (None past the root commit)."""
    for cid, _ in first_parents(log, start):
        if steps == 0:
            return cid
        steps -= 1
    return None


def ancestors(log: CommitReader, start: CommitId) -> set[CommitId]:
    """Every commit reachable from `start` through any parent, `start` included."""
    seen = {start}
    stack = [start]
    while stack:
        for parent in log.get_commit(stack.pop()).parents:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def merge_base(log: CommitReader, a: CommitId, b: CommitId) -> CommitId:
    """The newest common ancestor of `a` and `b` (by log position).

    Raises:
        UsageError: the two commits share no history.
    """
    of_a = ancestors(log, a)
    heap = [(-log.get_commit(b).seq, b)]
    seen = {b}
    while heap:
        _, cid = heapq.heappop(heap)
        if cid in of_a:
            return cid
        for parent in log.get_commit(cid).parents:
            if parent not in seen:
                seen.add(parent)
                heapq.heappush(heap, (-log.get_commit(parent).seq, parent))
    raise UsageError(f"commits {a[:10]} and {b[:10]} share no history")
