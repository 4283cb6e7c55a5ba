"""Lake-wide checks and figures: `verify` (hash chain, chunks, blobs) and `stats` (dedup accounting)."""

from __future__ import annotations

from collections.abc import Callable

from udr.errors import CorruptionError, RefNotFound
from udr.log.commits import CommitRecord
from udr.log.format import BlobId, BlobKind, ChunkId, CommitId
from udr.log.store import LogStore
from udr.materialize.retained import LiveData
from udr.values import LakeStats, VerifyReport


def _records(log: LogStore, problems: list[str]) -> list[tuple[int, CommitId, CommitRecord]]:
    out = []
    for seq, cid in log.commits_from(0):
        try:
            record = log.get_commit(cid, cached=False)
        except (CorruptionError, RefNotFound) as exc:
            problems.append(str(exc))
            continue
        if record.seq != seq:
            problems.append(f"commit {cid} says seq {record.seq} but sits at log position {seq}")
        out.append((seq, cid, record))
    return out


def verify(log: LogStore, progress: Callable[[int, int], None] | None = None, *,
           live: LiveData | None = None) -> VerifyReport:
    """Check every commit (hash, parent links), every chunk file and log blob it references, and refs.

    With `live` (what the versions retention kept need), a chunk or blob that is absent and not needed
    counts as expired, not as a problem.
    """
    problems: list[str] = []
    expired = 0
    records = _records(log, problems)
    seqs = {cid: seq for seq, cid, _ in records}
    checked_chunks: set[str] = set()  # data chunks: Parquet files and inline row blobs, as `stats` counts them
    checked_blobs: set[str] = set()
    total = len(records)
    for n, (seq, cid, record) in enumerate(records):
        for parent in record.parents:
            if parent not in seqs:
                problems.append(f"commit {cid} has parent {parent} that is not in the log (broken chain link)")
            elif seqs[parent] >= seq:
                problems.append(f"commit {cid} has parent {parent} that comes later in the log")
        for table, op in record.tables.items():
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
                    if _expired(log, live, frag.chunk, frag.inline):
                        expired += 1
                    else:
                        problems.append(f"table {table!r} in commit {cid[:10]}: {exc}")
            for blob, kind in blobs:
                if blob in checked_blobs:
                    continue
                checked_blobs.add(blob)
                try:
                    log.get_blob(blob, kind)
                except CorruptionError as exc:
                    if _expired(log, live, blob, True):
                        expired += 1
                    else:
                        problems.append(f"table {table!r} in commit {cid[:10]}: {exc}")
        if progress is not None:
            progress(n + 1, total)
    for ref_kind, refs in (("branch", log.branches()), ("tag", log.tags())):
        for name, target in refs.items():
            if target not in seqs:
                problems.append(f"{ref_kind} {name!r} points to {target}, which is not in the log")
    return VerifyReport(commits_checked=len(records), chunks_checked=len(checked_chunks), problems=problems,
                        blobs_checked=len(checked_blobs), expired=expired)


def _expired(log: LogStore, live: LiveData | None, name: str, in_log: bool) -> bool:
    """Whether chunk or blob `name` is absent because only expired versions needed it (not damaged)."""
    if live is None or live.needs(name):
        return False
    return not (log.has_blob(BlobId(name)) if in_log else log.chunks.exists(ChunkId(name)))


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
