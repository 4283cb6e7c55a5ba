"""`udr.open`: a local lake directory, or a lake in object storage through its local cache.

Opening touches nothing before the arguments are checked; see docs/remote.md for object storage.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from udr.api.lake import Lake
from udr.remote.mirror import open_mirror

# "s3://bucket/x", "file:///tmp/x", "https://...": a scheme, then "://".
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def open(path: str | os.PathLike[str] = "lake", *, create: bool = True, cache: str | os.PathLike[str] | None = None,
         storage_options: Mapping[str, str] | None = None) -> Lake:
    """Open the lake at `path`, creating an empty one (with a root commit on `main`) if it is missing.

    Args:
        path: a local directory, or the URL of a lake in object storage (`s3://bucket/prefix`, `gs://...`,
            `az://...`; see docs/remote.md).
        create: whether a missing lake is created; False raises `LakeNotFound` instead.
        cache: for a URL, the local directory that caches the remote lake (default
            `~/.cache/udr/<hash of the URL>`); it may be deleted at any time and is rebuilt from the remote lake.
        storage_options: for a URL, obstore options ("endpoint", "access_key_id", "region", "allow_http", ...)
            overriding the usual environment variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...).

    Raises:
        UsageError: an unsupported URL scheme or storage option, or `cache` is a local lake; nothing was touched.
        LakeNotFound: no lake at `path` (or no such bucket) and `create` is False.
        FormatError: `path` is not a lake, or was written by a newer version of udr.
        StorageError: object storage failed (no credentials, access denied, network); `retryable` when it may pass.
    """
    if isinstance(path, str) and _URL.match(path):
        mirror = open_mirror(path, cache=cache, options=storage_options, create=create)
        return Lake(mirror.root, create=False, remote=mirror)
    return Lake(Path(path), create=create)
