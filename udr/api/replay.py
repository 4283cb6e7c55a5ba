"""Cherry-pick, replay and revert: re-applying commits' changes cell by cell on another line of history.

Each step is one three-way merge (the facade's `Reapply`, `udr.api.merging.three_way`): re-applying commit C merges
C over C's first parent into the branch head. So a cherry-pick and a replayed commit follow the same per-cell rules
as `merge` (keyed tables cell by cell, other tables whole) and conflict in the same places (`udr.api.merging.revert`
builds a revert from the same rules). Every step commits with compare-and-swap like any transaction.

`replay` creates its branch first and deletes it again if a conflict stops it: the branch is never left behind,
but the commits made before the conflict stay in the log, unreachable, like those of a deleted branch.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import Protocol

from udr.api.context import LakeContext
from udr.errors import Conflict, MergeConflict, UsageError
from udr.log import graph, refspec
from udr.log.commits import CommitRecord
from udr.log.format import CommitId
from udr.log.refspec import Ref
from udr.values import Commit

REPLAYED_FROM = "udr.replayed_from"
SKIPPED = "udr.replay_skipped"

class Reapply(Protocol):
    """How replay, cherry-pick and revert commit on a branch of the lake."""

    def __call__(self, branch: str, base: CommitId, theirs: CommitId, message: str, author: str,
                 metadata: Mapping[str, str], tables: AbstractSet[str] | None) -> Commit:
        """Commit on `branch` the changes from `base` to `theirs` (only to `tables`, None: all), three-way merged
        into its head; return the head itself if nothing changed.

        Raises:
            MergeConflict: a cell conflicts; nothing was written.
        """
        ...

    def note(self, branch: str, message: str, metadata: Mapping[str, str]) -> Commit:
        """Commit on `branch` a commit that changes no table and records `metadata` (what a replay skipped)."""
        ...


class BranchMaker(Protocol):
    """What `replay` needs of the lake besides `Reapply`: creating and deleting its branch, reading its head."""

    def commit_info(self, ref: Ref) -> Commit:
        """The commit `ref` names."""
        ...

    def create_branch(self, name: str, from_: str = "main", at: Ref = None) -> Commit:
        """Create branch `name` at `at`."""
        ...

    def delete_branch(self, name: str, *, force: bool = False) -> None:
        """Delete branch `name`."""
        ...


def cherry_pick(ctx: LakeContext, reapply: Reapply, target: CommitId, onto: str, author: str | None) -> Commit:
    """Re-apply the changes commit `target` made (relative to its first parent) as a new commit on `onto`.

    The new commit keeps the message and metadata of `target`, adds `udr.replayed_from`, and keeps its author
    unless `author` is given.

    Raises:
        UsageError: `target` is the root commit.
        MergeConflict: `onto` changed the same cells differently; nothing was written. Each conflict names
            `target` as its `commit`.
    """
    record = ctx.log.get_commit(target)
    if not record.parents:
        raise UsageError(f"commit {target[:10]} is the root commit: it has no changes to cherry-pick")
    return _reapply_one(reapply, onto, target, record, author or record.author, None)


def _reapply_one(reapply: Reapply, onto: str, cid: CommitId, record: CommitRecord, author: str,
                 tables: AbstractSet[str] | None) -> Commit:
    metadata = {**record.metadata, REPLAYED_FROM: cid}
    try:
        return reapply(onto, record.parents[0], cid, record.message, author, metadata, tables)
    except MergeConflict as exc:
        named = [replace(c, commit=cid) for c in exc.conflicts]
        raise MergeConflict(f"commit {cid[:10]} ({record.message!r}) does not apply on {onto!r}: {exc}", named) from exc


def replay(ctx: LakeContext, reapply: Reapply, lake: BranchMaker, *, onto: str, start: Ref, until: Ref, source: str,
           skip: Sequence[Ref], tables: Collection[str] | None, on_conflict: str) -> Commit:
    """Create branch `onto` at `start` and re-apply there, oldest first, every commit after `start` up to
    `until` (None: the head of `source`) on `source`'s first-parent chain, except those in `skip` (refs read
    on `source`), and with `tables` only their changes to those tables.

    Returns the head of `onto`. With `on_conflict="skip"`, a commit that conflicts is left out; if any was, a last
    commit on `onto` that changes no table records them durably in its metadata under `udr.replay_skipped` (a
    JSON list of the commits and their conflicts), and is the one returned.

    Raises:
        UsageError: a bad `on_conflict`, or a `skip` commit not in the range; nothing was written.
        RefNotFound: `start` is not a first-parent ancestor of `until`.
        MergeConflict: a commit does not apply (each conflict names it); branch `onto` is not created.
    """
    if on_conflict not in ("raise", "skip"):
        raise UsageError(f"on_conflict must be 'raise' or 'skip', not {on_conflict!r}")
    first, last = refspec.resolve(ctx.log, start, source), refspec.resolve(ctx.log, until, source)
    chain = graph.first_parent_range(ctx.log, first, last)
    left_out = {refspec.resolve(ctx.log, ref, source) for ref in skip}
    outside = left_out - {cid for cid, _ in chain}
    if outside:
        raise UsageError(f"commit(s) {', '.join(sorted(c[:10] for c in outside))} to skip are not between "
                         f"{first[:10]} and {last[:10]} on the first-parent history of {source!r}; "
                         "nothing was replayed")
    only = frozenset(tables) if tables is not None else None
    lake.create_branch(onto, at=first)
    skipped: list[dict[str, object]] = []
    try:
        for cid, record in chain:
            if cid in left_out:
                continue
            try:
                _reapply_one(reapply, onto, cid, record, record.author, only)
            except MergeConflict as exc:
                if on_conflict == "raise":
                    raise
                skipped.append({"commit": cid, "conflicts": [_described(c) for c in exc.conflicts]})
    except BaseException:
        lake.delete_branch(onto, force=True)
        raise
    if skipped:
        return reapply.note(onto, f"replay skipped {len(skipped)} conflicting commit(s)",
                            {SKIPPED: json.dumps(skipped, default=str)})
    return lake.commit_info(onto)


def _described(c: Conflict) -> dict[str, object]:
    return {"table": c.table, "key": c.key, "column": c.column}
