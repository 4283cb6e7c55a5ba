"""A lake in object storage as the rest of udr sees it: where its chunk objects are (`chunk_key`).

Low in `udr/remote` so the modules that name a remote lake's objects (`udr.remote.publishing`) need not import
the cache that replays it (`udr.remote.mirror`). Pure: safe from any thread.
"""

from __future__ import annotations

from udr.log.format import REMOTE_CHUNK_PREFIX, ChunkId


def chunk_key(chunk: ChunkId) -> str:
    """The object key of a chunk file."""
    return f"{REMOTE_CHUNK_PREFIX}{chunk}"
