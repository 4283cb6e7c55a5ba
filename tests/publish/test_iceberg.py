"""Publishing as Iceberg: random histories read back through pyiceberg and polars, at every snapshot."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from iceberg_readers import bag, check_every_snapshot
from pyiceberg.table import StaticTable

import udr


def _rows(rng: random.Random, n: int, start: int, *, extra: bool = False) -> pa.Table:
    ids = np.arange(start, start + n, dtype=np.int64)
    cols = {"id": ids, "v": pa.array(rng.choices(range(1000), k=n), pa.int64()),
            "s": pa.array([f"s{rng.randrange(50)}" for _ in range(n)])}
    if extra:
        cols["w"] = pa.array([rng.random() for _ in range(n)])
    return pa.table(cols)


def _random_history(db: udr.Lake, dest: Path, seed: int, steps: int) -> None:
    """Appends (inline and Parquet), keyed upserts, deletes, overwrites, compaction, an added column,
    tags, and publishes at random points."""
    rng = random.Random(seed)
    next_id = 0
    db.create_table("k", pa.schema([("id", pa.int64()), ("v", pa.int64()), ("s", pa.string())]), primary_key=["id"])
    evolved = False
    for step in range(steps):
        action = rng.choice(["small", "small", "big", "upsert", "delete", "overwrite", "compact", "evolve"])
        n = rng.choice([5, 40]) if action != "big" else 30_000
        if action in ("small", "big"):
            db.append("k", _rows(rng, n, next_id, extra=evolved))
            next_id += n
        elif action == "upsert" and next_id:
            ids = sorted(rng.sample(range(next_id), min(next_id, 30)))
            data = _rows(rng, len(ids), 0, extra=evolved).set_column(0, "id", pa.array(ids, pa.int64()))
            db.upsert("k", data)
        elif action == "delete":
            db.delete("k", f"v % {rng.choice([3, 7, 11])} = {rng.randrange(3)}")
        elif action == "overwrite" and rng.random() < 0.3:
            db.overwrite("k", _rows(rng, 50, next_id, extra=evolved))
            next_id += 50
        elif action == "compact":
            db.compact("k")
        elif action == "evolve" and not evolved:
            evolved = True
            db.append("k", _rows(rng, 10, next_id, extra=True), evolve=True)
            next_id += 10
        if rng.random() < 0.15:
            db.tag(f"t{step}")
        if rng.random() < 0.3:
            db.publish_iceberg(dest)
    db.publish_iceberg(dest)


# A second seed runs with the slow tests: each history takes ~6 s (the suite stays under 5 min on 2 cores).
@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_every_published_version_reads_like_udr(tmp_path: Path, seed: int) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        _random_history(db, dest, seed, 25)
        snapshots = check_every_snapshot(db, dest, "k")
        table = StaticTable.from_metadata(str(dest / "k"))
        # One snapshot per commit that changed the table (the create commit included).
        assert snapshots == len(db.log(table="k"))
        for name, commit in db.tags().items():
            ref = table.metadata.refs[name]
            assert ref.snapshot_ref_type == "tag"
            snapshot = table.snapshot_by_id(ref.snapshot_id)
            assert snapshot is not None and snapshot.summary is not None
            assert snapshot.summary["udr.commit"] == db.log(table="k", branch="main")[
                [c.id for c in db.log(table="k")].index(_last_change(db, commit))].id


def _last_change(db: udr.Lake, commit: str) -> str:
    changed = {c.id for c in db.log(table="k")}
    for c in db.log():
        if c.id in changed and db.resolve(c.id) == c.id and _is_ancestor(db, c.id, commit):
            return c.id
    raise AssertionError("no change")


def _is_ancestor(db: udr.Lake, a: str, b: str) -> bool:
    return db.commit_info(a).time <= db.commit_info(b).time


def test_time_travel_by_timestamp_and_summary(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        db.append("t", pa.table({"a": [1, 2, 3]}), message="first", author="ann")
        time.sleep(0.002)  # Iceberg timestamps have millisecond resolution
        db.append("t", pa.table({"a": [4]}), message="second", author="bob")
        db.publish_iceberg(dest)
        table = StaticTable.from_metadata(str(dest / "t"))
        first, second = table.metadata.snapshots
        assert first.summary is not None
        assert first.summary["udr.message"] == "first" and first.summary["udr.author"] == "ann"
        assert second.parent_snapshot_id == first.snapshot_id
        at = table.snapshot_as_of_timestamp(first.timestamp_ms)
        assert at is not None and at.snapshot_id == first.snapshot_id
        assert table.scan(snapshot_id=at.snapshot_id).to_arrow().num_rows == 3
        assert table.scan().to_arrow().num_rows == 4


def test_publishing_twice_writes_nothing_and_later_publishes_are_incremental(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        db.append("t", pa.table({"a": np.arange(50_000)}))
        first = db.publish_iceberg(dest)
        files = sorted(p.name for p in dest.rglob("*"))
        again = db.publish_iceberg(dest)
        assert again.snapshots == {"t": 0} and again.files_written == 0
        assert sorted(p.name for p in dest.rglob("*")) == files
        db.append("t", pa.table({"a": [7]}))
        db.append("other", pa.table({"b": [1]}))
        later = db.publish_iceberg(dest, ["t"])
        assert later.snapshots == {"t": 1}
        # One manifest, one manifest list, one metadata version and the hint: nothing of the first snapshot.
        assert later.files_written == 4 and later.bytes_written < first.bytes_written + 10_000
        assert not (dest / "other").exists()
        check_every_snapshot(db, dest, "t")


def test_data_files_are_the_lakes_own_chunks(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        db.append("t", pa.table({"a": np.random.default_rng(0).integers(0, 1 << 60, 300_000)}))
        report = db.publish_iceberg(dest)
        table = StaticTable.from_metadata(str(dest / "t"))
        paths = [task.file.file_path for task in table.scan().plan_files()]
        assert paths and all(p.startswith((tmp_path / "lake" / "chunks").resolve().as_uri()) for p in paths)
        data_bytes = sum(p.stat().st_size for p in (tmp_path / "lake" / "chunks").rglob("*.parquet"))
        assert report.bytes_written < data_bytes / 10


def test_a_renamed_column_reads_its_values_before_and_after_the_rename(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        db.execute("CREATE TABLE acc (id BIGINT PRIMARY KEY, bal BIGINT)")
        db.execute("INSERT INTO acc VALUES (1, 10), (2, 20)")
        db.execute("ALTER TABLE acc RENAME COLUMN bal TO balance")
        db.execute("UPDATE acc SET balance = balance + 1 WHERE id = 2")
        db.publish_iceberg(dest)
        assert check_every_snapshot(db, dest, "acc") == 4
        head = StaticTable.from_metadata(str(dest / "acc")).scan().to_arrow().sort_by("id")
        assert head.to_pydict() == {"id": [1, 2], "balance": [10, 21]}


def test_a_branch_is_published_as_an_iceberg_branch(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        db.append("t", pa.table({"a": [1, 2]}))
        db.create_branch("dev")
        db.append("t", pa.table({"a": [3]}), branch="dev")
        db.delete("t", "a = 1", branch="dev")
        db.publish_iceberg(dest)
        db.publish_iceberg(dest, branch="dev")
        table = StaticTable.from_metadata(str(dest / "t"))
        assert table.scan().to_arrow().column("a").to_pylist() == [1, 2]
        dev = table.metadata.refs["dev"]
        assert dev.snapshot_ref_type == "branch"
        assert sorted(table.scan(snapshot_id=dev.snapshot_id).to_arrow().column("a").to_pylist()) == [2, 3]
        assert table.metadata.refs["main"].snapshot_id == table.metadata.current_snapshot_id
        check_every_snapshot(db, dest, "t")


def test_a_reset_that_brings_rows_back_is_read_exactly(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        db.append("t", pa.table({"a": np.arange(30_000), "b": np.arange(30_000) % 10}))
        db.tag("full")
        db.delete("t", "b = 1")
        db.publish_iceberg(dest)
        db.delete("t", "b = 2")
        db.create_branch("side", at="full")
        db.delete("t", "b = 3", branch="side")
        db.merge("side", "main", strategy="theirs")  # brings back the rows b = 1 and b = 2
        db.publish_iceberg(dest)
        db.reset("main", "full")
        db.delete("t", "b = 4")
        db.publish_iceberg(dest)
        assert StaticTable.from_metadata(str(dest / "t")).scan().to_arrow().num_rows == 27_000
        check_every_snapshot(db, dest, "t")


def test_unknown_table_and_branch_are_rejected_before_writing(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        with pytest.raises(udr.TableNotFound):
            db.publish_iceberg(dest, ["nope"])
        with pytest.raises(udr.RefNotFound):
            db.publish_iceberg(dest, branch="nope")
        with pytest.raises(udr.UsageError, match="'#'"):
            db.publish_iceberg(tmp_path / "a#b")
        assert not (dest / "nope").exists() and not (tmp_path / "a#b").exists()


def test_paths_with_spaces_are_read_back(tmp_path: Path) -> None:
    with udr.open(tmp_path / "my lake") as db:
        db.append("t", pa.table({"a": [1, 2, 3]}))
        db.delete("t", "a = 2")
        db.publish_iceberg(tmp_path / "published tables")
        check_every_snapshot(db, tmp_path / "published tables", "t")


def test_daft_reads_the_published_table_with_deletes_applied(tmp_path: Path) -> None:
    daft = pytest.importorskip("daft")
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        db.append("t", pa.table({"a": np.arange(40_000), "b": np.arange(40_000) % 5}))
        db.append("t", pa.table({"a": [-1, -2], "b": [0, 1]}))
        db.delete("t", "b = 3")
        db.publish_iceberg(dest)
        expected = db.read("t")
        got = daft.read_iceberg(StaticTable.from_metadata(str(dest / "t"))).to_arrow()
        assert bag(got, ["a", "b"]) == bag(expected, ["a", "b"])


def test_many_commits_merge_manifests_and_still_read_exactly(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        db.append("t", pa.table({"a": np.arange(25_000), "b": np.arange(25_000) % 9}))
        for n in range(36):  # more than MAX_MANIFESTS (32) data manifests before merging
            db.append("t", pa.table({"a": [100_001 + 2 * n], "b": [n % 9]}))  # odd: kept by the deletes
            if n % 5 == 0:
                db.delete("t", f"b = {n % 9} AND a % 2 = 0")
        db.publish_iceberg(dest)
        table = StaticTable.from_metadata(str(dest / "t"))
        current = table.current_snapshot()
        assert current is not None
        manifests = current.manifests(table.io)
        # Past 32 manifests a snapshot merges them into one holding the older snapshots' files as EXISTING.
        assert len(manifests) <= 34 and max(m.existing_files_count or 0 for m in manifests) >= 20
        check_every_snapshot(db, dest, "t", with_polars=False)
        assert table.scan().to_arrow().num_rows == db.row_count("t")


def test_field_ids_carried_in_from_a_source_file_do_not_reach_published_chunks(tmp_path: Path) -> None:
    # Ids in reverse column order: an Iceberg reader that trusted them would swap the columns' values.
    def field(name: str, fid: int) -> pa.Field:
        return pa.field(name, pa.int64(), metadata={"PARQUET:field_id": str(fid)})

    rows = pa.table({"a": list(range(200_000)), "b": [10 * i for i in range(200_000)]},
                    schema=pa.schema([field("a", 2), field("b", 1)]))
    with udr.open(tmp_path / "lake") as db:
        db.append("t", rows)
        db.publish_iceberg(tmp_path / "ice")
        got = StaticTable.from_metadata(str(tmp_path / "ice" / "t")).scan().to_arrow().sort_by("a")
        assert got.num_rows == 200_000
        assert pa.compute.all(pa.compute.equal(got["b"], pa.compute.multiply(got["a"], 10))).as_py()
