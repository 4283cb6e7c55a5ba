"""SIGKILL during erasures and the gc that scrubs after them: nothing acknowledged is lost, no acknowledged
erasure is undone, and after a final gc no file of the lake holds an erased value.

A worker (`erasure_worker.py`) appends a Parquet batch, erases the previous batch's marker row and runs gc,
in a loop; it is killed at random moments over several rounds on one lake.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from crash_checks import kill_after_commits
from erasure_worker import BATCH, SCHEMA, batch, marker

import udr

WORKER = Path(__file__).with_name("erasure_worker.py")
SEED = 20261206
ROUNDS = 5


def _run_and_kill(lake: Path, first: int, plan: random.Random) -> list[str]:
    """Start a worker, let it acknowledge some commits, kill it a random moment later; return its lines."""
    commits = plan.randint(2, 3)
    return kill_after_commits(WORKER, [str(lake), str(first)], commits, plan.uniform(0.0, 0.5))


def _check(lake: Path, commits: dict[str, int], erased: set[int]) -> None:
    with udr.open(lake) as db:
        report = db.verify()
        assert report.ok, report.problems
        for commit, n in commits.items():
            rows = db.read("people", at=commit)
            names = set(rows.column("name").to_pylist())
            assert not {marker(e) for e in erased} & names, commit[:10]
            present = pc.is_in(rows["id"], pa.array(range(n * BATCH, (n + 1) * BATCH), pa.int64()))
            assert pc.sum(present).as_py() in (BATCH, BATCH - 1)  # the batch, less its marker once erased


@pytest.mark.slow
def test_sigkill_during_erase_and_gc_loses_nothing_and_undoes_no_erasure(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with udr.open(lake) as db:
        db.create_table("people", SCHEMA, primary_key=["id"])
        db.append("people", batch(0))
    plan = random.Random(SEED)
    commits: dict[str, int] = {}
    erased: set[int] = set()
    for round_ in range(ROUNDS):
        for line in _run_and_kill(lake, 1000 * (round_ + 1), plan):
            kind, *rest = line.split()
            if kind == "commit":
                commits[rest[0]] = int(rest[1])
            elif kind == "erased":
                erased.add(int(rest[0]))
        _check(lake, commits, erased)
    with udr.open(lake) as db:
        db.gc()
    assert erased
    for path in lake.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [e for e in erased if marker(e).encode() in data], path
