"""Git for data: branches, tags, merge (fast-forward or three-way, row- and cell-level), reset, revert.

Branches and tags are refs into the one log: creating one writes a single LMDB record and no chunk.
A merge or revert is staged by the write engine (`udr.materialize.staging`) over the target branch's head,
reusing chunks wherever a table is taken whole from one side, and commits with compare-and-swap on that head
(`udr.api.committing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from udr.api import merging
from udr.api.handle import Handle, Intent
from udr.api.replay import Reapply
from udr.errors import (
    RefNotFound,
    UsageError,
    close_matches,
)
from udr.log import graph
from udr.log.format import CommitId
from udr.log.reflog import Reason
from udr.log.refs import branch_key, check_name, tag_key
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
    staging = merging.stage_three_way(handle, branch=branch, base=base, ours=ours, theirs=theirs, strategy=strategy,
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
