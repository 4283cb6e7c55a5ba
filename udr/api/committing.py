"""The commit point: append staged changes to the log, re-applying them while the branch keeps moving.

`commit` turns a `udr.materialize.staging.Staging` into one commit: it attaches before-images, recounts
tables written more than once as net changes, appends the record (the log places it over concurrent
commits that commute, else `udr.api.rebase` re-applies the changes on the new head), then tells the
handle's caches and listeners, flushes runs of small inline writes into Parquet and merges the delta
fragments of keyed tables refreshed often (`udr.materialize.compaction`), each in a maintenance commit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from udr.api import history, rebase
from udr.api.handle import Handle
from udr.errors import ConflictError, UdrError
from udr.log.commits import CommitRecord, TableOp, commit_value
from udr.log.format import (
    MAINTENANCE_FLUSH_INLINE,
    MAINTENANCE_KEY,
    MAINTENANCE_MERGE,
    CommitId,
)
from udr.log.groups import ack_hook, write_acks
from udr.log.placement import HeadMoved
from udr.log.store import CommitHook
from udr.log.turns import flush_turn, writer_turn
from udr.materialize import compaction
from udr.materialize.snapshot import TableState, fold
from udr.materialize.staging import Staging
from udr.stream.subscription import PendingAck
from udr.values import Commit

# Re-applications on a moving head before giving up: each one means another writer committed meanwhile.
_MAX_REBASES = 64


@dataclass(frozen=True, slots=True)
class Intent:
    """What a commit records besides its table ops.

    Attributes:
        branch: the branch it moves.
        message, author, metadata: as `udr.Commit` shows them.
        parents: both parents of a merge (never re-applied on a moved head); empty: the staging's base.
        action, mover: what the ref log says moved the branch, and who (None: the author).
        maintenance: a flush or merge (it triggers no other maintenance, and its rewrites are placeable).
    """

    branch: str
    message: str
    author: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    parents: tuple[CommitId, ...] = ()
    action: str = "commit"
    mover: str | None = None
    maintenance: bool = False


def commit(handle: Handle, staging: Staging, intent: Intent, hooks: Sequence[PendingAck],
           read: set[str] | None) -> Commit:
    """Commit `staging`'s changes (and the group acks `hooks`) as `intent` says; return the new commit.

    Nothing changed and no merge: no commit is written (acks move their groups on their own) and the base
    is returned. `read`: under serializable isolation, the tables whose concurrent change conflicts.

    Raises:
        ConflictError: a real conflict with a concurrent commit; nothing was written.
    """
    hook = ack_hook([pending.ack for pending in hooks]) if hooks else None
    try:
        if not staging.ops and not intent.parents:
            if hooks:  # acks of a transaction that changed nothing: a write of their own, as `Subscription.ack`
                write_acks(handle.ctx.log, [pending.ack for pending in hooks])
            cid, final = None, None
        else:
            _settle(handle, staging)
            cid, final = _append(handle, staging, intent, hook, read)
    finally:
        staging.release()
    for pending in hooks:
        pending.done()
    if cid is None or final is None:
        return handle.commit_info(staging.base)
    return _committed(handle, staging, intent, cid, final)


def _settle(handle: Handle, staging: Staging) -> None:
    """Attach before-images still valid, and recount tables written more than once as net changes."""
    staging.settle_before_images()
    for table, count in staging.writes.items():
        op = staging.ops.get(table)
        if count < 2 or op is None or op.drop:
            continue
        if table not in staging.base_tables:
            # A table new in this transaction: every row it has is inserted, no recount needed.
            staging.recount(table, staging.require(table).rows, 0, 0)
        else:
            net = history.count_changes(handle.ctx, table, staging.base_tables.get(table), staging.state(table),
                                        staging.rows)
            staging.recount(table, net.inserted, net.updated, net.deleted)


def _append(handle: Handle, staging: Staging, intent: Intent, hook: CommitHook | None,
            read: set[str] | None) -> tuple[CommitId, CommitRecord]:
    """The commit point, re-applying the staged changes on the branch's new head while it keeps moving."""
    log = handle.ctx.log
    if staging.ids_used:
        log.upgrade_format()
    for attempt in range(_MAX_REBASES):
        with writer_turn(log.root, exclusive=attempt > 0):  # after a lost race: so it is not overtaken again
            if attempt:
                rebase.restage(handle.ctx, staging, handle.head(intent.branch), read)
            record = CommitRecord(
                parents=intent.parents or (staging.base,), seq=0, branch=intent.branch, time_us=0,
                author=intent.author, message=intent.message, metadata=dict(intent.metadata),
                tables=dict(sorted(staging.ops.items())),
            )
            try:
                return log.append(record, base=staging.base, rebase=not intent.parents, blobs=staging.blobs,
                                  hook=hook, placeable=_placeable(staging, intent.maintenance),
                                  read=frozenset(read or ()), action=intent.action, mover=intent.mover)
            except HeadMoved:
                continue
    raise ConflictError(f"branch {intent.branch!r} moved {_MAX_REBASES} times while this transaction was being "
                        "re-applied on it; retry")


def _placeable(staging: Staging, maintenance: bool) -> frozenset[str]:
    """Tables whose op the log may place over concurrent changes that touch other fragments: multiset
    tables (no primary key), and a flush of small writes (it only re-encodes the fragments it names)."""
    return frozenset(t for t, op in staging.ops.items()
                     if (maintenance and op.rewrite)
                     or (t not in staging.overwritten and _multiset(op, staging.base_tables.get(t))))


def _multiset(op: TableOp, base: TableState | None) -> bool:
    """Whether `op` leaves a table without a primary key (and does not drop it)."""
    return not op.drop and op.key_after(base.primary_key if base else None) is None


def _committed(handle: Handle, staging: Staging, intent: Intent, cid: CommitId, final: CommitRecord) -> Commit:
    """Tell the handle's caches and listeners about the new commit; flush small writes that are due."""
    ctx = handle.ctx
    for op in final.tables.values():
        for frag in op.add:
            rows = staging.inline_rows(frag.chunk)
            if rows is not None:
                ctx.rows.remember_inline(frag.chunk, rows)
        for deletes in op.deletes:
            positions = staging.vector_positions(deletes.vector) if deletes.vector is not None else None
            if deletes.vector is not None and positions is not None:
                ctx.rows.remember_vector(deletes.vector, positions)
    snapshot = fold(ctx.materializer.snapshot(final.parents[0]), final)
    ctx.materializer.remember_commit(cid, final.parents[0], snapshot)
    made = commit_value(cid, final)
    handle.changes.committed(made)
    if not intent.maintenance:
        _upkeep_after(handle, intent.branch, cid, snapshot, [t for t, op in final.tables.items() if op.add], _FLUSH)
        _upkeep_after(handle, intent.branch, cid, snapshot, sorted(staging.refreshed & set(final.tables)), _MERGE)
    return made


@dataclass(frozen=True, slots=True)
class _Upkeep:
    """One kind of maintenance commit: which tables are due, how one table is staged, what the commit says."""

    kind: str
    what: str
    due: Callable[[Mapping[str, TableState], list[str]], list[str]]
    stage: Callable[[Staging, str], None]
    kept: str


# Looked up at each call, so a test can replace the staging step.
_FLUSH = _Upkeep(MAINTENANCE_FLUSH_INLINE, "flush small writes of", compaction.flush_due,
               lambda staging, table: compaction.flush_inline(staging, table), "the data is intact and stays inlined")
_MERGE = _Upkeep(MAINTENANCE_MERGE, "merge the delta fragments of", compaction.merge_due,
               lambda staging, table: compaction.merge_fragments(staging, table),
               "the data is intact and keeps its fragments")


def _rewrite(handle: Handle, branch: str, head: CommitId, snapshot: Mapping[str, TableState], due: list[str],
             upkeep: _Upkeep) -> None:
    """Commit the tables `due` (of `snapshot`, the state at `head`) rewritten as `upkeep` says."""
    intent = Intent(branch, f"{upkeep.what} {', '.join(due)}", "udr", {MAINTENANCE_KEY: upkeep.kind},
                    maintenance=True)
    staging = Staging(handle.ctx.log, handle.ctx.rows, head, snapshot, branch=branch)
    try:
        for table in due:
            upkeep.stage(staging, table)
    except BaseException:
        staging.release()
        raise
    commit(handle, staging, intent, (), None)


def _upkeep_after(handle: Handle, branch: str, head: CommitId, snapshot: Mapping[str, TableState],
                  tables: list[str], upkeep: _Upkeep) -> None:
    """After commit `head` (whose `snapshot` the writer folded), rewrite the tables of `tables` that `upkeep`
    finds due (a flush of small inline writes, a merge of delta fragments), in a maintenance commit of its own.

    Best effort: the caller's commit is already durable, so a failure here only warns (a commit that
    raised would be retried and applied twice), and a concurrent writer's move means the next commit
    does it instead. One writer of the lake does upkeep at a time (`udr.log.turns.flush_turn`); others skip.
    """
    due = upkeep.due(snapshot, tables)
    if not due:
        return
    try:
        with flush_turn(handle.ctx.log.root) as mine:
            if not mine:
                return  # another writer is at it; should it fail, a later commit finds the tables still due
            current = handle.head(branch)
            if current != head:  # others committed since: one of them may have done it already
                head, snapshot = current, handle.ctx.materializer.snapshot(current)
                due = upkeep.due(snapshot, due)
            if due:
                _rewrite(handle, branch, head, snapshot, due, upkeep)
    except ConflictError:
        pass
    except (UdrError, OSError) as exc:
        warnings.warn(f"udr: the maintenance commit to {upkeep.what} {', '.join(due)} failed ({exc}); {upkeep.kept}",
                      RuntimeWarning, stacklevel=5)
