"""`udr.log.protocols.LakeLog`: both logs satisfy it, it names every public member of `LogStore`, and only the
code that opens a lake imports the LMDB log."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

import udr
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


def _importers_of_the_store() -> set[str]:
    package = Path(udr.__file__).parent
    found = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "udr.log.store":
                found.add(".".join(path.relative_to(package.parent).with_suffix("").parts))
    return found


def test_only_the_code_that_opens_a_lake_imports_the_lmdb_log() -> None:
    assert _importers_of_the_store() == {"udr.api.lake", "udr.log.memory", "udr.remote.mirror", "udr.remote.transfer"}
