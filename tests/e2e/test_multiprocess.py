"""Several real processes on one lake: concurrent writers, a write race, a reader during commits.

The processes are `tests/crash/crash_workers.py` commands started with `sys.executable`; they meet through
files (`ready`, `go`, `stop`) and report on stdout. Nothing is mocked: each process opens the lake's LMDB
environments itself, so LMDB's locks and snapshots are what keeps them apart.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from processes import Start, finish, worker_processes

import udr

WORKERS = Path(__file__).parents[1] / "crash" / "crash_workers.py"
TIMEOUT = 90



@pytest.fixture
def start() -> Iterator[Start]:
    """Start a worker process (`WORKERS COMMAND ...`); any still running at the end is killed."""
    with worker_processes(WORKERS) as start:
        yield start



def _wait_for(*paths: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"never appeared: {[p for p in paths if not p.exists()]}"
        time.sleep(0.005)


def _setup_bank(lake: Path, start: Start) -> tuple[str, int]:
    """Create the bank tables; return the setup commit id and the money in the bank."""
    [line] = finish(start("setup", lake), TIMEOUT)
    setup, total = line.split()
    return setup, int(total)


def test_writers_of_disjoint_tables_both_land(tmp_path: Path, start: Start) -> None:
    lake = tmp_path / "lake"
    udr.open(lake).close()
    count = 30
    go = tmp_path / "go"
    writers = {table: start("append", lake, table, count, 1, go, 0.01) for table in ("left", "right")}
    for proc in writers.values():
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    go.touch()
    acknowledged = {table: finish(proc, TIMEOUT) for table, proc in writers.items()}

    with udr.open(lake) as db:
        log = db.log()
        assert len(log) == 1 + 2 * count
        for table, lines in acknowledged.items():
            assert not [line for line in lines if line.startswith("conflict")], lines
            assert set(lines) <= {c.id for c in log}
            assert sorted(db.read(table).column("i").to_pylist()) == list(range(count))
        report = db.verify()
        assert report.ok, report.problems
    # The commits really interleaved: each writer committed on top of the other's commits.
    order = [next(iter(c.tables)) for c in reversed(log[:-1])]
    runs = 1 + sum(a != b for a, b in itertools.pairwise(order))
    assert runs >= 3, order


def _race(tmp_path: Path, start: Start, how: str) -> tuple[Path, str, dict[str, list[str]]]:
    """Two processes stage a big `how` of one table on the same head, then commit at the same moment."""
    lake = tmp_path / "lake"
    with udr.open(lake) as db:
        db.append("shared", {"x": [0]})
        before = db.resolve(None)
    racers = {name: start("race", lake, "shared", tmp_path, name, how) for name in ("one", "two")}
    # Both have staged their rows (a chunk file each) on the same head before either commits.
    _wait_for(*(tmp_path / f"{name}.ready" for name in racers))
    (tmp_path / "go").touch()
    outcome = {name: finish(proc, TIMEOUT) for name, proc in racers.items()}
    assert {lines[0] for lines in outcome.values()} == {f"base {before}"}
    return lake, before, outcome


def test_two_overwriters_of_one_table_from_one_head_exactly_one_conflicts(
    tmp_path: Path, start: Start, chunk_files: Callable[[Path], list[Path]]
) -> None:
    lake, before, outcome = _race(tmp_path, start, "overwrite")
    results = sorted(lines[1].split(maxsplit=1) for lines in outcome.values())
    assert [kind for kind, _ in results] == ["committed", "conflict"], results
    (_, winner), (_, message) = results
    assert "shared" in message and winner[:10] in message
    loser = next(name for name, lines in outcome.items() if lines[1].startswith("conflict"))

    with udr.open(lake) as db:
        assert db.resolve(None) == winner
        assert [c.id for c in db.log(limit=2)] == [winner, before]
        assert f"race {loser}" not in {c.message for c in db.log()}
        assert db.read("shared").num_rows == 310_000
        assert len(chunk_files(lake)) == 2
        assert db.gc() > 0
        assert len(chunk_files(lake)) == 1
        report = db.verify()
        assert report.ok, report.problems


def test_two_appenders_of_one_table_from_one_head_both_commit_in_a_line(
    tmp_path: Path, start: Start, chunk_files: Callable[[Path], list[Path]]
) -> None:
    lake, before, outcome = _race(tmp_path, start, "append")
    results = [lines[1].split(maxsplit=1) for lines in outcome.values()]
    assert [kind for kind, _ in results] == ["committed", "committed"], results
    with udr.open(lake) as db:
        log = db.log(limit=3)
        assert {c.id for c in log[:2]} == {commit for _, commit in results}
        assert log[2].id == before
        assert [c.parents for c in log[:2]] == [(log[1].id,), (before,)]  # linear: no merge commit
        assert db.read("shared").num_rows == 1 + 2 * 310_000
        assert len(chunk_files(lake)) == 2
        report = db.verify()
        assert report.ok, report.problems


def test_a_reader_sees_a_consistent_state_while_a_writer_commits(tmp_path: Path, start: Start) -> None:
    lake = tmp_path / "lake"
    _, total = _setup_bank(lake, start)
    stop = tmp_path / "stop"
    reader = start("reader", lake, stop)
    assert reader.stdout is not None and reader.stdout.readline() == "ready\n"
    writer = start("bank", lake, 5, 30, "", 0)
    commits = finish(writer, TIMEOUT)[1:-1]
    stop.touch()
    reads = [line.split() for line in finish(reader, TIMEOUT)]

    assert len(commits) == 30
    assert all(int(by_sql) == total and int(by_read) == total for _, by_sql, by_read in reads), reads
    seen = {head for head, _, _ in reads}
    assert len(seen & set(commits)) >= 2, "the reader never read while the writer was committing"
    with udr.open(lake) as db:
        assert seen <= {c.id for c in db.log()}


def test_processes_creating_one_lake_at_once_all_open_it(tmp_path: Path, start: Start) -> None:
    rounds = 10
    creators = [start("create", tmp_path / "lake", tmp_path, rounds) for _ in range(3)]
    for proc in creators:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for n in range(rounds):
        (tmp_path / f"go{n}").touch()
        time.sleep(0.05)
    results = [finish(proc, TIMEOUT) for proc in creators]

    for n in range(rounds):
        lines = [r[n] for r in results]
        assert all(line.startswith("ok ") for line in lines), lines
        assert len(set(lines)) == 1, f"round {n}: the processes made different lakes: {lines}"
