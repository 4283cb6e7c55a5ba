"""udr.materialize.snapshot and udr.materialize.fold: `fold`/`apply_op` are pure and deterministic;
materializing the same log twice, or after `rebuild`, or after throwing the cache directory away, gives
byte-identical snapshot encodings."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udr.errors import CorruptionError
from udr.log.commits import CommitRecord, Deletes, Fragment, TableOp
from udr.log.format import (
    DB_SNAPSHOTS,
    DB_TABLESTATES,
    BlobId,
    BlobKind,
    ChunkId,
    CommitId,
)
from udr.log.hashing import content_id
from udr.log.store import LogStore
from udr.materialize.fold import apply_op, fold
from udr.materialize.snapshot import (
    CHECKPOINT_EVERY,
    Materializer,
    decode_state,
    encode_state,
)
from udr.materialize.states import FragmentState, TableState

S1 = BlobId(content_id(b"schema 1"))  # ids of the schema blobs _commit stores
S2 = BlobId(content_id(b"schema 2"))


def chunk(n: int) -> ChunkId:
    return ChunkId(content_id(f"chunk {n}".encode()))


def vector(n: int) -> BlobId:
    return BlobId(content_id(f"vector {n}".encode()))


def frag(n: int, rows: int = 10) -> Fragment:
    return Fragment(chunk(n), rows, True, S1)


def record(tables: dict[str, TableOp], parent: str = "p") -> CommitRecord:
    return CommitRecord(parents=(CommitId(parent),), seq=1, branch="main", time_us=5, author="a", message="m",
                        tables=tables)


# -- apply_op -------------------------------------------------------------------------------------------


def test_create_starts_an_empty_table() -> None:
    state = apply_op(None, TableOp(create=True, schema=S1, primary_key=("id",)))
    assert state == TableState(S1, ("id",), ())


def test_create_replaces_an_existing_table_of_that_name() -> None:
    old = TableState(S1, None, (FragmentState(chunk(1), 10, True, S1),))
    assert apply_op(old, TableOp(create=True, schema=S2)) == TableState(S2, None, ())


def test_drop_removes_the_table() -> None:
    assert apply_op(TableState(S1, None), TableOp(drop=True)) is None


def test_adds_keep_insertion_order() -> None:
    state = apply_op(TableState(S1, None), TableOp(add=(frag(1), frag(2, 5))))
    assert state is not None
    assert [f.chunk for f in state.fragments] == [chunk(1), chunk(2)]
    assert state.rows == 15


def test_truncate_drops_old_fragments_before_adding() -> None:
    old = TableState(S1, None, (FragmentState(chunk(1), 10, True, S1),))
    state = apply_op(old, TableOp(truncate=True, add=(frag(2),)))
    assert state is not None
    assert [f.chunk for f in state.fragments] == [chunk(2)]


def test_deletes_set_vectors_and_a_null_vector_removes_the_fragment() -> None:
    old = TableState(S1, None, tuple(FragmentState(chunk(n), 10, True, S1) for n in (1, 2, 3)))
    state = apply_op(old, TableOp(deletes=(Deletes(chunk(1), vector(1), 4), Deletes(chunk(2), None, 10))))
    assert state is not None
    assert [(f.chunk, f.deletes, f.deleted) for f in state.fragments] == [
        (chunk(1), vector(1), 4), (chunk(3), None, 0),
    ]
    assert state.rows == 6 + 10


def test_a_commit_may_delete_rows_of_fragments_it_adds() -> None:
    state = apply_op(TableState(S1, None), TableOp(add=(frag(1),), deletes=(Deletes(chunk(1), vector(1), 3),)))
    assert state is not None
    assert state.fragments == (FragmentState(chunk(1), 10, True, S1, vector(1), 3),)


def test_schema_and_key_carry_over_unless_changed() -> None:
    old = TableState(S1, ("id",))
    assert apply_op(old, TableOp(add=(frag(1),))) == TableState(S1, ("id",), (FragmentState(chunk(1), 10, True, S1),))
    evolved = apply_op(old, TableOp(schema=S2))
    assert evolved is not None and evolved.schema == S2 and evolved.primary_key == ("id",)


def test_an_operation_on_a_missing_table_is_corruption() -> None:
    with pytest.raises(CorruptionError):
        apply_op(None, TableOp(add=(frag(1),)))


def test_create_without_schema_is_corruption() -> None:
    with pytest.raises(CorruptionError):
        apply_op(None, TableOp(create=True))


# -- fold -----------------------------------------------------------------------------------------------


@given(st.lists(st.booleans(), max_size=12), st.integers(min_value=1, max_value=14))
def test_inline_run_reaches_agrees_with_the_inline_tail(inline: list[bool], length: int) -> None:
    state = TableState(S1, None, tuple(FragmentState(chunk(n), 1, flag, S1) for n, flag in enumerate(inline)))
    assert state.inline_run_reaches(length) == (len(state.inline_tail()) >= length)


def test_fold_leaves_its_input_untouched() -> None:
    before = {"a": TableState(S1, None), "gone": TableState(S1, None)}
    copy = dict(before)
    after = fold(before, record({"gone": TableOp(drop=True), "a": TableOp(add=(frag(1),)),
                                 "new": TableOp(create=True, schema=S2)}))
    assert before == copy
    assert set(after) == {"a", "new"}
    assert after["a"].rows == 10


def test_fold_ignores_the_order_of_tables_in_the_record() -> None:
    ops = {"b": TableOp(create=True, schema=S1, add=(frag(1),)), "a": TableOp(create=True, schema=S2)}
    one = fold({}, record(ops))
    two = fold({}, record(dict(reversed(list(ops.items())))))
    assert one == two
    assert [encode_state(one[n]) for n in sorted(one)] == [encode_state(two[n]) for n in sorted(two)]


def test_fold_depends_only_on_its_arguments() -> None:
    rec = record({"a": TableOp(create=True, schema=S1, add=(frag(1),))})
    other_meta = replace(rec, time_us=999, author="b", message="x", seq=9, parents=(CommitId("q"),))
    assert fold({}, rec) == fold({}, rec) == fold({}, other_meta)


_op_kinds = st.sampled_from(["create", "drop", "add", "truncate", "delete", "evolve"])


@settings(max_examples=80)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), _op_kinds, st.integers(0, 5)), max_size=25))
def test_folding_any_history_twice_gives_identical_encodings(steps: list[tuple[str, str, int]]) -> None:
    records: list[CommitRecord] = []
    snap: dict[str, TableState] = {}
    for n, (table, kind, k) in enumerate(steps):
        state = snap.get(table)
        if state is None or kind == "create":
            op = TableOp(create=True, schema=S1)
        elif kind == "drop":
            op = TableOp(drop=True)
        elif kind == "add":
            op = TableOp(add=(Fragment(chunk(n), k + 1, bool(k % 2), S1),))
        elif kind == "truncate":
            op = TableOp(truncate=True, add=(Fragment(chunk(n), 3, True, S1),))
        elif kind == "delete" and state.fragments:
            target = state.fragments[k % len(state.fragments)]
            op = TableOp(deletes=(Deletes(target.chunk, vector(n) if k % 3 else None, min(k, target.rows)),))
        else:
            op = TableOp(schema=S2 if k % 2 else S1)
        rec = record({table: op})
        records.append(rec)
        snap = fold(snap, rec)

    def replay() -> list[bytes]:
        out: dict[str, TableState] = {}
        for rec in records:
            out = fold(out, rec)
        return [name.encode() + b"=" + encode_state(out[name]) for name in sorted(out)]

    assert replay() == replay() == [name.encode() + b"=" + encode_state(snap[name]) for name in sorted(snap)]


# -- state encoding -------------------------------------------------------------------------------------


def test_state_encoding_round_trips_and_is_deterministic() -> None:
    state = TableState(S1, ("id", "day"), (
        FragmentState(chunk(1), 10, True, S1, vector(1), 2),
        FragmentState(chunk(2), 100_000, False, S2),
    ))
    data = encode_state(state)
    assert decode_state(data) == state
    decoded = decode_state(data)
    assert decoded is not None and encode_state(decoded) == data
    assert encode_state(TableState(S1, None)) != encode_state(TableState(S1, ()))


# -- the materializer over a real log -------------------------------------------------------------------


def _blob(text: str) -> tuple[str, bytes]:
    payload = text.encode()
    return content_id(payload), payload


def _commit(log: LogStore, tables: dict[str, TableOp], payloads: dict[str, bytes]) -> CommitId:
    head = log.head("main")
    assert head is not None
    blobs = {S1: (BlobKind.SCHEMA, b"schema 1"), S2: (BlobKind.SCHEMA, b"schema 2")}
    for op in tables.values():
        for f in op.add:
            blobs[BlobId(f.chunk)] = (BlobKind.ROWS, payloads[f.chunk])
        for d in op.deletes:
            if d.vector is not None:
                blobs[d.vector] = (BlobKind.DELETES, payloads[d.vector])
    rec = CommitRecord(parents=(head,), seq=0, branch="main", time_us=0, author="t", message="", tables=tables)
    cid, _ = log.append(rec, base=head, rebase=False, blobs=blobs)
    return cid


def _history(log: LogStore) -> list[CommitId]:
    payloads = dict(_blob(text) for text in ("rows 1", "rows 2", "rows 3", "vector 1"))
    c1, c2, c3, v1 = (ChunkId(i) for i in payloads)
    return [
        _commit(log, {"a": TableOp(create=True, schema=S1, add=(Fragment(c1, 10, True, S1),))}, payloads),
        _commit(log, {"b": TableOp(create=True, schema=S1), "a": TableOp(add=(Fragment(c2, 5, True, S1),))}, payloads),
        _commit(log, {"a": TableOp(deletes=(Deletes(c1, BlobId(v1), 3),), schema=S2)}, payloads),
        _commit(log, {"b": TableOp(drop=True), "c": TableOp(create=True, schema=S2, add=(Fragment(c3, 1, True, S2),))},
                payloads),
        _commit(log, {"a": TableOp(truncate=True)}, payloads),
    ]


def _long_history(log: LogStore) -> list[CommitId]:
    """More than two checkpoints' worth of commits: appends to `a`, with every third commit deleting a row."""
    ids = _history(log)
    for n in range(2 * CHECKPOINT_EVERY + 5):
        rows_id, rows = _blob(f"more rows {n}")
        vector_id, vector = _blob(f"more vector {n}")
        payloads = {rows_id: rows, vector_id: vector}
        op = TableOp(add=(Fragment(ChunkId(rows_id), 4, True, S1),))
        if n % 3 == 2:
            op = TableOp(add=op.add, deletes=(Deletes(ChunkId(rows_id), BlobId(vector_id), 1),))
        ids.append(_commit(log, {"a": op}, payloads))
    return ids


def _encodings(materializer: Materializer, ids: list[CommitId]) -> list[dict[str, bytes]]:
    return [{n: encode_state(s) for n, s in materializer.snapshot(c).items()} for c in ids]


def _cache_contents(log: LogStore) -> dict[str, dict[bytes, bytes]]:
    out: dict[str, dict[bytes, bytes]] = {}
    with log.cache.read() as txn:
        for name in (DB_SNAPSHOTS, DB_TABLESTATES):
            out[name.decode()] = dict(txn.cursor(db=log.cache.db(name)))
    return out


def test_snapshots_follow_the_log(log: LogStore) -> None:
    ids = _history(log)
    m = Materializer(log)
    assert [sorted(m.snapshot(c)) for c in ids] == [["a"], ["a", "b"], ["a", "b"], ["a", "c"], ["a", "c"]]
    assert [m.snapshot(c)["a"].rows for c in ids] == [10, 15, 12, 12, 0]
    assert m.snapshot(ids[2])["a"].schema == S2
    assert m.table(ids[3], "b") is None


def test_materializing_twice_gives_identical_encodings(log: LogStore) -> None:
    ids = _history(log)
    first = _encodings(Materializer(log), ids)
    # A second materializer on the same log starts with an empty memory cache and reads the LMDB cache.
    assert _encodings(Materializer(log), ids) == first


def test_rebuild_gives_identical_encodings_and_cache_bytes(log: LogStore) -> None:
    ids = _history(log)
    m = Materializer(log)
    expected = _encodings(m, ids)
    cache = _cache_contents(log)
    assert cache["snapshots"], "snapshots were not cached"
    assert m.rebuild() == len(ids) + 1
    assert _cache_contents(log) == cache
    assert _encodings(m, ids) == expected


def test_rebuild_reports_progress(log: LogStore) -> None:
    _history(log)
    calls: list[tuple[int, int]] = []
    Materializer(log).rebuild(lambda done, total: calls.append((done, total)))
    assert calls == [(n, 6) for n in range(1, 7)]


def test_deleting_the_cache_directory_loses_nothing(tmp_path: Path) -> None:
    log = LogStore(tmp_path / "lake")
    ids = _history(log)
    expected = _encodings(Materializer(log), ids)
    cache = _cache_contents(log)
    log.close()
    shutil.rmtree(tmp_path / "lake" / "cache")
    log = LogStore(tmp_path / "lake")
    try:
        assert _cache_contents(log) == {"snapshots": {}, "tablestates": {}}
        assert _encodings(Materializer(log), ids) == expected
        Materializer(log).rebuild()
        assert _cache_contents(log) == cache
    finally:
        log.close()


def test_a_long_log_materializes_identically_fresh_from_checkpoints_and_after_rebuild(tmp_path: Path) -> None:
    log = LogStore(tmp_path / "lake")
    try:
        ids = _long_history(log)
        live = _encodings(Materializer(log), ids)
        assert live[-1]["a"] != live[-2]["a"]
        # A new materializer starts from the checkpoints the first one stored in the cache environment.
        assert len(_cache_contents(log)["snapshots"]) >= 3
        assert _encodings(Materializer(log), list(reversed(ids)))[::-1] == live
        rebuilt = Materializer(log)
        assert rebuilt.rebuild() == len(ids) + 1
        assert _encodings(rebuilt, ids) == live
    finally:
        log.close()
    shutil.rmtree(tmp_path / "lake" / "cache")
    log = LogStore(tmp_path / "lake")
    try:
        assert _encodings(Materializer(log), ids) == live
    finally:
        log.close()



def test_a_snapshot_near_one_in_memory_folds_from_it_without_looking_in_the_cache(tmp_path: Path) -> None:
    log = LogStore(tmp_path / "lake")
    try:
        ids = _long_history(log)
        expected = _encodings(Materializer(log), [ids[6]])
        m = Materializer(log)
        m.snapshot(ids[0])
        # A stored record for ids[5] that does not match the log: folding ids[6] from ids[0], in memory and six
        # steps back, never reads it (as several writers catching up on each other's commits never need to).
        m._store(ids[5], {})
        assert _encodings(m, [ids[6]]) == expected
        assert m.snapshot(ids[6])["a"].rows > 0
    finally:
        log.close()
