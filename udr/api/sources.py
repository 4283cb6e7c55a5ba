"""Tables kept elsewhere as rows UDR can write: a Delta table, an Iceberg table, Parquet files.

A source is a path: a Delta table directory (it has `_delta_log/`), an Iceberg table (a directory with
`metadata/*.metadata.json`, or one such metadata file), a directory of Parquet files, or a glob of them
(`data/*.parquet`). Rows stream as Arrow record batches, so a source larger than memory imports in bounded
memory. Delta and Iceberg need optional extras (`deltalake`, `pyiceberg`); a missing one is named in the error.

`source_versions` lists a Delta or Iceberg table's history, oldest first, so each version can become one UDR
commit. Reading never writes to the source.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.dataset as pads

from udr.errors import UsageError

SourceKind = Literal["delta", "iceberg", "parquet"]
_EXTRAS = {"delta": ("deltalake", "delta"), "iceberg": ("pyiceberg", "iceberg")}
_DISTRIBUTION = "udr-lake"


@dataclass(frozen=True, slots=True)
class SourceVersion:
    """One version of a Delta or Iceberg table, as `source_versions` lists them.

    Attributes:
        version: the Delta version number or the Iceberg snapshot id.
        time: when the source committed it (UTC).
        author: who committed it, when the source records it.
        message: the source's operation (Delta) or snapshot operation and summary (Iceberg).
    """

    version: int
    time: datetime
    author: str | None
    message: str


def source_kind(path: str | os.PathLike[str]) -> SourceKind | None:
    """What table format `path` holds, or None when it names no source (not a directory, glob or metadata file)."""
    text = os.fspath(path)
    p = Path(text)
    if p.is_dir() and (p / "_delta_log").is_dir():
        return "delta"
    if (p.is_dir() and (p / "metadata").is_dir()) or text.endswith(".metadata.json"):
        return "iceberg"
    if p.is_dir() or glob.has_magic(text):
        return "parquet"
    return None


def read_source(path: str | os.PathLike[str], version: int | None = None) -> pa.RecordBatchReader:
    """Stream the rows of the source at `path` (at `version`, for Delta and Iceberg; None: the latest).

    Raises:
        UsageError: `path` names no readable source, holds no Parquet file, or needs an extra not installed.
    """
    kind = source_kind(path)
    if kind is None:
        raise UsageError(f"{os.fspath(path)!r} is not a Delta table, an Iceberg table, a directory of Parquet "
                         "files or a glob")
    if kind == "delta":
        return _read_delta(os.fspath(path), version)
    if kind == "iceberg":
        return _read_iceberg(os.fspath(path), version)
    if version is not None:
        raise UsageError("plain Parquet files have no versions; import them without a version")
    return _read_parquet(os.fspath(path))


def source_versions(path: str | os.PathLike[str]) -> list[SourceVersion]:
    """The versions of the Delta or Iceberg table at `path`, oldest first.

    Raises:
        UsageError: `path` is not a Delta or Iceberg table, or needs an extra not installed.
    """
    kind = source_kind(path)
    if kind == "delta":
        return _delta_versions(os.fspath(path))
    if kind == "iceberg":
        return _iceberg_versions(os.fspath(path))
    raise UsageError(f"{os.fspath(path)!r} has no history: only Delta and Iceberg tables keep versions")


def _missing(kind: str) -> UsageError:
    package, extra = _EXTRAS[kind]
    return UsageError(f"reading a {kind.capitalize()} table needs {package}: pip install '{_DISTRIBUTION}[{extra}]'")


def _read_parquet(text: str) -> pa.RecordBatchReader:
    files = sorted(glob.glob(text)) if glob.has_magic(text) else sorted(
        str(p) for p in Path(text).rglob("*.parquet") if p.is_file())
    if not files:
        raise UsageError(f"{text!r} holds no Parquet file")
    try:
        return pads.dataset(files, format="parquet").scanner().to_reader()
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(f"cannot read the Parquet files of {text!r}: {exc}") from exc


def _delta_table(text: str, version: int | None) -> object:
    try:
        import deltalake
    except ImportError as exc:
        raise _missing("delta") from exc
    try:
        return deltalake.DeltaTable(text, version=version)
    except Exception as exc:  # deltalake raises its own and builtin errors alike for a bad table or version
        raise UsageError(f"cannot read the Delta table {text!r}: {exc}") from exc


def _read_delta(text: str, version: int | None) -> pa.RecordBatchReader:
    table = _delta_table(text, version)
    try:
        dataset = table.to_pyarrow_dataset()  # type: ignore[attr-defined]
        reader: pa.RecordBatchReader = dataset.scanner().to_reader()
    except Exception as exc:  # e.g. deletion vectors or column mapping this deltalake cannot scan
        raise UsageError(f"cannot read the Delta table {text!r}: {exc}") from exc
    return reader


def _delta_versions(text: str) -> list[SourceVersion]:
    table = _delta_table(text, None)
    out = []
    for entry in table.history():  # type: ignore[attr-defined]
        params = entry.get("operationParameters") or {}
        detail = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
        out.append(SourceVersion(
            version=int(entry["version"]),
            time=datetime.fromtimestamp(int(entry["timestamp"]) / 1000, timezone.utc),
            author=entry.get("userName"),
            message=f"{entry.get('operation', 'WRITE')} ({detail})" if detail else str(entry.get("operation", "WRITE")),
        ))
    return sorted(out, key=lambda v: v.version)


def _iceberg_table(text: str) -> object:
    try:
        from pyiceberg.table import StaticTable
    except ImportError as exc:
        raise _missing("iceberg") from exc
    location = text if text.endswith(".metadata.json") else _latest_metadata(Path(text))
    try:
        return StaticTable.from_metadata(location)
    except Exception as exc:  # pyiceberg raises builtin and its own errors alike for a bad table
        raise UsageError(f"cannot read the Iceberg table {text!r}: {exc}") from exc


def _latest_metadata(table_dir: Path) -> str:
    """The newest `metadata/vN.metadata.json` (or `NNNNN-uuid.metadata.json`) of an Iceberg table directory."""
    hint = table_dir / "metadata" / "version-hint.text"
    if hint.is_file():
        named = table_dir / "metadata" / f"v{hint.read_text().strip()}.metadata.json"
        if named.is_file():
            return str(named)
    found = [(int(m.group(1)), p) for p in (table_dir / "metadata").glob("*.metadata.json")
             if (m := re.match(r"v?(\d+)", p.name))]
    if not found:
        raise UsageError(f"{str(table_dir)!r} has no Iceberg metadata file")
    return str(max(found)[1])


def _read_iceberg(text: str, version: int | None) -> pa.RecordBatchReader:
    table = _iceberg_table(text)
    try:
        reader: pa.RecordBatchReader = table.scan(snapshot_id=version).to_arrow_batch_reader()  # type: ignore[attr-defined]
    except Exception as exc:  # an unknown snapshot id, unreadable files
        raise UsageError(f"cannot read the Iceberg table {text!r}: {exc}") from exc
    return reader


def _iceberg_versions(text: str) -> list[SourceVersion]:
    table = _iceberg_table(text)
    out = []
    for snap in table.metadata.snapshots:  # type: ignore[attr-defined]
        summary = snap.summary
        operation = summary.operation.value if summary is not None else "append"
        extra = {k: v for k, v in (summary.additional_properties.items() if summary is not None else [])}
        author = extra.get("udr.author") or extra.get("author")
        message = extra.get("udr.message") or operation
        out.append(SourceVersion(version=int(snap.snapshot_id), author=author, message=message,
                                 time=datetime.fromtimestamp(snap.timestamp_ms / 1000, timezone.utc)))
    return sorted(out, key=lambda v: v.time)

