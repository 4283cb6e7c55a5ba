"""udr/api/changes.py: the facade's ChangeSource (change rows, commit values, commit listeners)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

import udr
from udr.api.changes import LakeChanges
from udr.log.commits import commit_value
from udr.log.format import CommitId
from udr.stream.source import ChangeSource


def test_lake_changes_serves_change_rows_values_and_listeners(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        source: ChangeSource = LakeChanges(db._handle.ctx)
        first = db.append("t", {"x": [1, 2]})
        cid = CommitId(first.id)
        record = db._handle.ctx.log.get_commit(cid)
        rows = source.commit_changes("t", cid, record)
        assert rows is not None and rows.column("x").to_pylist() == [1, 2]
        assert source.commit_value(cid, record) == first == commit_value(cid, record)
        second = db.append("t", {"x": [3]})
        net = source.net_changes(CommitId(first.id), CommitId(second.id), None)
        assert net["t"].column("x").to_pylist() == [3]


def test_listeners_hear_each_commit_until_removed(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        changes = LakeChanges(db._handle.ctx)
        heard: list[udr.Commit] = []
        changes.add_listener(heard.append)
        made = db.append("t", {"x": [1]})
        changes.committed(made)
        changes.remove_listener(heard.append)
        changes.remove_listener(heard.append)  # no error the second time
        changes.committed(made)
        assert heard == [made]


def test_changes_and_history_across_a_rename_follow_the_column(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        db.create_table("t", pa.schema([pa.field("k", pa.int64(), nullable=False), ("v", pa.int64())]),
                        primary_key=["k"])
        db.append("t", {"k": [1, 2], "v": [10, 20]})
        with db.transaction() as tx:
            tx.rename_column("t", "v", "w")
        db.upsert("t", {"k": [1], "w": [11]})
        changes = db.changes("t")
        assert "v" not in changes.column_names
        assert changes.select(["k", "w", "_change"]).to_pylist() == [
            {"k": 1, "w": 10, "_change": "insert"}, {"k": 2, "w": 20, "_change": "insert"},
            {"k": 1, "w": 10, "_change": "update_before"}, {"k": 1, "w": 11, "_change": "update_after"}]
        assert db.history("t", {"k": 1})["w"].to_pylist() == [10, 10, 11]
