"""Three-way merges of table states, staged through the write engine, and the commits made of them: a merge
(`three_way`), the re-application of one commit that cherry-pick and replay take (`reapplier`), and a revert.
The rules are the ones a merge, a rebase (`udr.api.committing.restage`), a revert, a cherry-pick and a replay
share.

A table changed on one side only is taken whole from that side (zero-copy: its chunks are reused). A keyed
table changed on both sides merges row by row and cell by cell (`udr.materialize.merge.merge_rows`); a table
without a primary key merges as a multiset of whole rows (`udr.materialize.multiset`); any other change on both
sides (a schema change on both, a re-created table, a changed key) conflicts as a whole, unless a strategy
("ours" or "theirs") decides.

A revert of commit K on branch B is the replay of B's history without K, done in memory: K's tables start as they
were before K (at its first parent), every later commit on B's first-parent chain that changed one of them is re-
applied on top cell by cell by the merge's rules, and what differs between the result and the head is committed as
one revert commit (for keyed tables only the differing rows, over the head's chunks). So a revert agrees with
`replay(..., skip=(K,))` wherever both succeed, also when a later commit set a cell back to a value K replaced (a
three-way merge of K's parent over K into the head cannot tell that from a cell nobody touched). A commit reached
only through a merge's second parent has no such chain; it is reverted by that three-way merge, as git does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc

from udr.api import history, writes
from udr.api.context import LakeContext
from udr.api.handle import Handle, Intent
from udr.api.replay import Reapply
from udr.errors import Conflict, ConflictError, MergeConflict, RefNotFound, UsageError
from udr.log import graph
from udr.log.commits import CommitRecord
from udr.log.format import CommitId
from udr.log.refspec import Ref
from udr.materialize.merge import merge_rows
from udr.materialize.multiset import merge_multiset
from udr.materialize.schemas import rename_by_id
from udr.materialize.staging import Staging
from udr.materialize.states import TableState
from udr.query.changefeed import CHANGE
from udr.values import Commit

Apply = Callable[[], None]


def plan_table_merge(ctx: LakeContext, staging: Staging, table: str, base: TableState | None, ours: TableState | None,
                 theirs: TableState | None, strategy: str | None, conflicts: list[Conflict]) -> Apply | None:
    """Plan the merge of one table into `staging` (whose state of it is `ours`): record conflicts, return the
    staging step (run only if none). Rows are read through `staging`, so `ours` may be a staged state."""
    if theirs in (ours, base):
        return None
    if ours == base:
        return lambda: staging.replace_table(table, theirs)

    def whole(reason: str) -> Apply | None:
        if strategy == "theirs":
            return lambda: staging.replace_table(table, theirs)
        if strategy != "ours":
            conflicts.append(Conflict(table, None, None, reason, "changed", "changed"))
        return None

    if base is None or ours is None or theirs is None:
        return whole("created or dropped on one side and changed on the other")
    # A side whose rows did not change (it only compacted, say) counts as unchanged.
    other = history.paired(ctx, table, base, theirs, staging.rows)
    if other.num_rows == 0 and theirs.schema == base.schema:
        return None
    mine = history.paired(ctx, table, base, ours, staging.rows)
    if mine.num_rows == 0 and ours.schema == base.schema:
        return lambda: staging.replace_table(table, theirs)
    if ours.schema != theirs.schema and base.schema not in (ours.schema, theirs.schema):
        return whole("schema changed on both sides")
    key = ours.primary_key
    if key is None and theirs.primary_key is None and base.primary_key is None:
        if not base.schema == ours.schema == theirs.schema:
            return whole("table without a primary key changed on both sides, with a schema change")
        found: list[Conflict] = []
        plan = _merge_multiset(ctx, staging, table, base, ours, theirs, found)
        if found:
            return whole(f"row {found[0].key} removed by both sides more often than the base held it "
                         f"({found[0].base} cop{'y' if found[0].base == 1 else 'ies'})")
        return plan
    if key is None or key != theirs.primary_key:
        return whole("primary key changed on one side")
    schema = ctx.rows.schema(theirs.schema if ours.schema == base.schema else ours.schema)
    # Change rows carry each side's column names: a column renamed on one side is matched by its id.
    mine = rename_by_id(mine, ctx.rows.schema(ours.schema), schema)
    other = rename_by_id(other, ctx.rows.schema(theirs.schema), schema)
    result = merge_rows(table, schema, key, mine, other, strategy=strategy)
    conflicts.extend(result.conflicts)

    def apply() -> None:
        if schema != ctx.rows.schema(ours.schema):
            # The side that changed the schema (added, dropped or widened columns) gives the merged one.
            staging.stage_schema(table, schema)
        if result.remove.num_rows:
            writes.delete_keys(ctx, staging, table, result.remove, counted=None)
        if result.add.num_rows:
            staging.add_rows(table, schema, iter(result.add.to_batches()), counted="inserted")

    return apply


def _merge_multiset(ctx: LakeContext, staging: Staging, table: str, base: TableState, ours: TableState,
                    theirs: TableState, conflicts: list[Conflict]) -> Apply | None:
    """Plan the 3-way merge of a table without a primary key as multisets of whole rows."""
    placed = staging.rows.table(table, ours, with_position=True)
    columns = [c for c in placed.column_names if not c.startswith("__")]
    result = merge_multiset(staging.rows.table(table, base), placed.select(columns),
                            staging.rows.table(table, theirs), table=table)
    conflicts.extend(result.conflicts)
    schema = ctx.rows.schema(ours.schema)

    def apply() -> None:
        if len(result.remove_positions_in_ours):
            hits = placed.select(["__frag", "__pos"]).take(result.remove_positions_in_ours)
            staging.delete_positions(table, staging.require(table), hits, counted="deleted")
        if result.add.num_rows:
            staging.add_rows(table, schema, iter(result.add.to_batches()), counted="inserted")

    return apply


def check_strategy(strategy: str | None) -> None:
    """Raise `UsageError` unless `strategy` is None, "ours" or "theirs"."""
    if strategy not in (None, "ours", "theirs"):
        raise UsageError(f"strategy must be 'ours' or 'theirs', not {strategy!r}")


def stage_three_way(handle: Handle, *, branch: str, base: CommitId, ours: CommitId, theirs: CommitId,
                    strategy: str | None, tables: AbstractSet[str] | None = None) -> Staging:
    """Stage the three-way merge of `theirs` into `ours` (from `base`) over branch `branch`'s head, which must be
    `ours` (only of `tables`, None: every table); the caller commits or releases the staging.

    Raises:
        MergeConflict: conflicting changes (and no `strategy`); nothing is staged.
        ConflictError: `branch` moved from `ours` (retryable).
        Expired: a table the merge must read has expired at one of the three versions.
    """
    check_strategy(strategy)
    ctx = handle.ctx
    snaps = [ctx.materializer.snapshot(c) for c in (base, ours, theirs)]
    for table in set().union(*snaps):
        if not snaps[0].get(table) == snaps[1].get(table) == snaps[2].get(table):
            for commit in (base, ours, theirs):  # the merge reads this table's rows at all three
                ctx.check_readable(commit, (table,))
    head = handle.head(branch)
    if head != ours:
        raise ConflictError(f"branch {branch!r} moved from {ours[:7]} to {head[:7]} during the merge; merge again")
    staging = Staging(ctx.log, ctx.rows, ours, snaps[1], branch=branch)
    conflicts: list[Conflict] = []
    try:
        # Plan every table before staging any: a conflict anywhere must leave no chunk written.
        plans = [plan_table_merge(ctx, staging, table, snaps[0].get(table), snaps[1].get(table), snaps[2].get(table),
                                  strategy, conflicts)
                 for table in sorted(set().union(*snaps)) if tables is None or table in tables]
        if conflicts:
            raise MergeConflict(
                f"{len(conflicts)} conflict(s) merging {theirs[:10]} into {branch!r}: "
                + "; ".join(describe_conflict(c) for c in conflicts[:5])
                + ("; ..." if len(conflicts) > 5 else "")
                + ". Resolve them, or pass strategy='ours' or 'theirs'",
                conflicts,
            )
        for plan in plans:
            if plan is not None:
                plan()
        for table in list(staging.ops):
            counts = history.count_changes(ctx, table, snaps[1].get(table), staging.state(table), staging.rows)
            staging.recount(table, counts.inserted, counts.updated, counts.deleted)
    except BaseException:
        staging.release()
        raise
    return staging


def describe_conflict(c: Conflict) -> str:
    """One conflict in words, for error messages."""
    where = f"table {c.table!r}"
    if c.key is not None:
        where += f" key {c.key}"
    if c.column is not None:
        where += f" column {c.column!r}: base {c.base!r}, ours {c.ours!r}, theirs {c.theirs!r}"
    elif c.key is not None:
        where += " deleted on one side and changed on the other"
    else:
        where += f": {c.base}"
    return where


def three_way(handle: Handle, *, branch: str, base: CommitId, ours: CommitId, theirs: CommitId,
              parents: tuple[CommitId, ...], message: str, author: str, strategy: str | None,
              metadata: Mapping[str, str] | None = None, tables: AbstractSet[str] | None = None,
              action: str | None = None, mover: str | None = None) -> Commit:
    """Commit the merge of `theirs` into `ours` (from `base`) on `branch` (only of `tables`, None: every
    table; see `udr.api.merging`). The commit moves the branch in the ref log for `action`, by default "merge"
    for a merge commit (two `parents`), else "revert".

    Raises:
        MergeConflict: conflicting changes (and no `strategy`); nothing is written.
        ConflictError: `branch` moved from `ours` (retryable); nothing is written.
        Expired: a table the merge must read has expired at one of the three versions.
    """
    staging = stage_three_way(handle, branch=branch, base=base, ours=ours, theirs=theirs, strategy=strategy,
                             tables=tables)
    intent = Intent(branch, message, author, dict(metadata or {}), parents=parents,
                    action=action or ("merge" if parents else "revert"), mover=mover)
    return handle.commit(staging, intent)


class _Reapplier:
    """`udr.api.replay.Reapply` for a lake: each re-applied change is a `three_way` merge into the branch's head,
    with no second parent, moving the branch in the ref log for `action`, by `mover`."""

    def __init__(self, handle: Handle, action: str, mover: str) -> None:
        self._handle, self._action, self._mover = handle, action, mover

    def __call__(self, branch: str, base: CommitId, theirs: CommitId, message: str, author: str,
                 metadata: Mapping[str, str], tables: AbstractSet[str] | None) -> Commit:
        """See `udr.api.replay.Reapply`."""
        return three_way(self._handle, branch=branch, base=base, ours=self._handle.head(branch), theirs=theirs,
                         parents=(), message=message, author=author, strategy=None, metadata=metadata,
                         tables=tables, action=self._action, mover=self._mover)

    def note(self, branch: str, message: str, metadata: Mapping[str, str]) -> Commit:
        """See `udr.api.replay.Reapply`."""
        handle = self._handle
        head = handle.head(branch)
        staging = Staging(handle.ctx.log, handle.ctx.rows, head, handle.ctx.materializer.snapshot(head), branch=branch)
        intent = Intent(branch, message, self._mover, dict(metadata), parents=(head,), action=self._action,
                        mover=self._mover)
        return handle.commit(staging, intent)


def reapplier(handle: Handle, action: str, mover: str) -> Reapply:
    """How `udr.api.replay` commits re-applied changes and notes on a branch of the lake (see `_Reapplier`)."""
    return _Reapplier(handle, action, mover)


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
        staging = stage_three_way(handle, branch=branch, base=target, ours=head, theirs=record.parents[0],
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
            plan = plan_table_merge(ctx, staging, table, snapshot(later_record.parents[0]).get(table),
                                             staging.state(table), snapshot(cid).get(table), None, conflicts)
            if conflicts:
                raise MergeConflict(
                    f"reverting {target[:10]}: commit {cid[:10]} ({later_record.message!r}) does not apply without "
                    "it: " + "; ".join(describe_conflict(c) for c in conflicts[:5]),
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
        counted = {kind: int(pc.sum(pc.equal(kinds, kind)).as_py() or 0)
                   for kind in ("insert", "update_after", "delete")}
        if table in staging.ops:
            staging.recount(table, counted["insert"], counted["update_after"], counted["delete"])
