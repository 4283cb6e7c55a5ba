"""`udr.push` / `udr.pull` of named branches: only the commits those branches need, where their log positions
allow them to land (commit ids hash their seq), and a clear refusal otherwise."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from remote_helpers import S3, bucket_keys

import udr
from udr.log.format import CommitId
from udr.remote.store import open_store

SCHEMA = pa.schema([("k", pa.int64()), ("v", pa.int64())])


def _rows(start: int, n: int) -> pa.Table:
    return pa.table({"k": pa.array(range(start, start + n), pa.int64()), "v": pa.array(range(n), pa.int64())})


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    """A lake `a` with keyed table t and branches dev and scratch, and its clone `b`."""
    a, b = tmp_path / "a", tmp_path / "b"
    with udr.open(a) as db:
        db.create_table("t", SCHEMA, primary_key=["k"])
        db.append("t", _rows(0, 10))
        db.create_branch("dev")
        db.create_branch("scratch")
    udr.clone(a, b)
    return a, b


def _append(lake: Path | str, start: int, branch: str) -> None:
    with udr.open(lake, create=False) as db:
        db.append("t", _rows(start, 1), branch=branch)


def _state(lake: Path) -> tuple[int, dict[str, str]]:
    with udr.open(lake, create=False) as db:
        assert db.verify().problems == []
        return db._handle.ctx.log.last_seq() + 1, db.branches()


def _branches(lake: Path) -> dict[str, str]:
    with udr.open(lake, create=False) as db:
        return db.branches()


def test_pushing_one_branch_sends_only_its_commits(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    length, before = _state(b)
    _append(a, 100, "dev")
    _append(a, 200, "main")
    assert udr.push(a, b, ["dev"]) == 1
    sent, after = _state(b)
    assert sent == length + 1
    assert after["dev"] == _branches(a)["dev"] and after["main"] == before["main"]
    with udr.open(b, create=False) as db:
        assert db.row_count("t", "dev") == 11 and db.row_count("t") == 10
    assert udr.push(a, b, ["main"]) == 1
    assert _state(b) == (length + 2, _branches(a))


def test_a_branch_lands_on_a_target_with_commits_only_on_its_own_branches(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    with udr.open(b, create=False) as db:
        db.create_branch("x")
        db.append("t", _rows(300, 1), branch="x")  # the seq a's scratch commit takes below
    _append(a, 100, "scratch")
    _append(a, 101, "dev")
    with pytest.raises(udr.ConflictError, match="name the branches"):
        udr.pull(b, a)
    assert udr.pull(b, a, ["dev"]) == 1
    _, branches = _state(b)
    assert branches["dev"] == _branches(a)["dev"] and "x" in branches
    with udr.open(b, create=False) as db:
        assert db.read("t", "dev").column("k").to_pylist()[-1] == 101
        assert db.row_count("t", "x") == 11


def test_interleaved_branches_are_refused_alone_and_sent_together(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    length, _ = _state(b)
    _append(a, 100, "dev")
    _append(a, 200, "main")
    _append(a, 101, "dev")
    with pytest.raises(udr.ConflictError, match=r"cannot send 'main' alone: .* made on branch 'dev'"):
        udr.push(a, b, ["main"])
    with pytest.raises(udr.ConflictError, match=r"cannot send 'dev' alone: .* made on branch 'main'"):
        udr.push(a, b, ["dev"])
    assert _state(b)[0] == length  # nothing sent
    assert udr.push(a, b, ["dev", "main"]) == 3
    assert _state(b) == (length + 3, _branches(a))


@pytest.mark.parametrize(("theirs", "ours", "match"), [
    ("main", ["dev"], "commit ids hash their log position.*diverged before this branch"),  # seq taken
    ("dev", ["scratch", "dev"], "'branch dev' has diverged"),  # not a fast-forward
])
def test_a_branch_the_target_cannot_take_is_refused(tmp_path: Path, theirs: str, ours: list[str], match: str) -> None:
    a, b = _pair(tmp_path)
    _append(b, 300, theirs)
    for n, branch in enumerate(ours):
        _append(a, 100 + n, branch)
    before = _state(b)
    with pytest.raises(udr.ConflictError, match=match):
        udr.pull(b, a, ["dev"])
    assert _state(b) == before


def test_a_branch_is_not_sent_without_a_later_erasure(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    _append(a, 100, "dev")
    with udr.open(a, create=False) as db:
        db.erase("t", [{"k": 3}], reason="request")
    with pytest.raises(udr.ConflictError, match="without erasure commit"):
        udr.push(a, b, ["dev"])
    assert udr.push(a, b) == 2
    with udr.open(b, create=False) as db:
        assert 3 not in db.read("t", "dev").column("k").to_pylist()


def test_named_branches_move_through_object_storage(url: str, tmp_path: Path) -> None:
    a, c = _pair(tmp_path)
    udr.clone(a, url)
    _append(a, 100, "dev")
    _append(a, 200, "main")
    assert udr.push(a, url, ["dev"]) == 1
    with udr.open(url, cache=tmp_path / "cache", create=False) as remote:
        assert remote.branches()["dev"] == _branches(a)["dev"]
        assert remote.branches()["main"] == _branches(c)["main"]
    assert udr.push(a, url, ["main"]) == 1
    with udr.open(c, create=False) as db:
        db.create_branch("x")
        db.append("t", _rows(300, 1), branch="x")
    with pytest.raises(udr.ConflictError, match="diverged before this branch"):
        udr.pull(c, url, ["dev"])
    assert udr.pull(c, url, ["main"]) == 1
    with udr.open(c, create=False) as db:
        assert db.branches()["main"] == _branches(a)["main"] and db.row_count("t", "x") == 11
        assert db.read("t").column("k").to_pylist()[-1] == 200
        assert db.verify().problems == []


def test_a_push_uploads_only_the_chunks_the_bucket_lacks(url: str, s3_server: S3, tmp_path: Path) -> None:
    a, _ = _pair(tmp_path)
    udr.clone(a, url)
    with udr.open(a, create=False) as db:
        head = db.append("t", _rows(1000, 20_000), branch="dev").id
        chunks = [f.chunk for f in db._handle.ctx.log.get_commit(CommitId(head)).tables["t"].add if not f.inline]
    assert chunks
    store, key = open_store(url), f"chunks/{chunks[0]}"
    store.put(key, b"left by an interrupted push")
    assert udr.push(a, url, ["dev"]) == 1
    assert store.get(key) == b"left by an interrupted push"
    assert all(f"chunks/{c}" in bucket_keys(s3_server, url) for c in chunks)
