"""The feed (`udr.stream.feed`): lazy, bounded walking of a branch's first-parent history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import udr
from udr.api.changes import LakeChanges
from udr.log.positions import Cursor
from udr.stream import feed as feed_module
from udr.stream.feed import Feed, lag


@pytest.fixture
def db(tmp_path: Path) -> Iterator[udr.Lake]:
    lake = udr.open(tmp_path / "lake")
    try:
        yield lake
    finally:
        lake.close()


def _feed(db: udr.Lake, after: Cursor, tables: frozenset[str] | None = None) -> Feed:
    return Feed(db._handle.ctx.log, branch="main", tables=tables, after=after, source=LakeChanges(db._handle.ctx))


def _drain(feed: Feed) -> list[tuple[str, str, int]]:
    """(table, change, id) of every row the feed has now, in delivery order."""
    rows = []
    while (item := feed.next_batch()) is not None:
        batch = item[0]
        rows += [(batch.table, c, i) for c, i in zip(batch.changes.column("_change").to_pylist(),
                                                      batch.changes.column("id").to_pylist(), strict=True)]
    return rows


def _replayed(changes: list[tuple[str, str, int]]) -> set[int]:
    ids: set[int] = set()
    for _, change, i in changes:
        if change in ("insert", "update_after"):
            ids.add(i)
        elif change in ("delete", "update_before"):
            ids.discard(i)
    return ids


def test_a_long_backlog_is_delivered_in_order_holding_few_records(db: udr.Lake,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "_KEEP_RECORDS", 8)
    for i in range(30):
        db.append("t", pa.table({"i": [i]}))
    feed = _feed(db, Cursor(-1))
    seen = []
    while (found := feed.next_batch()) is not None:
        batch, cursor = found
        assert len(feed._records) <= 8
        assert cursor == Cursor(batch.commit.seq, "t")
        seen.append(batch.changes.column("i").to_pylist()[0])
    assert seen == list(range(30))
    assert feed.next_batch() is None  # nothing new: no walk, no batch


def test_resuming_inside_a_commit_skips_its_delivered_tables(db: udr.Lake) -> None:
    with db.transaction() as tx:
        for name in ("a", "b", "c"):
            tx.append(name, pa.table({"x": [1]}))
    seq = db.commit_info("main").seq
    feed = _feed(db, Cursor(seq, "a"))
    first = feed.next_batch()
    second = feed.next_batch()
    assert first is not None and second is not None
    assert [first[0].table, second[0].table] == ["b", "c"]
    assert feed.next_batch() is None


def test_lag_counts_the_commits_and_rows_after_a_cursor(db: udr.Lake) -> None:
    start = db.commit_info("main").seq
    db.append("a", pa.table({"x": [1, 2]}))
    with db.transaction() as tx:
        tx.append("a", pa.table({"x": [3]}))
        tx.append("b", pa.table({"x": [4, 5, 6]}))
    seq = db.commit_info("main").seq
    assert lag(db._handle.ctx.log, "main", None, Cursor(start)) == (2, 6)
    assert lag(db._handle.ctx.log, "main", ("b",), Cursor(start)) == (1, 3)
    assert lag(db._handle.ctx.log, "main", None, Cursor(seq, "a")) == (1, 3)
    assert lag(db._handle.ctx.log, "main", None, Cursor(seq)) == (0, 0)


def test_a_fast_forward_to_a_merge_holding_the_last_commit_as_second_parent_delivers_the_net_change(
        db: udr.Lake) -> None:
    db.create_table("t", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
    db.upsert("t", {"id": [1], "v": ["base"]})
    feed = _feed(db, Cursor(-1))
    db.create_branch("feature")
    db.upsert("t", {"id": [2], "v": ["feature-1"]}, branch="feature")
    db.upsert("t", {"id": [3], "v": ["feature-2"]}, branch="feature")
    db.upsert("t", {"id": [4], "v": ["main-1"]})
    seen = _drain(feed)
    assert _replayed(seen) == {1, 4}
    db.merge("main", into="feature")
    db.merge("feature", into="main")  # a fast-forward: main-1 is only the merge's second parent
    jumped = _drain(feed)
    assert sorted(jumped) == [("t", "insert", 2), ("t", "insert", 3)]
    assert _replayed(seen + jumped) == {1, 2, 3, 4} == set(db.read("t").column("id").to_pylist())
    db.upsert("t", {"id": [5], "v": ["after"]})
    assert _drain(feed) == [("t", "insert", 5)], "after the jump the feed follows first parents again"


def test_new_commits_after_a_reset_come_with_the_retraction_of_what_the_reset_undid(db: udr.Lake) -> None:
    db.append("t", {"id": [1]})
    kept = db.commit_info("main").id
    feed = _feed(db, Cursor(-1))
    db.append("t", {"id": [2]})
    seen = _drain(feed)
    db.reset("main", kept)
    db.append("t", {"id": [3]})
    after = _drain(feed)
    assert sorted(after) == [("t", "delete", 2), ("t", "insert", 3)]
    assert _replayed(seen + after) == {1, 3} == set(db.read("t").column("id").to_pylist())


def test_batches_the_reader_does_not_want_are_skipped_but_drops_still_end_the_table(db: udr.Lake) -> None:
    db.append("a", {"id": [1]})
    db.append("b", {"id": [2]})
    db.append("a", {"id": [3]})
    db.drop_table("b")
    asked: list[tuple[int, str]] = []

    def wants(commit: udr.Commit, table: str) -> bool:
        asked.append((commit.seq, table))
        return table == "a"

    feed = Feed(db._handle.ctx.log, branch="main", tables=frozenset({"a", "b"}), after=Cursor(-1),
                source=LakeChanges(db._handle.ctx), wants=wants)
    assert _drain(feed) == [("a", "insert", 1), ("a", "insert", 3)]
    assert [t for _, t in asked] == ["a", "b", "a", "b"]
    assert set(feed.dropped) == {"b"}
