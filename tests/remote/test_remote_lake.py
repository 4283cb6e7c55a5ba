"""A lake in object storage, driven through `udr.open("s3://...")` against a real S3 API (moto on 127.0.0.1).

Each "machine" is a lake handle with its own cache directory; they meet only through the bucket.
"""

from __future__ import annotations

import shutil
import time
from datetime import timedelta
from pathlib import Path

import anyio
import pyarrow as pa
import pytest
from remote_helpers import S3, bucket_keys

import udr
from udr.log.format import BlobKind, CommitId
from udr.materialize.vectors import chain_link
from udr.remote.mirror import Mirror
from udr.remote.store import open_store

BIG = 20_000  # rows of two int64 columns: above the inline limit, so the write makes a chunk file


def _rows(start: int, n: int) -> pa.Table:
    return pa.table({"k": pa.array(range(start, start + n), pa.int64()), "v": pa.array(range(n), pa.int64())})


def _signature(db: udr.Lake) -> tuple[object, ...]:
    """Everything a replica must agree on: commits in order, refs, and the rows of every table."""
    commits = [(c.id, c.seq, c.parents) for c in db.log(limit=None)]
    rows = {t: db.query(f"select * from {t} order by all").to_pylist() for t in db.tables()}
    return commits, db.branches(), db.tags(), rows


def test_a_remote_lake_round_trips_through_a_second_cache(url: str, caches: Path, s3_server: S3) -> None:
    with udr.open(url, cache=caches / "a") as a:
        a.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]), primary_key=["k"])
        first = a.append("t", _rows(0, BIG))
        a.upsert("t", pa.table({"k": pa.array([1], pa.int64()), "v": pa.array([-1], pa.int64())}))
        a.create_branch("dev")
        a.append("t", _rows(BIG, 10), branch="dev")
        a.tag("v1", first.id)
        mine = _signature(a)
    keys = bucket_keys(s3_server, url)
    assert [k for k in keys if k.startswith("log/")] == [f"log/{n:020d}" for n in range(7)]
    assert sum(k.startswith("chunks/") for k in keys) == 1
    with udr.open(url, cache=caches / "b", create=False) as b:
        assert _signature(b) == mine
        assert b.row_count("t", at="v1") == BIG  # time travel
        assert b.read("t", branch="dev").num_rows == BIG + 10
        assert b.query("select v from t where k = 1").to_pylist() == [{"v": -1}]
        assert b.verify().problems == []


def test_writers_on_two_caches_see_each_other_and_never_lose_a_commit(url: str, caches: Path) -> None:
    with udr.open(url, cache=caches / "a") as a, udr.open(url, cache=caches / "b") as b:
        a.create_table("events", pa.schema([("k", pa.int64()), ("v", pa.int64())]))
        assert b.refresh() == 1
        b.append("events", _rows(0, 5))
        # `a` has not seen b's commit: its publish loses the race, it pulls and re-applies on top.
        a.append("events", _rows(100, 5))
        assert b.refresh() == 1
        assert a.row_count("events") == b.row_count("events") == 10
        assert _signature(a) == _signature(b)
        messages = [c.message for c in a.log(limit=None)]
        assert messages[:2] == ["append to events", "append to events"]


def test_a_conflicting_remote_write_raises_and_publishes_nothing(url: str, caches: Path) -> None:
    with udr.open(url, cache=caches / "a") as a, udr.open(url, cache=caches / "b") as b:
        a.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]), primary_key=["k"])
        a.append("t", _rows(0, 3))
        b.refresh()
        tx = a.transaction()
        tx.overwrite("t", _rows(0, 1))
        b.upsert("t", pa.table({"k": pa.array([2], pa.int64()), "v": pa.array([9], pa.int64())}))
        with pytest.raises(udr.ConflictError):
            tx.commit()
        assert a.refresh() == 0  # the winner's entry was pulled when the publish lost
        assert _signature(a) == _signature(b)


def test_a_deleted_cache_is_rebuilt_identically(url: str, caches: Path) -> None:
    with udr.open(url, cache=caches / "a") as a:
        a.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]))
        a.append("t", _rows(0, BIG))
        a.delete("t", "k < 10")
        before = _signature(a)
    shutil.rmtree(caches / "a")
    with udr.open(url, cache=caches / "a") as again:
        assert _signature(again) == before
        assert again.verify().problems == []


def test_a_new_cache_downloads_a_chunk_only_when_a_read_needs_it(url: str, caches: Path) -> None:
    with udr.open(url, cache=caches / "a") as a:
        a.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]))
        a.create_table("u", pa.schema([("k", pa.int64()), ("v", pa.int64())]))
        a.append("t", _rows(0, BIG))
        a.append("u", _rows(0, BIG))
    with udr.open(url, cache=caches / "b") as b:
        assert list((caches / "b" / "chunks").rglob("*.parquet")) == []
        assert b.row_count("t") == BIG  # from the log alone
        assert b.query("select sum(k) as s from t").to_pylist() == [{"s": sum(range(BIG))}]
        assert len(list((caches / "b" / "chunks").rglob("*.parquet"))) == 1  # t's chunk, not u's


def test_a_damaged_cache_is_thrown_away_and_rebuilt(url: str, caches: Path) -> None:
    with udr.open(url, cache=caches / "a") as a:
        a.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]))
        a.append("t", _rows(0, 10))
        before = _signature(a)
    # The cache skips fsync (the remote log is the truth), so a system crash may leave it damaged.
    (caches / "a" / "log" / "data.mdb").write_bytes(b"\0" * 4096)
    with udr.open(url, cache=caches / "a") as again:
        assert _signature(again) == before


def test_a_subscriber_on_its_own_cache_receives_remote_commits(url: str, caches: Path) -> None:
    with udr.open(url, cache=caches / "w") as writer:
        writer.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]))
    got: list[tuple[str, int, float]] = []

    async def follow() -> None:
        with anyio.fail_after(30), udr.open(url, cache=caches / "r") as reader:
            async with reader.subscribe("t", start="latest") as sub, anyio.create_task_group() as tg:
                tg.start_soon(anyio.to_thread.run_sync, write_three)
                async for batch in sub:
                    got.append((batch.commit.id, batch.changes.num_rows, time.monotonic()))
                    if len(got) == 3:
                        break

    sent: list[tuple[str, float]] = []

    def write_three() -> None:
        with udr.open(url, cache=caches / "w") as w:
            for n in range(3):
                sent.append((w.append("t", _rows(n * 10, 10)).id, time.monotonic()))
                time.sleep(0.2)

    anyio.run(follow)
    assert [g[0] for g in got] == [s[0] for s in sent]
    assert all(g[1] == 10 for g in got)
    assert max(g[2] - s[1] for g, s in zip(got, sent)) < 2.0


def test_gc_removes_only_unreferenced_chunks_past_the_grace_period(url: str, caches: Path, s3_server: S3) -> None:
    with udr.open(url, cache=caches / "a") as a:
        a.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]))
        a.append("t", _rows(0, BIG))
        a.overwrite("t", _rows(10 * BIG, BIG + 1))  # the first chunk stays referenced by the older commit
        mirror = a._handle.remote
        assert isinstance(mirror, Mirror)
        mirror.store.put("chunks/" + "ab" * 32, b"left by a writer killed before its commit point")
        assert a.gc() >= 0
        assert "chunks/" + "ab" * 32 in bucket_keys(s3_server, url)  # younger than the grace period
        freed = mirror.collect_garbage(a._handle.ctx.log.referenced_chunks(), set(), grace=timedelta(0))
        assert freed == len(b"left by a writer killed before its commit point")
        chunks = [k for k in bucket_keys(s3_server, url) if k.startswith("chunks/")]
        assert len(chunks) == len(a._handle.ctx.log.referenced_chunks()) == 2
    with udr.open(url, cache=caches / "b") as b:
        assert b.row_count("t") == BIG + 1
        assert b.verify().problems == []


def test_open_without_create_on_an_empty_prefix_raises_lake_not_found(url: str, caches: Path) -> None:
    with pytest.raises(udr.LakeNotFound, match="no lake at s3://"):
        udr.open(url, cache=caches / "a", create=False)
    assert not (caches / "a").exists()


def test_a_missing_bucket_raises_lake_not_found(s3_server: S3, caches: Path) -> None:
    with pytest.raises(udr.LakeNotFound, match=r"bucket .* does not exist"):
        udr.open("s3://no-such-bucket-udr/lake", cache=caches / "a")
    assert not (caches / "a").exists()


def test_no_credentials_raise_a_storage_error(url: str, caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(udr.StorageError, match="no valid credentials") as caught:
        udr.open(url, cache=caches / "a", storage_options={"metadata_endpoint": "http://127.0.0.1:9"})
    assert caught.value.retryable is False
    assert not (caches / "a").exists()


def test_an_unreachable_endpoint_raises_a_retryable_storage_error(url: str, caches: Path) -> None:
    with pytest.raises(udr.StorageError, match="check the network") as caught:
        udr.open(url, cache=caches / "a", storage_options={"endpoint": "http://127.0.0.1:9"})
    assert caught.value.retryable is True
    assert not (caches / "a").exists()


def test_a_network_failure_at_the_commit_point_leaves_nothing_visible(url: str, caches: Path) -> None:
    with udr.open(url, cache=caches / "a") as a:
        a.create_table("t", pa.schema([("k", pa.int64()), ("v", pa.int64())]))
        mirror = a._handle.remote
        assert isinstance(mirror, Mirror)
        working = mirror.log.store
        mirror.log.store = open_store(url, {"endpoint": "http://127.0.0.1:9"})
        with pytest.raises(udr.StorageError) as caught:
            a.append("t", _rows(0, 5))
        assert caught.value.retryable is True
        mirror.log.store = working
        assert a.row_count("t") == 0  # the local commit aborted with the failed publish
        a.append("t", _rows(0, 5))
    with udr.open(url, cache=caches / "b") as b:
        assert b.row_count("t") == 5
        assert len(b.log(limit=None)) == 3


def test_a_cache_directory_holding_a_local_lake_is_refused(url: str, tmp_path: Path) -> None:
    udr.open(tmp_path / "local").close()
    with pytest.raises(udr.UsageError, match="is a local lake, not a cache"):
        udr.open(url, cache=tmp_path / "local")
    with udr.open(tmp_path / "local") as local:
        assert "main" in local.branches()



def test_upserts_of_disjoint_keys_from_two_caches_replicate_their_re_pointed_vectors(url: str, caches: Path) -> None:
    with udr.open(url, cache=caches / "a") as a, udr.open(url, cache=caches / "b") as b:
        a.create_table("t", pa.schema([pa.field("k", pa.int64(), nullable=False), ("v", pa.int64())]),
                       primary_key=["k"])
        a.append("t", _rows(0, BIG))
        b.refresh()
        for n in range(3):  # each upsert deletes a row of the same big fragment; `b` always starts behind
            a.upsert("t", pa.table({"k": pa.array([10 + n], pa.int64()), "v": pa.array([-1], pa.int64())}))
            b.upsert("t", pa.table({"k": pa.array([20 + n], pa.int64()), "v": pa.array([-2], pa.int64())}))
        a.refresh()
        mine = _signature(a)
        assert _signature(b) == mine
    with udr.open(url, cache=caches / "c", create=False) as c:  # only the bucket: every vector link came along
        assert _signature(c) == mine
        assert c.query("select k, v from t where v < 0 order by k").to_pylist() == [
            *({"k": 10 + n, "v": -1} for n in range(3)), *({"k": 20 + n, "v": -2} for n in range(3))]
        assert c.verify().problems == []
        log = c._handle.ctx.log
        upserts = [log.get_commit(CommitId(commit.id)) for commit in reversed(c.log(limit=6))]
        vectors = [r.tables["t"].deletes[0].vector for r in upserts]
        for vector, below in zip(vectors[1:], vectors):  # each chained onto the one before, b's re-pointed so
            assert vector is not None and chain_link(log.get_blob(vector, BlobKind.DELETES))[0] == below
