"""Branches and tags: refs into the one log. Creating one writes a single LMDB record and no chunk; deleting one
keeps its commits in the log. Merges and reverts, which commit over a branch's head, are `udr.api.merging`'s;
resets and fast-forwards `udr.api.refmoves`'.
"""

from __future__ import annotations

from udr.api.handle import Handle
from udr.errors import (
    RefNotFound,
    UsageError,
    close_matches,
)
from udr.log import graph
from udr.log.format import CommitId
from udr.log.reflog import Reason
from udr.log.refs import branch_key, check_name, tag_key


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
