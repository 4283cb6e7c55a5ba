"""Publishing a remote lake's tables as Iceberg tables in object storage (`udr.publish.target.Target`).

`ObjectTarget` is a destination prefix (any URL the lake's credentials reach, usually in the lake's own bucket)
whose data files are the remote lake's chunk objects, named by URL: zero copy, as a local publish is. Every
file is one whole-object put, and a metadata version is created only if absent (the object store's
conditional put), so two publishers cannot both write version N. A Parquet copy of inline rows is made in
the cache's chunk store and uploaded as `<table>/data/inline-<chunk id>.parquet` of the destination before any
metadata names it: the destination owns it, so the lake's `gc` never needs to know of it, a rebuild after an
erasure deletes the copies of replaced rows, and unpublishing removes them. Safe across threads (obstore's
stores are).
"""

from __future__ import annotations

from udr.errors import ConflictError, CorruptionError, UsageError
from udr.log.chunks import FileChunkStore
from udr.log.format import ChunkId
from udr.remote.mirror import Mirror, chunk_key
from udr.remote.store import ObjectStore, open_store


def object_target(mirror: Mirror, chunks: FileChunkStore, url: str) -> ObjectTarget:
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
    return ObjectTarget(store, mirror.store, chunks)


class ObjectTarget:
    """A publishing destination in object storage for the remote lake in `lake`, whose cache holds `chunks`."""

    def __init__(self, store: ObjectStore, lake: ObjectStore, chunks: FileChunkStore) -> None:
        self._store = store
        self._lake = lake
        self._chunks = chunks

    @property
    def name(self) -> str:
        return self._store.url

    @property
    def lake(self) -> str:
        return self._lake.url

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

    def chunk_uri(self, chunk: ChunkId, table: str | None = None) -> str:
        if table is not None:  # the destination owns its copies: rebuilt and unpublished with its tables
            return self.uri(f"{table}/data/inline-{chunk}.parquet")
        return f"{self._lake.url}/{chunk_key(chunk)}"

    def owns(self, uri: str) -> bool:
        return uri.startswith(self._store.url + "/")

    def prepare_chunk(self, uri: str, chunk: ChunkId) -> int:
        store, key = (self._store, self.rel(uri)) if self.owns(uri) else (self._lake, chunk_key(chunk))
        size = store.size(key)
        if size is None:
            if not self.owns(uri):
                raise ConflictError(f"chunk {chunk} of {self._lake.url} is gone (gc or an erasure removed it "
                                    "meanwhile); publish again")
            data = self._chunks.get(chunk, verify=False)
            store.put(key, data)
            size = len(data)
        return size
