"""udr.materialize.vectors: a chained deletion vector reads as the whole set, is written only when it is
valid and short, and a lake's vectors chain across commits yet read, verify, rebuild and survive gc alike;
small vectors are stored as gaps (format 5), and a damaged gaps payload is corruption."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import udr
from udr.errors import CorruptionError
from udr.log.format import GAPS_VECTOR_MAX, MAX_VECTOR_CHAIN, BlobId, BlobKind, CommitId
from udr.log.hashing import content_id
from udr.materialize.vectors import (
    added_between,
    encode_positions,
    encode_vector,
    in_sorted,
    parse_vector,
    read_vector,
    vector_chain,
)

GOLDEN_V3 = Path(__file__).resolve().parents[1] / "golden" / "v3" / "lake"


class Blobs(dict[BlobId, bytes]):
    def add(self, payload: bytes) -> BlobId:
        blob = BlobId(content_id(payload))
        self[blob] = payload
        return blob


def _positions(*values: int) -> np.ndarray:
    return np.array(sorted(values), dtype=np.uint32)


def test_a_chained_vector_reads_as_every_position_and_holds_only_the_new_ones() -> None:
    blobs = Blobs()
    first = blobs.add(encode_vector(_positions(3, 9, 40), None, blobs.__getitem__))
    second = blobs.add(encode_vector(_positions(3, 9, 12, 40), first, blobs.__getitem__))
    third = blobs.add(encode_vector(_positions(1, 3, 9, 12, 40, 41), second, blobs.__getitem__))
    assert parse_vector(blobs[second]).positions.to_pylist() == [12] and parse_vector(blobs[first]).base is None
    link = parse_vector(blobs[third])
    assert link.positions.to_pylist() == [1, 41] and link.base == second and link.depth == 2
    assert read_vector(third, blobs.__getitem__).to_pylist() == [1, 3, 9, 12, 40, 41]
    assert read_vector(third, blobs.__getitem__).type == pa.uint32()
    assert vector_chain(third, blobs.__getitem__) == [third, second, first]
    known = {second: pa.array([3, 9, 12, 40], pa.uint32())}
    assert read_vector(third, {third: blobs[third]}.__getitem__, known.get).to_pylist() == [1, 3, 9, 12, 40, 41]


def test_what_a_vector_adds_to_an_earlier_one_is_read_from_the_links_between_them() -> None:
    blobs = Blobs()
    first = blobs.add(encode_vector(_positions(3, 9, 40), None, blobs.__getitem__))
    second = blobs.add(encode_vector(_positions(3, 9, 12, 40), first, blobs.__getitem__))
    third = blobs.add(encode_vector(_positions(1, 3, 9, 12, 40, 41), second, blobs.__getitem__))
    from_first = added_between(third, first, blobs.__getitem__)
    from_second = added_between(third, second, blobs.__getitem__)
    assert from_first is not None and from_first.tolist() == [1, 12, 41]
    assert from_second is not None and from_second.tolist() == [1, 41]
    whole = blobs.add(encode_vector(_positions(3, 10), None, blobs.__getitem__))
    assert added_between(whole, first, blobs.__getitem__) is None  # not on its chain: the caller compares sets
    assert added_between(first, third, blobs.__getitem__) is None  # the other way round


def test_a_vector_is_whole_when_chaining_would_be_wrong_long_or_useless() -> None:
    blobs = Blobs()
    base = blobs.add(encode_vector(_positions(3, 9), None, blobs.__getitem__))
    undeleted = parse_vector(encode_vector(_positions(3, 10), base, blobs.__getitem__))  # 9 is live again
    assert undeleted.base is None and undeleted.positions.to_pylist() == [3, 10]
    mostly_new = parse_vector(encode_vector(_positions(3, 9, 20, 21, 22), base, blobs.__getitem__))
    assert mostly_new.base is None  # chaining would save fewer than half the positions
    vector, positions = base, [3, 9]
    for n in range(MAX_VECTOR_CHAIN + 2):
        positions.append(100 + n)
        vector = blobs.add(encode_vector(np.array(positions, np.uint32), vector, blobs.__getitem__))
        assert parse_vector(blobs[vector]).depth < MAX_VECTOR_CHAIN
        assert read_vector(vector, blobs.__getitem__).to_pylist() == positions
    assert any(parse_vector(blobs[v]).base is None for v in list(blobs)[-3:])  # the chain restarted whole


def test_a_damaged_chain_is_corruption() -> None:
    blobs = Blobs()
    base = BlobId(content_id(b"gone"))
    blobs.add(encode_positions(_positions(5), base=base, depth=1))

    def get(blob: BlobId) -> bytes:
        if blob not in blobs:
            raise CorruptionError(f"blob {blob} (deletes) is missing from the log")
        return blobs[blob]

    with pytest.raises(CorruptionError, match=base):
        read_vector(next(iter(blobs)), get)


@pytest.mark.parametrize(("positions", "width"), [
    (_positions(), 1), (_positions(0), 1), (np.arange(0, 255 * 300, 255, dtype=np.uint32), 1),
    (_positions(7, 7 + 256), 2), (_positions(1, 60_000, 65_535 + 60_000), 2), (_positions(3, (1 << 32) - 1), 4),
    (np.arange(0, (GAPS_VECTOR_MAX - 1) * 300, 300, dtype=np.uint32), 2)])
def test_small_vectors_are_stored_as_gaps_of_the_narrowest_width(positions: np.ndarray, width: int) -> None:
    payload = encode_positions(positions, gaps=True)
    assert payload[:4] == b"UDRG" and payload[4] == width and len(payload) == 5 + width * len(positions)
    assert parse_vector(payload).positions.to_pylist() == positions.tolist()
    chained = encode_positions(positions, base=BlobId("ab" * 32), depth=3, gaps=True)
    link = parse_vector(chained)
    assert link.base == "ab" * 32 and link.depth == 3 and link.positions.to_pylist() == positions.tolist()
    assert encode_positions(np.arange(GAPS_VECTOR_MAX, dtype=np.uint32), gaps=True)[:4] == b"PAR1"  # large: Parquet
    assert encode_positions(positions)[:4] == b"PAR1"  # a lake before format 5


@pytest.mark.parametrize("payload", [b"UDRG", b"UDRG\x03\x01\x02\x03", b"UDRG\x02\x01", b"UDRG\x01\x05\x00",
                                     b"UDRG\x04" + np.array([1 << 31, 1 << 31], "<u4").tobytes()])
def test_a_damaged_gaps_payload_is_corruption(payload: bytes) -> None:
    with pytest.raises(CorruptionError, match="deletion vector payload"):
        parse_vector(payload)


def _delete_nightly(db: udr.Lake, nights: int) -> list[str]:
    db.create_table("t", pa.schema([("id", pa.int64()), ("v", pa.int64())]), primary_key=["id"])
    db.append("t", {"id": list(range(50_000)), "v": list(range(50_000))})
    return [db.delete("t", keys={"id": list(range(n, 50_000, 97))}).id for n in range(nights)]


def _vectors(db: udr.Lake, commit: str) -> list[BlobId]:
    ops = db._handle.ctx.log.get_commit(CommitId(commit)).tables["t"]
    return [d.vector for d in ops.deletes if d.vector is not None]


def test_a_lake_chains_its_vectors_and_reads_verifies_and_rebuilds_the_same(db: udr.Lake) -> None:
    commits = _delete_nightly(db, 4)
    log = db._handle.ctx.log
    links = [parse_vector(log.get_blob(v, BlobKind.DELETES)) for c in commits[1:] for v in _vectors(db, c)]
    assert links and all(link.base is not None for link in links)
    expected = [i for i in range(50_000) if i % 97 >= 4]
    assert sorted(db.read("t").column("id").to_pylist()) == expected
    assert db.query("SELECT count(*) AS n FROM t").column("n")[0].as_py() == len(expected)
    assert db.read("t", at=commits[1]).num_rows == 50_000 - 2 * len(range(0, 50_000, 97))
    assert db.verify().ok
    db.rebuild()
    assert sorted(db.read("t").column("id").to_pylist()) == expected
    assert db.changes("t", since=commits[2]).num_rows == len(range(3, 50_000, 97))


def test_gc_keeps_the_vectors_a_kept_vector_chains_onto(db: udr.Lake) -> None:
    commits = _delete_nightly(db, 3)
    db.set_retention(keep_commits=1)
    db.expire()
    db.gc()
    assert sorted(db.read("t").column("id").to_pylist()) == [i for i in range(50_000) if i % 97 >= 3]
    report = db.verify()
    assert report.ok, report.problems
    assert db.read("t", at=commits[-1]).num_rows == 50_000 - 3 * len(range(0, 50_000, 97))


def test_a_version_3_lake_keeps_writing_whole_vectors(tmp_path: Path) -> None:
    path = Path(shutil.copytree(GOLDEN_V3, tmp_path / "lake"))
    with udr.open(path, create=False) as db:
        first = db.delete("accounts", keys={"id": [100]}).id
        second = db.delete("accounts", keys={"id": [101]}).id
        log = db._handle.ctx.log
        for commit in (first, second):
            ops = log.get_commit(CommitId(commit)).tables["accounts"]
            assert all(parse_vector(log.get_blob(d.vector, BlobKind.DELETES)).base is None
                       for d in ops.deletes if d.vector is not None)
        assert {100, 101}.isdisjoint(db.read("accounts").column("id").to_pylist())
    assert '"version": 3' in (path / "FORMAT").read_text()


@pytest.mark.parametrize("size", [0, 1, 7, 5_000])
def test_in_sorted_agrees_with_isin(size: int) -> None:
    rng = np.random.default_rng(size)
    positions = np.unique(rng.integers(0, 20_000, size)).astype(np.uint32)
    values = rng.integers(0, 20_001, 300).astype(np.uint32)
    values[:len(positions[:50])] = positions[:50]  # some certainly present, the last position among them
    assert in_sorted(values, positions).tolist() == np.isin(values, positions).tolist()
    assert in_sorted(values[:0], positions).tolist() == []
