"""Which of a source lake's commits a push or pull of named branches sends: the commits reachable from those
branches' heads that the target lacks, where the log format lets them land.

A commit's id hashes its log position (seq) and its parents, so a commit can only ever sit at its own seq: the
commits a transfer sends must occupy exactly the seqs following the target's last commit. `select` finds that
run and refuses, naming the commit in the way, when the branches' commits are interleaved with commits they do
not need, when the target's log already holds other commits at their seqs, or when a commit left behind is an
erasure (it rewrites every version of the lake, so the commits before it must not travel without it). Pure
function of the source's log: safe from any thread.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from udr.errors import ConflictError
from udr.log.format import ERASURE_KEY, CommitId
from udr.log.graph import CommitReader

_PLACEMENT = "commit ids hash their log position, so a commit cannot move to another seq"


def missing(source: CommitReader, heads: Collection[CommitId], have: Collection[CommitId]) -> set[CommitId]:
    """The commits reachable from `heads` that are not in `have` (a log holds every parent of its commits, so
    the walk stops at the first commit the target has)."""
    need: set[CommitId] = set()
    stack = [h for h in heads if h not in have]
    while stack:
        cid = stack.pop()
        if cid in need:
            continue
        need.add(cid)
        stack.extend(p for p in source.get_commit(cid).parents if p not in have and p not in need)
    return need


def select(source: CommitReader, order: list[CommitId], have: Collection[CommitId], start: int,
           heads: Mapping[str, CommitId]) -> int:
    """The end (exclusive) of the run of source seqs `start`.. to send so that the target, whose next seq is
    `start` and which holds `have`, gets every commit reachable from `heads` (named branch -> head); `order`
    is the source's log.

    Raises:
        ConflictError: those commits cannot land at their seqs in the target, or would leave an erasure behind.
    """
    names = ", ".join(repr(b) for b in heads)
    need = missing(source, heads.values(), have)
    seqs = sorted(source.get_commit(cid).seq for cid in need)
    if seqs and seqs[0] < start:
        raise ConflictError(
            f"cannot send {names}: it needs commit {order[seqs[0]][:10]} at seq {seqs[0]}, but the target's log "
            f"already holds {start} commits, other ones from seq {seqs[0]} on; {_PLACEMENT}. The lakes' logs "
            "diverged before this branch: clone the source afresh to share it")
    end = start + len(seqs)
    if seqs != list(range(start, end)):
        gap = next(seq for seq in range(start, end) if order[seq] not in need)
        other = source.get_commit(order[gap])
        raise ConflictError(
            f"cannot send {names} alone: its commit {order[seqs[-1]][:10]} sits at seq {seqs[-1]}, after the "
            f"source's commit {order[gap][:10]} (seq {gap}, made on branch {other.branch!r}), which it does not "
            f"need; {_PLACEMENT}. Send {other.branch!r} too, or every branch")
    _refuse_left_erasure(source, order, have, start, end, names)
    return end


def _refuse_left_erasure(source: CommitReader, order: list[CommitId], have: Collection[CommitId], start: int,
                         end: int, names: str) -> None:
    for seq, cid in enumerate(order):
        if start <= seq < end or cid in have:
            continue
        record = source.get_commit(cid)
        if ERASURE_KEY in record.metadata:
            raise ConflictError(
                f"cannot send {names} without erasure commit {cid[:10]} (seq {seq}, on branch {record.branch!r}), "
                "which the target lacks: an erasure rewrites every version of the lake, so no commit of the "
                "source travels without it. Send every branch")
