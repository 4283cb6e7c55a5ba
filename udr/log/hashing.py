"""Content ids: the BLAKE3 hex digests that name chunks and blobs (`docs/FORMAT.md`, "Identifiers").

One pure function, low in `udr/log` so every module that names stored bytes hashes them the same way
without importing the commit records. Safe from any thread.
"""

from __future__ import annotations

from collections.abc import Iterable

import blake3


def content_id(data: bytes) -> str:
    """Return the BLAKE3 hex digest used to name chunks and blobs."""
    if len(data) > 1 << 20:
        return str(blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest())
    return str(blake3.blake3(data).hexdigest())  # one thread, the default (passing it costs a small blob ~10%)


def key_hashes(keys: Iterable[bytes]) -> tuple[int, ...]:
    """The sorted distinct 64-bit hashes (the first 8 bytes of BLAKE3, big-endian) of a keyed write's keys, each
    given as its canonical bytes (`udr.materialize.keyhashes`): two writes whose hashes are disjoint touch
    disjoint keys (equal hashes of different keys only cost a needless re-application)."""
    return tuple(sorted({int.from_bytes(blake3.blake3(key).digest(8), "big") for key in keys}))
