"""udr.log.chunks: one conformance suite for the ChunkStore protocol, run on every implementation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest

from udr.errors import CorruptionError
from udr.log.chunks import ChunkStore, FileChunkStore, MemoryChunkStore
from udr.log.format import ChunkId

Corrupt = Callable[[ChunkId], None]


def _file_store(tmp_path: Path) -> tuple[ChunkStore, Corrupt, Corrupt]:
    store = FileChunkStore(tmp_path)

    def flip(chunk: ChunkId) -> None:
        path = store.path(chunk)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    def remove(chunk: ChunkId) -> None:
        store.path(chunk).unlink()

    return store, flip, remove


def _memory_store(tmp_path: Path) -> tuple[ChunkStore, Corrupt, Corrupt]:
    store = MemoryChunkStore()

    # The in-memory store has no disk to damage: reach into its dict, the test's stand-in for bit rot.
    def flip(chunk: ChunkId) -> None:
        data = bytearray(store._data[chunk])
        data[len(data) // 2] ^= 0xFF
        store._data[chunk] = bytes(data)

    def remove(chunk: ChunkId) -> None:
        del store._data[chunk]

    return store, flip, remove


@pytest.fixture(params=[_file_store, _memory_store], ids=["file", "memory"])
def store_kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ChunkStore, Corrupt, Corrupt]]:
    yield request.param(tmp_path)


@pytest.fixture
def store(store_kit: tuple[ChunkStore, Corrupt, Corrupt]) -> ChunkStore:
    return store_kit[0]


DATA = b"parquet bytes, or anything" * 100


def test_put_returns_the_blake3_of_the_bytes(store: ChunkStore) -> None:
    assert store.put(DATA) == blake3.blake3(DATA).hexdigest()


def test_get_returns_what_was_put(store: ChunkStore) -> None:
    chunk = store.put(DATA)
    assert store.get(chunk) == DATA
    assert store.exists(chunk)
    assert store.size(chunk) == len(DATA)


def test_put_is_idempotent(store: ChunkStore) -> None:
    first = store.put(DATA)
    second = store.put(bytes(DATA))
    assert first == second
    assert list(store.all_ids()) == [first]
    assert store.size(first) == len(DATA)


def test_different_bytes_get_different_ids(store: ChunkStore) -> None:
    a = store.put(DATA)
    b = store.put(DATA + b"!")
    assert a != b
    assert sorted(store.all_ids()) == sorted([a, b])


def test_unknown_chunk_is_missing(store: ChunkStore) -> None:
    unknown = ChunkId(blake3.blake3(b"never stored").hexdigest())
    assert not store.exists(unknown)
    assert store.size(unknown) == 0
    with pytest.raises(CorruptionError, match=f"{unknown}.*missing"):
        store.get(unknown)


def test_get_verifies_the_bytes_against_the_id(store_kit: tuple[ChunkStore, Corrupt, Corrupt]) -> None:
    store, flip, _ = store_kit
    chunk = store.put(DATA)
    flip(chunk)
    with pytest.raises(CorruptionError, match=chunk):
        store.get(chunk)
    assert store.get(chunk, verify=False) != DATA


def test_a_deleted_chunk_raises_corruption_error(store_kit: tuple[ChunkStore, Corrupt, Corrupt]) -> None:
    store, _, remove = store_kit
    chunk = store.put(DATA)
    remove(chunk)
    with pytest.raises(CorruptionError, match=f"{chunk}.*missing"):
        store.get(chunk)


def test_delete_frees_the_bytes_once(store: ChunkStore) -> None:
    keep = store.put(b"keep")
    chunk = store.put(DATA)
    assert store.delete(chunk) == len(DATA)
    assert store.delete(chunk) == 0
    assert not store.exists(chunk)
    assert list(store.all_ids()) == [keep]


def test_put_written_stores_what_the_writer_wrote_and_announces_the_id_first(store: ChunkStore) -> None:
    announced: list[tuple[ChunkId, bool]] = []

    def write(path: Path) -> None:
        path.write_bytes(DATA)

    chunk = store.put_written(write, lambda c: announced.append((c, store.exists(c))))
    assert chunk == store.put(DATA)
    assert announced == [(chunk, False)], "the id must be announced before the chunk is visible"
    assert store.get(chunk) == DATA
    assert store.put_written(write) == chunk
    assert list(store.all_ids()) == [chunk]


def test_a_failing_writer_stores_nothing(store: ChunkStore) -> None:
    def write(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.put_written(write)
    assert list(store.all_ids()) == []


def test_empty_chunk_is_a_chunk(store: ChunkStore) -> None:
    chunk = store.put(b"")
    assert store.get(chunk) == b""
    assert store.exists(chunk)


# -- file layout ----------------------------------------------------------------------------------------


def test_file_store_layout_and_no_temp_files_left(tmp_path: Path) -> None:
    store = FileChunkStore(tmp_path)
    chunk = store.put(DATA)
    path = store.path(chunk)
    assert path == tmp_path / "chunks" / chunk[:2] / f"{chunk[2:]}.parquet"
    assert path.read_bytes() == DATA
    assert list((tmp_path / "tmp").iterdir()) == []


def test_file_store_put_does_not_rewrite_an_existing_chunk(tmp_path: Path) -> None:
    store = FileChunkStore(tmp_path)
    chunk = store.put(DATA)
    before = store.path(chunk).stat()
    store.put(DATA)
    after = store.path(chunk).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_file_store_verified_path_checks_the_bytes(tmp_path: Path) -> None:
    store = FileChunkStore(tmp_path)
    chunk = store.put(DATA)
    assert store.verified_path(chunk) == store.path(chunk)
    store.path(chunk).write_bytes(DATA + b"x")
    with pytest.raises(CorruptionError, match=chunk):
        store.verified_path(chunk)
    store.path(chunk).unlink()
    with pytest.raises(CorruptionError, match="missing"):
        store.verified_path(chunk)


def test_file_store_failed_writer_leaves_no_temp_file(tmp_path: Path) -> None:
    store = FileChunkStore(tmp_path)

    def write(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        store.put_written(write)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_file_store_clear_tmp_keeps_files_of_busy_writers(tmp_path: Path) -> None:
    store = FileChunkStore(tmp_path)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "111-aaaa.tmp").write_bytes(b"12345")
    (tmp_path / "tmp" / "222-bbbb.tmp").write_bytes(b"123")
    assert store.clear_tmp(lambda pid: pid == 222) == 5
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == ["222-bbbb.tmp"]
