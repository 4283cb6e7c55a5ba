"""udr.materialize.keyindex: a lookup through the sorted key index finds exactly the live rows a scan of the
table would (a semi join on the key), for every indexable key type, with deletions, duplicates and nulls; and keyed
writes through it leave a lake equal to a model."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import udr
from udr.log.format import BlobId, ChunkId
from udr.materialize.keyindex import (
    EXTEND,
    RUN_ROWS,
    KeyIndex,
    SortedKeys,
    sort_keys,
)
from udr.materialize.schemas import indexable
from udr.materialize.states import FragmentState, TableState


def test_sorted_keys_find_every_copy_of_a_key_and_nothing_else() -> None:
    keys = sort_keys(pa.chunked_array([pa.array([5, 3, 9, 3, None, 7], pa.int64())]), pa.field("k", pa.int64()))
    assert keys.keys.tolist() == [3, 3, 5, 7, 9]  # the null never matches, so it is not indexed
    assert keys.positions(np.array([3, 4, 9])).tolist() == [1, 2, 3]
    assert keys.positions(np.array([1, 8])).tolist() == []
    assert SortedKeys(np.empty(0, np.int64), np.empty(0, np.uint64)).positions(np.array([1])).tolist() == []
    ordered = sort_keys(pa.chunked_array([pa.array([1, 2, 2, 5], pa.int64())]), pa.field("k", pa.int64()))
    assert ordered.keys.tolist() == [1, 2, 2, 5] and ordered.positions(np.array([2, 5])).tolist() == [1, 2, 3]


@pytest.mark.parametrize("count", [6, EXTEND + 5])  # small fragments are sorted together
@pytest.mark.parametrize("field", [pa.field("k", pa.int32()), pa.field("k", pa.string()),
                                   pa.field("k", pa.timestamp("us", "UTC")), pa.field("k", pa.date32())])
def test_hits_equal_a_scan_of_the_live_rows(field: pa.Field, count: int) -> None:
    rng = random.Random(7)
    if pa.types.is_string(field.type):
        universe = pa.array([f"key-{i}" for i in range(40)])
    else:
        width = pa.int32() if field.type.bit_width == 32 else pa.int64()
        universe = pa.array(range(40), width).view(field.type)
    columns: dict[str, pa.ChunkedArray] = {}
    deleted: dict[str, pa.Array] = {}
    fragments = []
    for n in range(count):
        take = [rng.randrange(40) for _ in range(rng.randrange(1, 15))]
        values = pa.chunked_array([universe.take(pa.array(take))])
        gone = sorted(rng.sample(range(len(take)), rng.randrange(len(take) + 1)))
        chunk = ChunkId(f"c{n}")
        columns[chunk] = values
        deleted[chunk] = pa.array(gone, pa.uint32())
        vector = None if len(gone) in (0, len(take)) else BlobId(f"d{n}")  # every row deleted: no vector
        fragments.append(FragmentState(chunk, len(take), True, BlobId("s"), vector, len(gone)))
    state = TableState(BlobId("s"), ("k",), tuple(fragments))
    index = KeyIndex()
    for _ in range(20):
        wanted = universe.take(pa.array(rng.sample(range(40), rng.randrange(1, 8))))
        hits = index.hits(state, field, wanted, column=lambda frag, _f: columns[frag.chunk],
                          deleted=lambda frag: deleted[frag.chunk])
        assert hits is not None
        scan = {(i, p) for i, frag in enumerate(fragments) for p, value in enumerate(columns[frag.chunk].to_pylist())
                if value in wanted.to_pylist() and p not in deleted[frag.chunk].to_pylist()}
        assert set(zip(hits.column("__frag").to_pylist(), hits.column("__pos").to_pylist())) == scan
        assert hits.num_rows == len(scan)


def test_a_growing_run_is_extended_and_a_rewritten_one_sorted_anew() -> None:
    """States as a table's writes make them: a large chunk, then small fragments appended (several at once, as
    other writers' commits), some fragments deleted from or replaced by a flush; each lookup equals a scan."""
    rng = random.Random(11)
    field = pa.field("k", pa.int64())
    columns: dict[str, pa.ChunkedArray] = {"big": pa.chunked_array([pa.array(range(RUN_ROWS + 1), pa.int64())])}
    deleted: dict[str, pa.Array] = {"big": pa.array([], pa.uint32())}
    fragments = [FragmentState(ChunkId("big"), RUN_ROWS + 1, False, BlobId("s"))]
    index = KeyIndex()

    def add(name: str, values: list[int]) -> None:
        columns[name] = pa.chunked_array([pa.array(values, pa.int64())])
        deleted[name] = pa.array([], pa.uint32())
        fragments.append(FragmentState(ChunkId(name), len(values), True, BlobId("s")))

    for step in range(EXTEND * 2 + 20):
        for n in range(rng.choice([1, 1, 3, EXTEND + 1] if step % 25 == 24 else [1, 1, 3])):
            add(f"f{step}-{n}", [rng.randrange(RUN_ROWS + 50) for _ in range(rng.randrange(1, 6))])
        if step % 7 == 6:  # a keyed write deletes old versions from some fragment
            at = rng.randrange(len(fragments))
            gone = sorted(set(deleted[fragments[at].chunk].to_pylist()) | {rng.randrange(fragments[at].rows)})
            deleted[fragments[at].chunk] = pa.array(gone, pa.uint32())
            fragments[at] = fragments[at]._replace(deletes=BlobId(f"d{step}"), deleted=len(gone))
        if step % 30 == 29:  # a flush: the small fragments rewritten as one, live rows only
            small = fragments[1:]
            live = [v for f in small for p, v in enumerate(columns[f.chunk].to_pylist())
                    if p not in deleted[f.chunk].to_pylist()]
            del fragments[1:]
            add(f"flush{step}", live)
        state = TableState(BlobId("s"), ("k",), tuple(fragments))
        wanted = pa.array(rng.sample(range(RUN_ROWS + 50), 30), pa.int64())
        hits = index.hits(state, field, wanted, column=lambda frag, _f: columns[frag.chunk],
                          deleted=lambda frag: deleted[frag.chunk])
        assert hits is not None
        want = set(wanted.to_pylist())
        # The large chunk holds each key at its own position.
        scan = {(0, k) for k in want if k <= RUN_ROWS and k not in set(deleted["big"].to_pylist())}
        scan |= {(i, p) for i, frag in enumerate(fragments[1:], 1)
                 for p, value in enumerate(columns[frag.chunk].to_pylist())
                 if value in want and p not in set(deleted[frag.chunk].to_pylist())}
        assert set(zip(hits.column("__frag").to_pylist(), hits.column("__pos").to_pylist())) == scan, step


@pytest.mark.parametrize("rows", [50, RUN_ROWS + 10])
def test_keys_at_positions_read_from_the_column_or_unsorted_from_the_index(rows: int) -> None:
    field = pa.field("k", pa.int64())
    values = np.random.default_rng(2).permutation(rows)
    reads: list[str] = []

    def column(frag: FragmentState, _field: pa.Field) -> pa.ChunkedArray:
        reads.append(frag.chunk)
        return pa.chunked_array([pa.array(values if frag.chunk == "c" else [1, None, 3], pa.int64())])

    frag = FragmentState(ChunkId("c"), rows, False, BlobId("s"))
    positions = np.array([0, 7, rows - 1], np.int64)
    for looked_up_first in (False, True):
        index = KeyIndex()
        if looked_up_first:
            state = TableState(BlobId("s"), ("k",), (frag,))
            index.hits(state, field, pa.array([5], pa.int64()), column=column,
                       deleted=lambda _f: pa.array([], pa.uint32()))
        reads.clear()
        assert index.keys_at(frag, field, positions, column=column).tolist() == values[positions].tolist()  # type: ignore[union-attr]
        assert index.keys_at(frag, field, positions[:1], column=column).tolist() == [values[0]]  # type: ignore[union-attr]
        assert len(reads) == (0 if looked_up_first else 1)  # kept decoded after one read (by the lookup too)
    nulls = FragmentState(ChunkId("n"), 3, True, BlobId("s"))
    assert KeyIndex().keys_at(nulls, field, np.array([0], np.int64), column=column) is None


def test_only_single_plain_keys_are_indexed() -> None:
    assert indexable(pa.field("k", pa.int64())) and indexable(pa.field("k", pa.large_string()))
    assert not indexable(pa.field("k", pa.float64())) and not indexable(pa.field("k", pa.decimal128(10, 2)))


def test_a_table_whose_index_would_not_fit_is_left_to_a_scan() -> None:
    state = TableState(BlobId("s"), ("k",), (FragmentState(ChunkId("c"), 3, True, BlobId("s")),))

    def hits(index: KeyIndex) -> pa.Table | None:
        return index.hits(state, pa.field("k", pa.int64()), pa.array([2], pa.int64()),
                          column=lambda _frag, _f: pa.chunked_array([pa.array([1, 2, 3], pa.int64())]),
                          deleted=lambda _frag: pa.array([], pa.uint32()))

    assert hits(KeyIndex(budget=3 * 16 - 1)) is None  # every lookup would sort again: slower than a scan
    found = hits(KeyIndex(budget=3 * 16))
    assert found is not None and found.column("__pos").to_pylist() == [1]


def test_a_run_extended_a_commit_at_a_time_never_evicts_the_large_chunk() -> None:
    """Each commit's run shares its levels with the run it grew from, which it replaces: a budget that holds the
    large chunk, one run and the small fragments' key columns holds them over hundreds of commits, so each
    fragment's keys are read once (a rebase asks for the keys of old fragments again)."""
    big = RUN_ROWS + 1
    reads: dict[str, int] = {}
    columns: dict[str, pa.ChunkedArray] = {"big": pa.chunked_array([pa.array(range(big), pa.int64())])}

    def column(frag: FragmentState, _field: pa.Field) -> pa.ChunkedArray:
        reads[frag.chunk] = reads.get(frag.chunk, 0) + 1
        return columns[frag.chunk]

    fragments = [FragmentState(ChunkId("big"), big, False, BlobId("s"))]
    index = KeyIndex(budget=big * 16 + 600 * (16 + 512) + 4096)
    for n in range(300):
        columns[f"f{n}"] = pa.chunked_array([pa.array([n * 2, n * 2 + 1], pa.int64())])
        fragments.append(FragmentState(ChunkId(f"f{n}"), 2, True, BlobId("s")))
        state = TableState(BlobId("s"), ("k",), tuple(fragments))
        hits = index.hits(state, pa.field("k", pa.int64()), pa.array([n * 2 + 1], pa.int64()), column=column,
                          deleted=lambda _frag: pa.array([], pa.uint32()))
        assert hits is not None and hits.to_pylist() == [{"__frag": 0, "__pos": n * 2 + 1},
                                                         {"__frag": n + 1, "__pos": 1}]
    for frag in fragments[1:]:
        keys = index.keys_at(frag, pa.field("k", pa.int64()), np.array([0, 1]), column=column)
        assert keys is not None and keys.tolist() == columns[frag.chunk].to_pylist()
    assert reads == {name: 1 for name in columns}


def test_keyed_writes_through_the_index_match_a_model(tmp_path: Path) -> None:
    """Upserts and deletes by key on a table with a Parquet chunk, inline fragments and a renamed string key."""
    rng = random.Random(3)
    model = {f"k{i:05d}": 0 for i in range(300_000)}
    with udr.open(tmp_path / "lake") as db:
        db.create_table("t", pa.schema([pa.field("k", pa.string(), nullable=False), ("v", pa.int64())]),
                        primary_key=["k"])
        db.append("t", {"k": list(model), "v": [0] * len(model)})
        for step in range(30):
            keys = [*rng.sample(sorted(model), 5), f"new{step}"]
            if step == 15:
                with db.transaction() as tx:
                    tx.rename_column("t", "k", "key")
            name = "key" if step >= 15 else "k"
            if step % 4 == 3:
                db.delete("t", keys={name: keys[:3]})
                for k in keys[:3]:
                    model.pop(k, None)
            else:
                db.upsert("t", {name: keys, "v": [step + 1] * len(keys)})
                model.update(dict.fromkeys(keys, step + 1))
        rows = db.read("t")
        assert dict(zip(rows.column("key").to_pylist(), rows.column("v").to_pylist())) == model
