"""udr.log.commits: the canonical commit encoding is deterministic, round-trips, and is what the id hashes."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udr.errors import CorruptionError, FormatError
from udr.log.commits import (
    CommitRecord,
    Deletes,
    Fragment,
    TableOp,
    commit_id,
    decode_commit,
    encode_commit,
)
from udr.log.format import BlobId, ChunkId, CommitId
from udr.log.hashing import content_id

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _hex(n: int) -> str:
    return blake3.blake3(str(n).encode()).hexdigest()


def sample_record() -> CommitRecord:
    return CommitRecord(
        parents=(CommitId(_hex(1)),),
        seq=7,
        branch="main",
        time_us=1_700_000_000_123_456,
        author="etl",
        message="nightly refresh ✓",
        metadata={"run": "42", "host": "a"},
        tables={
            "orders": TableOp(
                schema=BlobId(_hex(2)),
                add=(Fragment(ChunkId(_hex(3)), 10, True, BlobId(_hex(2))),
                     Fragment(ChunkId(_hex(4)), 100_000, False, BlobId(_hex(2)))),
                deletes=(Deletes(ChunkId(_hex(5)), BlobId(_hex(6)), 3), Deletes(ChunkId(_hex(7)), None, 9)),
                inserted=100_010,
                deleted=12,
            ),
            "accounts": TableOp(create=True, schema=BlobId(_hex(8)), primary_key=("id", "region")),
            "tmp": TableOp(drop=True, deleted=5),
            "scores": TableOp(truncate=True, rewrite=True, updated=4),
        },
    )


def test_encoding_round_trips() -> None:
    record = sample_record()
    assert decode_commit(encode_commit(record), "x") == record


def test_encoding_is_deterministic_whatever_the_insertion_order_of_maps() -> None:
    record = sample_record()
    shuffled = replace(
        record,
        metadata=dict(reversed(list(record.metadata.items()))),
        tables=dict(reversed(list(record.tables.items()))),
    )
    assert list(shuffled.tables) != list(record.tables)
    assert encode_commit(shuffled) == encode_commit(record)
    assert encode_commit(record) == encode_commit(sample_record())


def test_encoding_is_compact_sorted_utf8_json() -> None:
    data = encode_commit(sample_record())
    text = data.decode("utf-8")
    assert "✓" in text  # UTF-8 text, not \\u escapes
    assert json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False) == text


def test_commit_id_is_blake3_of_the_canonical_bytes() -> None:
    canonical = encode_commit(sample_record())
    cid = commit_id(canonical)
    assert HEX64.match(cid)
    assert cid == blake3.blake3(canonical).hexdigest()


def test_commit_id_covers_the_parents_so_the_log_is_a_hash_chain() -> None:
    record = sample_record()
    other = replace(record, parents=(CommitId(_hex(99)),))
    assert commit_id(encode_commit(other)) != commit_id(encode_commit(record))


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 8},
        {"branch": "dev"},
        {"time_us": 1_700_000_000_123_457},
        {"author": "someone else"},
        {"message": "other"},
        {"metadata": {"run": "43", "host": "a"}},
        {"tables": {}},
        {"parents": ()},
    ],
    ids=lambda change: next(iter(change)),
)
def test_every_field_changes_the_id(change: dict[str, object]) -> None:
    record = sample_record()
    assert commit_id(encode_commit(replace(record, **change))) != commit_id(encode_commit(record))  # type: ignore[arg-type]


def test_content_id_is_blake3_hex_for_small_and_large_inputs() -> None:
    small = b"abc"
    large = bytes(range(256)) * 10_000  # above the 1 MiB threshold where hashing goes multi-threaded
    assert content_id(small) == blake3.blake3(small).hexdigest()
    assert content_id(large) == blake3.blake3(large).hexdigest()


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", b'{"v": 1}', b'{"parents": [], "seq": "x"}', b"\xff\xfe"],
)
def test_malformed_bytes_raise_corruption_error_naming_the_commit(data: bytes) -> None:
    with pytest.raises(CorruptionError, match="c0ffee"):
        decode_commit(data, "c0ffee")


def test_malformed_table_operation_raises_corruption_error() -> None:
    doc = json.loads(encode_commit(sample_record()))
    doc["tables"]["orders"]["add"] = [["only-a-chunk-id"]]
    with pytest.raises(CorruptionError):
        decode_commit(json.dumps(doc).encode(), "abc")


_names = st.text(min_size=1, max_size=12)
_ids = st.integers(min_value=0, max_value=10**6).map(_hex)
_fragments = st.builds(
    Fragment, chunk=_ids.map(ChunkId), rows=st.integers(0, 10**9), inline=st.booleans(), schema=_ids.map(BlobId)
)
_deletes = st.builds(
    Deletes, chunk=_ids.map(ChunkId), vector=st.none() | _ids.map(BlobId), count=st.integers(0, 10**9)
)
_ops = st.builds(
    TableOp,
    create=st.booleans(),
    drop=st.booleans(),
    schema=st.none() | _ids.map(BlobId),
    primary_key=st.none() | st.lists(_names, min_size=1, max_size=3).map(tuple),
    truncate=st.booleans(),
    add=st.lists(_fragments, max_size=3).map(tuple),
    deletes=st.lists(_deletes, max_size=3).map(tuple),
    rewrite=st.booleans(),
    inserted=st.integers(0, 10**9),
    updated=st.integers(0, 10**9),
    deleted=st.integers(0, 10**9),
)
_records = st.builds(
    CommitRecord,
    parents=st.lists(_ids.map(CommitId), max_size=2).map(tuple),
    seq=st.integers(0, 2**62),
    branch=_names,
    time_us=st.integers(0, 2**62),
    author=st.text(max_size=20),
    message=st.text(max_size=40),
    metadata=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    tables=st.dictionaries(_names, _ops, max_size=3),
)


@settings(max_examples=40)
@given(_records)
def test_any_record_round_trips_and_re_encodes_to_the_same_bytes(record: CommitRecord) -> None:
    canonical = encode_commit(record)
    decoded = decode_commit(canonical, "x")
    assert decoded == record
    assert encode_commit(decoded) == canonical


# The canonical bytes of `sample_record()`, pinned: a change to the encoding changes every commit id, so it
# must come with a new record version (see docs/FORMAT.md), never silently.
GOLDEN_RECORD = (
    '{"author":"etl","branch":"main","message":"nightly refresh ✓","metadata":{"host":"a","run":"42"},"pa'
    'rents":["d63bd9a826af91c1fea371965a64e11ee20f13e46b5f52c59901136605b3a487"],"seq":7,"tables":{"accou'
    'nts":{"counts":[0,0,0],"create":true,"primary_key":["id","region"],"schema":"658325b1f32c8396999ae42'
    'cb87c35f3ed342e89c125cc5d2fa194e772da0eb8"},"orders":{"add":[["58d6fd3dc609068615d66b6a2616cce521e6b'
    'd49bbcd7854e3f2573b142c6637",10,1,"813e9b729141e7f385afa0a2d0df3e6c3789e427ffe4aeef566a565bc8f2fe3d"'
    '],["e67a9c4536256f1ec7495a146b5442fa7c0ed99e258a08260a4a244fa31c7c61",100000,0,"813e9b729141e7f385af'
    'a0a2d0df3e6c3789e427ffe4aeef566a565bc8f2fe3d"]],"counts":[100010,0,12],"deletes":[["b3372b584dc0df6c'
    'e757fa43f459ca1f0c4180a08762cbfa41d022ca24f63d9f","b748b4ebf53795686930b718fd46066df65694e910c9e647c'
    'd56c2b081b95732",3],["22f36339ae3058eeaf19a52949cfb9eb0a6bf4c21c05b6191ae4a19c8a93de4b",null,9]],"sc'
    'hema":"813e9b729141e7f385afa0a2d0df3e6c3789e427ffe4aeef566a565bc8f2fe3d"},"scores":{"counts":[0,4,0]'
    ',"rewrite":true,"truncate":true},"tmp":{"counts":[0,0,5],"drop":true}},"time_us":1700000000123456,"v'
    '":1}'
).encode()
GOLDEN_ID = "c20f25ca6e758b0807b9524c1465ce5531e4b598bf4ec0c0791bc73f80570ef4"


def test_the_canonical_encoding_of_every_operation_kind_is_pinned() -> None:
    assert encode_commit(sample_record()) == GOLDEN_RECORD
    assert commit_id(GOLDEN_RECORD) == GOLDEN_ID
    assert decode_commit(GOLDEN_RECORD, GOLDEN_ID) == sample_record()


def test_a_newer_record_version_is_refused_naming_both_versions() -> None:
    assert GOLDEN_RECORD.endswith(b'"v":1}')
    newer = GOLDEN_RECORD[:-2] + b"2}"
    with pytest.raises(FormatError, match=r"version-2 record.*up to version 1.*upgrade udr"):
        decode_commit(newer, commit_id(newer))


@pytest.mark.parametrize("version", [b"0", b'"1"', b"null"])
def test_a_record_version_that_is_not_a_positive_integer_is_corruption(version: bytes) -> None:
    damaged = GOLDEN_RECORD[:-2] + version + b"}"
    with pytest.raises(CorruptionError, match="record version"):
        decode_commit(damaged, commit_id(damaged))
