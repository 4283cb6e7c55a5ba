from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udr.errors import ConflictError
from udr.log.commits import Deletes, Fragment, TableOp
from udr.log.format import BlobId, ChunkId, CommitId
from udr.materialize.merge import merge_rows
from udr.materialize.rebase import Concurrent, DeleteUnion, rebase_table
from udr.materialize.snapshot import FragmentState, TableState, apply_op

SCHEMA_BLOB = BlobId("s" * 8)
OTHER = CommitId("c0ffee")


def _frag(name: str) -> Fragment:
    return Fragment(ChunkId(name), 10, True, SCHEMA_BLOB)


BASE = TableState(SCHEMA_BLOB, None, (FragmentState(ChunkId("f1"), 10, True, SCHEMA_BLOB),))
APPEND = TableOp(add=(_frag("mine"),), inserted=10)
THEIR_APPEND = Concurrent(OTHER, TableOp(add=(_frag("theirs"),), inserted=10))


def test_appends_on_both_sides_carry_over_and_fold_onto_the_head() -> None:
    head = apply_op(BASE, THEIR_APPEND.op)
    rebased = rebase_table("ev", APPEND, [THEIR_APPEND], base=BASE, head=head)
    assert rebased.unions == ()
    result = apply_op(head, rebased.op)
    assert result is not None and [f.chunk for f in result.fragments] == ["f1", "theirs", "mine"]


@pytest.mark.parametrize("staged", [TableOp(truncate=True, add=(_frag("mine"),)), TableOp(create=True, schema=SCHEMA_BLOB), TableOp(schema=BlobId("t" * 8))])
def test_reshaping_a_table_conflicts_with_any_concurrent_change(staged: TableOp) -> None:
    with pytest.raises(ConflictError, match="'ev'.*recreates|c0ffee"):
        rebase_table("ev", staged, [THEIR_APPEND], base=BASE, head=apply_op(BASE, THEIR_APPEND.op))


def test_a_concurrent_overwrite_conflicts_with_an_append_and_names_the_commit() -> None:
    overwrite = Concurrent(OTHER, TableOp(truncate=True, add=(_frag("new"),)))
    with pytest.raises(ConflictError, match="commit c0ffee .*overwrote"):
        rebase_table("ev", APPEND, [overwrite], base=BASE, head=apply_op(BASE, overwrite.op))


def test_deletes_of_a_fragment_rewritten_concurrently_conflict() -> None:
    staged = TableOp(deletes=(Deletes(ChunkId("f1"), BlobId("v1"), 1),))
    compacted = TableState(SCHEMA_BLOB, None, (FragmentState(ChunkId("f2"), 10, False, SCHEMA_BLOB),))
    with pytest.raises(ConflictError, match="rewritten by commit c0ffee"):
        rebase_table("ev", staged, [THEIR_APPEND], base=BASE, head=compacted)


def test_deletes_in_a_fragment_both_sides_changed_ask_for_a_union() -> None:
    staged = TableOp(deletes=(Deletes(ChunkId("f1"), BlobId("mine"), 1),))
    theirs = Concurrent(OTHER, TableOp(deletes=(Deletes(ChunkId("f1"), BlobId("theirs"), 1),)))
    rebased = rebase_table("ev", staged, [theirs], base=BASE, head=apply_op(BASE, theirs.op))
    assert rebased.unions == (DeleteUnion(ChunkId("f1"), BlobId("mine"), BlobId("theirs")),)


# Model: a keyed table is a dict key -> (a, b); each side writes some keys (None: delete).
_KEYS = st.integers(0, 5)
_CELL = st.integers(0, 2)
_WRITES = st.dictionaries(_KEYS, st.none() | st.tuples(_CELL, _CELL), max_size=4)
SCHEMA = pa.schema([("k", pa.int64()), ("a", pa.int64()), ("b", pa.int64())])


def _changes(base: dict[int, tuple[int, int]], writes: dict[int, tuple[int, int] | None]) -> pa.Table:
    rows: list[dict[str, object]] = []
    for k, after in writes.items():
        before = base.get(k)
        if before == after or (before is None and after is None):
            continue
        kinds = ("delete", None) if after is None else ("insert", None) if before is None else ("update_before", "update_after")
        for kind, row in zip(kinds, (before or after, after) if kinds[1] else (before or after,), strict=False):
            if kind is not None and row is not None:
                rows.append({"_change": kind, "k": k, "a": row[0], "b": row[1]})
    return pa.Table.from_pylist(rows, schema=SCHEMA.append(pa.field("_change", pa.string())))


@given(st.dictionaries(_KEYS, st.tuples(_CELL, _CELL)), _WRITES, _WRITES)
@settings(max_examples=200, deadline=None)
def test_keyed_rebase_conflicts_exactly_when_the_model_collides(
    base: dict[int, tuple[int, int]], ours: dict[int, tuple[int, int] | None], theirs: dict[int, tuple[int, int] | None]
) -> None:
    def state(writes: dict[int, tuple[int, int] | None]) -> dict[int, tuple[int, int]]:
        out = dict(base)
        for k, v in writes.items():
            out.pop(k, None) if v is None else out.__setitem__(k, v)
        return out

    mine, other = state(ours), state(theirs)
    collide = False
    expected = dict(other)
    for k in ours.keys() & theirs.keys():
        b, o, t = base.get(k), mine.get(k), other.get(k)
        if o == t or o == b or t == b:
            continue
        if o is None or t is None or b is None or any(o[i] != b[i] and t[i] != b[i] and o[i] != t[i] for i in (0, 1)):
            collide = True
    for k in ours:
        if mine.get(k) != base.get(k):
            row = mine.get(k)
            if row is None:
                expected.pop(k, None)
            else:
                t = other.get(k)
                b = base.get(k)
                # Cells only theirs changed survive our write of the same row.
                expected[k] = row if t is None or b is None else tuple(t[i] if row[i] == b[i] else row[i] for i in (0, 1))  # type: ignore[assignment]
    merged = merge_rows("t", SCHEMA, ["k"], _changes(base, theirs), _changes(base, ours), strategy=None)
    staged = TableOp(inserted=1)
    concurrent = [Concurrent(OTHER, TableOp(inserted=1))]
    if collide:
        with pytest.raises(ConflictError, match="'t' at key"):
            rebase_table("t", staged, concurrent, base=BASE, head=BASE, keyed_conflicts=merged.conflicts)
        return
    rebase_table("t", staged, concurrent, base=BASE, head=BASE, keyed_conflicts=merged.conflicts)
    result = {r["k"]: (r["a"], r["b"]) for r in pa.Table.from_pylist([{"k": k, "a": v[0], "b": v[1]} for k, v in other.items()], schema=SCHEMA).to_pylist()}
    for key in merged.remove.column("k").to_pylist():
        result.pop(key, None)
    for r in merged.add.to_pylist():
        result[r["k"]] = (r["a"], r["b"])
    assert result == expected


def test_disjoint_cells_of_one_key_ask_for_a_row_merge() -> None:
    rebased = rebase_table("t", APPEND, [THEIR_APPEND], base=BASE, head=BASE, shared_keys=1)
    assert rebased.remerge and not rebase_table("t", APPEND, [THEIR_APPEND], base=BASE, head=BASE).remerge
