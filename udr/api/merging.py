"""Three-way merges of table states, staged through the write engine: the rules a merge, a rebase, a revert,
a cherry-pick and a replay share.

A table changed on one side only is taken whole from that side (zero-copy: its chunks are reused). A keyed
table changed on both sides merges row by row and cell by cell (`udr.materialize.merge.merge_rows`); a table
without a primary key merges as a multiset of whole rows (`udr.materialize.multiset`); any other change on both
sides (a schema change on both, a re-created table, a changed key) conflicts as a whole, unless a strategy
("ours" or "theirs") decides.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet

from udr.api import history, writes
from udr.api.context import LakeContext
from udr.api.handle import Handle
from udr.errors import Conflict, ConflictError, MergeConflict, UsageError
from udr.log.format import CommitId
from udr.materialize.merge import merge_rows
from udr.materialize.multiset import merge_multiset
from udr.materialize.schemas import rename_by_id
from udr.materialize.staging import Staging
from udr.materialize.states import TableState

Apply = Callable[[], None]


def plan_table_merge(ctx: LakeContext, staging: Staging, table: str, base: TableState | None, ours: TableState | None,
                 theirs: TableState | None, strategy: str | None, conflicts: list[Conflict]) -> Apply | None:
    """Plan the merge of one table into `staging` (whose state of it is `ours`): record conflicts, return the
    staging step (run only if none). Rows are read through `staging`, so `ours` may be a staged state."""
    if ours == theirs or theirs == base:
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
    if ours.schema != base.schema and theirs.schema != base.schema and ours.schema != theirs.schema:
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
