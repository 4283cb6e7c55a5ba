"""Publishing a remote lake's tables as Iceberg tables in object storage (`udr.publish.target.Target`).

`ObjectTarget` is a destination prefix (any URL the lake's credentials reach, usually in the lake's own bucket)
whose data files are the remote lake's chunk objects, named by URL: zero copy, as a local publish is. Every
file is one whole-object put, and a metadata version is created only if absent (the object store's
conditional put), so two publishers cannot both write version N. A Parquet copy of inline rows is made in
the cache's chunk store and uploaded as `<table>/data/inline-<chunk id>.parquet` of the destination before any
metadata names it: the destination owns it, so the lake's `gc` never needs to know of it, a rebuild after an
erasure deletes the copies of replaced rows, and unpublishing removes them. A local lake publishing into object
storage (`copying_target`) has no chunk objects to name: the destination gets a copy of every data file, as
`<table>/data/<chunk id>.parquet`, uploaded the same way. Safe across threads (obstore's stores are).
"""

from __future__ import annotations

from pathlib import Path

from udr.errors import ConflictError, CorruptionError, UsageError
from udr.log.chunks import FileChunkStore
from udr.log.format import ICEBERG_CHUNK_COPY, ICEBERG_INLINE_COPY, ChunkId
from udr.remote.remotelake import RemoteLake, chunk_key
from udr.remote.store import ObjectStore, open_store


def object_target(mirror: RemoteLake, chunks: FileChunkStore, url: str) -> ObjectTarget:
    """The destination `url` for publishing the remote lake of `mirror` (whose cache holds `chunks`), reached
    with the lake's storage options.

    Raises:
        UsageError: an unsupported URL, or one inside the lake's own `chunks/` or `log/`.
    """
    store = open_store(url, mirror.options)
    inside = store.url.removeprefix(mirror.url + "/")
    if store.url == mirror.url or (inside != store.url and inside.split("/")[0] in ("chunks", "log")):
        raise UsageError(f"cannot publish to {url}: it is the lake's own storage; publish under another prefix, "
                         f"such as {mirror.url}/iceberg")
    return ObjectTarget(store, mirror.url, chunks, mirror.store)


def copying_target(url: str, lake: Path, chunks: FileChunkStore) -> ObjectTarget:
    """The destination `url` for publishing the local lake at `lake` (whose chunk files `chunks` holds),
    reached with the usual environment variables: every data file is a copy the destination keeps.

    Raises:
        UsageError: an unsupported URL.
    """
    return ObjectTarget(open_store(url), str(lake.resolve()), chunks, None)


class ObjectTarget:
    """A publishing destination in object storage for the lake named `lake` whose chunk files `chunks` holds
    (a remote lake's cache: `source` is then the lake's store, whose chunk objects the metadata names; None:
    a local lake, whose chunks the destination copies)."""

    def __init__(self, store: ObjectStore, lake: str, chunks: FileChunkStore, source: ObjectStore | None) -> None:
        self._store = store
        self._lake = lake
        self._chunks = chunks
        self._source = source

    @property
    def name(self) -> str:
        return self._store.url

    @property
    def lake(self) -> str:
        return self._lake

    def uri(self, rel: str) -> str:
        return f"{self._store.url}/{rel}"

    def rel(self, uri: str) -> str:
        base = self._store.url + "/"
        if not uri.startswith(base):
            raise CorruptionError(f"Iceberg metadata at {self._store.url} names {uri}, which is not under it; "
                                  "publish again to a new destination")
        return uri[len(base):]

    def read(self, rel: str) -> bytes | None:
        return self._store.get(rel)

    def write(self, rel: str, data: bytes, *, exclusive: bool = False) -> int:
        if not exclusive:
            self._store.put(rel, data)
        elif not self._store.put_new(rel, data):
            raise ConflictError(f"{self.uri(rel)} was written by another publisher meanwhile; publish again")
        return len(data)

    def files(self, folder: str) -> list[str]:
        return sorted(info.key for info in self._store.list(folder.rstrip("/") + "/"))

    def delete(self, rel: str) -> None:
        self._store.delete(rel)

    def tables(self) -> list[str]:
        return sorted({info.key.partition("/")[0] for info in self._store.list("") if "/" in info.key})

    def remove(self, folder: str) -> None:
        for rel in self.files(folder):
            self._store.delete(rel)

    def exists(self) -> bool:
        return next(iter(self._store.list("")), None) is not None

    def chunk_uri(self, chunk: ChunkId, table: str, *, inline: bool = False) -> str:
        if inline or self._source is None:  # the destination owns its copies: rebuilt and unpublished with its tables
            return self.uri((ICEBERG_INLINE_COPY if inline else ICEBERG_CHUNK_COPY).format(table=table, chunk=chunk))
        return f"{self._source.url}/{chunk_key(chunk)}"

    def owns(self, uri: str) -> bool:
        return uri.startswith(self._store.url + "/")

    def prepare_chunk(self, uri: str, chunk: ChunkId) -> int:
        if self._source is not None and not self.owns(uri):
            size = self._source.size(chunk_key(chunk))
            if size is None:
                raise ConflictError(f"chunk {chunk} of {self._lake} is gone (gc or an erasure removed it "
                                    "meanwhile); publish again")
            return size
        size = self._store.size(self.rel(uri))
        if size is None:
            data = self._chunks.get(chunk, verify=False)
            self._store.put(self.rel(uri), data)
            size = len(data)
        return size
