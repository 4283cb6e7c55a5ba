"""udr.log.keyplace: the log places keyed writes of disjoint keys over each other, re-pointing the deletion
vectors they both set, and refuses (`HeadMoved`) colliding keys and links it cannot re-point; checked against
an in-memory model of the deleted positions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udr.log.commits import CommitRecord, Deletes, Fragment, TableOp
from udr.log.format import MAX_VECTOR_CHAIN, BlobId, BlobKind, ChunkId, CommitId
from udr.log.hashing import content_id, key_hashes
from udr.log.keyplace import FOLD_DEPTH, keyed_commute
from udr.log.memory import MemoryLogStore
from udr.log.races import HeadMoved
from udr.log.store import LogStore
from udr.materialize.vectors import chain_link, encode_positions, read_vector

ROWS = 64
FRAGMENT = ChunkId(content_id(b"the bulk-loaded fragment"))


@dataclass(frozen=True, slots=True)
class _State:
    """The log's head as the model sees it: the fragment's vector, its count and depth, the keys each commit
    since the table was made touched (newest last)."""

    head: CommitId
    vector: BlobId | None
    count: int
    depth: int


def _hashes(keys: set[int]) -> tuple[int, ...]:
    return key_hashes(k.to_bytes(8, "big") for k in keys)


def _setup(log: LogStore) -> _State:
    head = log.head("main")
    assert head is not None
    schema = BlobId(content_id(b"schema"))
    record = CommitRecord(parents=(head,), seq=0, branch="main", time_us=0, author="t", message="load",
                          tables={"kv": TableOp(create=True, schema=schema, primary_key=("k",),
                                                add=(Fragment(FRAGMENT, ROWS, True, schema),))})
    cid, _ = log.append(record, base=head, rebase=False, blobs={schema: (BlobKind.SCHEMA, b"schema")})
    return _State(cid, None, 0, 0)


def _upsert(log: LogStore, base: _State, keys: set[int], *, whole: bool = False, own: bool = True
            ) -> tuple[CommitId, CommitRecord]:
    """A keyed write made on `base` deleting the rows (position = key) of `keys`, as a writer stages it: its
    vector chained onto the base's (whole when the base has none, the chain is full, or `whole`; then with
    the body of its own positions given to the log when `own`)."""
    positions = np.array(sorted(keys), np.uint32)
    chained = base.vector is not None and base.depth + 1 < MAX_VECTOR_CHAIN and not whole
    if chained:
        payload = encode_positions(positions, base=base.vector, depth=base.depth + 1, gaps=True)
    else:
        vectors = partial(log.get_blob, kind=BlobKind.DELETES)
        old = [] if base.vector is None else read_vector(base.vector, vectors).to_pylist()
        payload = encode_positions(np.array(sorted({*old, *keys}), np.uint32), gaps=True)
    vector = BlobId(content_id(payload))
    op = TableOp(deletes=(Deletes(FRAGMENT, vector, base.count + len(keys)),), updated=len(keys),
                 keys=_hashes(keys), added=(len(keys),))
    record = CommitRecord(parents=(base.head,), seq=0, branch="main", time_us=0, author="t", message="",
                          tables={"kv": op})
    bodies = {vector: encode_positions(positions, gaps=True)} if own and not chained else {}
    return log.append(record, base=base.head, rebase=True, blobs={vector: (BlobKind.DELETES, payload)}, own=bodies)


def _state(log: LogStore, cid: CommitId, record: CommitRecord) -> _State:
    [d] = record.tables["kv"].deletes
    assert d.vector is not None
    return _State(cid, d.vector, d.count, chain_link(log.get_blob(d.vector, BlobKind.DELETES))[1])


def _deleted(log: LogStore, state: _State) -> list[int]:
    assert state.vector is not None
    return list(read_vector(state.vector, lambda v: log.get_blob(v, BlobKind.DELETES)).to_pylist())


def test_disjoint_keyed_writes_on_one_base_are_all_placed(log: LogStore) -> None:
    first = _state(log, *_upsert(log, _setup(log), {1, 2}))
    _upsert(log, first, {3})
    second_cid, second = _upsert(log, first, {4, 5})
    third_cid, third = _upsert(log, first, {6, 7})  # begun on `first`: {3} and {4, 5} committed since
    state = _state(log, third_cid, third)
    assert state.vector is not None
    assert third.parents == (second_cid,)  # placed on the head
    assert chain_link(log.get_blob(state.vector, BlobKind.DELETES))[0] == second.tables["kv"].deletes[0].vector
    assert _deleted(log, state) == [1, 2, 3, 4, 5, 6, 7]
    assert state.count == 7


def test_colliding_keys_are_refused(log: LogStore) -> None:
    loaded = _setup(log)
    _upsert(log, loaded, {1, 2})
    with pytest.raises(HeadMoved):
        _upsert(log, loaded, {2, 3})


def test_a_whole_vector_is_taken_as_it_is_or_has_its_own_positions_re_pointed(log: LogStore) -> None:
    first = _state(log, *_upsert(log, _setup(log), {1}))
    second = _state(log, *_upsert(log, first, {2}))
    with pytest.raises(HeadMoved):  # a whole vector {1, 3} cannot be linked without its own positions
        _upsert(log, first, {3}, whole=True, own=False)
    placed = _state(log, *_upsert(log, first, {3}, whole=True))  # with them, they are re-pointed: {3} over {1, 2}
    assert placed.depth == second.depth + 1
    assert _deleted(log, placed) == [1, 2, 3] and placed.count == 3
    reset = _state(log, *_upsert(log, placed, {4}, whole=True))  # over no concurrent change: taken whole
    assert reset.depth == 0
    assert _deleted(log, reset) == [1, 2, 3, 4] and reset.count == 4


def test_a_deep_link_folds_the_links_above_the_whole_vector(log: LogStore) -> None:
    state = _state(log, *_upsert(log, _setup(log), {0}))
    for key in range(1, FOLD_DEPTH):  # one writer: a chain FOLD_DEPTH - 1 deep
        state = _state(log, *_upsert(log, state, {key}))
    assert state.depth == FOLD_DEPTH - 1
    _upsert(log, state, {40})
    folded = _state(log, *_upsert(log, state, {41, 42}))  # placed over {40}: a link FOLD_DEPTH deep, folded
    assert folded.depth == 1
    assert _deleted(log, folded) == [*range(FOLD_DEPTH), 40, 41, 42]
    assert folded.count == FOLD_DEPTH + 3


def test_a_vector_two_fragments_share_is_kept_when_one_of_them_is_re_pointed(log: LogStore) -> None:
    """Vectors are content-addressed: two fragments whose rows at the same positions go share one payload. Placed
    over a change of the first fragment only, the commit re-points that fragment's vector and must still store the
    payload the second one names (the bank test with threads once read such a commit back as a missing blob)."""
    head = log.head("main")
    assert head is not None
    schema = BlobId(content_id(b"schema"))
    other = ChunkId(content_id(b"a second fragment"))
    loaded, _ = log.append(
        CommitRecord(parents=(head,), seq=0, branch="main", time_us=0, author="t", message="load",
                     tables={"kv": TableOp(create=True, schema=schema, primary_key=("k",),
                                           add=(Fragment(FRAGMENT, ROWS, True, schema),
                                                Fragment(other, ROWS, True, schema)))}),
        base=head, rebase=False, blobs={schema: (BlobKind.SCHEMA, b"schema")})
    _upsert(log, _State(loaded, None, 0, 0), {1})  # the first fragment's vector changes meanwhile
    shared = encode_positions(np.array([5], np.uint32), gaps=True)
    vector = BlobId(content_id(shared))
    op = TableOp(deletes=(Deletes(FRAGMENT, vector, 1), Deletes(other, vector, 1)), updated=2,
                 keys=_hashes({5, ROWS + 5}), added=(1, 1))
    record = CommitRecord(parents=(loaded,), seq=0, branch="main", time_us=0, author="t", message="", tables={"kv": op})
    cid, placed = log.append(record, base=loaded, rebase=True, blobs={vector: (BlobKind.DELETES, shared)},
                             own={vector: shared})
    first, second = placed.tables["kv"].deletes
    assert first.vector != vector and second.vector == vector  # only the changed fragment's was re-pointed
    assert log.get_blob(vector, BlobKind.DELETES) == shared
    assert _deleted(log, _State(cid, first.vector, first.count, 0)) == [1, 5]


def test_ops_without_key_hashes_or_reshaping_do_not_commute() -> None:
    keyed = TableOp(keys=(1, 2))
    assert keyed_commute(keyed, TableOp(keys=(3,)))
    assert not keyed_commute(keyed, TableOp(keys=(2,)))
    assert not keyed_commute(keyed, TableOp())  # a delete by predicate names no keys
    assert not keyed_commute(keyed, TableOp(keys=(3,), rewrite=True))  # a flush rewrites fragments
    assert not keyed_commute(keyed, TableOp(keys=(3,), truncate=True))


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 4), st.sets(st.integers(0, ROWS - 1), min_size=1, max_size=4)),
                min_size=1, max_size=40))
def test_placement_matches_a_model_of_the_deleted_rows(writes: list[tuple[int, set[int]]]) -> None:
    """Each write begins `lag` commits behind the head. The log places it exactly when its keys are disjoint
    from those of every commit since its base (and its chain fits); the fragment's vector is then the union."""
    log = MemoryLogStore()
    try:
        states = [_setup(log)]
        touched: list[set[int]] = [set()]
        deleted: set[int] = set()
        for lag, drawn in writes:
            at = max(0, len(states) - 1 - lag)
            since = set().union(*touched[at + 1:])
            # Keys deleted before the base are rows gone already: a writer would not find them.
            keys = drawn - {k for s in touched[:at + 1] for k in s}
            if not keys:
                continue
            head, base = states[-1], states[at]
            # Chained or whole, the payload of its own positions is re-pointed onto the head's vector, or folded
            # with the links above the chain's whole vector (every body here is small gaps): always linkable.
            expect = at == len(states) - 1 or not since & keys
            try:
                cid, record = _upsert(log, base, keys)
            except HeadMoved:
                assert not expect, (lag, keys, since)
                continue
            assert expect
            states.append(_state(log, cid, record))
            if at < len(states) - 2:  # placed by the log
                assert states[-1].depth == (head.depth + 1 if head.depth + 1 < FOLD_DEPTH else 1)
            touched.append(keys)
            deleted |= keys
            assert _deleted(log, states[-1]) == sorted(deleted)
            assert states[-1].count == len(deleted)
    finally:
        log.close()
