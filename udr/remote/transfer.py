"""Moving commits between two lakes, local or in object storage: clone, push and pull.

Commit ids hash each commit's sequence number, so a commit can only sit at its own seq in any lake. A transfer
of every branch sends the source's commits after the shared prefix of the two logs; one of named branches sends
only the commits those branches need, which must be the run of seqs right after the target's last commit
(`udr.remote.selection`). Either sends the chunks the target lacks and moves the target's refs to the source's
where that is a fast-forward (the target's head is an ancestor of the source's); a target whose log or branch
has diverged is refused with the reason, as `git push` refuses a non-fast-forward.
Into object storage the transfer is one remote log entry (one conditional put); into a local directory it is
one LMDB write transaction. Either is all-or-nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from udr.errors import ConflictError, LakeNotFound, UsageError
from udr.log import graph
from udr.log.chunks import FileChunkStore
from udr.log.format import (
    FORMAT_VERSION,
    REF_BRANCH,
    REF_TAG,
    ChunkId,
    CommitId,
)
from udr.log.label import read_format, write_label
from udr.log.replica import Position, Replica, open_replica
from udr.log.store import LogStore
from udr.remote.log import Entry, RemoteLog
from udr.remote.mirror import open_mirror, upload
from udr.remote.replay import apply
from udr.remote.selection import select
from udr.remote.store import open_store

Location = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class _Side:
    """What a transfer compares: a lake's commits in log order, its refs ("branch:NAME", "tag:NAME") and, in
    object storage, the number of remote log entries."""

    commits: list[CommitId]
    refs: dict[str, CommitId]
    entries: int = 0


def _is_url(where: Location) -> bool:
    return isinstance(where, str) and "://" in where


@contextlib.contextmanager
def _source(where: Location, options: Mapping[str, str] | None) -> Iterator[LogStore]:
    """The source lake's log, read locally: a lake in object storage is replayed into a temporary cache."""
    if not _is_url(where):
        log = LogStore(Path(where), create=False)
        try:
            yield log
        finally:
            log.close()
        return
    with tempfile.TemporaryDirectory(prefix="udr-transfer-") as tmp:
        mirror = open_mirror(str(where), cache=Path(tmp) / "cache", options=options, create=False)
        log = LogStore(mirror.root, create=False)
        log.chunks.fetch_missing(mirror.fetch)
        try:
            yield log
        finally:
            log.close()


def _local_side(log: LogStore) -> _Side:
    refs = {f"branch:{n}": c for n, c in log.refs(REF_BRANCH).items()}
    refs.update({f"tag:{n}": c for n, c in log.refs(REF_TAG).items()})
    return _Side([cid for _, cid in log.commits_from(0)], refs)


def _remote_side(log: RemoteLog) -> _Side:
    commits: list[CommitId] = []
    refs: dict[str, CommitId] = {}
    count = 0
    for entry in log.entries_from(0):
        count += 1
        commits.extend(cid for cid, _ in entry.commits)
        for move in entry.moves:
            if move["new"] is None:
                refs.pop(str(move["ref"]), None)
            else:
                refs[str(move["ref"])] = CommitId(str(move["new"]))
    return _Side(commits, refs, count)


def _moves(source: LogStore, have: _Side, want: _Side, branches: Sequence[str] | None) -> list[dict[str, object]]:
    """The ref moves bringing the target's refs (`have`) to the source's (`want`): fast-forwards only."""
    keys = [f"branch:{b}" for b in branches] if branches else sorted(want.refs)
    moves: list[dict[str, object]] = []
    for key in keys:
        new = want.refs.get(key)
        if new is None:
            raise UsageError(f"the source has no {key.replace(':', ' ', 1)}")
        old = have.refs.get(key)
        if old == new:
            continue
        if old is not None and old not in graph.ancestors(source, new):
            raise ConflictError(f"{key.replace(':', ' ', 1)!r} has diverged: the target's {old[:10]} is not an "
                                f"ancestor of the source's {new[:10]}; pull and merge first")
        record = source.get_commit(new)
        moves.append({"ref": key, "old": old, "new": new, "action": "transfer",
                      "message": f"fast-forward to {new[:10]}", "author": record.author, "time_us": record.time_us})
    return moves


def _end(source: LogStore, have: _Side, want: _Side, branches: Sequence[str] | None, diverged: str) -> int:
    """Where the run of source commits to send ends (exclusive; it starts at the target's next seq): the whole
    suffix for every branch, the commits the named `branches` need otherwise (`udr.remote.selection`)."""
    start = len(have.commits)
    if branches:
        heads = {b: want.refs[f"branch:{b}"] for b in branches if f"branch:{b}" in want.refs}
        return select(source, want.commits, set(have.commits), start, heads)
    if want.commits[:start] != have.commits:
        raise ConflictError(f"{diverged} (the target has commits the source lacks); pull first, or name the "
                            "branches to send: only what they need is sent")
    return len(want.commits)


def transfer(src: Location, dst: Location, *, branches: Sequence[str] | None = None,
             options: Mapping[str, str] | None = None, create: bool = False) -> int:
    """Send `src`'s commits that `dst` lacks and fast-forward `dst`'s refs (only `branches`, default every ref);
    return the number of commits sent. `create`: `dst` must hold no lake yet (a clone).

    Raises:
        ConflictError: the logs or a branch diverged (the target has commits the source lacks).
        LakeNotFound: no lake at `src` (or at `dst` without `create`).
        UsageError: `create` and `dst` already holds a lake.
        StorageError: object storage failed; nothing changed.
    """
    with _source(src, options) as source:
        want = _local_side(source)
        if _is_url(dst):
            remote = RemoteLog(open_store(str(dst), options))
            have = _remote_side(remote)
        else:
            have = _local_target_side(Path(dst), create=create)
        if (have.commits or have.entries) and create:
            raise UsageError(f"cannot clone into {dst}: it already holds a lake")
        if not have.commits and not create:
            raise LakeNotFound(f"no lake at {dst}; use `udr clone` to make one")
        moves = _moves(source, have, want, branches)
        end = _end(source, have, want, branches, f"the logs of {src} and {dst} have diverged")
        with Replica.of(source).reading() as txn:
            suffix = txn.suffix(Position(len(have.commits) - 1, txn.position().moves), until=end)
            version = txn.lake_format()
        commits, blobs, chunks = suffix.commits, suffix.blobs, set(suffix.chunks)
        if not commits and not moves:
            return 0
        entry = Entry(have.entries, version, commits, blobs, tuple(moves))
        if _is_url(dst):
            upload(remote.store, source.chunks, sorted(chunks), missing_only=True)
            if not remote.append(entry):
                raise ConflictError(f"another writer changed {dst} during the transfer; retry")
        else:
            _apply_local(Path(dst), entry, source.chunks, chunks)
        return len(commits)


def _local_target_side(root: Path, *, create: bool) -> _Side:
    if read_format(root) is None:
        if create and root.exists() and any(root.iterdir()):
            raise UsageError(f"cannot clone into {root}: the directory is not empty")
        return _Side([], {})
    log = LogStore(root, create=False)
    try:
        return _local_side(log)
    finally:
        log.close()


def _apply_local(root: Path, entry: Entry, chunks: FileChunkStore, wanted: set[ChunkId]) -> None:
    """Copy the chunks, then apply `entry` in one LMDB write transaction; a new lake is labelled last."""
    target = FileChunkStore(root)
    for chunk in wanted:
        if not target.exists(chunk):
            target.put(chunks.get(chunk))
    new = read_format(root) is None
    with open_replica(root) as replica, replica.writing() as txn:
        if new:
            txn.set_format(entry.format or FORMAT_VERSION)
        apply(txn, entry, track=False)
        txn.set_applied(None)
    if new:
        write_label(root, entry.format)
