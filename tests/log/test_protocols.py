"""`udr.log.protocols.LakeLog`: both logs satisfy it, and it names every public member of `LogStore`."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from udr.log.format import REF_BRANCH
from udr.log.memory import MemoryLogStore
from udr.log.protocols import LakeLog
from udr.log.store import LogStore


@pytest.fixture(params=["lmdb", "memory"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LakeLog]:
    opened: LakeLog = LogStore(tmp_path / "lake") if request.param == "lmdb" else MemoryLogStore()
    yield opened
    opened.close()


def test_a_new_log_reads_the_same_through_the_protocol(log: LakeLog) -> None:
    head = log.head("main")
    assert head is not None and log.branches() == {"main": head} == log.refs(REF_BRANCH)
    assert log.get_commit(head).message == "create lake"
    assert log.last_seq() == 0 and list(log.commits_from(0)) == [(0, head)] and log.commit_at_seq(0) == head
    assert log.root.is_dir() and log.chunks is not None


def _public(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls) if not name.startswith("_")}


def test_the_protocol_names_every_public_member_of_the_log() -> None:
    declared = _public(LakeLog) | set(LakeLog.__annotations__) | {"env", "cache"}
    assert _public(LogStore) <= declared
    assert {"root", "version", "chunks"} <= set(LakeLog.__annotations__)
