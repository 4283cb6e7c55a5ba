"""Before-images of keyed writes: stored in the log only when small; a large one is kept in the writing
process's memory (`udr.materialize.befores`), and any other process derives it from the parent's chunks."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

import udr
from udr.log.commits import TableOp
from udr.log.format import BEFORE_IMAGE_DERIVE_RATIO, BEFORE_IMAGE_MAX_ROWS, CommitId

ROWS = 20_000
CHANGED = BEFORE_IMAGE_MAX_ROWS + 500  # over the limit: no BEFORE blob


def _load(db: udr.Lake) -> None:
    with db.transaction() as tx:
        tx.create_table("t", pa.schema([("id", pa.int64()), ("v", pa.int64()), ("s", pa.string())]),
                        primary_key=["id"])
        tx.append("t", {"id": list(range(ROWS)), "v": list(range(ROWS)), "s": [f"s{i}" for i in range(ROWS)]})


def _refresh(db: udr.Lake) -> udr.Commit:
    """Every row whose id < CHANGED gets v + 1; ids 19,990 and up are dropped; one new id."""
    ids = [i for i in range(ROWS) if i < 19_990] + [ROWS]
    return db.overwrite("t", {"id": ids, "v": [i + 1 if i < CHANGED else i for i in ids],
                              "s": [f"s{i}" for i in ids]})


def _op(db: udr.Lake, commit: udr.Commit) -> TableOp:
    return db._handle.ctx.log.get_commit(CommitId(commit.id)).tables["t"]


def _sorted_feed(feed: pa.Table) -> list[dict[str, object]]:
    order = [("_change", "ascending"), ("id", "ascending")]
    rows: list[dict[str, object]] = feed.drop_columns(["_commit_time"]).sort_by(order).to_pylist()
    return rows


def test_a_large_keyed_write_stores_no_before_image_and_its_feed_is_the_same_in_every_process(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        _load(db)
        done = _refresh(db)
        assert _op(db, done).before is None
        kept = db.changes("t", since="main~1")
    with udr.open(tmp_path) as fresh:  # nothing kept: the old rows come from the parent's chunks
        derived = fresh.changes("t", since="main~1")
    assert _sorted_feed(kept) == _sorted_feed(derived)
    counts = {kind: kept.column("_change").to_pylist().count(kind) for kind in ("insert", "update_before", "delete")}
    assert counts == {"insert": 1, "update_before": CHANGED, "delete": 10}
    olds = {r["id"]: r["v"] for r in kept.to_pylist() if r["_change"] == "update_before"}
    assert olds[0] == 0 and olds[CHANGED - 1] == CHANGED - 1


def test_a_small_keyed_write_still_stores_its_before_image(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        _load(db)
        done = db.upsert("t", {"id": [1, 2], "v": [-1, -2], "s": ["a", "b"]})
        assert _op(db, done).before is not None
        assert [r["v"] for r in db.changes("t", since="main~1").to_pylist()
                if r["_change"] == "update_before"] == [1, 2]


def test_an_erasure_hides_the_erased_old_values_the_writer_kept(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        _load(db)
        _refresh(db)
        refreshed = db.resolve("main")
        gone = [r for r in db.changes("t", since="main~1").to_pylist() if r["_change"] == "delete"]
        assert {"id": 19_995, "v": 19_995, "s": "s19995"}.items() <= next(r for r in gone if r["id"] == 19_995).items()
        db.erase("t", {"id": [19_995, 7]}, reason="test")  # one row the refresh deleted, one it updated
        feed = db.changes("t", since=f"{refreshed}~1", until=refreshed).to_pylist()
        assert not any(r["id"] in (7, 19_995) or r["s"] in ("s7", "s19995") for r in feed)
        assert sum(r["_change"] == "update_before" for r in feed) == CHANGED - 1


def test_upserts_spread_over_a_much_larger_table_keep_their_before_image(tmp_path: Path) -> None:
    """Deriving their old rows would decode the whole table for a thousand-odd rows: the log stores them."""
    rows = (BEFORE_IMAGE_MAX_ROWS + 100) * BEFORE_IMAGE_DERIVE_RATIO
    with udr.open(tmp_path) as db:
        db.create_table("big", pa.schema([("id", pa.int64()), ("v", pa.int64())]), primary_key=["id"])
        db.append("big", {"id": pa.array(range(rows), pa.int64()), "v": pa.array(range(rows), pa.int64())})
        ids = list(range(0, rows, rows // (BEFORE_IMAGE_MAX_ROWS + 50)))
        done = db.upsert("big", {"id": ids, "v": [-1] * len(ids)})
        assert len(ids) > BEFORE_IMAGE_MAX_ROWS
        assert db._handle.ctx.log.get_commit(CommitId(done.id)).tables["big"].before is not None
