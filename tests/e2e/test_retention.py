"""Retention with holds: `set_retention`, `expire`, `gc`, holds and `udr.Expired`, as a user drives them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import udr


def _same(got: pa.Table, want: pa.Table) -> bool:
    return bool(got.sort_by("a").equals(want.sort_by("a")))


def _overwrites(db: udr.Lake, make_big: Callable[..., pa.Table], n: int, table: str = "t") -> list[str]:
    return [db.overwrite(table, make_big(seed)).id for seed in range(n)]


def test_expire_then_gc_frees_old_versions_and_keeps_the_head(
        db: udr.Lake, lake_path: Path, make_big: Callable[..., pa.Table],
        chunk_files: Callable[[Path], list[Path]]) -> None:
    commits = _overwrites(db, make_big, 4)
    assert db.gc() == 0  # no policy yet: every version is kept
    db.set_retention(keep_commits=1)
    report = db.expire()
    assert (report.expired, report.tables_expired) == (3, 3)
    freed = db.gc()
    assert freed > 0
    assert len(chunk_files(lake_path)) == 1
    assert _same(db.read("t"), make_big(3))
    assert _same(db.query("SELECT * FROM t"), make_big(3))
    for old in commits[:3]:
        with pytest.raises(udr.Expired, match="keep_commits=1"):
            db.read("t", at=old)
    with pytest.raises(udr.Expired):
        db.sql(f'SELECT count(*) FROM "t@{commits[0]}"').fetchall()
    with pytest.raises(udr.Expired):
        db.changes("t")
    assert db.commit_info(commits[0]).id == commits[0]  # commit records stay
    report_v = db.verify()
    assert report_v.ok, report_v.problems
    assert report_v.expired == 3
    assert db.gc() == 0


def test_expired_data_is_not_damage_but_a_lost_needed_chunk_is(
        db: udr.Lake, lake_path: Path, make_big: Callable[..., pa.Table],
        chunk_files: Callable[[Path], list[Path]]) -> None:
    _overwrites(db, make_big, 3)
    db.set_retention(keep_commits=1)
    db.expire()
    db.gc()
    (only,) = chunk_files(lake_path)
    only.unlink()
    report = db.verify()
    assert not report.ok
    assert only.stem in "".join(report.problems).replace("/", "")


def test_tags_holds_and_branches_are_never_expired(db: udr.Lake, make_big: Callable[..., pa.Table]) -> None:
    commits = _overwrites(db, make_big, 5)
    db.tag("q1", commits[0])
    placed = db.hold("audit", commits[1], "regulator asked", author="alice")
    assert (placed.name, placed.commit_id, placed.reason, placed.author) == ("audit", commits[1], "regulator asked",
                                                                            "alice")
    db.create_branch("fix", at=commits[2])
    db.set_retention(keep_commits=1)
    report = db.expire()
    assert report.expired == 1 and report.protected == 2  # the branch head is in its own window
    db.gc()
    for seed, commit in enumerate(commits):
        if seed == 3:
            with pytest.raises(udr.Expired):
                db.read("t", at=commit)
        else:
            assert _same(db.read("t", at=commit), make_big(seed))
            assert _same(db.query(f'SELECT * FROM "t@{commit}"'), make_big(seed))
    assert [h.name for h in db.holds()] == ["audit"]
    assert db.verify().ok


def test_hold_rules(db: udr.Lake, make_big: Callable[..., pa.Table]) -> None:
    commits = _overwrites(db, make_big, 3)
    db.hold("h", commits[0], "keep")
    with pytest.raises(udr.UsageError, match="exists"):
        db.hold("h", commits[1], "again")
    with pytest.raises(udr.InvalidName):
        db.hold("bad name", commits[1], "x")
    db.release("h")
    with pytest.raises(udr.RefNotFound, match="no hold"):
        db.release("h")
    db.set_retention(keep_commits=1)
    db.expire()
    with pytest.raises(udr.Expired):
        db.hold("late", commits[0], "too late")
    with pytest.raises(udr.Expired):
        db.create_branch("old", at=commits[0])
    with pytest.raises(udr.Expired):
        db.reset("main", commits[1])
    assert db.holds() == []


def test_a_released_hold_expires_at_the_next_expire(db: udr.Lake, make_big: Callable[..., pa.Table]) -> None:
    commits = _overwrites(db, make_big, 3)
    db.hold("h", commits[0], "keep")
    db.set_retention(keep_commits=1)
    assert db.expire().expired == 1
    db.read("t", at=commits[0])
    db.release("h")
    assert db.expire().expired == 1
    with pytest.raises(udr.Expired):
        db.read("t", at=commits[0])


def test_consumer_group_keeps_what_it_will_read(db: udr.Lake, make_big: Callable[..., pa.Table]) -> None:
    commits = _overwrites(db, make_big, 5)
    db.reset_group("etl", to=commits[1])
    db.set_retention(keep_commits=1)
    report = db.expire()
    assert report.expired == 1  # commits[0] only: the group reads the changes after commits[1]
    db.gc()
    with pytest.raises(udr.Expired):
        db.read("t", at=commits[0])
    feed = db.changes("t", since=commits[1])
    assert set(feed.column("_commit_id").to_pylist()) == set(commits[2:])
    assert db.verify().ok


def test_keep_days_measures_from_now(db: udr.Lake, make_big: Callable[..., pa.Table]) -> None:
    commits = _overwrites(db, make_big, 3)
    times = [db.commit_info(c).time for c in commits]
    db.set_retention(keep_days=1)
    assert db.expire(now=times[2] + timedelta(hours=23)).expired == 0
    report = db.expire(now=times[1] + timedelta(days=1) - timedelta(microseconds=300))
    assert report.expired == 1  # commits[0] is older than a day, commits[1] not quite
    with pytest.raises(udr.Expired, match="keep_days=1"):
        db.read("t", at=commits[0])
    db.read("t", at=commits[1])
    with pytest.raises(udr.UsageError):
        db.expire(now=datetime(2030, 1, 1))  # naive


def test_per_table_policy(db: udr.Lake, make_big: Callable[..., pa.Table]) -> None:
    a = _overwrites(db, make_big, 3, "a")
    _overwrites(db, make_big, 2, "b")
    db.set_retention(keep_commits=1)
    db.set_retention(keep_commits=100, table="a")
    assert [p.table for p in db.retention()] == [None, "a"]
    db.expire()
    db.gc()
    for seed, commit in enumerate(a):
        assert _same(db.read("a", at=commit), make_big(seed))
    with pytest.raises(udr.Expired, match="table 'b'"):
        db.read("b", at=db.resolve("main~1"))
    assert db.read("a", at="main~1").num_rows == make_big(2).num_rows
    db.set_retention(table="a")  # both None: removed
    assert [p.table for p in db.retention()] == [None]
    with pytest.raises(udr.UsageError):
        db.set_retention(keep_commits=0)


def test_policy_survives_reopen(lake_path: Path) -> None:
    with udr.open(lake_path) as db:
        db.set_retention(keep_days=30, keep_commits=5)
        db.hold("h", "main", "why")
    with udr.open(lake_path) as db:
        (policy,) = db.retention()
        assert (policy.keep_days, policy.keep_commits, policy.table) == (30.0, 5, None)
        assert policy.describe() == "keep_days=30, keep_commits=5 (lake)"
        assert [h.reason for h in db.holds()] == ["why"]


def test_expired_inline_rows_leave_the_log(db: udr.Lake) -> None:
    first = db.append("s", pa.table({"x": ["only-in-the-first-version"]})).id
    db.overwrite("s", pa.table({"x": ["now"]}))
    db.set_retention(keep_commits=1)
    db.expire()
    assert db.gc() > 0
    with pytest.raises(udr.Expired):
        db.read("s", at=first)
    report = db.verify()
    assert report.ok and report.expired == 1
    assert db.read("s").column("x").to_pylist() == ["now"]


def test_gc_stopped_part_way_loses_nothing_kept(db: udr.Lake, lake_path: Path, make_big: Callable[..., pa.Table],
                                                chunk_files: Callable[[Path], list[Path]]) -> None:
    commits = _overwrites(db, make_big, 5)
    small = db.append("s", pa.table({"x": ["expired-inline-row"]})).id
    db.overwrite("s", pa.table({"x": ["kept"]}))
    db.hold("h", commits[1], "keep")
    db.set_retention(keep_commits=1)
    db.expire()

    class Stop(Exception):
        pass

    def stop_after_four(n: int) -> None:
        if n == 3:  # of the 5 chunk files 3 are garbage: at least 2 of any 4 looked at (their order is their ids')
            raise Stop

    with pytest.raises(Stop):
        db.gc(progress=stop_after_four)  # the log transaction aborts; some unneeded files are already gone
    assert 2 <= len(chunk_files(lake_path)) < 5
    assert db.verify().ok
    assert _same(db.read("t", at=commits[1]), make_big(1))
    with pytest.raises(udr.Expired):
        db.read("s", at=small)
    assert db.gc() > 0
    assert len(chunk_files(lake_path)) == 2
    assert _same(db.read("t"), make_big(4)) and db.verify().ok


def test_no_branch_moves_onto_or_merges_from_expired_data(db: udr.Lake, make_big: Callable[..., pa.Table]) -> None:
    root = db.resolve("main")
    commits = _overwrites(db, make_big, 3)
    db.create_branch("side", at=commits[0])
    db.overwrite("t", make_big(9), branch="side")
    db.create_branch("behind", at=root)
    db.set_retention(keep_commits=1)
    db.expire()
    db.gc()
    with pytest.raises(udr.Expired):  # three-way: the merge base commits[0] has expired
        db.merge("side", "main")
    with pytest.raises(udr.Expired):  # a fast-forward onto an expired version
        db.merge(commits[1], "behind")
    with pytest.raises(udr.Expired):  # reverting reads the commit's parent
        db.revert(commits[2])
    assert db.resolve("behind") == root
    assert _same(db.read("t"), make_big(2)) and _same(db.read("t", branch="side"), make_big(9))
    assert db.verify().ok
