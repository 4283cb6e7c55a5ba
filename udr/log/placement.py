"""Whether a commit begun on an older head can be placed on top of the commits made since.

The log decides this inside its write transaction, from the ops alone (no data is read): a commit commutes
with a concurrent one when they change different tables, or when both change a multiset table (one the writer
names as `placeable`) without reshaping it, without adding the same chunk, and setting the deletion vectors
of different fragments, or when both are keyed writes of disjoint keys of one table (`udr.log.keyplace`,
which then re-points their shared deletion vectors). Anything else raises `HeadMoved`, and the writer
re-expresses its changes on the new head (`udr.api.committing.restage`). Pure: safe from any thread.
"""

from __future__ import annotations

from collections.abc import Callable

from udr.errors import ConflictError
from udr.log.commits import CommitRecord, TableOp
from udr.log.format import CommitId
from udr.log.keyplace import keyed_commute
from udr.log.races import HeadMoved


def check_reads(branch: str, read: frozenset[str] | set[str], cid: CommitId, other: CommitRecord) -> None:
    """Raise `ConflictError` if commit `cid` changed a table in `read`, the tables a serializable transaction
    on `branch` read."""
    seen = read & set(other.tables)
    if seen:
        raise ConflictError(
            f"commit {cid[:10]} changed {', '.join(sorted(seen))}, which this serializable transaction read, "
            f"after it began on {branch!r}; reload and retry"
        )


def placed_over(record: CommitRecord, base: CommitId, head: CommitId, get: Callable[[CommitId], CommitRecord], *,
                placeable: frozenset[str], read: frozenset[str]) -> list[CommitRecord]:
    """The commits from `head` back to `base` (read with `get`), each checked to commute with `record`, begun on
    `base` (`check_placeable`).

    Raises:
        ConflictError: the branch was reset to a `head` that does not descend from `base`, or a commit in
            between changed a table in `read`.
        HeadMoved: a commit in between does not commute with `record`.
    """
    between: list[CommitRecord] = []
    cursor = head
    while cursor != base:
        other = get(cursor)
        between.append(other)
        check_placeable(record, cursor, other, head=head, base=base, placeable=placeable, read=read)
        if not other.parents:
            raise ConflictError(
                f"branch {record.branch!r} was reset from {base[:7]} to {head[:7]}, which does not "
                "descend from it; reload and retry"
            )
        cursor = other.parents[0]
    return between


def check_placeable(record: CommitRecord, cid: CommitId, other: CommitRecord, *, head: CommitId, base: CommitId,
                    placeable: frozenset[str], read: frozenset[str]) -> None:
    """Raise unless `record` (begun on `base`) commutes with `other` (commit `cid`, made since).

    Raises:
        ConflictError: `other` changed a table in `read` (a serializable transaction's reads).
        HeadMoved: `other` changed one of `record`'s tables and they do not commute.
    """
    check_reads(record.branch, read, cid, other)
    for table in set(record.tables) & set(other.tables):
        if not commutes(table, record.tables[table], other.tables[table], placeable):
            raise HeadMoved(
                f"branch {record.branch!r} moved from {base[:7]} to {head[:7]} and commit {cid[:10]} also "
                f"changed {table!r}; reload and retry", head,
            )


def commutes(table: str, mine: TableOp, theirs: TableOp, placeable: frozenset[str]) -> bool:
    """Whether the log can place `mine` over `theirs` (ops of `table` made against the same base): as multiset
    ops (`table` in `placeable`, see `commute`), or as keyed writes of disjoint keys (`keyplace.keyed_commute`)."""
    return (table in placeable and commute(mine, theirs)) or keyed_commute(mine, theirs)


def commute(mine: TableOp, theirs: TableOp) -> bool:
    """Whether two ops of one multiset table, each made against the same base, commute: neither reshapes the
    table, neither adds a chunk the other adds, and they set the deletion vectors of different fragments."""
    if mine.reshapes or theirs.reshapes:
        return False
    if {f.chunk for f in mine.add} & {f.chunk for f in theirs.add}:
        return False
    return not {d.chunk for d in mine.deletes} & {d.chunk for d in theirs.deletes}
