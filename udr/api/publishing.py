"""Iceberg publishing, for the facade: which destination a `dest` names, publishing, unpublishing, and
bringing every recorded destination up to date after an erasure.

A local lake publishes into a directory, naming its chunk files; a lake in object storage publishes into object
storage (a URL, usually under the lake's own prefix), naming its chunk objects. Across kinds (a local lake into
object storage, a remote lake into a directory) the destination keeps a copy of each data file. The
destinations are recorded in the lake's `publications` sub-database by `udr.publish.iceberg`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from udr.api.handle import Handle
from udr.errors import UdrError
from udr.log.format import CommitId
from udr.log.publications import PublicationStore
from udr.publish import iceberg
from udr.publish.target import LocalTarget, Target
from udr.remote.publishing import copying_target, object_target
from udr.remote.store import is_url


def target(handle: Handle, dest: str | os.PathLike[str]) -> Target:
    """The destination `dest` names for this lake.

    Raises:
        UsageError: a bad URL, or one inside a remote lake's own storage.
    """
    text = os.fspath(dest)
    remote, chunks = handle.remote, handle.ctx.log.chunks
    if is_url(text):
        if remote is None:
            return copying_target(text, handle.ctx.path, chunks)
        return object_target(remote, chunks, text)
    if remote is not None:
        return LocalTarget(Path(text), remote.url, chunks, copy=True)
    return LocalTarget(Path(text), str(handle.ctx.path.resolve()), chunks)


def publish(handle: Handle, dest: str | os.PathLike[str], tables: Sequence[str] | None,
            branch: str) -> iceberg.PublishReport:
    """Publish `tables` of `branch` at `dest` (see `Lake.publish_iceberg`)."""
    ctx = handle.ctx
    return iceberg.publish_iceberg(ctx.log, ctx.materializer, ctx.rows, target(handle, dest), tables, branch)


def unpublish(handle: Handle, dest: str | os.PathLike[str]) -> list[str]:
    """Delete the tables this lake published at `dest`; return their names."""
    return iceberg.unpublish_iceberg(handle.ctx.log, target(handle, dest))


def published_commits(handle: Handle) -> dict[CommitId, str]:
    """Every commit a snapshot of a table this lake published reads (see `iceberg.published_commits`)."""
    return iceberg.published_commits(handle.ctx.log, lambda dest: target(handle, dest))


def republish_all(handle: Handle) -> None:
    """Publish every recorded destination again (after an erasure: their files must drop the erased rows);
    a destination deleted by hand is forgotten, a failure only warns."""
    ctx = handle.ctx
    publications = PublicationStore(ctx.log)
    for publication in publications.all():
        try:
            dest = target(handle, publication.dest)
            if not dest.exists():  # deleted by hand: nothing left to bring up to date
                publications.remove(publication.dest)
                continue
            for published, names in publication.branches.items():
                iceberg.publish_iceberg(ctx.log, ctx.materializer, ctx.rows, dest,
                                        list(names) if names is not None else None, published)
        except (UdrError, OSError) as exc:
            warnings.warn(f"udr: the erasure is committed, but republishing {publication.dest} failed ({exc}); its "
                          f"files still hold the erased rows: run publish_iceberg({publication.dest!r}) again "
                          "before gc", RuntimeWarning, stacklevel=3)
