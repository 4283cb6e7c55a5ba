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

    Named branches send only the commits they need: those reachable from their heads that `remote` lacks.
    Commit ids hash their log position, so those must be the commits right after `remote`'s last one.

    Returns:
        The number of commits sent (0: `remote` was up to date).

    Raises:
        ConflictError: a branch would not fast-forward (pull first); `remote` has commits `lake` lacks and no
            branch is named; or the named branches' commits cannot take their seqs in `remote` (the message
            names the commit in the way: send its branch too) or would leave an erasure behind.
        LakeNotFound: no lake at `lake` or `remote` (clone it first).
        StorageError: object storage failed; nothing changed.
    """
    return transfer(lake, remote, branches=branches, options=storage_options)


def pull(lake: str | os.PathLike[str], remote: str | os.PathLike[str], branches: Sequence[str] | None = None, *,
         storage_options: Mapping[str, str] | None = None) -> int:
    """Fetch `remote`'s new commits into `lake` and fast-forward its `branches` (default: every branch and tag).

    Named branches fetch only the commits they need, on the terms of `push`.

    Returns:
        The number of commits received (0: `lake` was up to date).

    Raises:
        ConflictError: a branch would not fast-forward; `lake` has commits `remote` lacks and no branch is
            named; or the named branches' commits cannot take their seqs in `lake` or would leave an erasure
            behind (see `push`).
        LakeNotFound: no lake at `lake` or `remote`.
        StorageError: object storage failed; nothing changed.
    """
    return transfer(remote, lake, branches=branches, options=storage_options)
