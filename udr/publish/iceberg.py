"""Publishing UDR tables as Apache Iceberg v2 tables whose data files are UDR's own Parquet chunks.

`publish_iceberg` writes one Iceberg table per UDR table at `DEST/<table>/`: Avro manifests and manifest
lists, `metadata/vN.metadata.json` and `metadata/version-hint.text`, readable by any Hadoop-style or
static-table reader. Each UDR commit that changed the table becomes one Iceberg snapshot (id derived from
the commit id, timestamp the commit time, summary naming the commit), so time travel by snapshot id or
timestamp reads what UDR reads at that commit. UDR tags become Iceberg tags; the published branch
becomes the Iceberg branch of that name (`main` is also the current snapshot).

Invariants:
- Zero copy: data files are the lake's chunk files by absolute URI. Inline fragments get a Parquet chunk in
  the chunk store once, pinned for the destination (`udr.log.pins`), so `gc` keeps it until unpublish.
- Crash-safe: manifests and delete files are written and fsynced first; the new `vN.metadata.json` then
  appears atomically (hard link of a fsynced temp file: create-if-absent, so two publishers cannot both
  write version N); `version-hint.text` is replaced after it. Readers see the old version or the new one.
- Incremental and idempotent: only commits after the last published one are read and written; publishing
  again with nothing new writes nothing.
- Erasure reaches the copy: each table records how many of the lake's erasures its files reflect. When the lake
  has more, the next publish rebuilds the table's Iceberg history from the lake (whose readers see every
  version through the erasures' replacement maps): every snapshot keeps its id and time but names the
  replacement chunks, in files with new names; once the new metadata version is in place, the files only
  older versions named are deleted and the pins of replaced inline copies dropped, so `gc` can free every
  byte of the erased rows. `Lake.erase` republishes every recorded destination (`udr.log.publications`).
Not safe for two publishers of one destination at once: the second gets `ConflictError` and retries.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from udr.errors import (
    CorruptionError,
    RefNotFound,
    TableNotFound,
    UsageError,
    close_matches,
)
from udr.log import graph
from udr.log.erasure import ErasureStore
from udr.log.format import ChunkId, CommitId
from udr.log.pins import PinStore
from udr.log.protocols import LakeLog
from udr.log.publications import PublicationStore
from udr.materialize.data import RowReader
from udr.materialize.protocols import Snapshots
from udr.materialize.states import FragmentState, TableState
from udr.publish.avro import (
    DATA,
    POSITION_DELETES,
    FileEntry,
    Manifest,
    decode_manifest,
    decode_manifest_list,
)
from udr.publish.deletes import plan_deletes
from udr.publish.files import inline_owner, materialize_inline
from udr.publish.metadata import (
    TableMetadata,
    load_metadata,
    metadata_files,
    write_metadata,
    write_snapshot_files,
)
from udr.publish.target import Target


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What one `publish_iceberg` call did."""

    dest: str
    snapshots: dict[str, int] = field(default_factory=dict)  # table -> Iceberg snapshots added
    files_written: int = 0
    bytes_written: int = 0


def snapshot_id(cid: CommitId) -> int:
    """The Iceberg snapshot id of a UDR commit: its first 60 bits (positive, stable, unique in practice)."""
    return int(cid[:15], 16)


@dataclass(slots=True)
class _Context:
    log: LakeLog
    materializer: Snapshots
    rows: RowReader
    target: Target
    branch: str
    head: CommitId
    erasures: int
    files: int = 0
    bytes: int = 0
    written: set[str] = field(default_factory=set)  # files a rebuild wrote (the only ones it keeps)


def publish_iceberg(log: LakeLog, materializer: Snapshots, rows: RowReader, target: Target,
                    tables: Sequence[str] | None, branch: str) -> PublishReport:
    """Publish `tables` (None: every table at the head) of `branch` as Iceberg tables at `target`.

    Raises:
        RefNotFound: no such branch.
        TableNotFound: a named table never existed on the branch.
        UsageError: the destination or the lake's path holds characters Iceberg readers misread in URIs.
        SchemaError: a column type Iceberg cannot describe.
        ConflictError: another publisher wrote the same destination meanwhile; publish again.
    """
    head = log.head(branch)
    if head is None:
        raise RefNotFound(f"branch {branch!r} does not exist" + close_matches(branch, log.branches()))
    for place in (target.name, target.lake):
        if set(place) & set("#?%"):
            # Iceberg names files by URI and readers (pyiceberg) parse "#", "?" and "%" as URI syntax.
            raise UsageError(f"{place} contains '#', '?' or '%', which Iceberg readers misread in file URIs; "
                             "use a path without them")
    erasures = ErasureStore.of(log)
    ctx = _Context(log, materializer, rows, target, branch, head, erasures.generation())
    names = sorted(materializer.snapshot(head)) if tables is None else list(tables)
    added = {name: _publish_table(ctx, name) for name in names}
    PublicationStore(log).record(target.name, "iceberg", branch, tables)
    owner = inline_owner(target.name)
    if ctx.erasures:
        # Copies of inline rows an erasure replaced: no metadata names them any more.
        pins = PinStore(log)
        pins.unpin(owner, [name for name in pins.pins(owner) if erasures.is_replaced(name)])
    return PublishReport(target.name, added, ctx.files, ctx.bytes)


def _own_tables(target: Target) -> list[TableMetadata]:
    """The tables at `target` that the lake `target.lake` published."""
    found = (load_metadata(target, table) for table in target.tables())
    return [meta for meta in found if meta is not None and meta.properties.get("udr.lake") == target.lake]


def unpublish_iceberg(log: LakeLog, target: Target) -> list[str]:
    """Delete the Iceberg tables this lake published at `target` and release their pins (so `gc` may
    free the Parquet copies of inline rows); return the tables removed."""
    removed = []
    for meta in _own_tables(target):
        target.remove(meta.table)
        removed.append(meta.table)
    # Pins go last: a crash before this leaves chunks kept, never a published table without its files.
    PinStore(log).release(inline_owner(target.name))
    PublicationStore(log).remove(target.name)
    return removed


def published_commits(log: LakeLog, open_target: Callable[[str], Target]) -> dict[CommitId, str]:
    """Every commit that a snapshot of an Iceberg table this lake published (and did not unpublish) reads ->
    where: `expire` keeps their data, as the tables' readers need it. `open_target` opens a recorded
    destination."""
    out: dict[CommitId, str] = {}
    for publication in PublicationStore(log).all():
        target = open_target(publication.dest)
        for meta in _own_tables(target) if target.exists() else []:
            for commit in meta.commits():
                out.setdefault(CommitId(commit), f"published Iceberg table {target.name}/{meta.table}")
    return out


def _new_commits(log: LakeLog, head: CommitId, table: str, known: set[int]) -> tuple[CommitId | None, list[CommitId]]:
    """(the newest published commit on head's first-parent chain, the commits after it that touched
    `table`, oldest first)."""
    new: list[CommitId] = []
    for cursor, record in graph.first_parents(log, head):
        if snapshot_id(cursor) in known:
            return cursor, new[::-1]
        if table in record.tables:
            new.append(cursor)
    return None, new[::-1]


def _publish_table(ctx: _Context, table: str) -> int:
    target = ctx.target
    meta = load_metadata(target, table) or TableMetadata.fresh(
        target, table, str(uuid.uuid5(uuid.NAMESPACE_URL, target.uri(table))), ctx.erasures)
    rebuild = meta.erasures != ctx.erasures
    if rebuild:
        meta = meta.rebuilt(ctx.erasures)
        ctx.written.clear()
    base, new = _new_commits(ctx.log, ctx.head, table, meta.snapshot_ids())
    if base is None and not new and ctx.materializer.table(ctx.head, table) is None:
        raise TableNotFound(f"table {table!r} never existed on branch {ctx.branch!r}; nothing to publish")
    before = ctx.materializer.table(base, table) if base is not None else None
    states = [ctx.materializer.table(c, table) for c in new]
    inline = [f for s in [before, *states] if s is not None for f in s.fragments if f.inline]
    copies = materialize_inline(ctx.log, ctx.rows, target.name, inline, table) if inline and new else {}
    manifests = _Manifests(meta)
    parent = snapshot_id(base) if base is not None else None
    for cid, state in zip(new, states):
        _add_snapshot(ctx, meta, manifests, table, cid, parent, before, state, copies)
        parent, before = snapshot_id(cid), state
    tip = _tip(ctx.log, ctx.head, table, meta.snapshot_ids())
    tags = {name: sid for name, cid in ctx.log.tags().items()
            if (sid := _tip(ctx.log, cid, table, meta.snapshot_ids())) is not None}
    if new or rebuild or meta.refs_differ(ctx.branch, tip, tags):
        meta.set_refs(ctx.branch, tip, tags)
        ctx.bytes += write_metadata(meta, log_previous=not rebuild)
        ctx.files += 2  # the metadata version and the hint
    if rebuild:
        _delete_replaced(meta, ctx.written)
    return len(new)


def _delete_replaced(meta: TableMetadata, written: set[str]) -> None:
    """After a rebuild's metadata version is in place: delete the table's files that only older versions name
    (they name chunks an erasure replaced)."""
    keep = written | metadata_files(meta)
    target = meta.target
    for folder in (f"{meta.table}/metadata", f"{meta.table}/data"):
        # The table's folder belongs to this publisher alone: what is in it and not kept is an older version's.
        for name in target.files(folder):
            if name not in keep:
                target.delete(name)


def _tip(log: LakeLog, cid: CommitId, table: str, known: set[int]) -> int | None:
    """The snapshot holding `table` as of commit `cid` (its newest ancestor that changed it), if published."""
    for cursor, record in graph.first_parents(log, cid):
        if table in record.tables:
            sid = snapshot_id(cursor)
            return sid if sid in known else None
    return None


class _Manifests:
    """Reads the manifests of published snapshots (each file once per publish call)."""

    def __init__(self, meta: TableMetadata) -> None:
        self._meta = meta
        self._target = meta.target
        self._cache: dict[str, Manifest] = {}

    def of(self, sid: int | None) -> list[Manifest]:
        """The manifests of snapshot `sid` (none for None)."""
        if sid is None:
            return []
        list_path = self._meta.manifest_list(sid)
        out = []
        for path, length, seq, added_by in decode_manifest_list(self._read(list_path), list_path):
            found = self._cache.get(path)
            if found is None:
                content, entries = decode_manifest(self._read(path), path)
                found = self._cache[path] = Manifest(path, length, content, seq, added_by, entries)
            out.append(found)
        return out

    def _read(self, uri: str) -> bytes:
        raw = self._target.read(self._target.rel(uri))
        if raw is None:
            raise CorruptionError(f"Iceberg file {uri} is missing; publish again to a new destination")
        return raw

    def remember(self, manifests: Iterable[Manifest]) -> None:
        """Keep manifests just written (the next snapshot starts from them)."""
        for m in manifests:
            self._cache[m.path] = m


def _file_paths(ctx: _Context, state: TableState | None, copies: dict[ChunkId, ChunkId],
                table: str) -> dict[str, tuple[FragmentState, ChunkId]]:
    """Data file URI -> (fragment, the chunk file it is) of every fragment of `state`."""
    if state is None:
        return {}
    uri = ctx.target.chunk_uri
    return {(uri(copies[f.chunk], table, inline=True) if f.inline else uri(f.chunk, table)):
            (f, copies[f.chunk] if f.inline else f.chunk) for f in state.fragments}


def _add_snapshot(ctx: _Context, meta: TableMetadata, manifests: _Manifests, table: str, cid: CommitId,
                  parent: int | None, before: TableState | None, state: TableState | None,
                  copies: dict[ChunkId, ChunkId]) -> None:
    sid = snapshot_id(cid)
    seq = meta.last_sequence + 1
    previous = manifests.of(parent)
    old_files = {p: f for p, (f, _) in _file_paths(ctx, before, copies, table).items()}
    located = _file_paths(ctx, state, copies, table)
    new_files = {p: f for p, (f, _) in located.items()}
    data = [m for m in previous if m.content == DATA]
    live_data = {e.path: e for m in data for e in m.entries}
    added = [FileEntry(p, f.rows, ctx.target.prepare_chunk(p, chunk), seq, sid)
             for p, (f, chunk) in located.items() if p not in live_data]
    data_seq = {e.path: e.sequence for e in live_data.values()} | {e.path: seq for e in added}

    def positions(frag: FragmentState) -> np.ndarray:
        return np.asarray(ctx.rows.deleted_positions(frag), dtype=np.int64)

    deletes = [m for m in previous if m.content == POSITION_DELETES]
    plan = plan_deletes({p: f for p, f in old_files.items() if p in new_files and p in live_data}, new_files,
                        data_seq, [e for m in deletes for e in m.entries], positions)
    schema_id = meta.schema_id(ctx.rows.schema(state.schema) if state is not None else None, table)
    written = write_snapshot_files(meta, sid, parent, seq, schema_id, data, set(new_files), added, deletes, plan)
    manifests.remember(written.manifests)
    rel = ctx.target.rel
    ctx.written |= {rel(written.list_uri)} | {rel(m.path) for m in written.manifests} | {
        rel(e.path) for m in written.manifests if m.content == POSITION_DELETES for e in m.entries} | {
        rel(p) for p in new_files if ctx.target.owns(p)}
    ctx.files += written.files
    ctx.bytes += written.bytes
    record = ctx.log.get_commit(cid)
    removed = len(live_data.keys() - new_files.keys())
    operation = "replace" if record.tables[table].rewrite else (
        "append" if not removed and not plan.write else "delete" if not added else "overwrite")
    meta.add_snapshot(sid, parent, seq, record, written.list_uri, schema_id, {
        "operation": operation, "udr.commit": cid, "udr.seq": str(record.seq),
        "added-data-files": str(len(added)), "deleted-data-files": str(removed),
        "total-records": str(state.rows if state is not None else 0),
    }, on_main=ctx.branch == "main")
