"""Git for data: branches, tags, merge (fast-forward or three-way, row- and cell-level), reset, revert.

Branches and tags are refs into the one log: creating one writes a single LMDB record and no chunk.
A merge or revert is staged by the write engine (`udr.materialize.staging`) over the target branch's head,
reusing chunks wherever a table is taken whole from one side, and commits with compare-and-swap on that head
(`udr.api.committing`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet

from udr.api import committing, history, retention, writes
from udr.api.committing import Intent
from udr.api.context import LakeContext
from udr.api.handle import Handle
from udr.api.replay import Reapply
from udr.errors import (
    Conflict,
    ConflictError,
    MergeConflict,
    RefNotFound,
    UsageError,
    close_matches,
)
from udr.log import graph
from udr.log.format import CommitId
from udr.log.reflog import Reason
from udr.log.refs import branch_key, check_name, tag_key
from udr.materialize.merge import merge_rows
from udr.materialize.multiset import merge_multiset
from udr.materialize.schemas import rename_by_id
from udr.materialize.snapshot import TableState
from udr.materialize.staging import Staging
from udr.values import Commit


def ancestors(handle: Handle, start: CommitId) -> set[CommitId]:
    """Every commit reachable from `start` through any parent, `start` included."""
    return graph.ancestors(handle.ctx.log, start)


def merge_base(handle: Handle, a: CommitId, b: CommitId) -> CommitId:
    """The newest common ancestor of `a` and `b` (by log position)."""
    return graph.merge_base(handle.ctx.log, a, b)


def create_branch(handle: Handle, name: str, source: CommitId, *, author: str) -> None:
    """Point a new branch at `source` (the ref log credits `author`).

    Raises:
        UsageError: the branch exists.
    """
    check_name(name, "branch")
    if handle.ctx.log.head(name) is not None:
        raise UsageError(f"branch {name!r} already exists; delete it first or pick another name")
    if name in handle.ctx.log.tags():
        raise UsageError(f"{name!r} is already a tag; a branch of that name would hide it")
    handle.ctx.log.update_ref(branch_key(name), source, None,
                         Reason("create", f"create branch {name} at {source[:10]}", author))


def delete_branch(handle: Handle, name: str, *, force: bool, author: str) -> None:
    """Delete a branch (its commits stay in the log; the ref log credits `author`).

    Raises:
        UsageError: `main`, or the branch has commits no other branch contains (without `force`).
    """
    head = handle.head(name)
    if name == "main":
        raise UsageError("branch 'main' cannot be deleted")
    if not force:
        others = [h for b, h in handle.ctx.log.branches().items() if b != name]
        if not any(head in ancestors(handle, h) for h in others):
            raise UsageError(
                f"branch {name!r} has commits no other branch contains (head {head[:10]}); merge it or "
                "pass force=True"
            )
    handle.ctx.log.update_ref(branch_key(name), None, head, Reason("delete", f"delete branch {name}", author))


def create_tag(handle: Handle, name: str, target: CommitId, *, author: str) -> None:
    """Create a tag; tags never move (the ref log credits `author`).

    Raises:
        UsageError: the tag exists.
    """
    check_name(name, "tag")
    if handle.ctx.log.head(name) is not None:
        raise UsageError(f"{name!r} is already a branch; a tag of that name would be hidden by it")
    existing = handle.ctx.log.tags().get(name)
    if existing is not None:
        raise UsageError(f"tag {name!r} already points to {existing[:10]}; tags never move (delete it first)")
    handle.ctx.log.update_ref(tag_key(name), target, None, Reason("create", f"tag {target[:10]} as {name}", author))


def delete_tag(handle: Handle, name: str, *, author: str) -> None:
    """Delete a tag (the ref log credits `author`).

    Raises:
        RefNotFound: no such tag.
    """
    tags = handle.ctx.log.tags()
    if name not in tags:
        raise RefNotFound(f"tag {name!r} does not exist" + close_matches(name, tags))
    handle.ctx.log.update_ref(tag_key(name), None, tags[name], Reason("delete", f"delete tag {name}", author))


Apply = Callable[[], None]


def _merge_table(ctx: LakeContext, staging: Staging, table: str, base: TableState | None, ours: TableState | None,
                 theirs: TableState | None, strategy: str | None, conflicts: list[Conflict]) -> Apply | None:
    """Plan the merge of one table: record conflicts, return the staging step (run only if none)."""
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
    other = history.paired(ctx, table, base, theirs)
    if other.num_rows == 0 and theirs.schema == base.schema:
        return None
    mine = history.paired(ctx, table, base, ours)
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
    placed = ctx.rows.table(table, ours, with_position=True)
    columns = [c for c in placed.column_names if not c.startswith("__")]
    result = merge_multiset(ctx.rows.table(table, base), placed.select(columns), ctx.rows.table(table, theirs),
                            table=table)
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


def three_way(handle: Handle, *, branch: str, base: CommitId, ours: CommitId, theirs: CommitId,
              parents: tuple[CommitId, ...], message: str, author: str, strategy: str | None,
              metadata: Mapping[str, str] | None = None, tables: AbstractSet[str] | None = None,
              action: str | None = None, mover: str | None = None) -> Commit:
    """Commit the merge of `theirs` into `ours` (from `base`) on `branch` (only of `tables`, None: every
    table). The commit moves the branch in the ref log for `action`, by default "merge" for a merge commit
    (two `parents`), else "revert".

    Raises:
        MergeConflict: conflicting changes (and no `strategy`); nothing is written.
        ConflictError: `branch` moved from `ours` (retryable); nothing is written.
        Expired: a table the merge must read has expired at one of the three versions.
    """
    check_strategy(strategy)
    ctx = handle.ctx
    snaps = [ctx.materializer.snapshot(c) for c in (base, ours, theirs)]
    for table in set().union(*snaps):
        if not snaps[0].get(table) == snaps[1].get(table) == snaps[2].get(table):
            for commit in (base, ours, theirs):  # the merge reads this table's rows at all three
                retention.check_readable(ctx, commit, (table,))
    head = handle.head(branch)
    if head != ours:
        raise ConflictError(f"branch {branch!r} moved from {ours[:7]} to {head[:7]} during the merge; merge again")
    staging = Staging(ctx.log, ctx.rows, ours, snaps[1], branch=branch)
    conflicts: list[Conflict] = []
    try:
        # Plan every table before staging any: a conflict anywhere must leave no chunk written.
        plans = [_merge_table(ctx, staging, table, snaps[0].get(table), snaps[1].get(table), snaps[2].get(table),
                              strategy, conflicts)
                 for table in sorted(set().union(*snaps)) if tables is None or table in tables]
        if conflicts:
            raise MergeConflict(
                f"{len(conflicts)} conflict(s) merging {theirs[:10]} into {branch!r}: "
                + "; ".join(_describe(c) for c in conflicts[:5])
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
    intent = Intent(branch, message, author, dict(metadata or {}), parents=parents,
                    action=action or ("merge" if parents else "revert"), mover=mover)
    return committing.commit(handle, staging, intent, (), None)


def reapplier(handle: Handle, action: str, mover: str) -> Reapply:
    """How `udr.api.replay` commits one re-applied change on a branch: a `three_way` merge of `theirs` over
    `base` into the branch's head, with no second parent, moving the branch in the ref log for `action`, by
    `mover`."""

    def reapply(branch: str, base: CommitId, theirs: CommitId, message: str, author: str,
                metadata: Mapping[str, str], tables: AbstractSet[str] | None) -> Commit:
        return three_way(handle, branch=branch, base=base, ours=handle.head(branch), theirs=theirs, parents=(),
                         message=message, author=author, strategy=None, metadata=metadata, tables=tables,
                         action=action, mover=mover)

    return reapply


def _describe(c: Conflict) -> str:
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
