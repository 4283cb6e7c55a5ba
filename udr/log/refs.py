"""Branch and tag names: validation and their keys in the `refs` sub-database.

A branch head moves only by compare-and-swap inside a log write transaction (see `store.LogStore`);
tags never move once written.
"""

from __future__ import annotations

from functools import lru_cache

from udr.errors import InvalidName
from udr.log.format import REF_BRANCH, REF_TAG

MAX_NAME = 255


def check_name(name: object, what: str) -> str:
    r"""Return `name` if it is a valid table, branch, tag or group name.

    Raises:
        InvalidName: empty, over 255 characters, or containing '/', '\', '..' or a control character;
            a branch, tag or group name also by git's check-ref-format rules: no space or any of
            '~^:?*[@', not starting with '-' or '.', not ending with '.' or '.lock'.
    """
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{what} name must be a non-empty string, got {name!r}")
    return _checked(name, what)


@lru_cache(maxsize=4096)
def _checked(name: str, what: str) -> str:
    # Cached: every write checks its table and branch names, and a program uses the same few again and again.
    if len(name) > MAX_NAME:
        raise InvalidName(f"{what} name is {len(name)} characters long; the limit is {MAX_NAME}")
    bad = [c for c in ("/", "\\", "..") if c in name]
    if what != "table":
        bad += [c for c in ("~", "@", ":", "^", "?", "*", "[", " ") if c in name]
        if name.startswith(("-", ".")) or name.endswith((".", ".lock")):
            raise InvalidName(f"{what} name {name!r} may not start with '-' or '.' nor end with '.' or '.lock'")
    else:
        bad += [c for c in ("@", '"') if c in name]
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        bad.append("a control character")
    if name.strip() != name:
        bad.append("leading or trailing spaces")
    if bad:
        listed = ", ".join(repr(b) if len(b) < 3 else b for b in bad)
        raise InvalidName(f"{what} name {name!r} contains {listed}; choose another name")
    return name


def branch_key(name: str) -> bytes:
    """The `refs` key of a branch."""
    return REF_BRANCH + name.encode()


def tag_key(name: str) -> bytes:
    """The `refs` key of a tag."""
    return REF_TAG + name.encode()
