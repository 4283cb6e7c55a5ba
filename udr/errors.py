"""Every exception UDR raises on purpose: one root, `UdrError`, grouped by what the caller does next.

- Fix the input: `InvalidName`, `TableNotFound`, `RefNotFound`, `SchemaError`, `KeyViolation`, `SqlError`,
  `UsageError`, `AckError`.
- Retry: `ConflictError` (and its `retryable` flag), `GroupBusy`, `StorageError` when `retryable`.
- Resolve by hand: `MergeConflict`.
- Repair or upgrade: `CorruptionError`, `FormatError`.
- Read another version: `Expired`.

This module imports nothing from `udr`, so every layer may raise these.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class UdrError(Exception):
    """Root of every error UDR raises on purpose."""

    retryable: bool = False


class UsageError(UdrError, ValueError):
    """An argument is not valid for this call (wrong type, contradictory options)."""


class InvalidName(UsageError):
    """A table, branch, tag or group name is empty, too long, or has forbidden characters."""


class SchemaError(UsageError):
    """Data does not match the table's schema; the message names the columns."""


class KeyViolation(UsageError):
    """A primary-key rule was broken: duplicate or null key, or a keyed operation on an unkeyed table."""


class SqlError(UsageError):
    """DuckDB rejected a query or a predicate; the message is DuckDB's."""


class AckError(UsageError):
    """An ack names a batch that is not the subscription's next unacknowledged one (acked twice, out of
    order, never delivered, or the subscription has no group for a transactional ack)."""


class TableNotFound(UdrError, LookupError):
    """The table does not exist at the requested version; the message names close matches."""


class RefNotFound(UdrError, LookupError):
    """A branch, tag, commit id or `REF~N` expression does not name a commit."""


class ConflictError(UdrError):
    """A concurrent commit touched the same tables (or moved the branch); reload and retry."""

    retryable = True


class GroupBusy(UdrError):
    """Another live subscriber holds this consumer group's lease."""

    retryable = True


@dataclass(frozen=True, slots=True)
class Conflict:
    """One merge conflict: `column` is None for a whole-row or table-level conflict; `commit` names the commit
    being re-applied when a cherry-pick or replay conflicts (None for a merge or revert)."""

    table: str
    key: dict[str, object] | None
    column: str | None
    base: object
    ours: object
    theirs: object
    commit: str | None = None


class MergeConflict(UdrError):
    """A merge found conflicting changes; nothing was written. See `.conflicts`."""

    def __init__(self, message: str, conflicts: list[Conflict]) -> None:
        super().__init__(message)
        self.conflicts = conflicts


class CorruptionError(UdrError):
    """Bytes on disk do not match their name or a chain link is broken; the message names the object."""


class LakeNotFound(UdrError, LookupError):
    """No lake exists at the path, and the caller asked not to create one (`udr.open(path, create=False)`)."""


class FormatError(UdrError):
    """The directory is not a UDR lake, or it was written by a newer format version."""


class StorageError(UdrError):
    """Object storage refused or failed a request (no bucket, no credentials, access denied, network failure).
    `retryable` is true when the same call may succeed later (a timeout, a dropped connection, a 5xx)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class Expired(UdrError, LookupError):
    """The data of a version was expired by the lake's retention policy (`Lake.expire`); the commit record
    stays, its rows are gone. The message names the policy; read a newer version instead."""


def close_matches(name: str, candidates: Iterable[str]) -> str:
    """Return a ' (did you mean ...?)' suffix naming the candidates closest to `name`, or ''."""
    matches = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    if not matches:
        return ""
    return " (did you mean " + ", ".join(repr(m) for m in matches) + "?)"
