"""`udr blame`, `udr cherry-pick` and `udr replay` (issue 12), driven through click's runner against real lakes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from cli_helpers import Udr, cells

import udr

PEOPLE = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])


@pytest.fixture
def lake(lake_path: Path) -> Path:
    """`people` seeded by ann, rescored by bob (id 2), then a bad import by eve (id 1) and a fix by fay (id 3)."""
    with udr.open(lake_path) as db:
        db.create_table("people", PEOPLE, primary_key=["id"], author="ann")
        db.append("people", {"id": [1, 2, 3], "name": ["ann", "bob", "cy"], "score": [1.0, 2.0, 3.0]},
                  message="seed", author="ann")
        db.upsert("people", {"id": [2], "name": ["bob"], "score": [20.0]}, message="rescore", author="bob")
        db.upsert("people", {"id": [1], "name": ["ann"], "score": [-1.0]}, message="bad import", author="eve")
        db.upsert("people", {"id": [3], "name": ["cy"], "score": [30.0]}, message="fix cy", author="fay")
    return lake_path


def test_blame_names_who_set_each_cell(lake: Path) -> None:
    with udr.open(lake) as db:
        rescore = db.commit_info("main~2")
    rows = Udr(lake).json("blame", "people")
    assert [(r["id"], r["name__author"], r["score__author"]) for r in rows] == [
        (1, "ann", "eve"), (2, "ann", "bob"), (3, "ann", "fay")]
    assert rows[1]["score__commit"] == rescore.id
    shown = cells(Udr(lake).ok("blame", "people", "--key", "id=2"))
    assert len(shown) == 1 and shown[0][0] == "2" and rescore.short_id in shown[0]


def test_blame_of_an_unkeyed_table_fails_with_a_hint(lake: Path) -> None:
    with udr.open(lake) as db:
        db.create_table("plain", pa.schema([("x", pa.int64())]))
    assert "no primary key" in Udr(lake).fails("blame", "plain")
    assert "keyed by (id)" in Udr(lake).fails("blame", "people", "--key", "name=bob")


def test_cherry_pick_and_replay_without_the_bad_import(lake: Path) -> None:
    with udr.open(lake) as db:
        bad, fix = db.commit_info("main~1"), db.commit_info("main")
        db.create_branch("hotfix", at="main~3")
    out = Udr(lake).ok("cherry-pick", fix.id, "--onto", "hotfix")
    assert "cherry-picked" in out and "fix cy" in out
    out = Udr(lake).ok("replay", "--onto", "investigation", "--from", "main~3", "--skip", bad.short_id)
    assert "investigation" in out
    with udr.open(lake) as db:
        assert db.read("people", "hotfix").sort_by("id").column("score").to_pylist() == [1.0, 2.0, 30.0]
        assert db.read("people", "investigation").sort_by("id").column("score").to_pylist() == [1.0, 20.0, 30.0]
        assert db.commit_info("investigation").metadata == {"udr.replayed_from": fix.id}
    assert "people" in Udr(lake).ok("diff", "main", "investigation")


def test_replay_conflict_fails_cleanly_and_creates_nothing(lake: Path) -> None:
    with udr.open(lake) as db:
        db.upsert("people", {"id": [1], "name": ["ann"], "score": [-2.0]}, message="builds on the import")
        bad = db.commit_info("main~2")
    line = Udr(lake).fails("replay", "--onto", "inv", "--from", "main~4", "--skip", bad.id)
    assert "1 conflict" in line and "nothing was written" in line
    with udr.open(lake) as db:
        assert "inv" not in db.branches()
    out = Udr(lake).ok("replay", "--onto", "inv", "--from", "main~4", "--skip", bad.id, "--skip-conflicts")
    assert "left out" in out
    assert "already has" in Udr(lake).ok("cherry-pick", "main", "--onto", "main")
