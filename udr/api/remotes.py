"""Moving commits between lakes like git remotes: `udr.clone`, `udr.push`, `udr.pull` (see docs/remote.md).

Each takes locations (a lake directory or a URL such as `s3://bucket/prefix`), not open handles, and is
all-or-nothing on the receiving side.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from udr.remote.transfer import transfer


def clone(src: str | os.PathLike[str], dest: str | os.PathLike[str], *,
          storage_options: Mapping[str, str] | None = None) -> int:
    """Copy the lake at `src` to `dest`, which must hold no lake yet: the same commits (same ids), refs and chunks.

    Args:
        src: a lake directory or the URL of a lake in object storage.
        dest: a new lake directory or URL.
        storage_options: obstore options for the URLs (see `udr.open`).

    Returns:
        The number of commits copied.

    Raises:
        LakeNotFound: no lake at `src`.
        UsageError: `dest` already holds a lake, or is a non-empty directory.
        StorageError: object storage failed; nothing was created.
    """
    return transfer(src, dest, options=storage_options, create=True)


def push(lake: str | os.PathLike[str], remote: str | os.PathLike[str], branches: Sequence[str] | None = None, *,
         storage_options: Mapping[str, str] | None = None) -> int:
    """Send `lake`'s new commits to `remote` and fast-forward its `branches` (default: every branch and tag).

    Returns:
        The number of commits sent (0: `remote` was up to date).

    Raises:
        ConflictError: `remote` has commits `lake` lacks, or a branch would not fast-forward; pull first.
        LakeNotFound: no lake at `lake` or `remote` (clone it first).
        StorageError: object storage failed; nothing changed.
    """
    return transfer(lake, remote, branches=branches, options=storage_options)


def pull(lake: str | os.PathLike[str], remote: str | os.PathLike[str], branches: Sequence[str] | None = None, *,
         storage_options: Mapping[str, str] | None = None) -> int:
    """Fetch `remote`'s new commits into `lake` and fast-forward its `branches` (default: every branch and tag).

    Returns:
        The number of commits received (0: `lake` was up to date).

    Raises:
        ConflictError: `lake` has commits `remote` lacks, or a branch would not fast-forward.
        LakeNotFound: no lake at `lake` or `remote`.
        StorageError: object storage failed; nothing changed.
    """
    return transfer(remote, lake, branches=branches, options=storage_options)
