"""What a keyed table built by a key-local SQL query was built from, so the next build of it by the same
query recomputes only the keys whose input rows changed (`udr.query.incremental`).

A record says: "this state of table t (its schema, key and fragments, hashed) holds exactly the rows of
the query with this digest over the inputs as they are at commit B". That is a fact about immutable
things, true whether or not the transaction that found it commits, so it is written when the build is
staged. It is used only when t's current state is that very state (same fragments: same rows) and the
query has the same digest; the inputs' changes are then those between their states at B and now, whatever
branch either sits on. Records are derived state: one JSON file per table under `cache/sqlbuilds/`,
replaced atomically, never fsynced; a missing, damaged or stale one means the full comparison. Belongs to
the transaction's thread, as the transaction does.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from udr.api.context import LakeContext
from udr.errors import UdrError
from udr.log.format import CACHE_DIR, SQL_BUILDS_DIR, CommitId
from udr.materialize.changes import state_delta
from udr.materialize.staging import Staging
from udr.materialize.states import TableState
from udr.query.incremental import KEY_COLUMN, MAX_CHANGED_SHARE, KeyLocal
from udr.query.keydelta import changed_read_keys


@dataclass(frozen=True, slots=True)
class Build:
    """One record: table `table` in state `state` (see `state_digest`) holds the rows of the query with
    digest `query` over `inputs` as they are at commit `base`, where they were in states `read`."""

    table: str
    query: str
    state: str
    base: str
    inputs: tuple[str, ...]
    read: tuple[str, ...]


def state_digest(state: TableState) -> str:
    """A digest of everything a table state holds: equal digests, equal rows."""
    fields = [state.schema, state.primary_key, [list(fragment) for fragment in state.fragments]]
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()


class Builds:
    """The build records of one lake, read and written for one transaction's staging."""

    def __init__(self, ctx: LakeContext, staging: Staging) -> None:
        self._ctx = ctx
        self._staging = staging
        self._dir = ctx.log.root / CACHE_DIR / SQL_BUILDS_DIR

    def changed_keys(self, table: str, plan: KeyLocal) -> pa.Table | None:
        """The keys (one column, `KEY_COLUMN`) of the rows of `plan`'s inputs changed since keyed `table`
        was last built by `plan`'s query; None when the full comparison is needed (no record, `table`
        changed since, an input changed in this transaction or in schema, a changed input row has a null
        key, too many keys changed)."""
        found = self._load(table)
        state = self._staging.require(table)
        if (found is None or found.query != plan.digest or found.inputs != plan.inputs
                or found.state != state_digest(state)):
            return None
        try:
            self._ctx.check_readable(CommitId(found.base), plan.inputs)
            before = self._ctx.materializer.snapshot(CommitId(found.base))
        except UdrError:
            return None  # the commit it names is gone or expired: build it afresh
        key_type = self._staging.rows.schema(state.schema).field(plan.key).type
        parts = []
        for name in plan.inputs:
            old, new = before.get(name), self._staging.require(name)
            if old is None or state_digest(old) != found.read[plan.inputs.index(name)]:
                return None  # commit `base` no longer shows what the build read (an erasure rewrote it)
            if name in self._staging.ops or not self._comparable(old, new, plan.key, key_type):
                return None
            if old != new:
                parts += self._changed(name, old, new, plan)
        keys = pa.table({KEY_COLUMN: pc.unique(pa.concat_tables(parts).column(KEY_COLUMN))}) if parts else \
            pa.table({KEY_COLUMN: pa.array([], key_type)})
        # A changed row of an unkeyed input with a null key: the filter by key cannot select it, while the
        # full query may (and then fail on the null key).
        if keys.column(KEY_COLUMN).null_count or keys.num_rows > MAX_CHANGED_SHARE * state.rows:
            return None
        return keys

    def _changed(self, name: str, old: TableState, new: TableState, plan: KeyLocal) -> list[pa.Table]:
        """The keys (`KEY_COLUMN`) of input `name`'s rows changed from `old` to `new` as `plan`'s query sees
        them: if `name` is keyed on the query's key, those that changed in a column it reads."""
        reads = plan.reads.get(name)
        if reads is None or list(new.primary_key or ()) != [plan.key]:
            # Removed and added rows, unpaired: an updated row's key is in both, which is enough.
            delta = state_delta(self._ctx.rows, name, old, new, columns=[plan.key])
            return [rows.select([plan.key]).rename_columns([KEY_COLUMN]) for rows in (delta.removed, delta.added)]
        columns = [c for c in self._staging.rows.schema(new.schema).names if c == plan.key or c.lower() in reads]
        delta = state_delta(self._ctx.rows, name, old, new, columns=columns)
        return [pa.table({KEY_COLUMN: changed_read_keys(delta.removed, delta.added, plan.key)})]

    def record(self, table: str, plan: KeyLocal) -> None:
        """Record that `table` as staged now holds the rows of `plan`'s query over the inputs as they are
        at this transaction's base commit (nothing is recorded if one of them changed in it)."""
        base = self._staging.base_tables
        if any(self._staging.require(name) != base.get(name) for name in plan.inputs):
            return
        build = Build(table, plan.digest, state_digest(self._staging.require(table)), self._staging.base,
                      plan.inputs, tuple(state_digest(base[name]) for name in plan.inputs))
        self._dir.mkdir(parents=True, exist_ok=True)
        temp = self._dir / f"{os.getpid()}-{uuid.uuid4().hex}.tmp"
        temp.write_text(json.dumps(asdict(build)))
        os.replace(temp, self._path(table))

    def _comparable(self, old: TableState | None, new: TableState, key: str, key_type: pa.DataType) -> bool:
        """Whether an input's changes from `old` to `new` are its changed rows' `key` values (of type
        `key_type`, the built table's): same schema and primary key, and such a key column."""
        if old is None or old.schema != new.schema or old.primary_key != new.primary_key:
            return False
        schema = self._staging.rows.schema(new.schema)
        return key in schema.names and schema.field(key).type.equals(key_type)

    def _path(self, table: str) -> Path:
        return self._dir / f"{hashlib.sha256(table.encode()).hexdigest()[:32]}.json"

    def _load(self, table: str) -> Build | None:
        try:
            raw = json.loads(self._path(table).read_text())
            build = Build(raw["table"], raw["query"], raw["state"], raw["base"], tuple(raw["inputs"]),
                          tuple(raw["read"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none yet, or damaged: derived state, so just build afresh
        well_formed = len(build.read) == len(build.inputs) and all(isinstance(n, str) for n in build.inputs)
        return build if build.table == table and well_formed else None
