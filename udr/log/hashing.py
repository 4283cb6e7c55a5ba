"""Content ids: the BLAKE3 hex digests that name chunks and blobs (`docs/FORMAT.md`, "Identifiers").

One pure function, low in `udr/log` so every module that names stored bytes hashes them the same way
without importing the commit records. Safe from any thread.
"""

from __future__ import annotations

import blake3


def content_id(data: bytes) -> str:
    """Return the BLAKE3 hex digest used to name chunks and blobs."""
    return str(blake3.blake3(data, max_threads=blake3.blake3.AUTO if len(data) > 1 << 20 else 1).hexdigest())
