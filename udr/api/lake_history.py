"""`Lake`'s methods for the investigator: the log and its search, the ref log, audits, row-level changes,
row histories, diffs and blame."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from udr.api import blame, history, lineage, retention
from udr.api.audit import audit_report
from udr.api.handle import Handle
from udr.api.logsearch import log_window, ref_log, search_log
from udr.log.refspec import Ref
from udr.values import AuditReport, Commit, RefMove, TableChange


class HistoryMethods:
    """Part of `udr.Lake` (see there)."""

    _handle: Handle

    def log(self, branch: str = "main", table: str | None = None, limit: int | None = None, *,
            author: str | None = None, since: Ref = None, until: Ref = None, grep: str | None = None,
            metadata: Mapping[str, str] | None = None) -> list[Commit]:
        """Every commit reachable from `branch`'s head, newest first, that passes each filter given: see
        `udr.api.logsearch.search_log` (`since`/`until`: refs, datetimes or ISO-8601 times).

        Raises:
            RefNotFound, UsageError: no such branch, a bound naming nothing, or a malformed time.
        """
        return search_log(self._handle.ctx.log, self._handle.head(branch), table=table, author=author, grep=grep,
                          span=log_window(self._handle.ctx.log, since, until, branch), metadata=metadata, limit=limit)

    def reflog(self, name: str | None = None) -> list[RefMove]:
        """Every recorded move of branch or tag `name` (None: of every ref), newest first: who, when, from, to, why.

        Raises:
            RefNotFound: `name` is no branch or tag and never was one.
        """
        return ref_log(self._handle.ctx.log, name)

    def audit(self, since: Ref = None, until: Ref = None, *, table: str | None = None) -> AuditReport:
        """The commits, ref moves and hash-chain check between `since` and `until`; see `udr.api.audit`.

        Raises:
            RefNotFound, UsageError: a bound names nothing, or is a malformed time.
        """
        return audit_report(self._handle.ctx.log, since, until, table=table, live=retention.kept_data(self._handle.ctx))

    # -- row-level history -----------------------------------------------------------------------------

    def changes(self, table: str, since: Ref = None, until: Ref = None, branch: str = "main", *,
                limit: int | None = None) -> pa.Table:
        """Every row-level change to `table` by the commits after `since` up to and including `until`.

        Returns the table's columns plus `_change` (`insert`, `update_before`, `update_after`, `delete`),
        `_commit_id`, `_commit_seq` and `_commit_time`, in commit order. Updates of keyed tables come as
        `update_before` + `update_after` pairs; compactions change nothing. `since=None` starts at the
        beginning of the lake; `until=None` is the head of `branch`; `limit`: only the first `limit` rows.

        Raises:
            TableNotFound, RefNotFound, UsageError: no such table or ref; a negative `limit`.
        """
        start = self._handle.resolve(since, branch) if since is not None else None
        return history.changes(self._handle.ctx, table, start, self._handle.resolve(until, branch), limit=limit)

    def history(self, table: str, key: Mapping[str, object], branch: str = "main") -> pa.Table:
        """Every version of one row (by primary key) through every parent, oldest first, with `_change`,
        `_commit_id`, `_commit_time`, `_author`, `_message` and `_metadata` (see `udr.api.lineage`).

        Raises:
            TableNotFound, RefNotFound, UsageError: no such table or ref; key columns do not match the table's key.
        """
        return lineage.row_history(self._handle.ctx, table, dict(key), self._handle.head(branch))

    def diff(self, table: str, a: Ref, b: Ref = None, *, branch: str = "main") -> pa.Table:
        """The net row changes to `table` from ref `a` to ref `b` (same columns as `changes`).

        Raises:
            TableNotFound, RefNotFound: no such table, or no such ref.
        """
        return history.diff(self._handle.ctx, table, self._handle.resolve(a, branch), self._handle.resolve(b, branch))

    def diff_summary(self, a: Ref, b: Ref = None, *, branch: str = "main") -> dict[str, TableChange]:
        """Per changed table, the net rows inserted, updated and deleted from ref `a` to ref `b`."""
        return history.diff_summary(self._handle.ctx, self._handle.resolve(a, branch), self._handle.resolve(b, branch))

    def blame(self, table: str, key: Mapping[str, object] | None = None, branch: str = "main") -> pa.Table:
        """Who last set each cell of keyed `table` (or row `key`): `<col>__commit`, `<col>__author`, `<col>__time`.

        Raises:
            TableNotFound, RefNotFound, UsageError: no such table or ref; no primary key, or `key` does not match it.
        """
        return blame.blame(self._handle.ctx, table, key, self._handle.head(branch))
