"""The content-addressed chunk store: Parquet files named by the BLAKE3 hash of their bytes.

Durability: a chunk is written to `tmp/`, fsynced, renamed into `chunks/xx/`, and the directory is
fsynced, so after `put` returns the chunk survives a crash under its final name, whole. Writing bytes
that are already stored is a no-op (same bytes, same name). Safe across threads and processes: a rename
is atomic and two writers of one chunk write identical bytes.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import blake3

from udr.errors import CorruptionError
from udr.log.format import CHUNK_DIR, CHUNK_SUFFIX, TMP_DIR, ChunkId
from udr.log.hashing import content_id


class ChunkStore(Protocol):
    """Where chunk bytes live, addressed by content."""

    def put(self, data: bytes) -> ChunkId:
        """Store `data` durably and return its id."""
        ...

    def put_written(self, write: Callable[[Path], None], announce: Callable[[ChunkId], None] | None = None) -> ChunkId:
        """Store the file `write` produces at the path it is given; `announce` gets the id first."""
        ...

    def get(self, chunk: ChunkId, *, verify: bool = True) -> bytes:
        """Return the bytes of `chunk`, checked against the id when `verify`."""
        ...

    def exists(self, chunk: ChunkId) -> bool:
        """Whether `chunk` is stored."""
        ...

    def size(self, chunk: ChunkId) -> int:
        """The stored size of `chunk` in bytes."""
        ...

    def delete(self, chunk: ChunkId) -> int:
        """Remove `chunk`; return the bytes freed."""
        ...

    def all_ids(self) -> Iterator[ChunkId]:
        """Every stored chunk id, for garbage collection only (never to discover live data)."""
        ...


def fsync_dir(path: Path) -> None:
    """Make the entries of directory `path` durable (a rename into it survives a crash only then)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_id(path: Path, size: int) -> str:
    """The BLAKE3 name of the file at `path`, hashed through a memory map (no copy of its bytes)."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if size > 1 << 20 else 1)
    if size:
        hasher.update_mmap(path)
    return str(hasher.hexdigest())


class FileChunkStore:
    """Chunks as files under `root/chunks/`, the layout DuckDB reads directly."""

    def __init__(self, root: Path) -> None:
        self._chunks = root / CHUNK_DIR
        self._tmp = root / TMP_DIR
        self._verified: set[tuple[str, int, int, int, int]] = set()
        self._lock = threading.Lock()
        self._fetch: Callable[[ChunkId], bytes | None] | None = None

    def fetch_missing(self, fetch: Callable[[ChunkId], bytes | None] | None) -> None:
        """Have `get`, `verified_path` and `exists` of a chunk whose file is not here first ask `fetch` for its
        bytes (None: it has none) and store them: this directory caches a lake kept elsewhere (`udr.remote`)."""
        self._fetch = fetch

    def _here(self, chunk: ChunkId) -> bool:
        """Whether the chunk file is present, after fetching it if it is missing and a fetch is set."""
        if self.path(chunk).exists():
            return True
        data = self._fetch(chunk) if self._fetch is not None else None
        if data is None:
            return False
        if self.put(data) != chunk:
            raise CorruptionError(f"chunk {chunk} fetched from where this lake is kept does not hash to its name")
        return True

    def path(self, chunk: ChunkId) -> Path:
        """The file holding `chunk`."""
        return self._chunks / chunk[:2] / (chunk[2:] + CHUNK_SUFFIX)

    def put(self, data: bytes) -> ChunkId:
        """Store `data` durably (temp file, fsync, rename, fsync dir) and return its id."""

        def write(path: Path) -> None:
            path.write_bytes(data)

        return self.put_written(write)

    def put_written(self, write: Callable[[Path], None], announce: Callable[[ChunkId], None] | None = None) -> ChunkId:
        """Store the file `write` produces at the path it is given, durably, under its content id.

        The bytes go straight to a temp file (no copy in memory) and are hashed by memory map. `announce`
        is called with the id before the chunk gets its final name (to register a gc intent).
        """
        self._tmp.mkdir(parents=True, exist_ok=True)
        # The writer's pid in the temp name lets gc tell a crashed writer's leftovers from live work.
        tmp = self._tmp / f"{os.getpid()}-{uuid.uuid4().hex}.tmp"
        try:
            write(tmp)
            hasher = blake3.blake3(max_threads=1)
            hasher.update_mmap(tmp)
            chunk = ChunkId(hasher.hexdigest())
            if announce is not None:
                announce(chunk)
            final = self.path(chunk)
            if final.exists():
                tmp.unlink()
                return chunk
            with open(tmp, "rb+") as fh:
                # fsync before rename: otherwise a crash can leave the final name pointing at empty blocks.
                os.fsync(fh.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            # fsync the directory so the rename itself survives a crash before the commit point.
            fsync_dir(final.parent)
            return chunk
        finally:
            tmp.unlink(missing_ok=True)

    def get(self, chunk: ChunkId, *, verify: bool = True) -> bytes:
        """Return the bytes of `chunk`.

        Raises:
            CorruptionError: the chunk is missing or its bytes do not hash to its name.
        """
        self._here(chunk)
        try:
            data = self.path(chunk).read_bytes()
        except FileNotFoundError as exc:
            raise CorruptionError(f"chunk {chunk} is missing") from exc
        if verify and content_id(data) != chunk:
            raise CorruptionError(f"chunk {chunk} does not hash to its name")
        return data

    def verified_path(self, chunk: ChunkId) -> Path:
        """The path of `chunk` after checking once per file version that its bytes hash to its name.

        A file version is (inode, size, mtime, ctime): any write through the file system changes the ctime,
        which no process can set back, so bytes changed after the check are hashed again before use.
        Damage below the file system that leaves the inode untouched (media bit rot) is caught by the
        first read of a new handle and by `verify()`, which always rehashes.

        Readers that hand the path to another engine (DuckDB, Parquet readers) call this first, so damage
        surfaces as `CorruptionError` rather than as wrong rows.

        Raises:
            CorruptionError: missing, or the bytes do not hash to the name.
        """
        self._here(chunk)
        path = self.path(chunk)
        try:
            stat = path.stat()
        except FileNotFoundError as exc:
            raise CorruptionError(f"chunk {chunk} is missing") from exc
        key = (chunk, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if key not in self._verified:
            if _file_id(path, stat.st_size) != chunk:
                raise CorruptionError(f"chunk {chunk} does not hash to its name")
            with self._lock:
                self._verified.add(key)
        return path

    def exists(self, chunk: ChunkId) -> bool:
        """Whether the chunk file is present (or could be fetched, see `fetch_missing`)."""
        return self._here(chunk)

    def size(self, chunk: ChunkId) -> int:
        """The chunk file's size, 0 when missing."""
        try:
            return self.path(chunk).stat().st_size
        except FileNotFoundError:
            return 0

    def delete(self, chunk: ChunkId) -> int:
        """Unlink the chunk file; return the bytes freed."""
        size = self.size(chunk)
        self.path(chunk).unlink(missing_ok=True)
        return size

    def all_ids(self) -> Iterator[ChunkId]:
        """Every chunk file present, for garbage collection only."""
        if not self._chunks.exists():
            return
        for sub in sorted(self._chunks.iterdir()):
            for file in sorted(sub.glob("*" + CHUNK_SUFFIX)):
                yield ChunkId(sub.name + file.name[: -len(CHUNK_SUFFIX)])

    def clear_tmp(self, busy: Callable[[int], bool]) -> int:
        """Remove temp files of writers for which `busy(pid)` is false (crashed ones); return bytes freed."""
        freed = 0
        if self._tmp.exists():
            for file in self._tmp.iterdir():
                owner = file.name.split("-", 1)[0]
                if owner.isdigit() and busy(int(owner)):
                    continue
                freed += file.stat().st_size
                file.unlink(missing_ok=True)
        return freed


class MemoryChunkStore:
    """Chunks in a dict: the same contract without a disk, for tests of the layers above."""

    def __init__(self) -> None:
        self._data: dict[ChunkId, bytes] = {}

    def put(self, data: bytes) -> ChunkId:
        """Store `data` and return its id."""
        chunk = ChunkId(content_id(data))
        self._data.setdefault(chunk, bytes(data))
        return chunk

    def put_written(self, write: Callable[[Path], None], announce: Callable[[ChunkId], None] | None = None) -> ChunkId:
        """Store the bytes `write` puts in a scratch file; `announce` gets the id first."""
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "chunk"
            write(path)
            data = path.read_bytes()
        if announce is not None:
            announce(ChunkId(content_id(data)))
        return self.put(data)

    def get(self, chunk: ChunkId, *, verify: bool = True) -> bytes:
        """Return the bytes of `chunk`.

        Raises:
            CorruptionError: the chunk is missing or its bytes do not hash to its name.
        """
        if chunk not in self._data:
            raise CorruptionError(f"chunk {chunk} is missing")
        data = self._data[chunk]
        if verify and content_id(data) != chunk:
            raise CorruptionError(f"chunk {chunk} does not hash to its name")
        return data

    def exists(self, chunk: ChunkId) -> bool:
        """Whether `chunk` is stored."""
        return chunk in self._data

    def size(self, chunk: ChunkId) -> int:
        """The stored size of `chunk`, 0 when missing."""
        return len(self._data.get(chunk, b""))

    def delete(self, chunk: ChunkId) -> int:
        """Remove `chunk`; return the bytes freed."""
        return len(self._data.pop(chunk, b""))

    def all_ids(self) -> Iterator[ChunkId]:
        """Every stored chunk id."""
        yield from sorted(self._data)
