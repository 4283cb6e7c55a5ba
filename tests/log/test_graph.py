"""Commit-graph walks over an in-memory log: first parents, ranges, ancestors, merge bases."""

from __future__ import annotations

import pytest

from udr.errors import RefNotFound, UsageError
from udr.log import graph
from udr.log.commits import CommitRecord
from udr.log.format import CommitId


class MemoryLog:
    """A `CommitReader` over a dict: id -> record."""

    def __init__(self) -> None:
        self.records: dict[CommitId, CommitRecord] = {}

    def add(self, name: str, *parents: str) -> CommitId:
        cid = CommitId(name)
        self.records[cid] = CommitRecord(parents=tuple(CommitId(p) for p in parents), seq=len(self.records),
                                         branch="main", time_us=0, author="a", message=name)
        return cid

    def get_commit(self, cid: CommitId) -> CommitRecord:
        return self.records[cid]


@pytest.fixture
def log() -> MemoryLog:
    """root - a - b - m (merge of b and x);  a - x;  y unrelated."""
    log = MemoryLog()
    log.add("root")
    log.add("a", "root")
    log.add("b", "a")
    log.add("x", "a")
    log.add("m", "b", "x")
    log.add("y")
    return log


def test_first_parents_walks_newest_first_and_skips_second_parents(log: MemoryLog) -> None:
    assert [cid for cid, _ in graph.first_parents(log, CommitId("m"))] == ["m", "b", "a", "root"]
    assert list(graph.first_parents(log, None)) == []


def test_first_parent_range_is_oldest_first_and_excludes_since(log: MemoryLog) -> None:
    assert [cid for cid, _ in graph.first_parent_range(log, CommitId("a"), CommitId("m"))] == ["b", "m"]
    assert [cid for cid, _ in graph.first_parent_range(log, None, CommitId("b"))] == ["root", "a", "b"]


def test_first_parent_range_refuses_a_since_off_the_chain(log: MemoryLog) -> None:
    with pytest.raises(RefNotFound, match="not an ancestor"):
        graph.first_parent_range(log, CommitId("x"), CommitId("m"))


def test_nth_first_parent(log: MemoryLog) -> None:
    assert graph.nth_first_parent(log, CommitId("m"), 0) == "m"
    assert graph.nth_first_parent(log, CommitId("m"), 3) == "root"
    assert graph.nth_first_parent(log, CommitId("m"), 4) is None


def test_ancestors_follow_every_parent(log: MemoryLog) -> None:
    assert graph.ancestors(log, CommitId("m")) == {"m", "b", "x", "a", "root"}


def test_merge_base(log: MemoryLog) -> None:
    assert graph.merge_base(log, CommitId("b"), CommitId("x")) == "a"
    assert graph.merge_base(log, CommitId("m"), CommitId("x")) == "x"
    with pytest.raises(UsageError, match="share no history"):
        graph.merge_base(log, CommitId("m"), CommitId("y"))
