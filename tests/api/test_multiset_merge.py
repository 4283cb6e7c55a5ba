"""Tables without a primary key merge, revert and rebase as multisets of whole rows."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

import udr


def bag(db: udr.Lake, table: str, branch: str = "main") -> Counter[tuple[object, ...]]:
    return Counter(tuple(r.values()) for r in db.read(table, branch).to_pylist())


def test_two_branches_appending_to_an_event_log_merge(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        db.append("ev", {"sensor": ["a", "b"], "v": [1, 2]})
        db.create_branch("dev")
        db.append("ev", {"sensor": ["a"], "v": [3]})
        db.append("ev", {"sensor": ["c", "a"], "v": [4, 1]}, branch="dev")
        db.delete("ev", "sensor = 'b'", branch="dev")
        commit = db.merge("dev")
        assert bag(db, "ev") == Counter({("a", 1): 2, ("a", 3): 1, ("c", 4): 1})
        assert len(commit.parents) == 2
        assert db.verify().ok


def test_revert_of_an_append_after_later_appends(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        db.append("ev", {"v": [1, 2]})
        bad = db.append("ev", {"v": [2, 3]})
        db.append("ev", {"v": [4]})
        db.revert(bad.id)
        assert bag(db, "ev") == Counter({(1,): 1, (2,): 1, (4,): 1})


def test_removing_more_copies_than_the_base_had_is_a_conflict(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        db.append("ev", {"v": [1, 2]})
        db.create_branch("dev")
        db.delete("ev", "v = 1")
        db.delete("ev", "v = 1", branch="dev")
        db.append("ev", {"v": [3]}, branch="dev")
        with pytest.raises(udr.MergeConflict, match="removed by both sides"):
            db.merge("dev")
        assert db.merge("dev", strategy="theirs").id == db.resolve("main")
        assert bag(db, "ev") == Counter({(2,): 1, (3,): 1})


def test_the_same_removal_on_both_sides_is_one_removal(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        db.append("ev", {"v": [1, 2]})
        db.create_branch("dev")
        db.delete("ev", "v = 1")
        db.delete("ev", "v = 1", branch="dev")
        db.merge("dev")
        assert bag(db, "ev") == Counter({(2,): 1})


def test_random_multiset_merges_match_a_counter_model(tmp_path: Path) -> None:
    rng = random.Random(3)
    with udr.open(tmp_path) as db:
        db.append("ev", {"v": [rng.randrange(4) for _ in range(12)]})
        for round_ in range(8):
            branch = f"b{round_}"
            db.create_branch(branch)
            base = bag(db, "ev")
            for side in ("main", branch):
                for _ in range(2):
                    if rng.random() < 0.5:
                        db.append("ev", {"v": [rng.randrange(4) for _ in range(3)]}, branch=side)
                    else:
                        db.delete("ev", f"v = {rng.randrange(4)}", branch=side)
            ours, theirs = bag(db, "ev"), bag(db, "ev", branch)
            expected = {row: ours[row] + theirs[row] - base[row] for row in base | ours | theirs}
            if ours == theirs:  # identical changes on both sides count once
                expected = dict(ours)
            if min(expected.values(), default=0) < 0:
                with pytest.raises(udr.MergeConflict):
                    db.merge(branch)
                db.reset("main", db.resolve(branch))
                continue
            db.merge(branch)
            assert bag(db, "ev") == Counter({r: n for r, n in expected.items() if n}), f"round {round_}"
