"""SIGKILL during `expire`, `gc` and commits under a retention policy: nothing acknowledged is lost.

A worker (`retention_worker.py`) overwrites a table, expires and collects garbage in a loop; it is killed at
random moments, several rounds over one lake. After each round the lake must verify clean, every
acknowledged commit must still be in the log, and its data must read back exactly or raise `udr.Expired`
(never damage); the tagged and held versions and the head always read back exactly.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from crash_checks import kill_after_commits
from retention_worker import rows

import udr

WORKER = Path(__file__).with_name("retention_worker.py")
SEED = 20261205
ROUNDS = 5


def _run_and_kill(lake: Path, first_seed: int, plan: random.Random) -> list[str]:
    """Start a worker, let it acknowledge some commits, kill it a random moment later; return its lines."""
    commits = plan.randint(1, 3)
    return kill_after_commits(WORKER, [str(lake), str(first_seed)], commits, plan.uniform(0.0, 0.4))


def _check(lake: Path, acknowledged: dict[str, int], kept: dict[str, int], newest: set[int]) -> None:
    with udr.open(lake) as db:
        report = db.verify()
        assert report.ok, report.problems
        for commit, seed in acknowledged.items():
            assert db.commit_info(commit).id == commit
            try:
                data = db.read("t", at=commit)
            except udr.Expired:
                assert commit not in kept, f"protected commit {commit[:10]} expired"
                continue
            assert data.equals(rows(seed).combine_chunks()) or data.sort_by("x").equals(rows(seed).sort_by("x"))
        for commit, seed in kept.items():
            assert db.read("t", at=commit).sort_by("x").equals(rows(seed).sort_by("x"))
        head = db.read("t").sort_by("x")
        assert any(head.equals(rows(seed).sort_by("x")) for seed in newest)


@pytest.mark.slow
def test_sigkill_during_expire_and_gc_keeps_every_acknowledged_commit(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with udr.open(lake) as db:
        kept = {db.overwrite("t", rows(seed)).id: seed for seed in range(2)}
        tagged, held = kept
        db.tag("start", tagged)
        db.hold("audit", held, "kept through every crash")
        db.set_retention(keep_commits=2)
    plan = random.Random(SEED)
    acknowledged: dict[str, int] = {}
    for round_ in range(ROUNDS):
        first = 1000 * (round_ + 1)
        lines = _run_and_kill(lake, first, plan)
        seeds = []
        for line in lines:
            if line.startswith("commit "):
                _, commit, seed = line.split()
                acknowledged[commit] = int(seed)
                seeds.append(int(seed))
        # The head is the last acknowledged commit, or one more that landed before the kill.
        _check(lake, acknowledged, kept, {seeds[-1], seeds[-1] + 1})
    with udr.open(lake) as db:
        db.expire()
        db.gc()
        assert db.verify().ok
    _check(lake, acknowledged, kept, set(acknowledged.values()) | {max(acknowledged.values()) + 1})
