"""Ref parsing: what `main`, `main~2`, a tag, a commit-id prefix, a `udr.Commit`, a `datetime` or an
ISO-8601 time such as "2026-11-25T10:00:00Z" names, resolved to a commit id.

Precedence for a string: a branch, then a tag, then an ISO-8601 time (the newest commit on the given branch
at or before it), then a unique commit-id prefix of 7 to 64 hex digits. `~N` (or `~` for `~1`) after any
of them steps back N first parents. A naive time (no offset) is local time, as for a `datetime`.
Read-only and safe from any thread.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Protocol

from udr.errors import RefNotFound, UsageError, close_matches
from udr.log.format import CommitId
from udr.log.graph import CommitReader, first_parents, nth_first_parent
from udr.log.refs import check_name
from udr.values import Commit

Ref = str | datetime | Commit | None

_ANCESTOR = re.compile(r"^(.*?)((?:~\d*)*)$")
_HEX = re.compile(r"^[0-9a-f]{7,64}$")
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}([T ].*)?$")


class RefReader(CommitReader, Protocol):
    """What ref parsing needs of a log: commits, branch heads, tags and commit-id prefixes."""

    def head(self, branch: str) -> CommitId | None:
        """The head of `branch`, None if there is no such branch."""
        ...

    def branches(self) -> dict[str, CommitId]:
        """Every branch: name -> head."""
        ...

    def tags(self) -> dict[str, CommitId]:
        """Every tag: name -> commit."""
        ...

    def find_commits(self, prefix: str) -> list[CommitId]:
        """The commits whose id starts with `prefix`."""
        ...


def branch_head(log: RefReader, branch: str) -> CommitId:
    """The head of `branch`.

    Raises:
        InvalidName: not a valid branch name.
        RefNotFound: no such branch.
    """
    check_name(branch, "branch")
    head = log.head(branch)
    if head is None:
        raise RefNotFound(f"branch {branch!r} does not exist" + close_matches(branch, log.branches()))
    return head


def parse_time(text: str) -> datetime | None:
    """`text` as a time if it looks like an ISO-8601 date or time, else None.

    Raises:
        UsageError: it looks like a time but is not valid ISO 8601.
    """
    if not _ISO_TIME.match(text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{text!r} looks like a time but is not ISO 8601 ({exc}); "
                         "write e.g. 2026-11-25T10:00:00Z") from exc


def resolve(log: RefReader, ref: Ref, branch: str) -> CommitId:
    """The commit `ref` names; None is the head of `branch`, and a time is looked up on `branch`.

    Raises:
        RefNotFound: nothing of that name, or a time before the branch's first commit.
        UsageError: `ref` is not a string, datetime or `udr.Commit`, or a malformed time.
    """
    if ref is None:
        return branch_head(log, branch)
    if isinstance(ref, Commit):
        log.get_commit(CommitId(ref.id))
        return CommitId(ref.id)
    if isinstance(ref, datetime):
        return at_time(log, ref, branch)
    if not isinstance(ref, str) or not ref:
        raise UsageError(f"a ref must be a string, datetime or udr.Commit, got {ref!r}")
    match = _ANCESTOR.match(ref)
    assert match is not None  # the pattern matches every string
    name, tildes = match.group(1), match.group(2)
    cid = _resolve_name(log, name, branch)
    steps = sum(int(step) if step else 1 for step in tildes.split("~")[1:])
    back = nth_first_parent(log, cid, steps) if steps else cid
    if back is None:
        raise RefNotFound(f"{ref!r} goes back past the first commit")
    return back


def at_time(log: RefReader, when: datetime, branch: str) -> CommitId:
    """The newest commit on `branch`'s first-parent history made at or before `when`.

    Raises:
        RefNotFound: no such branch, or no commit that old.
    """
    target = int(when.astimezone(timezone.utc).timestamp() * 1_000_000)
    for cid, record in first_parents(log, branch_head(log, branch)):
        if record.time_us <= target:
            return cid
    raise RefNotFound(f"branch {branch!r} has no commit at or before {when.isoformat()}")


def _resolve_name(log: RefReader, name: str, branch: str) -> CommitId:
    head = log.head(name) if "/" not in name else None
    if head is not None:
        return head
    tags = log.tags()
    if name in tags:
        return tags[name]
    when = parse_time(name)
    if when is not None:
        return at_time(log, when, branch)
    if _HEX.match(name):
        found = log.find_commits(name)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise RefNotFound(f"commit prefix {name!r} is ambiguous; give more digits")
    known = list(log.branches()) + list(tags)
    raise RefNotFound(f"no branch, tag or commit named {name!r}" + close_matches(name, known))


def time_or_commit(log: RefReader, ref: str | datetime | Commit, branch: str) -> datetime | CommitId:
    """What a search bound names: a time (a `datetime`, or an ISO-8601 string that is not a branch or tag
    name) stays a time, timezone-aware (naive means local); anything else is resolved to a commit.

    Raises:
        RefNotFound, UsageError: as `resolve`.
    """
    if isinstance(ref, datetime):
        return ref.astimezone()
    if isinstance(ref, str) and log.head(ref) is None and ref not in log.tags():
        when = parse_time(ref)
        if when is not None:
            return when.astimezone()
    return resolve(log, ref, branch)
