"""`Lake`'s maintenance methods: verification, rebuild, garbage collection, retention and holds, erasure,
Iceberg publishing and statistics."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from udr.api import erasure, publishing, remote_upkeep, retention
from udr.api.handle import Handle
from udr.api.inputs import TableData
from udr.api.maintenance import stats
from udr.log.refspec import Ref
from udr.publish import iceberg
from udr.values import (
    Commit,
    ExpireReport,
    Hold,
    LakeStats,
    RetentionPolicy,
    VerifyReport,
)

Progress = Callable[[int, int], None]


class MaintenanceMethods:
    """Part of `udr.Lake` (see there)."""

    _handle: Handle

    # -- maintenance --------------------------------------------------------------------------------

    def verify(self, progress: Progress | None = None) -> VerifyReport:
        """Check every commit's hash and chain links and every referenced chunk and blob."""
        return retention.verify(self._handle.ctx, progress)

    def rebuild(self, progress: Progress | None = None) -> int:
        """Discard all derived state and rebuild it by replaying the log; return commits replayed."""
        return self._handle.ctx.materializer.rebuild(progress)

    def gc(self, progress: Callable[[int], None] | None = None) -> int:
        """Delete chunks no commit in the log references (after `expire`: that no kept version needs, and
        their inline rows in the log); return bytes freed. In object storage, chunks no commit references are
        deleted only once older than an hour (a concurrent writer may be about to commit them), except those an
        erasure replaced, and log entries are rewritten without the blobs erasures replaced (docs/remote.md)."""
        return remote_upkeep.collect_garbage(self._handle, progress)

    def set_retention(self, keep_days: float | None = None, keep_commits: int | None = None, *,
                      table: str | None = None) -> RetentionPolicy:
        """Keep old versions' data `keep_days` days or the newest `keep_commits` per branch (see
        `udr.RetentionPolicy`), lake-wide or for one `table`; both None removes the policy. `expire` applies it.

        Raises:
            UsageError, InvalidName: a bad policy value, or a bad table name.
        """
        return retention.set_retention(self._handle.ctx, keep_days, keep_commits, table)

    def retention(self) -> list[RetentionPolicy]:
        """Every retention policy, the lake's first."""
        return retention.policies(self._handle.ctx)

    def expire(self, now: datetime | None = None) -> ExpireReport:
        """Expire the data of versions outside the retention window, except branch heads, tags, holds, what
        consumer groups still need and what published Iceberg tables read (until unpublished); `gc` then frees
        it. Reading it later raises `udr.Expired`."""
        return retention.expire(self._handle.ctx, now, lambda: publishing.published_commits(self._handle))

    def hold(self, name: str, ref: Ref, reason: str, *, author: str | None = None) -> Hold:
        """Keep the version `ref` names from expiring until `release(name)`.

        Raises:
            InvalidName, RefNotFound, UsageError, Expired: a bad name; no such ref; the hold exists; too late.
        """
        return retention.hold(self._handle.ctx, name, self._handle.resolve(ref, "main"), reason,
                              self._handle.author(author))

    def release(self, name: str) -> None:
        """Remove hold `name` (its version may expire at the next `expire`).

        Raises:
            InvalidName, RefNotFound: a bad name, or no such hold.
        """
        retention.release(self._handle.ctx, name)

    def holds(self) -> list[Hold]:
        """Every hold, by name."""
        return retention.holds(self._handle.ctx)

    def erase(self, table: str, keys: TableData, *, reason: str, branch: str | None = None,
              author: str | None = None) -> Commit:
        """Remove the rows with primary key in `keys` from every version of `table` in the lake's history, in an
        erasure commit on `branch` (default main) recording who, when, why and a hash of each key; `gc` then
        deletes the old bytes. See `udr.api.erasure`. Every Iceberg destination this lake published to is then
        published again, its history rebuilt without the erased rows (a failure there only warns: publish again).

        Raises:
            TableNotFound, KeyViolation, UsageError, ConflictError: no such table; no primary key; bad keys; retry.
        """
        ctx = self._handle.ctx
        commit = erasure.erase(ctx, table, keys, reason=reason, branch=branch or "main",
                               author=self._handle.author(author))
        self._handle.changes.committed(commit)
        publishing.republish_all(self._handle)
        return commit

    def publish_iceberg(self, dest: str | os.PathLike[str], tables: list[str] | None = None, *,
                        branch: str = "main") -> iceberg.PublishReport:
        """Publish tables as Apache Iceberg tables at `dest/<table>/` reading UDR's chunks in place (zero copy);
        incremental and idempotent. See `udr.publish.iceberg`. A lake in object storage publishes under a URL
        (such as `s3://bucket/lake/iceberg`), whose data files are the lake's chunk objects.

        Raises:
            UsageError: a URL for a local lake, or a directory for a lake in object storage.
            RefNotFound, TableNotFound, SchemaError: no such ref or table, or a column type Iceberg cannot describe.
            ConflictError: another publisher wrote `dest` meanwhile; publish again.
        """
        return publishing.publish(self._handle, dest, tables, branch)

    def unpublish_iceberg(self, dest: str | os.PathLike[str]) -> list[str]:
        """Delete the Iceberg tables this lake published at `dest` and let `gc` free what only they used;
        return the tables removed."""
        return publishing.unpublish(self._handle, dest)

    def stats(self) -> LakeStats:
        """Commits, chunks and bytes (logical vs stored) of the lake."""
        return stats(self._handle.ctx.log)
