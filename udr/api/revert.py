"""Revert: undo one commit's changes on a branch and keep every later change.

A revert of commit K on branch B is the replay of B's history without K, done in memory: K's tables start as
they were before K (at its first parent), every later commit on B's first-parent chain that changed one of
them is re-applied on top cell by cell by the merge's rules (`udr.api.merging`), and what differs between
the result and the head is committed as one revert commit (for keyed tables only the differing rows, over
the head's chunks). So a revert agrees with `replay(..., skip=(K,))` wherever
both succeed, also when a later commit set a cell back to a value K replaced (a three-way merge of K's parent
over K into the head cannot tell that from a cell nobody touched). A commit reached only through a merge's
second parent has no such chain; it is reverted by that three-way merge, as git does.
"""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc

from udr.api import history, merging, writes
from udr.api.context import LakeContext
from udr.api.handle import Handle, Intent
from udr.errors import Conflict, MergeConflict, RefNotFound, UsageError
from udr.log import graph
from udr.log.commits import CommitRecord
from udr.log.format import CommitId
from udr.log.refspec import Ref
from udr.materialize.staging import Staging
from udr.query.changefeed import CHANGE
from udr.values import Commit


def revert(handle: Handle, ref: Ref, branch: str, author: str) -> Commit:
    """Commit on `branch` the inverse of the commit `ref` names (read on `branch`); the ref log credits `author`.

    Raises:
        RefNotFound: no such commit or branch.
        UsageError: the commit is the root commit or not in `branch`'s history.
        MergeConflict: a later commit's change does not apply without it; nothing was written.
        Expired: a version the revert must read has expired.
    """
    ctx = handle.ctx
    target = handle.resolve(ref, branch)
    record = _on_branch(handle, target, branch)
    head = handle.head(branch)
    message = f"revert {target[:10]}: {record.message}"
    try:
        later = graph.first_parent_range(ctx.log, target, head)
    except RefNotFound:
        staging = merging.stage_three_way(handle, branch=branch, base=target, ours=head, theirs=record.parents[0],
                                          strategy=None)
        return handle.commit(staging, Intent(branch, message, author, action="revert", mover=author))
    tables = sorted(record.tables)
    for commit in (record.parents[0], target, *(cid for cid, _ in later)):
        ctx.check_readable(commit, tables)
    snapshot = ctx.materializer.snapshot(head)
    replayed = Staging(ctx.log, ctx.rows, head, snapshot, branch=branch)
    staging = Staging(ctx.log, ctx.rows, head, snapshot, branch=branch)
    try:
        try:
            _replay_without(handle, replayed, target, record, later)
            _stage_difference(ctx, staging, replayed, tables)
        except BaseException:
            staging.release()
            raise
        return handle.commit(staging, Intent(branch, message, author, action="revert", mover=author))
    finally:
        replayed.release()


def _on_branch(handle: Handle, target: CommitId, branch: str) -> CommitRecord:
    """The record of `target`, which must have a parent and be in the history of `branch`."""
    record = handle.ctx.log.get_commit(target)
    if not record.parents:
        raise UsageError(f"commit {target[:10]} is the root commit: it has no changes to re-apply or revert")
    if target not in graph.ancestors(handle.ctx.log, handle.head(branch)):
        raise UsageError(f"commit {target[:10]} is not in the history of branch {branch!r}; nothing to revert")
    return record


def _replay_without(handle: Handle, staging: Staging, target: CommitId, record: CommitRecord,
                    later: list[tuple[CommitId, CommitRecord]]) -> None:
    """Stage, over the head, the tables `record` (commit `target`) changed as the `later` commits leave them
    when re-applied without it."""
    ctx = handle.ctx
    snapshot = ctx.materializer.snapshot
    touched = set(record.tables)
    for table in sorted(touched):
        staging.replace_table(table, snapshot(record.parents[0]).get(table))
    for cid, later_record in later:
        for table in sorted(touched & set(later_record.tables)):
            if later_record.tables[table].rewrite:
                continue  # a compaction or flush: no row changed
            conflicts: list[Conflict] = []
            plan = merging.plan_table_merge(ctx, staging, table, snapshot(later_record.parents[0]).get(table),
                                             staging.state(table), snapshot(cid).get(table), None, conflicts)
            if conflicts:
                raise MergeConflict(
                    f"reverting {target[:10]}: commit {cid[:10]} ({later_record.message!r}) does not apply without "
                    "it: " + "; ".join(merging.describe_conflict(c) for c in conflicts[:5]),
                    [replace(c, commit=cid) for c in conflicts])
            if plan is not None:
                plan()


def _stage_difference(ctx: LakeContext, staging: Staging, replayed: Staging, tables: list[str]) -> None:
    """Stage over the head what turns each of `tables` into its state in `replayed`. A keyed table that kept its
    schema and key gets only the rows that differ, so the head's chunks and layout stay (a compaction since the
    reverted commit is not undone); any other table takes the replayed state whole (zero-copy)."""
    for table in tables:
        head, result = staging.base_tables.get(table), replayed.state(table)
        if head == result:
            continue
        if head is None or result is None or not head.primary_key or head.primary_key != result.primary_key \
                or head.schema != result.schema:
            staging.blobs.update(replayed.blobs)  # the replayed state's inline rows, schemas and vectors
            staging.replace_table(table, result)
            counts = history.count_changes(ctx, table, head, result, replayed.rows)
            staging.recount(table, counts.inserted, counts.updated, counts.deleted)
            continue
        changes = history.paired(ctx, table, head, result, replayed.rows)
        kinds = changes.column(CHANGE)
        gone = changes.filter(pc.is_in(kinds, pa.array(["delete", "update_before"]))).select(list(head.primary_key))
        new = changes.filter(pc.is_in(kinds, pa.array(["insert", "update_after"]))).drop_columns([CHANGE])
        if gone.num_rows:
            writes.delete_keys(ctx, staging, table, gone, counted=None)
        if new.num_rows:
            staging.add_rows(table, staging.rows.schema(head.schema), iter(new.to_batches()))
        counted = {kind: int(pc.sum(pc.equal(kinds, kind)).as_py() or 0) for kind in ("insert", "update_after", "delete")}
        if table in staging.ops:
            staging.recount(table, counted["insert"], counted["update_after"], counted["delete"])
