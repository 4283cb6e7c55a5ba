"""`Lake.changes(limit=N)`: the first N rows of the change feed, computed without the rest of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import udr
from udr.log.format import CHUNK_ROWS, CommitId


def _history(db: udr.Lake) -> None:
    db.create_table("k", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
    db.append("k", {"id": [1, 2, 3], "v": ["a", "b", "c"]})
    db.upsert("k", {"id": [2, 4], "v": ["B", "d"]})
    db.delete("k", keys={"id": [1]})
    db.append("k", {"id": list(range(10, 60)), "v": ["x"] * 50})
    db.execute("UPDATE k SET v = 'y' WHERE id > 50")
    with db.transaction() as tx:
        tx.rename_column("k", "v", "w")
    db.append("k", {"id": [99], "w": ["z"]})
    db.execute("DELETE FROM k")
    db.overwrite("k", {"id": [7], "w": ["again"]})
    db.append("u", {"x": [1, 1, 2]})
    db.delete("u", where="x = 1")
    db.append("u", {"x": [5]})


@pytest.mark.parametrize("table", ["k", "u"])
def test_every_limit_gives_the_first_rows_of_the_whole_feed(tmp_path: Path, table: str) -> None:
    with udr.open(tmp_path / "lake") as db:
        _history(db)
        whole = db.changes(table)
        assert whole.num_rows >= 6
        for limit in (0, 1, 2, 3, 4, 5, 7, 20, 54, 55, whole.num_rows - 1, whole.num_rows, whole.num_rows + 5):
            assert db.changes(table, limit=limit).equals(whole.slice(0, limit)), limit
        since = db.log(branch="main")[-3].id
        assert db.changes(table, since=since, limit=2).equals(db.changes(table, since=since).slice(0, 2))
        with pytest.raises(udr.UsageError, match="limit=-1"):
            db.changes(table, limit=-1)


def test_a_limited_feed_reads_only_the_chunks_its_rows_are_in(tmp_path: Path) -> None:
    rows = 2 * CHUNK_ROWS
    with udr.open(tmp_path / "lake") as db:
        bulk = db.append("big", {"id": np.arange(rows, dtype=np.int64)})
        later = db.append("big", {"id": np.arange(rows, rows + 400_000, dtype=np.int64)})
        # Every chunk file but the first of the bulk commit goes missing.
        added = [f for c in (bulk, later) for f in db._handle.ctx.log.get_commit(CommitId(c.id)).tables["big"].add]
        assert [f.inline for f in added] == [False] * 3
        for frag in added[1:]:
            db._handle.ctx.log.chunks.verified_path(frag.chunk).unlink()
        first = db.changes("big", limit=CHUNK_ROWS)
        assert first.column("id").to_pylist() == list(range(CHUNK_ROWS))
        assert set(first.column("_change").to_pylist()) == {"insert"}
        with pytest.raises(udr.CorruptionError):
            db.changes("big", limit=CHUNK_ROWS + 1)
        with pytest.raises(udr.CorruptionError):
            db.changes("big")
        assert db.changes("big", since=later.id).num_rows == 0
