"""The `ObjectStore` seam, one conformance suite run against both implementations: S3 (moto) and memory.
Also the remote log entry encoding."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from remote_helpers import BUCKET, S3

import udr
from udr.log.format import BlobId, CommitId
from udr.remote.log import Entry, RemoteLog, decode_entry, encode_entry, entry_key
from udr.remote.store import ObjectStore, memory_store, open_store


@pytest.fixture(params=["s3", "memory"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    if request.param == "memory":
        return memory_store()
    request.getfixturevalue("s3_server")
    return open_store(f"s3://{BUCKET}/{uuid.uuid4().hex}")


def test_get_of_a_missing_object_is_none_and_put_get_round_trips(store: ObjectStore) -> None:
    assert store.get("chunks/x") is None
    assert not store.exists("chunks/x")
    store.put("chunks/x", b"bytes")
    store.put("chunks/x", b"bytes")  # content-addressed: a repeated put is harmless
    assert store.get("chunks/x") == b"bytes"
    assert store.exists("chunks/x")


def test_put_new_creates_only_if_absent(store: ObjectStore) -> None:
    assert store.put_new("log/1", b"first") is True
    assert store.put_new("log/1", b"second") is False
    assert store.get("log/1") == b"first"


def test_replace_is_a_compare_and_swap_on_the_etag(store: ObjectStore) -> None:
    assert store.get_tagged("log/1") is None
    assert store.size("log/1") is None
    store.put("log/1", b"first")
    found = store.get_tagged("log/1")
    assert found is not None and found[0] == b"first" and store.size("log/1") == 5
    assert store.replace("log/1", b"second", found[1]) is True
    assert store.replace("log/1", b"third", found[1]) is False  # the tag moved with the first replace
    assert store.get("log/1") == b"second"
    assert store.replace("log/none", b"x", found[1]) is False


def test_drop_blobs_rewrites_an_entry_without_them_and_keeps_its_commits(store: ObjectStore) -> None:
    log = RemoteLog(store)
    entry = _entry()
    assert log.append(entry)
    kept = next(iter(entry.blobs))
    assert log.drop_blobs(7, {"ef" * 32}) is False  # carries none of them: untouched
    assert log.drop_blobs(7, {kept}) is True
    again = log.read(7)
    assert again is not None and again.commits == entry.commits and again.moves == entry.moves
    assert kept not in again.blobs


def test_list_and_delete(store: ObjectStore) -> None:
    for key in ("chunks/a", "chunks/b", "log/0"):
        store.put(key, b"12")
    assert sorted((i.key, i.size) for i in store.list("chunks/")) == [("chunks/a", 2), ("chunks/b", 2)]
    store.delete("chunks/a")
    store.delete("chunks/a")  # already gone: no error
    assert [i.key for i in store.list("chunks/")] == ["chunks/b"]


def test_the_remote_log_reads_forward_until_an_entry_is_missing(store: ObjectStore) -> None:
    log = RemoteLog(store)
    for seq in range(3):
        assert log.append(Entry(seq, 3))
    assert not log.append(Entry(1, 3))
    assert [e.seq for e in log.entries_from(1)] == [1, 2]
    assert entry_key(2) == "log/00000000000000000002"


def _entry() -> Entry:
    return Entry(7, 3, ((CommitId("ab" * 32), b"U\x01\x00{}"),), {BlobId("cd" * 32): b"U\x04\x00schema"},
                 ({"ref": "branch:main", "old": None, "new": "ab" * 32, "action": "create", "message": "m",
                   "author": "a", "time_us": 1},))


def test_an_entry_round_trips() -> None:
    assert decode_entry(7, encode_entry(_entry())) == _entry()


@pytest.mark.parametrize(("raw", "error", "match"), [
    (lambda b: b[:-3], udr.CorruptionError, "not a valid entry"),
    (lambda b: b.replace(b'"v":1', b'"v":9'), udr.FormatError, "upgrade udr"),
    (lambda b: b, udr.CorruptionError, "says it is entry 7"),
])
def test_a_damaged_or_newer_entry_is_refused(raw: Callable[[bytes], bytes], error: type[Exception],
                                            match: str) -> None:
    seq = 8 if match.startswith("says") else 7
    with pytest.raises(error, match=match):
        decode_entry(seq, raw(encode_entry(_entry())))


def test_s3_is_reached_through_the_environment(s3_server: S3) -> None:
    store = open_store(f"s3://{BUCKET}/{uuid.uuid4().hex}")
    store.put("x", b"1")
    assert store.get("x") == b"1"
