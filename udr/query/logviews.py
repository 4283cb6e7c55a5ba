"""The log as SQL: the views `udr_log`, `udr_log_tables` and `udr_refs` of a lake's DuckDB connections.

- `udr_log`: one row per commit reachable from a branch or tag (through any parent): `commit_id`, `seq`,
  `parents` (list), `branch`, `time` (TIMESTAMP WITH TIME ZONE), `author`, `message`, `metadata`
  (MAP(VARCHAR, VARCHAR)).
- `udr_log_tables`: one row per such commit and table it changed: `commit_id`, `table_name`, `inserted`,
  `updated`, `deleted`.
- `udr_refs`: one row per ref: `name`, `kind` (one per entry of `REF_SOURCES`), `commit_id`.

They join with change tables (`"t@A..B"`) on `_commit_id`. The Arrow tables behind them are built once per
state of the log (its last sequence number and every ref) and cached, so a connection costs only their
registration, and a rebuild decodes only the commits the previous one did not hold; `names_log_view` tells
whether a query needs them at all. A user table of the same name wins.
Safe across threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from udr.log.format import CommitId
from udr.log.groups import GroupStore
from udr.log.protocols import LakeLog
from udr.log.retention import RetentionStore

LOG_VIEWS = ("udr_log", "udr_log_tables", "udr_refs")

_LOG_SCHEMA = pa.schema([
    ("commit_id", pa.string()), ("seq", pa.int64()), ("parents", pa.list_(pa.string())), ("branch", pa.string()),
    ("time", pa.timestamp("us", tz="UTC")), ("author", pa.string()), ("message", pa.string()),
    ("metadata", pa.map_(pa.string(), pa.string())),
])
_TABLES_SCHEMA = pa.schema([("commit_id", pa.string()), ("table_name", pa.string()), ("inserted", pa.int64()),
                           ("updated", pa.int64()), ("deleted", pa.int64())])
_REFS_SCHEMA = pa.schema([("name", pa.string()), ("kind", pa.string()), ("commit_id", pa.string())])


def _group_positions(log: LakeLog) -> dict[str, CommitId]:
    out = {}
    for name, position in GroupStore.of(log).positions().items():
        cid = log.commit_at_seq(position.cursor.seq) if position.cursor.seq >= 0 else None
        if cid is not None:
            out[name] = cid
    return out


def _holds(log: LakeLog) -> dict[str, CommitId]:
    return {name: CommitId(hold.commit_id) for name, hold in RetentionStore(log).holds().items()}


@dataclass(frozen=True, slots=True)
class RefSource:
    """One kind of ref shown in `udr_refs`.

    Attributes:
        kind: the `kind` column's value.
        read: the refs of that kind now: name -> commit id.
        roots: whether the commits these refs reach are rows of `udr_log`.
    """

    kind: str
    read: Callable[[LakeLog], dict[str, CommitId]]
    roots: bool


# Every kind of ref `udr_refs` lists; a new kind of ref adds its entry here.
REF_SOURCES: tuple[RefSource, ...] = (
    RefSource("branch", lambda log: log.branches(), roots=True),
    RefSource("tag", lambda log: log.tags(), roots=True),
    RefSource("hold", _holds, roots=False),
    RefSource("group", _group_positions, roots=False),
)

_Key = tuple[int, tuple[tuple[str, tuple[tuple[str, CommitId], ...]], ...]]


def names_log_view(query: str) -> bool:
    """Whether `query` may read a log view (a cheap test on its text; a false yes only costs time)."""
    return "udr_" in query.lower()


class LogViews:
    """The log views of one lake, cached by the state of its log."""

    def __init__(self, log: LakeLog) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._cached: tuple[_Key, dict[str, pa.Table]] | None = None

    def tables(self) -> dict[str, pa.Table]:
        """The Arrow table of each log view, as of now."""
        refs = tuple((source.kind, tuple(sorted(source.read(self._log).items()))) for source in REF_SOURCES)
        key = (self._log.last_seq(), refs)
        with self._lock:
            cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        built = self._build(refs, cached[1] if cached is not None else None)
        with self._lock:
            self._cached = (key, built)
        return built

    def register(self, con: duckdb.DuckDBPyConnection, taken: set[str]) -> None:
        """Register every log view on `con` whose name is not in `taken` (lower-cased user table names)."""
        for name, table in self.tables().items():
            if name not in taken:
                con.register(name, table)

    def _build(self, refs: tuple[tuple[str, tuple[tuple[str, CommitId], ...]], ...],
               previous: dict[str, pa.Table] | None) -> dict[str, pa.Table]:
        """The views' tables for `refs`; commits the `previous` build holds are taken from it, not decoded
        again (decoding is most of the cost on a long log)."""
        old = previous["udr_log"] if previous is not None else _LOG_SCHEMA.empty_table()
        known = dict(zip(old["commit_id"].to_pylist(), old["parents"].to_pylist(), strict=True))
        roots = {source.kind for source in REF_SOURCES if source.roots}
        todo = list(dict.fromkeys(cid for kind, named in refs if kind in roots for _, cid in named))
        seen = set(todo)
        fresh = []
        while todo:
            cid = todo.pop()
            parents = known.get(cid)
            if parents is None:
                record = self._log.get_commit(cid)
                fresh.append((cid, record))
                parents = list(record.parents)
            for parent in parents:
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        kept = pa.array(sorted(seen & known.keys()), pa.string())
        log = pa.concat_tables([old.filter(pc.is_in(old["commit_id"], kept)), pa.Table.from_pylist([
            {"commit_id": cid, "seq": r.seq, "parents": list(r.parents), "branch": r.branch, "time": r.time_us,
             "author": r.author, "message": r.message, "metadata": sorted(r.metadata.items())}
            for cid, r in fresh], schema=_LOG_SCHEMA)]).sort_by("seq").combine_chunks()
        changed = previous["udr_log_tables"] if previous is not None else _TABLES_SCHEMA.empty_table()
        changed = pa.concat_tables([changed.filter(pc.is_in(changed["commit_id"], kept)), pa.Table.from_pylist([
            {"commit_id": cid, "table_name": name, "inserted": op.inserted, "updated": op.updated,
             "deleted": op.deleted}
            for cid, r in fresh for name, op in sorted(r.tables.items())], schema=_TABLES_SCHEMA)]).combine_chunks()
        named_refs = pa.Table.from_pylist([{"name": name, "kind": kind, "commit_id": cid}
                                           for kind, named in refs for name, cid in named], schema=_REFS_SCHEMA)
        return dict(zip(LOG_VIEWS, (log, changed, named_refs), strict=True))
