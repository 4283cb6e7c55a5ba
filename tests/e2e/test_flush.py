"""Flushing small writes: a table's run of inline fragments becomes Parquet in a maintenance commit that
changes no row, no query answer and no change feed, and keeps the order rows were written in."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pyarrow as pa
import pytest

import udr
import udr.api.lake
import udr.log.format
from udr.api import committing
from udr.errors import CorruptionError
from udr.log.format import LOG_DIR, CommitId
from udr.log.memory import MemoryEnvironment
from udr.log.turns import Turns
from udr.materialize import compaction

FLUSH_AT = 6


@pytest.fixture(autouse=True)
def small_flush_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udr.log.format, "INLINE_FLUSH_FRAGMENTS", FLUSH_AT)


def one(i: int) -> pa.Table:
    return pa.table({"id": pa.array([i], pa.int64()), "v": pa.array([f"row {i}"])})


def flushes(db: udr.Lake) -> list[udr.Commit]:
    return [c for c in db.log() if c.metadata.get("udr.maintenance") == "flush-inline"]


def fragments(db: udr.Lake, table: str) -> list[bool]:
    """Whether each fragment of `table` at the head of main is inline."""
    snapshot = db._handle.ctx.materializer.snapshot(CommitId(db.commit_info("main").id))
    return [f.inline for f in snapshot[table].fragments]


def test_small_writes_are_flushed_in_order_and_report_no_change(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        first = db.append("t", one(0))
        for i in range(1, 20):
            db.append("t", one(i))
        assert db.read("t").column("id").to_pylist() == list(range(20))
        done = flushes(db)
        assert len(done) == 3
        assert all(c.author == "udr" and c.tables["t"] == udr.TableChange(0, 0, 0) for c in done)
        assert fragments(db, "t") == [False, False, False, True, True]
        # The change feed, diffs and SQL see the 19 appends and nothing of the flushes.
        changes = db.changes("t", since=first.id)
        assert changes.column("id").to_pylist() == list(range(1, 20))
        assert set(changes.column("_change").to_pylist()) == {"insert"}
        assert db.diff("t", first.id, "main").num_rows == 19
        assert db.sql("SELECT count(*), sum(id) FROM t").fetchall() == [(20, sum(range(20)))]
        assert db.read("t", at=done[0].parents[0]).equals(db.read("t", at=done[0].id))


def test_keyed_writes_across_flushes_match_a_model_and_replay_from_changes(tmp_path: Path) -> None:
    rng = random.Random(5)
    model: dict[int, str] = {}
    with udr.open(tmp_path / "lake") as db:
        db.create_table("k", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
        start = db.commit_info("main").id
        for step in range(40):
            key = rng.randrange(12)
            if rng.random() < 0.25 and model:
                victim = rng.choice(sorted(model))
                db.delete("k", keys=pa.table({"id": pa.array([victim], pa.int64())}))
                del model[victim]
            else:
                model[key] = f"{key}@{step}"
                db.upsert("k", pa.table({"id": pa.array([key], pa.int64()), "v": [model[key]]}))
        assert flushes(db)
        head = db.read("k").sort_by("id")
        assert head.to_pylist() == [{"id": k, "v": model[k]} for k in sorted(model)]
        replayed: dict[int, str] = {}
        for row in db.changes("k", since=start).to_pylist():
            if row["_change"] in ("insert", "update_after"):
                replayed[row["id"]] = row["v"]
            elif row["_change"] == "delete":
                del replayed[row["id"]]
        assert replayed == model
        assert db.verify().ok


def test_rebuild_after_flushes_answers_the_same(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        for i in range(15):
            db.append("t", one(i))
        before = db.read("t")
        db.rebuild()
        assert db.read("t").equals(before)
        assert db.verify().ok


def test_a_branch_merges_across_a_flush_on_main(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.create_table("k", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
        db.upsert("k", one(0))
        db.create_branch("side")
        db.upsert("k", one(100), branch="side")
        db.append("u", one(7), branch="side")
        for i in range(1, 10):
            db.upsert("k", one(i))
        assert flushes(db)
        db.merge("side", into="main")
        assert db.read("k").sort_by("id").column("id").to_pylist() == [*range(10), 100]
        assert db.read("u").column("id").to_pylist() == [7]
        db.merge("main", into="side")
        assert db.read("k", branch="side").sort_by("id").equals(db.read("k").sort_by("id"))


@pytest.mark.anyio
async def test_a_subscriber_gets_one_batch_per_write_and_none_for_a_flush(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        for i in range(14):
            db.append("t", one(i))
        assert flushes(db)
        seen = []
        async with db.subscribe("t", start="earliest") as sub:
            with anyio.fail_after(10):
                async for batch in sub:
                    seen.extend(batch.changes.column("id").to_pylist())
                    if len(seen) == 14:
                        break
        assert seen == list(range(14))


def test_a_failed_flush_warns_and_keeps_the_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(staging: object, table: str) -> None:
        raise CorruptionError("simulated damage")

    monkeypatch.setattr(compaction, "flush_inline", broken)
    with udr.open(tmp_path / "lake") as db:
        for i in range(FLUSH_AT - 1):
            db.append("t", one(i))
        with pytest.warns(RuntimeWarning, match="simulated damage"):
            last = db.append("t", one(FLUSH_AT - 1))
        assert db.commit_info("main") == last
        assert db.read("t").column("id").to_pylist() == list(range(FLUSH_AT))
        assert not flushes(db)


def test_a_writer_leaves_the_flush_to_one_already_flushing_and_a_later_commit_flushes(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        for i in range(FLUSH_AT - 1):
            db.append("t", one(i))
        other = Turns(tmp_path / "lake" / LOG_DIR, MemoryEnvironment(()))  # another writer's
        with other.flush() as held:
            assert held
            db.append("t", one(FLUSH_AT - 1))  # due now, but another writer (this test) holds the flush turn
            assert not flushes(db)
        db.append("t", one(FLUSH_AT))  # still due: this commit flushes the whole run
        assert len(flushes(db)) == 1
        assert fragments(db, "t") == [False]
        assert db.read("t").column("id").to_pylist() == list(range(FLUSH_AT + 1))
        other.close()


def test_a_stale_writer_does_not_flush_a_run_another_writer_flushed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with udr.open(tmp_path / "lake") as db:
        for i in range(FLUSH_AT):
            db.append("t", one(i))  # the last one flushes
        [done] = flushes(db)
        due = CommitId(done.parents[0])
        calls: list[str] = []
        monkeypatch.setattr(compaction, "flush_inline", lambda staging, table: calls.append(table))
        # A writer whose own commit left the run due (it folded `due`) finds it flushed at the branch's head.
        committing._upkeep_after(db._handle, "main", due, db._handle.ctx.materializer.snapshot(due), ["t"],
                                 committing._FLUSH)
        assert calls == [], "no run was read and re-encoded"
        assert flushes(db) == [done]


def merges(db: udr.Lake, branch: str = "main") -> list[udr.Commit]:
    return [c for c in db.log(branch) if c.metadata.get("udr.maintenance") == "merge-fragments"]


def test_a_keyed_table_refreshed_often_gets_its_delta_fragments_merged_without_a_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udr.log.format, "MERGE_FRAGMENTS", 4)
    rows = 2_000
    with udr.open(tmp_path / "lake") as db:
        db.create_table("t", pa.schema([("id", pa.int64()), ("v", pa.int64())]), primary_key=["id"])
        db.append("t", {"id": list(range(rows)), "v": [0] * rows})
        refreshes = []
        for night in range(1, 6):
            ids = [i for i in range(rows + night) if i % 97 != night]  # a few keys leave, one arrives
            refreshes.append(db.overwrite("t", {"id": ids, "v": [night if i % 50 == night else 0 for i in ids]}))
        [merge] = merges(db)
        assert merge.author == "udr" and merge.tables["t"] == udr.TableChange(0, 0, 0)
        assert merge.parents[0] == refreshes[3].id and db.commit_info("main~1").id == merge.id
        # Rows, SQL, every old version, the change feed and diffs read as if no merge had happened.
        assert db.read("t", at=merge.parents[0]).sort_by("id").equals(db.read("t", at=merge.id).sort_by("id"))
        state = db._handle.ctx.materializer.snapshot(CommitId(db.resolve("main")))["t"]
        assert [f.rows >= rows for f in state.fragments] == [True, False, False]  # bulk, merged run, last night
        expected = [i for i in range(rows + 5) if i % 97 != 5]
        assert sorted(db.read("t").column("id").to_pylist()) == expected
        assert db.sql("SELECT count(*), sum(v) FROM t").fetchall() == [(len(expected), 5 * sum(
            1 for i in expected if i % 50 == 5))]
        feed = db.changes("t", since=refreshes[2].id)
        assert len(feed.filter(pa.compute.equal(feed.column("_commit_id"), merge.id))) == 0
        assert db.diff("t", refreshes[3].id, merge.id).num_rows == 0
        assert db.changes("t", since=merge.id).num_rows == db.changes("t", since=refreshes[3].id).num_rows > 0
        for commit in refreshes:
            assert db.read("t", at=commit.id).num_rows == db.row_count("t", at=commit.id)
        assert db.verify().ok
        db.rebuild()
        assert sorted(db.read("t").column("id").to_pylist()) == expected


def test_only_keyed_overwrites_lead_to_merges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udr.log.format, "MERGE_FRAGMENTS", 3)
    with udr.open(tmp_path / "lake") as db:
        db.create_table("t", pa.schema([("id", pa.int64()), ("v", pa.int64())]), primary_key=["id"])
        db.append("t", {"id": list(range(1_000)), "v": [0] * 1_000})
        for night in range(1, 5):  # 5 inline fragments: one short of a flush
            db.upsert("t", {"id": [night], "v": [night]})
        snapshot = db._handle.ctx.materializer.snapshot(CommitId(db.resolve("main")))
        assert merges(db) == [] and len(snapshot["t"].fragments) == 5
