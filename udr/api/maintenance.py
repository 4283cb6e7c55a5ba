"""Lake-wide checks and figures: `verify` (hash chain, chunks, blobs) and `stats` (dedup accounting)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from udr.errors import CorruptionError, RefNotFound
from udr.log.commits import CommitRecord, TableOp
from udr.log.format import BlobId, BlobKind, ChunkId, CommitId
from udr.log.store import LogStore
from udr.values import LakeStats, VerifyReport


def _records(log: LogStore, commits: Sequence[tuple[int, CommitId]],
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


def _check_parent(log: LogStore, cid: CommitId, seq: int, parent: CommitId, seqs: dict[CommitId, int],
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


def _check_data(log: LogStore, cid: CommitId, table: str, op: TableOp, checked_chunks: set[str],
                checked_blobs: set[str], problems: list[str]) -> None:
    """Rehash every chunk and log blob one table change references (each once per verification)."""
    blobs: list[tuple[BlobId, BlobKind]] = []
    if op.schema is not None:
        blobs.append((op.schema, BlobKind.SCHEMA))
    blobs += [(d.vector, BlobKind.DELETES) for d in op.deletes if d.vector is not None]
    if op.before is not None:
        blobs.append((op.before, BlobKind.BEFORE))
    for frag in op.add:
        if frag.chunk in checked_chunks:
            continue
        checked_chunks.add(frag.chunk)
        try:
            if frag.inline:
                log.get_blob(BlobId(frag.chunk), BlobKind.ROWS)
            else:
                log.chunks.get(frag.chunk)
        except CorruptionError as exc:
            problems.append(f"table {table!r} in commit {cid[:10]}: {exc}")
    for blob, kind in blobs:
        if blob in checked_blobs:
            continue
        checked_blobs.add(blob)
        try:
            log.get_blob(blob, kind)
        except CorruptionError as exc:
            problems.append(f"table {table!r} in commit {cid[:10]}: {exc}")


def verify_commits(log: LogStore, commits: Sequence[tuple[int, CommitId]],
                   progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check the given (seq, id) commits: each record rehashed against its id and its log position, each
    parent link (a parent outside `commits` is rehashed too, so the range is anchored to the chain), and
    every chunk file and log blob they reference."""
    problems: list[str] = []
    records = _records(log, commits, problems)
    seqs = {cid: seq for seq, cid, _ in records}
    checked_chunks: set[str] = set()  # data chunks: Parquet files and inline row blobs, as `stats` counts them
    checked_blobs: set[str] = set()
    for n, (seq, cid, record) in enumerate(records):
        for parent in record.parents:
            _check_parent(log, cid, seq, parent, seqs, problems)
        for table, op in record.tables.items():
            _check_data(log, cid, table, op, checked_chunks, checked_blobs, problems)
        if progress is not None:
            progress(n + 1, len(records))
    return VerifyReport(commits_checked=len(records), chunks_checked=len(checked_chunks), problems=problems,
                        blobs_checked=len(checked_blobs))


def verify(log: LogStore, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Check every commit (hash, parent links), every chunk file and log blob it references, and refs."""
    commits = list(log.commits_from(0))
    report = verify_commits(log, commits, progress)
    known = {cid for _, cid in commits}
    problems = list(report.problems)
    for ref_kind, refs in (("branch", log.branches()), ("tag", log.tags())):
        for name, target in refs.items():
            if target not in known:
                problems.append(f"{ref_kind} {name!r} points to {target}, which is not in the log")
    return replace(report, problems=problems)


def stats(log: LogStore) -> LakeStats:
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
