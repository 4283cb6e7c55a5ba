"""Iceberg's Avro files: manifests (data and delete files of a snapshot) and manifest lists.

The Avro schemas are the Iceberg v2 spec's, with the spec's field ids, holding the required fields and
none of the optional column statistics. Files are written whole to a temp name and renamed into place by
`udr.publish.target.write_atomic`, so a reader never opens a half-written one. Pure functions: safe from
any thread.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import fastavro

from udr.errors import CorruptionError

# Manifest entry status and content codes (Iceberg spec, "Manifests").
EXISTING, ADDED = 0, 1
DATA, POSITION_DELETES = 0, 1

_DATA_FILE = {
    "type": "record",
    "name": "r2",
    "fields": [
        {"name": "content", "type": "int", "field-id": 134},
        {"name": "file_path", "type": "string", "field-id": 100},
        {"name": "file_format", "type": "string", "field-id": 101},
        {"name": "partition", "type": {"type": "record", "name": "r102", "fields": []}, "field-id": 102},
        {"name": "record_count", "type": "long", "field-id": 103},
        {"name": "file_size_in_bytes", "type": "long", "field-id": 104},
    ],
}

MANIFEST_ENTRY = fastavro.parse_schema({
    "type": "record",
    "name": "manifest_entry",
    "fields": [
        {"name": "status", "type": "int", "field-id": 0},
        {"name": "snapshot_id", "type": ["null", "long"], "default": None, "field-id": 1},
        {"name": "sequence_number", "type": ["null", "long"], "default": None, "field-id": 3},
        {"name": "file_sequence_number", "type": ["null", "long"], "default": None, "field-id": 4},
        {"name": "data_file", "type": _DATA_FILE, "field-id": 2},
    ],
})

MANIFEST_FILE = fastavro.parse_schema({
    "type": "record",
    "name": "manifest_file",
    "fields": [
        {"name": "manifest_path", "type": "string", "field-id": 500},
        {"name": "manifest_length", "type": "long", "field-id": 501},
        {"name": "partition_spec_id", "type": "int", "field-id": 502},
        {"name": "content", "type": "int", "field-id": 517},
        {"name": "sequence_number", "type": "long", "field-id": 515},
        {"name": "min_sequence_number", "type": "long", "field-id": 516},
        {"name": "added_snapshot_id", "type": "long", "field-id": 503},
        {"name": "added_files_count", "type": "int", "field-id": 504},
        {"name": "existing_files_count", "type": "int", "field-id": 505},
        {"name": "deleted_files_count", "type": "int", "field-id": 506},
        {"name": "added_rows_count", "type": "long", "field-id": 512},
        {"name": "existing_rows_count", "type": "long", "field-id": 513},
        {"name": "deleted_rows_count", "type": "long", "field-id": 514},
    ],
})

# Avro file metadata key under which a delete manifest lists, per delete file, the chunks it covers.
COVERS_KEY = "udr.covers"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One data or position-delete file of a snapshot, as a manifest entry records it."""

    path: str
    rows: int
    size: int
    sequence: int
    snapshot_id: int
    # For delete files: the chunks (data files) whose deleted positions the file holds.
    covers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest file as a manifest list names it, with its entries (all live: EXISTING or ADDED)."""

    path: str
    length: int
    content: int
    sequence: int
    added_snapshot_id: int
    entries: tuple[FileEntry, ...]


def encode_manifest(content: int, entries: Sequence[FileEntry], snapshot_id: int,
                    table_meta: Mapping[str, str]) -> bytes:
    """The bytes of a manifest of `entries`; those with `snapshot_id` are ADDED, the rest EXISTING."""
    records = [{
        "status": ADDED if e.snapshot_id == snapshot_id else EXISTING,
        "snapshot_id": e.snapshot_id,
        "sequence_number": e.sequence,
        "file_sequence_number": e.sequence,
        "data_file": {"content": content, "file_path": e.path, "file_format": "PARQUET", "partition": {},
                      "record_count": e.rows, "file_size_in_bytes": e.size},
    } for e in entries]
    metadata = {**table_meta, "content": "deletes" if content == POSITION_DELETES else "data"}
    if content == POSITION_DELETES:
        metadata[COVERS_KEY] = json.dumps({e.path: list(e.covers) for e in entries}, sort_keys=True)
    out = io.BytesIO()
    fastavro.writer(out, MANIFEST_ENTRY, records, metadata=metadata, codec="deflate")
    return out.getvalue()


def decode_manifest(data: bytes, path: str) -> tuple[int, tuple[FileEntry, ...]]:
    """(content, live entries) of a manifest written by `encode_manifest`.

    Raises:
        CorruptionError: the bytes are not such a manifest.
    """
    try:
        reader = fastavro.reader(io.BytesIO(data))
        meta = reader.metadata
        covers = json.loads(meta.get(COVERS_KEY, "{}"))
        entries = []
        content = DATA
        for record in reader:
            rec = cast(dict[str, object], record)
            df = cast(dict[str, object], rec["data_file"])
            content = int(cast(int, df["content"]))
            file_path = str(df["file_path"])
            entries.append(FileEntry(file_path, int(cast(int, df["record_count"])),
                                     int(cast(int, df["file_size_in_bytes"])), int(cast(int, rec["sequence_number"])),
                                     int(cast(int, rec["snapshot_id"])), tuple(covers.get(file_path, ()))))
        if meta.get("content") == "deletes":
            content = POSITION_DELETES
    except (ValueError, KeyError, TypeError, EOFError) as exc:
        raise CorruptionError(f"Iceberg manifest {path} is unreadable: {exc}; "
                              "publish again to a new destination") from exc
    return content, tuple(entries)


def encode_manifest_list(manifests: Sequence[Manifest], snapshot_id: int, parent_id: int | None,
                         sequence: int) -> bytes:
    """The bytes of a snapshot's manifest list."""
    records = []
    for m in manifests:
        added = [e for e in m.entries if e.snapshot_id == m.added_snapshot_id]
        records.append({
            "manifest_path": m.path, "manifest_length": m.length, "partition_spec_id": 0, "content": m.content,
            "sequence_number": m.sequence,
            "min_sequence_number": min((e.sequence for e in m.entries), default=m.sequence),
            "added_snapshot_id": m.added_snapshot_id,
            "added_files_count": len(added), "existing_files_count": len(m.entries) - len(added),
            "deleted_files_count": 0, "added_rows_count": sum(e.rows for e in added),
            "existing_rows_count": sum(e.rows for e in m.entries) - sum(e.rows for e in added),
            "deleted_rows_count": 0,
        })
    metadata = {"snapshot-id": str(snapshot_id), "parent-snapshot-id": str(parent_id) if parent_id else "null",
                "sequence-number": str(sequence), "format-version": "2"}
    out = io.BytesIO()
    fastavro.writer(out, MANIFEST_FILE, records, metadata=metadata, codec="deflate")
    return out.getvalue()


def decode_manifest_list(data: bytes, path: str) -> list[tuple[str, int, int, int]]:
    """(manifest path, length, sequence number, added snapshot id) of each manifest a list names.

    Raises:
        CorruptionError: the bytes are not a manifest list.
    """
    try:
        return [(str(r["manifest_path"]), int(r["manifest_length"]), int(r["sequence_number"]),
                 int(r["added_snapshot_id"]))
                for r in cast(list[dict[str, int]], list(fastavro.reader(io.BytesIO(data))))]
    except (ValueError, KeyError, TypeError, EOFError) as exc:
        raise CorruptionError(f"Iceberg manifest list {path} is unreadable: {exc}; "
                              "publish again to a new destination") from exc
