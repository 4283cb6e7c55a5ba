"""Lake-wide checks and figures: `verify` (hash chain, chunks, blobs) and `stats` (dedup accounting)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from udr.errors import CorruptionError, RefNotFound
from udr.log.commits import CommitRecord
from udr.log.format import ERASURE_KEY, BlobId, BlobKind, ChunkId, CommitId
from udr.log.protocols import LakeLog
from udr.materialize.states import LiveData
from udr.values import LakeStats, VerifyReport


def _records(log: LakeLog, commits: Sequence[tuple[int, CommitId]],
             problems: list[str]) -> list[tuple[int, CommitId, CommitRecord]]:
    out = []
    for seq, cid in commits:
        try:
            record = log.get_commit(cid, cached=False)
        except (CorruptionError, RefNotFound) as exc:
            problems.append(str(exc))
            continue
        if record.seq != seq:
            problems.append(f"commit {cid} says seq {record.seq} but sits at log position {seq}")
        out.append((seq, cid, record))
    return out


def verify_commits(log: LakeLog, commits: Sequence[tuple[int, CommitId]],
                   progress: Callable[[int, int], None] | None = None, *, live: LiveData | None = None) -> VerifyReport:
    """Check the given (seq, id) commits: each record rehashed against its id and its log position, each parent
    link (a parent outside `commits` is rehashed too, so a range is anchored to the chain), and every chunk
    file and log blob they reference.

    With `live` (what the versions kept by retention need, as readers see them through erasures), a chunk
    or blob that is absent and not needed counts as expired, not as a problem, and the chunks and blobs
    erasures wrote in place of others are checked too.
    """
    check = _Checker(log, live)
    records = _records(log, commits, check.problems)
    seqs = {cid: seq for seq, cid, _ in records}
    for n, (seq, cid, record) in enumerate(records):
        for parent in record.parents:
            _check_parent(log, cid, seq, parent, seqs, check.problems)
        if ERASURE_KEY in record.metadata:
            check.blob(BlobId(record.metadata[ERASURE_KEY]), BlobKind.ERASURE, f"erasure commit {cid[:10]}")
        for table, op in record.tables.items():
            where = f"table {table!r} in commit {cid[:10]}"
            for frag in op.add:
                check.chunk(frag.chunk, frag.inline, where)
            if op.schema is not None:
                check.blob(op.schema, BlobKind.SCHEMA, where)
            for d in op.deletes:
                if d.vector is not None:
                    check.blob(d.vector, BlobKind.DELETES, where)
            if op.before is not None:
                check.blob(op.before, BlobKind.BEFORE, where)
        if progress is not None:
            progress(n + 1, len(records))
    if live is not None:
        for chunk in live.chunks:
            check.chunk(chunk, False, "a chunk a kept version needs")
        for blob, kind in live.blobs.items():
            if kind == BlobKind.ROWS:
                check.chunk(blob, True, "rows a kept version needs")
            else:
                check.blob(blob, kind, "a blob a kept version needs")
    return VerifyReport(commits_checked=len(records), chunks_checked=len(check.chunks), problems=check.problems,
                        blobs_checked=len(check.blobs), expired=check.expired)


def verify(log: LakeLog, progress: Callable[[int, int], None] | None = None, *,
           live: LiveData | None = None) -> VerifyReport:
    """Check every commit (hash, parent links), every chunk file and log blob it references, and refs."""
    commits = list(log.commits_from(0))
    report = verify_commits(log, commits, progress, live=live)
    known = {cid for _, cid in commits}
    problems = list(report.problems)
    for ref_kind, refs in (("branch", log.branches()), ("tag", log.tags())):
        for name, target in refs.items():
            if target not in known:
                problems.append(f"{ref_kind} {name!r} points to {target}, which is not in the log")
    return replace(report, problems=problems)


def _check_parent(log: LakeLog, cid: CommitId, seq: int, parent: CommitId, seqs: dict[CommitId, int],
                  problems: list[str]) -> None:
    """Check one chain link; a parent outside the checked commits is read and rehashed itself."""
    if parent not in seqs:
        try:
            seqs[parent] = log.get_commit(parent, cached=False).seq
        except RefNotFound:
            problems.append(f"commit {cid} has parent {parent} that is not in the log (broken chain link)")
            return
        except CorruptionError as exc:
            problems.append(f"commit {cid} has parent {parent} whose record is damaged ({exc})")
            return
    if seqs[parent] >= seq:
        problems.append(f"commit {cid} has parent {parent} that comes later in the log")


class _Checker:
    """Rehashes each chunk and blob once, sorting failures into problems and expired (or replaced) data."""

    def __init__(self, log: LakeLog, live: LiveData | None) -> None:
        self.log = log
        self.live = live
        self.problems: list[str] = []
        self.expired = 0
        self.chunks: set[str] = set()  # data chunks: Parquet files and inline row blobs, as `stats` counts them
        self.blobs: set[str] = set()

    def chunk(self, chunk: str, inline: bool, where: str) -> None:
        if chunk in self.chunks:
            return
        self.chunks.add(chunk)
        try:
            if inline:
                self.log.get_blob(BlobId(chunk), BlobKind.ROWS)
            else:
                self.log.chunks.get(ChunkId(chunk))
        except CorruptionError as exc:
            self._failed(chunk, inline, f"{where}: {exc}")

    def blob(self, blob: BlobId, kind: BlobKind, where: str) -> None:
        if blob in self.blobs:
            return
        self.blobs.add(blob)
        try:
            self.log.get_blob(blob, kind)
        except CorruptionError as exc:
            self._failed(blob, True, f"{where}: {exc}")

    def _failed(self, name: str, in_log: bool, problem: str) -> None:
        if _expired(self.log, self.live, name, in_log):
            self.expired += 1
        else:
            self.problems.append(problem)


def _expired(log: LakeLog, live: LiveData | None, name: str, in_log: bool) -> bool:
    """Whether chunk or blob `name` is absent because only expired versions needed it (not damaged)."""
    if live is None or live.needs(name):
        return False
    return not (log.has_blob(BlobId(name)) if in_log else log.chunks.exists(ChunkId(name)))


def stats(log: LakeLog) -> LakeStats:
    """Count commits and chunks; logical bytes count every add of a chunk, stored bytes each chunk once."""
    sizes: dict[ChunkId, int] = {}
    logical = 0
    commits = 0
    for _, cid in log.commits_from(0):
        commits += 1
        for op in log.get_commit(cid).tables.values():
            for frag in op.add:
                if frag.chunk not in sizes:
                    size = log.blob_size(BlobId(frag.chunk)) if frag.inline else log.chunks.size(frag.chunk)
                    sizes[frag.chunk] = size
                logical += sizes[frag.chunk]
    return LakeStats(commits=commits, chunks=len(sizes), logical_bytes=logical, stored_bytes=sum(sizes.values()))
