"""Where a publish writes: the file tree of one destination, and the URIs its metadata names files by.

`Target` is the seam between Iceberg publishing and storage. Names inside a destination are relative,
`/`-separated (`<table>/metadata/v3.metadata.json`). `LocalTarget` is a directory on this machine whose data
files are the lake's own chunk files; `udr.remote.publishing.ObjectTarget` is a prefix in object storage whose
data files are the remote lake's chunk objects. Both write each file whole (readers never see a torn one) and
create a metadata version only if absent, so two publishers cannot both write version N. A destination of
the other kind than its lake (a directory for a lake in object storage, object storage for a local lake)
cannot name the lake's chunk files, so it keeps a copy of each among its table's files (`ICEBERG_*_COPY`), made
before any metadata names it; the destination owns the copies (rebuilt after an erasure, removed by
unpublish). A local file appears under its final name only complete and durable (`write_atomic`: temp file,
fsync, rename, fsync of the directory), so a crash leaves at worst an unreferenced temp file.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from udr.errors import ConflictError
from udr.log.chunks import FileChunkStore, fsync_dir
from udr.log.format import ICEBERG_CHUNK_COPY, ICEBERG_INLINE_COPY, ChunkId


def file_uri(path: Path) -> str:
    """The URI Iceberg metadata names a local file by: `file://` and the absolute path as is (readers such as
    pyiceberg do not percent-decode, so `Path.as_uri` would break paths with spaces)."""
    return "file://" + str(path.resolve())


def local_path(uri: str) -> Path:
    """The local path of a `file_uri`."""
    return Path(uri.removeprefix("file://"))


def write_atomic(path: Path, write: Callable[[Path], None], *, exclusive: bool = False) -> int:
    """Produce `path` whole through `write(temp)`; return its size.

    `exclusive`: fail if `path` exists (a hard link is atomic create-if-absent), so two publishers
    cannot both write one metadata version.

    Raises:
        ConflictError: `exclusive` and another publisher wrote `path` first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp"
    try:
        write(tmp)
        size = tmp.stat().st_size
        with open(tmp, "rb+") as fh:
            # fsync before rename: a crash must not leave the final name pointing at empty blocks.
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise ConflictError(f"{path} was written by another publisher meanwhile; publish again") from exc
        else:
            os.replace(tmp, path)
        # The rename must survive a crash before anything that names the file is written.
        fsync_dir(path.parent)
        return size
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes, *, exclusive: bool = False) -> int:
    """`write_atomic` of given bytes."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return write_atomic(path, write, exclusive=exclusive)


class Target(Protocol):
    """One publishing destination."""

    @property
    def name(self) -> str:
        """What the lake records the destination as (`udr.log.publications`): an absolute path or a URL."""
        ...

    @property
    def lake(self) -> str:
        """The publishing lake's identity (its path or URL), stamped into every table it publishes."""
        ...

    def uri(self, rel: str) -> str:
        """The URI Iceberg metadata names the destination's file `rel` by."""
        ...

    def rel(self, uri: str) -> str:
        """The name inside the destination of a `uri` this target made."""
        ...

    def read(self, rel: str) -> bytes | None:
        """The bytes of file `rel`, None if there is none."""
        ...

    def write(self, rel: str, data: bytes, *, exclusive: bool = False) -> int:
        """Write file `rel` whole; return its size. `exclusive`: only if it does not exist.

        Raises:
            ConflictError: `exclusive` and another publisher wrote `rel` first.
        """
        ...

    def files(self, folder: str) -> list[str]:
        """Every file under `folder` (relative names, sorted)."""
        ...

    def delete(self, rel: str) -> None:
        """Remove file `rel` (no error if it is gone)."""
        ...

    def tables(self) -> list[str]:
        """The top-level folders (published tables, or anything else) of the destination, sorted."""
        ...

    def remove(self, folder: str) -> None:
        """Remove `folder` and everything under it."""
        ...

    def exists(self) -> bool:
        """Whether the destination is still there (not deleted by hand)."""
        ...

    def chunk_uri(self, chunk: ChunkId, table: str, *, inline: bool = False) -> str:
        """The URI of chunk file `chunk` as a data file of `table`; `inline`: the chunk is a Parquet copy of
        inline rows made for that table (a target may keep copies among the table's own files)."""
        ...

    def prepare_chunk(self, uri: str, chunk: ChunkId) -> int:
        """Make chunk `chunk` readable at `uri` (from `chunk_uri`; a copy may not be there yet); return its size.

        Raises:
            ConflictError: the chunk is gone (gc or an erasure removed it meanwhile); publish again.
        """
        ...

    def owns(self, uri: str) -> bool:
        """Whether `uri` names a file of the destination (rather than of the lake)."""
        ...


class LocalTarget:
    """A destination directory; data files are the chunk files of the lake's chunk store, by absolute path,
    or (`copy`: the lake is in object storage, `chunks` its cache's) copies among the table's files."""

    def __init__(self, root: Path, lake: str, chunks: FileChunkStore, *, copy: bool = False) -> None:
        self._root = root.resolve()
        self._lake = lake
        self._chunks = chunks
        self._copy = copy

    @property
    def name(self) -> str:
        return str(self._root)

    @property
    def lake(self) -> str:
        return self._lake

    def uri(self, rel: str) -> str:
        return file_uri(self._root / rel)

    def rel(self, uri: str) -> str:
        return local_path(uri).relative_to(self._root).as_posix()

    def read(self, rel: str) -> bytes | None:
        try:
            return (self._root / rel).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, rel: str, data: bytes, *, exclusive: bool = False) -> int:
        return write_bytes_atomic(self._root / rel, data, exclusive=exclusive)

    def files(self, folder: str) -> list[str]:
        base = self._root / folder
        return sorted(p.relative_to(self._root).as_posix() for p in base.rglob("*") if p.is_file()) \
            if base.is_dir() else []

    def delete(self, rel: str) -> None:
        (self._root / rel).unlink(missing_ok=True)

    def tables(self) -> list[str]:
        return sorted(p.name for p in self._root.iterdir() if p.is_dir()) if self._root.is_dir() else []

    def remove(self, folder: str) -> None:
        shutil.rmtree(self._root / folder, ignore_errors=True)

    def exists(self) -> bool:
        return self._root.is_dir()

    def chunk_uri(self, chunk: ChunkId, table: str, *, inline: bool = False) -> str:
        if self._copy:
            return self.uri((ICEBERG_INLINE_COPY if inline else ICEBERG_CHUNK_COPY).format(table=table, chunk=chunk))
        return file_uri(self._chunks.path(chunk))  # copies of inline rows too: the lake keeps them, pinned

    def owns(self, uri: str) -> bool:
        return uri.startswith(file_uri(self._root) + "/")

    def prepare_chunk(self, uri: str, chunk: ChunkId) -> int:
        if self.owns(uri):
            path = local_path(uri)
            if not path.is_file():
                # Fetched from the lake (and checked against its id) when the cache lacks it.
                write_bytes_atomic(path, self._chunks.get(chunk))
            return path.stat().st_size
        try:
            return os.stat(self._chunks.path(chunk)).st_size
        except FileNotFoundError as exc:
            raise ConflictError(f"chunk {chunk} of {self._lake} was deleted while publishing (by gc or an "
                                "erasure); publish again") from exc
