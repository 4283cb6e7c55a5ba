"""udr.materialize.staging: the write engine stages rows as chunks (inline or Parquet, each fragment its own
chunk id), deletions as cumulative vectors with their counts, schemas with fresh column ids, and undoes a block
that raises; nothing is visible in the log until the facade commits the ops."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import udr
from udr.log.format import DB_BLOBS, INLINE_MAX_BYTES, BlobKind, CommitId
from udr.materialize.compaction import flush_due, flush_inline
from udr.materialize.schemas import field_id
from udr.materialize.staging import Staging
from udr.materialize.vectors import parse_vector


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[udr.Lake]:
    db = udr.open(tmp_path / "lake")
    db.append("t", {"id": [1, 2, 3], "v": ["a", "b", "c"]})
    yield db
    db.close()


def _staging(db: udr.Lake) -> Staging:
    ctx = db._handle.ctx
    head = CommitId(db.resolve(None))
    return Staging(ctx.log, ctx.rows, head, ctx.materializer.snapshot(head), branch="main")


def _ids(staging: Staging, table: str) -> list[int]:
    return sorted(staging.rows.table(table, staging.require(table)).column("id").to_pylist())


def test_identical_rows_written_twice_get_distinct_chunks_and_both_count(lake: udr.Lake) -> None:
    staging = _staging(lake)
    schema = lake.schema("t")
    rows = pa.table({"id": [1, 2, 3], "v": ["a", "b", "c"]}, schema=schema)
    assert staging.add_rows("t", schema, iter(rows.to_batches())) == 3
    assert staging.add_rows("t", schema, iter(rows.to_batches())) == 3
    op = staging.op("t")
    chunks = [f.chunk for f in staging.require("t").fragments]
    assert len(chunks) == len(set(chunks)) == 3  # the stored fragment and two copies
    assert op.inserted == 6 and all(f.inline for f in op.add)
    assert _ids(staging, "t") == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert lake.read("t").num_rows == 3  # nothing is visible before a commit
    staging.release()


def test_rows_past_the_inline_limit_become_a_parquet_chunk(lake: udr.Lake) -> None:
    staging = _staging(lake)
    n = INLINE_MAX_BYTES // 8 + 1_000
    schema = lake.schema("t")
    rows = pa.table({"id": list(range(n)), "v": ["x"] * n}, schema=schema)
    staging.add_rows("t", schema, iter(rows.to_batches()))
    (fragment,) = staging.op("t").add
    assert not fragment.inline and lake._handle.ctx.log.chunks.exists(fragment.chunk)
    staging.release()


def test_deletions_accumulate_per_fragment_and_uncount_own_rows(lake: udr.Lake) -> None:
    staging = _staging(lake)
    state = staging.require("t")
    hits = pa.table({"__frag": pa.array([0], pa.int64()), "__pos": pa.array([1], pa.int64())})
    staging.delete_positions("t", state, hits, counted="deleted")
    staging.delete_positions("t", staging.require("t"), hits.set_column(1, "__pos", pa.array([2], pa.int64())),
                             counted="deleted")
    (deletes,) = staging.op("t").deletes
    assert deletes.count == 2 and staging.op("t").deleted == 2
    assert _ids(staging, "t") == [1]
    schema = lake.schema("t")
    staging.add_rows("t", schema, iter(pa.table({"id": [9], "v": ["z"]}, schema=schema).to_batches()))
    own = len(staging.require("t").fragments) - 1
    staging.delete_positions("t", staging.require("t"), pa.table({"__frag": pa.array([own], pa.int64()),
                                                                  "__pos": pa.array([0], pa.int64())}),
                             counted="deleted")
    assert (staging.op("t").inserted, staging.op("t").deleted) == (0, 2)  # a row it added itself is un-inserted
    assert deletes.vector is not None
    assert staging.blob(deletes.vector, BlobKind.DELETES)  # the vector is staged, not in the log
    staging.release()


def test_a_savepoint_undoes_what_its_block_staged(lake: udr.Lake) -> None:
    staging = _staging(lake)
    schema = lake.schema("t")
    with pytest.raises(RuntimeError), staging.savepoint():
        staging.add_rows("t", schema, iter(pa.table({"id": [7], "v": ["q"]}, schema=schema).to_batches()))
        staging.writes["t"] += 1
        raise RuntimeError("statement failed")
    assert staging.ops == {} and staging.writes["t"] == 0 and _ids(staging, "t") == [1, 2, 3]
    staging.release()


def test_a_column_dropped_and_added_again_gets_a_fresh_id(lake: udr.Lake) -> None:
    with lake.transaction() as tx:
        tx.drop_column("t", "v")
    staging = _staging(lake)
    old = {field_id(f) for f in lake.schema("t", at="main~1")}
    staging.stage_schema("t", lake.schema("t").append(pa.field("v", pa.string())))
    new = staging.rows.schema(staging.require("t").schema)
    assert field_id(new.field("v")) not in old and staging.ids_used
    staging.release()


def test_a_few_rows_sliced_from_a_large_table_stay_inline(lake: udr.Lake) -> None:
    # The slice references the large table's whole buffers, whose size alone would pass the inline limit.
    schema = lake.schema("t")
    n = INLINE_MAX_BYTES // 8 * 4
    large = pa.table({"id": list(range(n)), "v": ["x"] * n}, schema=schema)
    few = large.slice(n // 2, 10)
    assert few.get_total_buffer_size() > INLINE_MAX_BYTES >= few.nbytes
    staging = _staging(lake)
    staging.add_rows("t", schema, iter(few.to_batches()))
    (fragment,) = staging.op("t").add
    assert fragment.inline and fragment.rows == 10
    staging.release()


def test_flush_takes_the_trailing_run_of_inline_writes_into_parquet(lake: udr.Lake) -> None:
    for i in range(4):
        lake.append("t", {"id": [10 + i], "v": ["s"]})
    staging = _staging(lake)
    assert flush_due(staging.base_tables, ["t"]) == []  # far below the threshold
    flush_inline(staging, "t")
    op = staging.op("t")
    assert op.rewrite and op.inserted == 0 and [f.inline for f in op.add] == [False]
    assert _ids(staging, "t") == [1, 2, 3, 10, 11, 12, 13]
    staging.release()


def test_a_staged_vector_is_known_to_the_reader_without_decoding_it(lake: udr.Lake) -> None:
    staging = _staging(lake)
    hits = pa.table({"__frag": pa.array([0], pa.int64()), "__pos": pa.array([2], pa.int64())})
    staging.delete_positions("t", staging.require("t"), hits, counted="deleted")
    (deletes,) = staging.op("t").deletes
    assert deletes.vector is not None
    # A rebase and the next keyed write of this process read it back: they find it decoded already.
    known = staging.rows.known_vector(deletes.vector)
    assert known is not None and known.to_pylist() == [2]
    assert staging.vector(deletes.vector).to_pylist() == [2]
    staging.release()


def _stored_vectors(db: udr.Lake) -> set[str]:
    log = db._handle.ctx.log
    with log.env.read() as txn:
        return {bytes(k).decode() for k, v in txn.cursor(db=log.env.db(DB_BLOBS)) if bytes(v)[1] == BlobKind.DELETES}


def test_a_commit_stores_only_the_deletion_vectors_its_ops_name(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        with db.transaction() as tx:
            tx.create_table("k", pa.schema([("id", pa.int64()), ("v", pa.int64())]), primary_key=["id"])
            tx.append("k", {"id": list(range(100)), "v": list(range(100))})
        # One fragment loses updated rows, then removed rows, then more in a second upsert: three cumulative
        # vectors are staged for it, the last one replaces the others.
        with db.transaction() as tx:
            tx.overwrite("k", {"id": list(range(1, 100)), "v": [-1, *range(2, 100)]})
            tx.upsert("k", {"id": [50], "v": [-50]})
        record = db._handle.ctx.log.get_commit(CommitId(db.resolve("main")))
        named = {d.vector for d in record.tables["k"].deletes}
        assert len(named) == 1 and _stored_vectors(db) == named
        assert db.read("k").sort_by("id").column("v").to_pylist()[:2] == [-1, 2]


def test_deletions_from_several_fragments_chain_each_onto_its_committed_vector(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        with db.transaction() as tx:
            tx.create_table("k", pa.schema([("id", pa.int64()), ("v", pa.int64())]), primary_key=["id"])
            tx.append("k", {"id": list(range(400)), "v": [0] * 400})
        values = [0] * 400
        for night in range(1, 4):  # each night replaces rows of the load and some of the last night's fragment
            for i in range(400):
                if i % 20 == night or i % 40 == night - 1:
                    values[i] = night * 1000 + i
            db.overwrite("k", {"id": list(range(400)), "v": values})
        staging = _staging(db)
        state = staging.require("k")
        assert len(state.fragments) == 4 and sum(f.deletes is not None for f in state.fragments) == 3
        before = {f.chunk: staging.rows.deleted_positions(f).to_pylist() for f in state.fragments}
        live = staging.rows.table("k", state, with_position=True)
        hits = live.filter(pa.array([i % 7 == 0 for i in live.column("id").to_pylist()])).select(["__frag", "__pos"])
        staging.delete_positions("k", state, hits, counted="deleted")
        for d in staging.op("k").deletes:
            frag = next(f for f in state.fragments if f.chunk == d.chunk)
            mine = sorted(p for f, p in zip(hits.column("__frag").to_pylist(), hits.column("__pos").to_pylist())
                          if state.fragments[f].chunk == d.chunk)
            assert d.vector is not None and staging.vector(d.vector).to_pylist() == sorted(before[d.chunk] + mine)
            assert d.count == len(before[d.chunk]) + len(mine)
            if frag.deletes is not None:  # a chain link holding only this write's positions
                link = parse_vector(staging.blob(d.vector, BlobKind.DELETES))
                assert link.base == frag.deletes and link.positions.to_pylist() == mine
        assert _ids(staging, "k") == [i for i in range(400) if i % 7]
        staging.release()


def test_a_committed_transaction_is_freed_without_the_cyclic_garbage_collector(lake: udr.Lake) -> None:
    gc.collect()
    gc.disable()
    try:
        with lake.transaction() as tx:
            tx.append("t", {"id": [4], "v": ["d"]})
            staging = weakref.ref(tx._staging)
        del tx
        # Only reference counting ran: a cycle through the staging would keep it (and its blobs) until a collection.
        assert staging() is None
    finally:
        gc.enable()
    assert _ids(_staging(lake), "t") == [1, 2, 3, 4]


def test_a_staging_reader_shares_the_lake_reader_caches(lake: udr.Lake) -> None:
    staging = _staging(lake)
    rows = lake._handle.ctx.rows
    assert staging.rows._inline is rows._inline and staging.rows._schemas is rows._schemas
