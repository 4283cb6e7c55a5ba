"""`Lake`'s methods for refs: resolving them, branches and tags, merge, reset, revert, cherry-pick and replay."""

from __future__ import annotations

from udr.api import branches, merging, replay
from udr.api.handle import Handle
from udr.api.refmoves import fast_forward, reset_branch
from udr.log.refspec import Ref
from udr.values import Commit


class RefMethods:
    """Part of `udr.Lake` (see there)."""

    _handle: Handle

    def commit_info(self, ref: Ref) -> Commit:
        """The commit a ref names.

        Raises:
            RefNotFound: the ref names no commit.
        """
        return self._handle.commit_info(ref)

    def resolve(self, ref: Ref, branch: str = "main") -> str:
        """The full commit id a ref names (`None`: the head of `branch`).

        Raises:
            RefNotFound: the ref names no commit.
        """
        return self._handle.resolve(ref, branch)

    # -- branches and tags -----------------------------------------------------------------------------

    def create_branch(self, name: str, from_: str = "main", at: Ref = None) -> Commit:
        """Create branch `name` at `at` (default: the head of `from_`); O(1), no data is copied.

        Returns the new branch's head commit.

        Raises:
            InvalidName, RefNotFound, UsageError: a bad name; no such ref; the branch exists.
        """
        source = self._handle.resolve(at, from_) if at is not None else self._handle.resolve(from_, from_)
        self._handle.readable(source)
        branches.create_branch(self._handle, name, source, author=self._handle.author())
        return self.commit_info(source)

    def branches(self) -> dict[str, str]:
        """Every branch: name -> head commit id."""
        return dict(self._handle.ctx.log.branches())

    def delete_branch(self, name: str, *, force: bool = False) -> None:
        """Delete a branch; its commits stay in the log and reachable by id.

        Raises:
            RefNotFound, UsageError: no such branch; `main`, or unmerged work without `force=True`.
        """
        branches.delete_branch(self._handle, name, force=force, author=self._handle.author())

    def tag(self, name: str, ref: Ref = None) -> Commit:
        """Tag the commit `ref` names (default: head of main); tags never move.

        Raises:
            InvalidName, RefNotFound, UsageError: a bad name; no such ref; the tag exists.
        """
        target = self._handle.resolve(ref, "main")
        branches.create_tag(self._handle, name, target, author=self._handle.author())
        return self.commit_info(target)

    def tags(self) -> dict[str, str]:
        """Every tag: name -> commit id."""
        return dict(self._handle.ctx.log.tags())

    def delete_tag(self, name: str) -> None:
        """Delete a tag.

        Raises:
            RefNotFound: no such branch or ref.
        """
        branches.delete_tag(self._handle, name, author=self._handle.author())

    def merge(self, source: str, into: str = "main", *, message: str | None = None, author: str | None = None,
              strategy: str | None = None) -> Commit:
        """Merge `source` (a branch or any ref) into branch `into`.

        Fast-forwards when `into` has no commits of its own; otherwise makes a two-parent merge commit
        from a three-way merge per table, per row and per column for keyed tables.

        Raises:
            MergeConflict: conflicting changes (`.conflicts`); nothing was written. Pass
                `strategy="ours"` or `"theirs"` to resolve every conflict one way.
            ConflictError: `into` moved while merging; retry.
        """
        merging.check_strategy(strategy)
        ours = self._handle.head(into)
        theirs = self._handle.resolve(source, into)
        base = branches.merge_base(self._handle, ours, theirs)
        if base == theirs:
            return self.commit_info(ours)
        if base == ours:
            self._handle.readable(theirs)
            fast_forward(self._handle.ctx.log, into, ours, theirs, source, self._handle.author(author))
            return self.commit_info(theirs)
        return merging.three_way(
            self._handle, branch=into, base=base, ours=ours, theirs=theirs, parents=(ours, theirs),
            message=message or f"merge {source} into {into}", author=self._handle.author(author), strategy=strategy,
        )

    def reset(self, branch: str, to: Ref) -> Commit:
        """Move `branch`'s head to `to` (the old head stays in the log, reachable by id).

        Raises:
            RefNotFound, ConflictError: no such branch or ref; the branch moved meanwhile.
        """
        head = self._handle.head(branch)
        target = self._handle.resolve(to, branch)
        self._handle.readable(target)
        reset_branch(self._handle.ctx.log, branch, head, target, self._handle.author())
        return self.commit_info(target)

    def revert(self, commit: Ref, branch: str = "main", *, author: str | None = None) -> Commit:
        """Undo one commit on `branch` in a new commit: its tables become what replaying the branch without that
        commit gives, every later change kept (see `udr.api.merging`).

        Raises:
            RefNotFound, UsageError, MergeConflict: no such ref; not revertible; a later commit's change does
                not apply without it (see `udr.api.merging`).
        """
        return merging.revert(self._handle, commit, branch, self._handle.author(author))

    def cherry_pick(self, commit: Ref, onto: str = "main", *, author: str | None = None) -> Commit:
        """Re-apply one commit's changes cell by cell as a new commit on branch `onto` (see `udr.api.replay`).

        Raises:
            RefNotFound, UsageError, MergeConflict: no such ref; the root; `onto` changed its cells (nothing written).
        """
        reapply = merging.reapplier(self._handle, "cherry-pick", self._handle.author(author))
        return replay.cherry_pick(self._handle.ctx, reapply, self._handle.resolve(commit, onto), onto, author)

    def replay(self, onto: str, start: Ref, until: Ref = None, *, source: str = "main", skip: tuple[Ref, ...] = (),
               tables: list[str] | None = None, on_conflict: str = "raise", author: str | None = None) -> Commit:
        """Create branch `onto` at `start` and re-apply there each later commit of `source` up to `until` but those
        in `skip` (only changes to `tables` if given), keeping author, message and metadata; see `udr.api.replay`.
        The ref log credits the moves of `onto` to `author` (default: this user).

        Raises:
            RefNotFound, UsageError, MergeConflict: bad ref or arguments; conflicts name their commit; `onto` not made.
        """
        reapply = merging.reapplier(self._handle, "replay", self._handle.author(author))
        return replay.replay(self._handle.ctx, reapply, self, onto=onto, start=start, until=until,
                             source=source, skip=skip, tables=tables, on_conflict=on_conflict)
