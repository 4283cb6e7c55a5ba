"""One published Iceberg table's metadata: the `vN.metadata.json` document and the files of a snapshot.

`TableMetadata` is the document being built by one publish call (not shared across threads).
`write_snapshot_files` writes a snapshot's manifests, its position-delete file and its manifest list;
`write_metadata` then makes the new version visible: `vN.metadata.json` created atomically and
exclusively, `version-hint.text` replaced after it (a reader that finds a stale hint reads the previous
version, which is complete). Names are deterministic (snapshot id based), so a publish retried after a
crash rewrites the same files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from udr.errors import CorruptionError
from udr.log.commits import CommitRecord
from udr.publish.avro import (
    DATA,
    POSITION_DELETES,
    FileEntry,
    Manifest,
    encode_manifest,
    encode_manifest_list,
)
from udr.publish.deletes import DeletePlan, encode_position_deletes
from udr.publish.schema import (
    IcebergSchema,
    name_mapping,
    same_fields,
    to_iceberg,
)
from udr.publish.target import Target

# Past this many manifests of one kind, a snapshot merges them into one (readers open every manifest).
MAX_MANIFESTS = 32
_HINT = "version-hint.text"
_NAME_MAPPING = "schema.name-mapping.default"
_COLUMN_IDS = "udr.column-ids"
_ERASURES = "udr.erasures"


def _metadata_file(table: str, name: str) -> str:
    return f"{table}/metadata/{name}"


class TableMetadata:
    """A published table's metadata document, as read and as being extended."""

    def __init__(self, target: Target, table: str, version: int, doc: dict[str, Any]) -> None:
        self.target = target
        self.table = table
        self.version = version
        self.doc = doc

    @classmethod
    def fresh(cls, target: Target, table: str, table_uuid: str, erasures: int = 0) -> TableMetadata:
        """The metadata of a table with no snapshot yet (version 0: never written) reflecting `erasures`."""
        meta = cls(target, table, 0, {
            "format-version": 2, "table-uuid": table_uuid, "location": target.uri(table), "last-sequence-number": 0,
            "last-updated-ms": 0, "last-column-id": 0, "current-schema-id": 0, "schemas": [],
            "default-spec-id": 0, "partition-specs": [{"spec-id": 0, "fields": []}], "last-partition-id": 999,
            "default-sort-order-id": 0, "sort-orders": [{"order-id": 0, "fields": []}],
            "properties": {"udr.lake": target.lake, "udr.table": table}, "refs": {}, "snapshots": [],
            "snapshot-log": [], "metadata-log": [],
        })
        if erasures:
            meta.properties[_ERASURES] = str(erasures)
        return meta

    @property
    def properties(self) -> dict[str, str]:
        """The table properties."""
        props: dict[str, str] = self.doc["properties"]
        return props

    @property
    def erasures(self) -> int:
        """How many of the lake's erasures this table's files reflect (`udr.log.erasure` generation)."""
        return int(self.properties.get(_ERASURES, "0"))

    def file_tag(self) -> str:
        """What the names of this table's manifests, lists and delete files carry, so that the files of a
        rebuild after an erasure never collide with the ones they replace."""
        return f"-e{self.erasures}" if self.erasures else ""

    def rebuilt(self, erasures: int) -> TableMetadata:
        """An empty document for this table (same uuid and location) reflecting `erasures`, to be written as the
        version after this one."""
        fresh = TableMetadata.fresh(self.target, self.table, self.doc["table-uuid"], erasures)
        fresh.version = self.version
        return fresh

    @property
    def last_sequence(self) -> int:
        """The highest sequence number any snapshot has."""
        return int(self.doc["last-sequence-number"])

    def _snapshots(self) -> list[dict[str, Any]]:
        snapshots: list[dict[str, Any]] = self.doc["snapshots"]
        return snapshots

    def _schemas(self) -> list[IcebergSchema]:
        schemas: list[IcebergSchema] = self.doc["schemas"]
        return schemas

    def commits(self) -> list[str]:
        """The UDR commit each snapshot was published from."""
        return [str(s["summary"]["udr.commit"]) for s in self._snapshots()]

    def snapshot_ids(self) -> set[int]:
        """Ids of every snapshot of the table."""
        return {int(s["snapshot-id"]) for s in self._snapshots()}

    def manifest_list(self, sid: int) -> str:
        """The manifest list URI of snapshot `sid`."""
        for s in self._snapshots():
            if s["snapshot-id"] == sid:
                return str(s["manifest-list"])
        raise CorruptionError(f"Iceberg table {self.target.uri(self.table)} has no snapshot {sid}; publish again "
                              "to a new destination")

    def schema_id(self, arrow: pa.Schema | None, table: str) -> int:
        """The id of the Iceberg schema for `arrow` (added when new; None: the current schema)."""
        if arrow is None:
            return int(self.doc["current-schema-id"])
        schemas = self._schemas()
        column_ids: dict[str, str] = json.loads(self.properties.get(_COLUMN_IDS, "{}"))
        candidate, last, new_ids = to_iceberg(arrow, table, int(self.doc["last-column-id"]), len(schemas))
        for existing in schemas:
            if same_fields(existing, candidate):
                return int(existing["schema-id"])
        schemas.append(candidate)
        self.doc["last-column-id"] = last
        self.properties[_COLUMN_IDS] = json.dumps({**column_ids, **new_ids}, sort_keys=True)
        self.properties[_NAME_MAPPING] = name_mapping(schemas)
        return int(candidate["schema-id"])

    def avro_meta(self, schema_id: int) -> dict[str, str]:
        """The Avro file metadata Iceberg puts in a manifest written with schema `schema_id`."""
        schema = next(s for s in self._schemas() if s["schema-id"] == schema_id)
        return {"schema": json.dumps(schema), "schema-id": str(schema_id), "partition-spec": "[]",
                "partition-spec-id": "0", "format-version": "2"}

    def add_snapshot(self, sid: int, parent: int | None, seq: int, record: CommitRecord, list_uri: str,
                     schema_id: int, summary: Mapping[str, str], *, on_main: bool) -> None:
        """Append a snapshot for commit `record` (timestamp: the commit time); `on_main`: the snapshot is
        on the main branch's history."""
        snap: dict[str, object] = {
            "snapshot-id": sid, "sequence-number": seq, "timestamp-ms": record.time_us // 1000,
            "manifest-list": list_uri, "schema-id": schema_id,
            "summary": {**summary, "udr.author": record.author, "udr.message": record.message},
        }
        if parent is not None:
            snap["parent-snapshot-id"] = parent
        self._snapshots().append(snap)
        if on_main:
            # Timestamp time travel walks this log: every snapshot main passed through is in it.
            self.doc["snapshot-log"].append({"timestamp-ms": snap["timestamp-ms"], "snapshot-id": sid})
        self.doc["last-sequence-number"] = seq
        self.doc["current-schema-id"] = schema_id
        self.doc["last-updated-ms"] = max(int(self.doc["last-updated-ms"]), record.time_us // 1000)

    def _wanted_refs(self, branch: str, tip: int | None, tags: Mapping[str, int]) -> dict[str, dict[str, Any]]:
        refs = {name: ref for name, ref in self.doc["refs"].items()
                if ref["type"] == "branch" and name != branch}
        if tip is not None:
            refs[branch] = {"snapshot-id": tip, "type": "branch"}
        refs.update({name: {"snapshot-id": sid, "type": "tag"} for name, sid in tags.items() if name not in refs})
        return refs

    def refs_differ(self, branch: str, tip: int | None, tags: Mapping[str, int]) -> bool:
        """Whether `set_refs` would change the refs."""
        return bool(self._wanted_refs(branch, tip, tags) != self.doc["refs"])

    def set_refs(self, branch: str, tip: int | None, tags: Mapping[str, int]) -> None:
        """Point `branch` at `tip` (for main also the current snapshot) and the tags at their snapshots."""
        self.doc["refs"] = self._wanted_refs(branch, tip, tags)
        main = self.doc["refs"].get("main")
        current = main["snapshot-id"] if main is not None else None
        if current is not None and current != self.doc.get("current-snapshot-id"):
            self.doc["current-snapshot-id"] = current
            log: list[dict[str, object]] = self.doc["snapshot-log"]
            if not log or log[-1]["snapshot-id"] != current:
                stamp = next(s["timestamp-ms"] for s in self._snapshots() if s["snapshot-id"] == current)
                log.append({"timestamp-ms": stamp, "snapshot-id": current})


def load_metadata(target: Target, table: str) -> TableMetadata | None:
    """The newest complete metadata version of `table` at `target`, None if there is none.

    Raises:
        CorruptionError: the newest version is not valid JSON.
    """
    hint = target.read(_metadata_file(table, _HINT))
    try:
        version = int(hint.strip()) if hint is not None else 0
    except ValueError:
        version = 0
    # The hint is replaced after the version it names appears, so a crash can leave it one behind.
    found = None
    while (raw := target.read(_metadata_file(table, f"v{version + 1}.metadata.json"))) is not None:
        version, found = version + 1, raw
    if version == 0:
        return None
    name = _metadata_file(table, f"v{version}.metadata.json")
    raw = found if found is not None else target.read(name)
    try:
        if raw is None:
            raise ValueError("the version hint names a metadata version that does not exist")
        return TableMetadata(target, table, version, json.loads(raw))
    except ValueError as exc:
        raise CorruptionError(f"Iceberg metadata {target.uri(name)} is damaged: {exc}; publish to a new "
                              "destination") from exc


def metadata_files(meta: TableMetadata) -> set[str]:
    """The names of `meta`'s current metadata version and version hint."""
    return {_metadata_file(meta.table, f"v{meta.version}.metadata.json"), _metadata_file(meta.table, _HINT)}


def write_metadata(meta: TableMetadata, *, log_previous: bool = True) -> int:
    """Write the next metadata version, then the version hint; return the bytes written. `log_previous`: list
    the version it follows in its metadata log (not after a rebuild, which deletes that version).

    Raises:
        ConflictError: another publisher wrote that version first.
    """
    target, table = meta.target, meta.table
    if meta.version and log_previous:
        log: list[dict[str, object]] = meta.doc["metadata-log"]
        log.append({"timestamp-ms": meta.doc["last-updated-ms"],
                    "metadata-file": target.uri(_metadata_file(table, f"v{meta.version}.metadata.json"))})
    meta.version += 1
    data = json.dumps(meta.doc, indent=1).encode()
    size = target.write(_metadata_file(table, f"v{meta.version}.metadata.json"), data, exclusive=True)
    return size + target.write(_metadata_file(table, _HINT), str(meta.version).encode())


@dataclass(frozen=True, slots=True)
class SnapshotFiles:
    """What `write_snapshot_files` wrote."""

    list_uri: str
    manifests: tuple[Manifest, ...]
    files: int
    bytes: int


class _Writer:
    def __init__(self, meta: TableMetadata, sid: int, seq: int, schema_id: int) -> None:
        self.meta, self.sid, self.seq = meta, sid, seq
        self.avro = meta.avro_meta(schema_id)
        self.files = 0
        self.bytes = 0
        self.written: list[Manifest] = []

    def manifest(self, content: int, entries: Sequence[FileEntry]) -> Manifest:
        meta = self.meta
        name = _metadata_file(meta.table, f"{self.sid}{meta.file_tag()}-m{len(self.written)}.avro")
        length = meta.target.write(name, encode_manifest(content, entries, self.sid, self.avro))
        self.files += 1
        self.bytes += length
        m = Manifest(meta.target.uri(name), length, content, self.seq, self.sid, tuple(entries))
        self.written.append(m)
        return m

    def carry(self, content: int, manifests: Sequence[Manifest], live: set[str],
              added: Sequence[FileEntry]) -> list[Manifest]:
        """Manifests of the new snapshot: unchanged ones reused, ones that lost files rewritten, one for
        `added`; all merged into one when there are too many."""
        out: list[Manifest] = []
        for m in manifests:
            kept = [e for e in m.entries if e.path in live]
            if len(kept) == len(m.entries):
                out.append(m)
            elif kept:
                out.append(self.manifest(content, kept))
        if len(out) >= MAX_MANIFESTS:
            out = [self.manifest(content, [e for m in out for e in m.entries])]
        if added:
            out.append(self.manifest(content, added))
        return out


def write_snapshot_files(meta: TableMetadata, sid: int, parent: int | None, seq: int, schema_id: int,
                         data: Sequence[Manifest],
                         live: set[str], added: Sequence[FileEntry], deletes: Sequence[Manifest],
                         plan: DeletePlan) -> SnapshotFiles:
    """Write a snapshot's manifests, position-delete file and manifest list (before its metadata)."""
    writer = _Writer(meta, sid, seq, schema_id)
    new_deletes: list[FileEntry] = []
    if plan.write:
        name = f"{meta.table}/data/{sid}{meta.file_tag()}-deletes.parquet"
        size = meta.target.write(name, encode_position_deletes(plan.write))
        writer.files += 1
        writer.bytes += size
        new_deletes.append(FileEntry(meta.target.uri(name), sum(len(p) for _, p in plan.write), size, seq, sid,
                                     tuple(p for p, _ in plan.write)))
    manifests = writer.carry(DATA, data, live, added) + writer.carry(POSITION_DELETES, deletes, set(plan.keep),
                                                                      new_deletes)
    list_name = _metadata_file(meta.table, f"snap-{sid}{meta.file_tag()}.avro")
    size = meta.target.write(list_name, encode_manifest_list(manifests, sid, parent, seq))
    return SnapshotFiles(meta.target.uri(list_name), tuple(writer.written), writer.files + 1, writer.bytes + size)
