"""udr/api/changes.py: the facade's ChangeSource (change rows, commit values, commit listeners)."""

from __future__ import annotations

from pathlib import Path

import udr
from udr.api.changes import LakeChanges, commit_value
from udr.log.format import CommitId
from udr.stream.source import ChangeSource


def test_lake_changes_serves_change_rows_values_and_listeners(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        source: ChangeSource = LakeChanges(db._ctx)
        first = db.append("t", {"x": [1, 2]})
        cid = CommitId(first.id)
        record = db._log.get_commit(cid)
        rows = source.commit_changes("t", cid, record)
        assert rows is not None and rows.column("x").to_pylist() == [1, 2]
        assert source.commit_value(cid, record) == first == commit_value(cid, record)
        second = db.append("t", {"x": [3]})
        net = source.net_changes(CommitId(first.id), CommitId(second.id), None)
        assert net["t"].column("x").to_pylist() == [3]


def test_listeners_hear_each_commit_until_removed(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        changes = LakeChanges(db._ctx)
        heard: list[udr.Commit] = []
        changes.add_listener(heard.append)
        made = db.append("t", {"x": [1]})
        changes.committed(made)
        changes.remove_listener(heard.append)
        changes.remove_listener(heard.append)  # no error the second time
        changes.committed(made)
        assert heard == [made]
