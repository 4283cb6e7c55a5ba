"""The feed (`udr.stream.feed`): lazy, bounded walking of a branch's first-parent history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import udr
from udr import _history
from udr.log.groups import Cursor
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
    return Feed(db._log, branch="main", tables=tables, after=after,
                changes=lambda t, c, r: _history.stamped_commit_changes(db, t, c, r), commit_value=db._commit_value)


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
    assert lag(db._log, "main", None, Cursor(start)) == (2, 6)
    assert lag(db._log, "main", ("b",), Cursor(start)) == (1, 3)
    assert lag(db._log, "main", None, Cursor(seq, "a")) == (1, 3)
    assert lag(db._log, "main", None, Cursor(seq)) == (0, 0)
