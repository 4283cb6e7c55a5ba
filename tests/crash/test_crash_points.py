"""Injected-hook depth: stop a real writer process at each step of the commit and reopen the lake.

`crash_workers.py crash` arms a profile hook that calls `os._exit` at a named step of the write path
(see `CRASH_POINTS`): chunk bytes in tmp/, chunk renamed, chunk durable, before the log write transaction,
inside it, after the commit point, during the snapshot-cache update, before the caller is told; and, when
creating a lake, before the FORMAT file. All crashes run at once, one lake each (`crash-all` forks them
from one process); each test then reopens its lake. Before the commit point nothing may be visible and gc
reclaims the orphan; from the commit point on, the commit is whole and readable. Either way `verify()` is
clean and the lake takes the retried transaction.

The same hook can pause a process instead: gc must leave a paused writer's files alone, and a commit that
lands while gc is paused between its steps must keep its chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from crash_checks import (
    OPENING,
    Workers,
    apply_transfer,
    bank_state,
    chunk_files,
    referenced_chunks,
    tmp_files,
)
from crash_workers import CRASH_EXIT, CRASH_POINTS, crash_plan, setup_bank, stage

import udr

SEED = 7
BEFORE_COMMIT_POINT = ["chunk-tmp-written", "chunk-renamed", "chunk-durable", "before-commit-txn", "inside-commit-txn"]
AFTER_COMMIT_POINT = ["after-commit-point", "during-cache-update", "before-ack"]
assert set(BEFORE_COMMIT_POINT + AFTER_COMMIT_POINT + ["lake-created"]) == set(CRASH_POINTS)


@dataclass(frozen=True, slots=True)
class Crashed:
    """A lake whose writer was stopped at a crash point, and how that writer exited."""

    lake: Path
    setup: str
    exit_code: int
    stderr: str

    def check_exit(self) -> None:
        """The writer really died at its crash point (not earlier, not never)."""
        assert self.exit_code == CRASH_EXIT, f"writer exited {self.exit_code}: {self.stderr}"


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Crashed]]:
    """Every crash point (plus a second `chunk-durable` lake, `retry-first`) crashed in its own lake."""
    lakes: dict[str, tuple[Path, str, str]] = {}
    for name in [*BEFORE_COMMIT_POINT, *AFTER_COMMIT_POINT, "retry-first", "lake-created"]:
        lake = tmp_path_factory.mktemp(name) / "lake"
        setup = setup_bank(lake) if name != "lake-created" else ""
        lakes[name] = (lake, setup, "chunk-durable" if name == "retry-first" else name)
    pool = Workers()
    try:
        worker = pool.run("crash-all", SEED, *(f"{lake}={point}" for lake, _, point in lakes.values()))
        assert worker.proc.returncode == 0, worker.stderr()
        codes = dict(line.rsplit(" ", 1) for line in worker.lines)
        yield {name: Crashed(lake, setup, int(codes[str(lake)]), worker.stderr())
               for name, (lake, setup, _) in lakes.items()}
    finally:
        pool.close()


def _retry(db: udr.Lake) -> udr.Commit:
    """Run the crashed writer's transaction again, to completion."""
    move, batch = crash_plan(SEED)
    with db.transaction(message="retry", metadata=move.metadata) as tx:
        stage(tx, move, batch)
    assert tx.committed is not None
    return tx.committed


def _check_committed(db: udr.Lake, lake: Path, commit: udr.Commit, parent: str) -> None:
    """`commit` is the whole crash-plan transaction on top of `parent`, with its chunk file referenced."""
    move, batch = crash_plan(SEED)
    assert commit.metadata == move.metadata
    assert commit.parents == (parent,)
    assert bank_state(db, commit.id) == apply_transfer(OPENING, move.metadata)
    blobs = db.read("blobs", at=commit.id)
    assert blobs.num_rows == batch.num_rows
    assert pc.sum(blobs.column("x")).equals(pc.sum(batch.column("x")))
    report = db.verify()
    assert report.ok, report.problems
    assert chunk_files(lake) == referenced_chunks(lake)
    assert len(chunk_files(lake)) == 1


@pytest.mark.parametrize("point", BEFORE_COMMIT_POINT)
def test_crash_before_the_commit_point_leaves_nothing_visible(crashed: dict[str, Crashed], point: str) -> None:
    crash = crashed[point]
    crash.check_exit()
    lake = crash.lake
    with udr.open(lake) as db:
        assert db.resolve(None) == crash.setup
        assert [c.message for c in db.log(limit=2)] == ["open accounts", "create lake"]
        assert bank_state(db, crash.setup) == OPENING
        report = db.verify()
        assert report.ok, report.problems
        if point == "chunk-tmp-written":
            assert (chunk_files(lake), len(tmp_files(lake))) == (set(), 1)
        else:
            assert (len(chunk_files(lake)), tmp_files(lake)) == (1, [])
        assert referenced_chunks(lake) == set()

        assert db.gc() > 0
        assert (chunk_files(lake), tmp_files(lake)) == (set(), [])
        report = db.verify()
        assert report.ok, report.problems

        _check_committed(db, lake, _retry(db), crash.setup)


def test_retry_before_gc_reuses_the_orphan_chunk_and_gc_keeps_it(crashed: dict[str, Crashed]) -> None:
    crash = crashed["retry-first"]
    crash.check_exit()
    lake = crash.lake
    orphan = chunk_files(lake)
    assert len(orphan) == 1
    with udr.open(lake) as db:
        commit = _retry(db)
        assert chunk_files(lake) == orphan == referenced_chunks(lake)
        assert db.gc() == 0
        _check_committed(db, lake, commit, crash.setup)


@pytest.mark.parametrize("point", AFTER_COMMIT_POINT)
def test_crash_after_the_commit_point_keeps_the_whole_commit(crashed: dict[str, Crashed], point: str) -> None:
    crash = crashed[point]
    crash.check_exit()
    lake = crash.lake
    with udr.open(lake) as db:
        head = db.commit_info(db.resolve(None))
        assert head.message == f"crash at {point}"
        _check_committed(db, lake, head, crash.setup)
        assert db.gc() == 0
        assert tmp_files(lake) == []
        _check_committed(db, lake, head, crash.setup)

        assert db.rebuild() == head.seq + 1
        _check_committed(db, lake, head, crash.setup)

        # The lake takes the next transaction on top of the recovered one.
        _, batch = crash_plan(SEED)
        db.append("blobs", pa.table({"x": pc.negate(batch.column("x"))}))
        [(total,)] = db.sql("SELECT sum(x) FROM blobs").fetchall()
        assert total == 0


def test_crash_while_creating_a_lake_can_be_reopened(crashed: dict[str, Crashed]) -> None:
    crash = crashed["lake-created"]
    crash.check_exit()
    with udr.open(crash.lake) as db:
        assert [c.message for c in db.log()] == ["create lake"]
        report = db.verify()
        assert report.ok, report.problems


@pytest.mark.parametrize("point", ["chunk-tmp-written", "before-commit-txn"])
def test_gc_leaves_a_live_writers_files_alone(tmp_path: Path, workers: Workers, point: str) -> None:
    lake = tmp_path / "lake"
    setup = setup_bank(lake)
    writer = workers.start("crash", lake, point, SEED, tmp_path)
    writer.expect("paused")
    in_flight = (chunk_files(lake), tmp_files(lake))
    assert in_flight[0] or in_flight[1]
    with udr.open(lake) as db:
        db.gc()
    assert (chunk_files(lake), tmp_files(lake)) == in_flight

    (tmp_path / "resume").touch()
    committed = writer.expect("committed").split()[1]
    assert writer.wait() == 0
    with udr.open(lake) as db:
        _check_committed(db, lake, db.commit_info(committed), setup)


def test_gc_keeps_the_chunk_of_a_commit_that_lands_while_it_runs(tmp_path: Path, workers: Workers) -> None:
    lake = tmp_path / "lake"
    setup = setup_bank(lake)
    writer_sync, gc_sync = tmp_path / "writer", tmp_path / "gc"
    writer_sync.mkdir()
    gc_sync.mkdir()
    # The writer's chunk is durable and its intent recorded; it stops just before the commit point.
    writer = workers.start("crash", lake, "before-commit-txn", SEED, writer_sync)
    writer.expect("paused")
    # gc stops once it has listed the chunks commits reference.
    gc = workers.start("paused-gc", lake, gc_sync)
    gc.expect("paused")
    (writer_sync / "resume").touch()
    # The commit lands now, unless gc holds the log's write lock while it decides (then it waits for gc).
    landed = writer.next_line(timeout=3)
    (gc_sync / "resume").touch()
    gc.expect("freed")
    committed = (landed or writer.expect("committed")).split()[1]
    assert writer.wait() == 0 and gc.wait() == 0
    with udr.open(lake) as db:
        _check_committed(db, lake, db.commit_info(committed), setup)
