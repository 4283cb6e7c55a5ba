"""The audit report: what the log holds in a window (commits with author, message, metadata and per-table
counts; ref moves) and whether that stretch of the hash chain verifies.

Every commit of the log is considered, including those no branch reaches any more (after a reset): an
audit must see what was hidden. Read-only; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from udr.api.logsearch import Bound, Window, log_window, ref_move
from udr.api.maintenance import verify_commits
from udr.errors import CorruptionError, RefNotFound
from udr.log.commits import commit_value
from udr.log.format import CommitId
from udr.log.protocols import LakeLog
from udr.materialize.states import LiveData
from udr.values import AuditReport


def _text(bound: Bound) -> str | None:
    if bound is None or isinstance(bound, str):
        return bound
    return bound.isoformat() if isinstance(bound, datetime) else bound.id


def _in_window(log: LakeLog, span: Window) -> list[tuple[int, CommitId]]:
    """(seq, id) of the window's commits, oldest first; a commit whose record is damaged cannot be placed
    in time, so it is kept whenever its position is within the window's positions (verification reports it)."""
    start = span.since_seq + 1 if span.since_seq is not None else 0
    found = []
    for seq, cid in log.commits_from(start):
        if span.until_seq is not None and seq > span.until_seq:
            break
        try:
            inside = span.has_commit(log.get_commit(cid))
        except (CorruptionError, RefNotFound):
            inside = True
        if inside:
            found.append((seq, cid))
    return found


def audit_report(log: LakeLog, since: Bound = None, until: Bound = None, *, table: str | None = None,
          branch: str = "main", progress: Callable[[int, int], None] | None = None,
          live: LiveData | None = None) -> AuditReport:
    """The audit report of the commits and ref moves between `since` and `until` (see `udr.api.logsearch`
    for how bounds compare; a time is looked up on `branch`), listing only commits that changed `table`
    if given, and verifying every commit in the window (with `live`, data only expired versions needed counts
    as expired, and the chunks erasures wrote in place of others are checked: see `verify_commits`).

    Raises:
        RefNotFound, UsageError: a bound names nothing, or is a malformed time.
    """
    span = log_window(log, since, until, branch)
    in_window = _in_window(log, span)
    verification = verify_commits(log, in_window, progress, live=live)
    commits = []
    for _, cid in in_window:
        try:
            record = log.get_commit(cid)
        except (CorruptionError, RefNotFound):
            continue  # damaged: listed among the verification's problems instead
        if table is None or table in record.tables:
            commits.append(commit_value(cid, record))
    moves = [ref_move(m) for m in log.ref_moves(newest_first=False) if span.has_time(m.time_us)]
    return AuditReport(since=_text(since), until=_text(until), table=table, commits=commits, ref_moves=moves,
                       verification=verification)
