"""The commit point: append staged changes to the log, re-applying them while the branch keeps moving.

`commit` turns a `udr.materialize.staging.Staging` into one commit: it attaches before-images, recounts
tables written more than once as net changes, appends the record, then tells the handle's caches and
listeners, flushes runs of small inline writes into Parquet and merges the delta fragments of keyed tables
refreshed often (`udr.materialize.compaction`), each in a maintenance commit.

The log places a commit over concurrent changes by itself when they commute (`LogStore.append`: untouched
tables, and multiset tables whose ops touch different fragments). Otherwise it raises `HeadMoved`, and
`restage` (automatic rebase) re-applies the transaction's changes to each contested table on the new head
by the merge's rules:

- an op that creates, drops, truncates (unkeyed overwrite), rewrites (compaction) or changes the schema or
  key of a table conflicts with any concurrent change of that table, and so does any op over a concurrent
  one of those kinds;
- a keyed table merges cell by cell (`merge.merge_rows`): both sides' changes are kept, and only the same
  key's same cell set to different values, or a row deleted on one side and changed on the other, conflicts;
- a table without a primary key is a multiset: every added row is kept (a chunk both sides added is
  re-encoded as a copy) and every removed row removed; removing the same stored row on both sides conflicts.

The result is a linear history: the transaction's base becomes the new head and it commits with that
parent. A conflict raises `ConflictError` naming the table, the key and column where known, and the other
commit; nothing is written.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from udr.api import history, writes
from udr.api.context import LakeContext
from udr.api.handle import Handle, Intent, StagedAck
from udr.errors import ConflictError, RefNotFound, UdrError
from udr.log import graph
from udr.log.commits import CommitRecord, Deletes, TableOp, commit_value
from udr.log.envtypes import CommitHook
from udr.log.format import (
    GAPS_VECTORS_VERSION,
    MAINTENANCE_FLUSH_INLINE,
    MAINTENANCE_KEY,
    MAINTENANCE_MERGE,
    BlobId,
    ChunkId,
    CommitId,
)
from udr.log.groups import ack_hook, write_acks
from udr.log.placement import check_reads, commutes
from udr.log.races import HeadMoved
from udr.materialize import compaction, keyvectors
from udr.materialize.changes import state_delta
from udr.materialize.fold import fold
from udr.materialize.merge import RowMerge, merge_rows
from udr.materialize.staging import Staging
from udr.materialize.states import FragmentState, TableState
from udr.materialize.touched import shared_keys
from udr.materialize.vectors import distinct_positions
from udr.values import Commit

# Re-applications on a moving head before giving up: each one means another writer committed meanwhile.
_MAX_REBASES = 64
# Commits since its base a transaction looks through before its first append (`_behind`).
_LOOK_BACK = 64


def commit(handle: Handle, staging: Staging, intent: Intent, hooks: Sequence[StagedAck] = (),
           read: set[str] | None = None) -> Commit:
    """Commit `staging`'s changes (and the group acks `hooks`) as `intent` says; return the new commit.

    Nothing changed and no merge: no commit is written (acks move their groups on their own) and the base
    is returned. `read`: under serializable isolation, the tables whose concurrent change conflicts.

    Raises:
        ConflictError: a real conflict with a concurrent commit; nothing was written.
    """
    hook = ack_hook([pending.ack for pending in hooks]) if hooks else None
    try:
        if not staging.ops and not intent.parents:
            if hooks:  # acks of a transaction that changed nothing: a write of their own, as `Subscription.ack`
                write_acks(handle.ctx.log, [pending.ack for pending in hooks])
            cid, final = None, None
        else:
            _settle(handle, staging)
            cid, final = _append(handle, staging, intent, hook, read)
    finally:
        staging.release()
    for pending in hooks:
        pending.done()
    if cid is None or final is None:
        return handle.commit_info(staging.base)
    return _committed(handle, staging, intent, cid, final)


def _settle(handle: Handle, staging: Staging) -> None:
    """Attach the keys of keyed writes and before-images still valid, and recount tables written more than once
    as net changes."""
    hashed = staging.keyed.hashed(staging.ops)
    staging.settle_before_images()
    for table, count in staging.writes.items():
        op = staging.ops.get(table)
        if count < 2 or op is None or op.drop:
            continue
        if table not in staging.base_tables:
            # A table new in this transaction: every row it has is inserted, no recount needed.
            staging.recount(table, staging.require(table).rows, 0, 0)
        else:
            net = history.count_changes(handle.ctx, table, staging.base_tables.get(table), staging.state(table),
                                        staging.rows)
            staging.recount(table, net.inserted, net.updated, net.deleted)
    for table, keys in hashed.items():
        staging.ops[table] = replace(staging.ops[table], keys=keys)


def _append(handle: Handle, staging: Staging, intent: Intent, hook: CommitHook | None,
            read: set[str] | None) -> tuple[CommitId, CommitRecord]:
    """The commit point, re-applying the staged changes on the branch's new head while it keeps moving."""
    log = handle.ctx.log
    if staging.ids_used:
        log.upgrade_format()
    for attempt in range(1 if _behind(handle, staging, intent) else 0, _MAX_REBASES):
        with log.turns.commit(exclusive=attempt > 0):  # after a lost race: so it is not overtaken again
            if attempt:
                restage(handle.ctx, staging, handle.head(intent.branch), read)
            own = keyvectors.prepare(staging, gaps=log.version >= GAPS_VECTORS_VERSION)
            record = CommitRecord(
                parents=intent.parents or (staging.base,), seq=0, branch=intent.branch, time_us=0,
                author=intent.author, message=intent.message, metadata=dict(intent.metadata),
                tables=dict(sorted(staging.ops.items())),
            )
            try:
                return log.append(record, base=staging.base, rebase=not intent.parents, blobs=staging.named_blobs(),
                                  hook=hook, placeable=_placeable(staging, intent.maintenance),
                                  read=frozenset(read or ()), action=intent.action, mover=intent.mover, own=own)
            except HeadMoved:
                continue
    raise ConflictError(f"branch {intent.branch!r} moved {_MAX_REBASES} times while this transaction was being "
                        "re-applied on it; retry")


def _behind(handle: Handle, staging: Staging, intent: Intent) -> bool:
    """Whether a commit since the staging's base changed one of its tables in a way the log cannot place it
    over (`udr.log.placement`), so that its first append, in a shared turn, would only fail. Read from a
    snapshot: learning it by appending waits for a turn and for LMDB's writer lock, behind the very writers
    whose commits make it fail.

    The walk also decodes the commits made since the base (the log keeps them decoded), so placing the commit
    over them looks them up instead of decoding them inside LMDB's writer lock, which every writer waits for.
    """
    if intent.parents:
        return False
    head = handle.head(intent.branch)
    if head == staging.base:
        return False
    placeable = _placeable(staging, intent.maintenance)
    # Ops the log places over most concurrent ones (appends) are rarely behind: only decoded, not checked.
    check = not placeable.issuperset(staging.ops)
    for steps, (cid, other) in enumerate(graph.first_parents(handle.ctx.log, head)):
        if cid == staging.base or steps == _LOOK_BACK:
            return False  # not found near the head (a reset branch): the append tells
        if check and any(not commutes(t, op, other.tables[t], placeable)
                         for t, op in staging.ops.items() if t in other.tables):
            return True
    return False


def _placeable(staging: Staging, maintenance: bool) -> frozenset[str]:
    """Tables whose op the log may place over concurrent changes that touch other fragments: multiset
    tables (no primary key), and a flush of small writes (it only re-encodes the fragments it names)."""
    return frozenset(t for t, op in staging.ops.items()
                     if (maintenance and op.rewrite)
                     or (t not in staging.overwritten and _multiset(op, staging.base_tables.get(t))))


def _multiset(op: TableOp, base: TableState | None) -> bool:
    """Whether `op` leaves a table without a primary key (and does not drop it)."""
    return not op.drop and op.key_after(base.primary_key if base else None) is None


def _committed(handle: Handle, staging: Staging, intent: Intent, cid: CommitId, final: CommitRecord) -> Commit:
    """Tell the handle's caches and listeners about the new commit; flush small writes that are due."""
    ctx = handle.ctx
    for op in final.tables.values():
        for frag in op.add:
            rows = staging.inline_rows(frag.chunk)
            if rows is not None:
                ctx.rows.remember_inline(frag.chunk, rows)
    for table, (op, image) in staging.unstored_before_images().items():
        if final.tables.get(table) == op:
            ctx.befores.keep(cid, table, op, image)
    snapshot = fold(ctx.materializer.snapshot(final.parents[0]), final)
    ctx.materializer.remember_commit(cid, final.parents[0], snapshot)
    made = commit_value(cid, final)
    handle.changes.committed(made)
    if not intent.maintenance:
        _upkeep_after(handle, intent.branch, cid, snapshot, [t for t, op in final.tables.items() if op.add], _FLUSH)
        _upkeep_after(handle, intent.branch, cid, snapshot, sorted(staging.refreshed & set(final.tables)), _MERGE)
    return made


@dataclass(frozen=True, slots=True)
class _Upkeep:
    """One kind of maintenance commit: which tables are due, how one table is staged, what the commit says."""

    kind: str
    what: str
    due: Callable[[Mapping[str, TableState], list[str]], list[str]]
    stage: Callable[[Staging, str], None]
    kept: str


# Looked up at each call, so a test can replace the staging step.
_FLUSH = _Upkeep(MAINTENANCE_FLUSH_INLINE, "flush small writes of", compaction.flush_due,
               lambda staging, table: compaction.flush_inline(staging, table),  # noqa: PLW0108 - late binding
               "the data is intact and stays inlined")
_MERGE = _Upkeep(MAINTENANCE_MERGE, "merge the delta fragments of", compaction.merge_due,
               lambda staging, table: compaction.merge_fragments(staging, table),  # noqa: PLW0108 - late binding
               "the data is intact and keeps its fragments")


def _rewrite(handle: Handle, branch: str, head: CommitId, snapshot: Mapping[str, TableState], due: list[str],
             upkeep: _Upkeep) -> None:
    """Commit the tables `due` (of `snapshot`, the state at `head`) rewritten as `upkeep` says."""
    intent = Intent(branch, f"{upkeep.what} {', '.join(due)}", "udr", {MAINTENANCE_KEY: upkeep.kind},
                    maintenance=True)
    staging = Staging(handle.ctx.log, handle.ctx.rows, head, snapshot, branch=branch)
    try:
        for table in due:
            upkeep.stage(staging, table)
    except BaseException:
        staging.release()
        raise
    commit(handle, staging, intent, (), None)


def _upkeep_after(handle: Handle, branch: str, head: CommitId, snapshot: Mapping[str, TableState],
                  tables: list[str], upkeep: _Upkeep) -> None:
    """After commit `head` (whose `snapshot` the writer folded), rewrite the tables of `tables` that `upkeep`
    finds due (a flush of small inline writes, a merge of delta fragments), in a maintenance commit of its own.

    Best effort: the caller's commit is already durable, so a failure here only warns (a commit that
    raised would be retried and applied twice), and a concurrent writer's move means the next commit
    does it instead. One writer of the lake does upkeep at a time (`udr.log.turns.Turns.flush`); others skip.
    """
    due = upkeep.due(snapshot, tables)
    if not due:
        return
    try:
        with handle.ctx.log.turns.flush() as mine:
            if not mine:
                return  # another writer is at it; should it fail, a later commit finds the tables still due
            current = handle.head(branch)
            if current != head:  # others committed since: one of them may have done it already
                head, snapshot = current, handle.ctx.materializer.snapshot(current)
                due = upkeep.due(snapshot, due)
            if due:
                _rewrite(handle, branch, head, snapshot, due, upkeep)
    except ConflictError:
        pass
    except (UdrError, OSError) as exc:
        warnings.warn(f"udr: the maintenance commit to {upkeep.what} {', '.join(due)} failed ({exc}); {upkeep.kept}",
                      RuntimeWarning, stacklevel=5)


# -- automatic rebase: re-express staged changes on a head that moved ----------------------------------


def restage(ctx: LakeContext, staging: Staging, head: CommitId, read: set[str] | None) -> None:
    """Move `staging`'s base to `head` and re-apply its changes to every table a commit in between changed.

    Raises:
        ConflictError: a real conflict (see the module docstring), or (with `read`, under serializable
            isolation) a commit in between changed a table that was read; `staging` is left unchanged.
    """
    try:
        between = graph.first_parent_range(ctx.log, staging.base, head)
    except RefNotFound:
        raise ConflictError(f"branch {staging.branch!r} was reset to {head[:10]}, which does not descend from "
                            f"{staging.base[:10]} where this transaction began; reload and retry") from None
    if read is not None:
        for cid, record in between:
            check_reads(staging.branch, read, cid, record)
    contested = {t: [(cid, r.tables[t]) for cid, r in between if t in r.tables] for t in staging.ops}
    contested = {t: ops for t, ops in contested.items() if ops}
    for table, ops in contested.items():
        _check_shapes(table, staging.ops[table], ops, overwritten=table in staging.overwritten)
    old_base = staging.base_tables
    staged = {t: staging.state(t) for t in contested}
    new_base = ctx.materializer.snapshot(head)
    plans = [(t, _plan(ctx, staging, t, old_base.get(t), new_base.get(t), staged[t], ops[-1][0]))
             for t, ops in contested.items()]
    taken = staging.rebase_to(head, new_base, list(contested))
    for table, apply in plans:
        apply(taken[table])


def _check_shapes(table: str, mine: TableOp, theirs: Sequence[tuple[CommitId, TableOp]], *,
                  overwritten: bool) -> None:
    other = theirs[-1][0]
    if mine.reshapes or mine.rewrite or overwritten:
        raise ConflictError(f"commit {other[:10]} changed table {table!r} after this transaction began, and this "
                            "transaction creates, drops, overwrites, compacts or changes the schema of it; "
                            "reload and retry")
    for cid, op in theirs:
        if op.reshapes:
            raise ConflictError(f"commit {cid[:10]} created, dropped, overwrote or changed the schema of table "
                                f"{table!r} after this transaction began; reload and retry")


# Stages one table's changes again, given the op staged before the base moved (called after it moved).
_Apply = Callable[[TableOp], None]


def _plan(ctx: LakeContext, staging: Staging, table: str, base: TableState | None, head: TableState | None,
          staged: TableState | None, other: CommitId) -> _Apply:
    if base is None or head is None or staged is None:
        raise ConflictError(f"table {table!r} was created or dropped by commit {other[:10]} after this "
                            "transaction began; reload and retry")
    if staged.primary_key is None:
        return _Multiset(staging, table, base, other)
    return _Keyed(ctx, staging, table, base, head, staged, other)


class _Keyed:
    """A keyed table: merge our change rows into the new head cell by cell.

    When no key was changed on both sides, our op stays as it is (its new rows are right, and the rows it
    deletes are still there), only the deletion vectors of fragments both sides deleted from are unioned.
    Otherwise the merged rows of every key we changed are staged again on the head.
    """

    def __init__(self, ctx: LakeContext, staging: Staging, table: str, base: TableState, head: TableState,
                 staged: TableState, other: CommitId) -> None:
        self.ctx, self.staging, self.table, self.other = ctx, staging, table, other
        self.key = list(staged.primary_key or ())
        self.states = base, head, staged
        self.schema = staging.rows.schema(head.schema)
        self.base_vectors = {f.chunk: f.deletes for f in base.fragments}
        # Only a key both sides changed can conflict: when none is, the rows need no pairing and merging.
        shared = shared_keys(staging.rows, ctx.keys, base, staged, head)
        self.shared = bool(self._touched(base, head) & self._touched(base, staged)) if shared is None else shared
        self.result = self._merged() if self.shared else None

    def _touched(self, old: TableState, new: TableState) -> set[tuple[object, ...]]:
        """The keys of the rows that differ between two states of the table (removed or added)."""
        delta = state_delta(self.staging.rows, self.table, old, new)
        return {k for rows in (delta.removed, delta.added)
                for k in zip(*(rows.column(c).to_pylist() for c in self.key))}

    def _merged(self) -> RowMerge:
        (base, head, staged), table = self.states, self.table
        theirs = history.paired(self.ctx, table, base, head)
        mine = history.paired(self.ctx, table, base, staged, self.staging.rows)
        result = merge_rows(table, self.schema, self.key, theirs, mine, strategy=None)
        if result.conflicts:
            first = result.conflicts[0]
            where = f" key {first.key}" + (f" column {first.column!r}" if first.column else " (deleted on one side)")
            raise ConflictError(f"table {table!r}{where} was also changed by commit {self.other[:10]} after this "
                                f"transaction began ({len(result.conflicts)} conflicting cell(s)); reload and retry")
        return result

    def __call__(self, op: TableOp) -> None:
        staging, table = self.staging, self.table
        if not self.shared and _carry(staging, table, op, self.base_vectors):
            return
        if self.result is None:  # disjoint keys cannot conflict: merging now (the base has moved) raises nothing
            self.result = self._merged()
        if self.result.remove.num_rows:
            writes.delete_keys(self.ctx, staging, table, self.result.remove, counted=None)
        if self.result.add.num_rows:
            staging.add_rows(table, self.schema, iter(self.result.add.to_batches()))
        if table in staging.ops:
            counts = history.count_changes(self.ctx, table, staging.base_tables[table], staging.state(table),
                                           staging.rows)
            staging.recount(table, counts.inserted, counts.updated, counts.deleted)


def _carry(staging: Staging, table: str, op: TableOp, base_vectors: dict[ChunkId, BlobId | None]) -> bool:
    """Stage `op` unchanged on the new base, unioning deletion vectors both sides changed; False (nothing
    staged) if a fragment it deletes from is gone at the new base or a chunk it adds is already there."""
    head = staging.require(table)
    now = {f.chunk: f for f in head.fragments}
    if any(f.chunk in now for f in op.add):
        return False
    own = {f.chunk for f in op.add}
    deletes = []
    for d in op.deletes:
        frag = now.get(d.chunk)
        if d.chunk in own or (frag is not None and frag.deletes == base_vectors.get(d.chunk)):
            deletes.append(d)
            continue
        if frag is None:
            return False
        deletes.append(_united(staging, d, frag))
    staging.ops[table] = replace(op, deletes=tuple(deletes))
    return True


class _Multiset:
    """A table without a primary key: keep our added chunks and our removed rows on top of the new head."""

    def __init__(self, staging: Staging, table: str, base: TableState, other: CommitId) -> None:
        self.staging, self.table, self.other = staging, table, other
        self.base_deletes = {f.chunk: f for f in base.fragments}

    def __call__(self, op: TableOp) -> None:
        staging, table = self.staging, self.table
        present = set(staging.require(table).chunk_ids())
        carried = tuple(f for f in op.add if f.chunk not in present)
        staging.ops[table] = TableOp(add=carried, inserted=op.inserted, updated=op.updated)
        for frag in op.add:
            if frag.chunk in present:  # both sides added identical rows: ours become a copy
                rows = staging.rows.fragment(FragmentState(frag.chunk, frag.rows, frag.inline, frag.schema))
                staging.add_rows(table, staging.rows.schema(frag.schema), iter(rows.to_batches()))
        own = {f.chunk for f in op.add}
        kept = [d if d.chunk in own else self._remove_again(d) for d in op.deletes]
        staging.ops[table] = replace(staging.ops[table], deletes=staging.ops[table].deletes + tuple(kept),
                                     inserted=op.inserted, deleted=op.deleted)

    def _remove_again(self, d: Deletes) -> Deletes:
        """Our deletion vector of a fragment of base, re-expressed on the head's vector of that fragment."""
        frag = next((f for f in self.staging.require(self.table).fragments if f.chunk == d.chunk), None)
        if frag is None:
            raise ConflictError(f"rows this transaction deletes from table {self.table!r} were rewritten by commit "
                                f"{self.other[:10]} after it began (compaction or flush); reload and retry")
        mine = np.setdiff1d(_positions(self.staging, d.vector, frag.rows),
                            _deleted(self.staging, self.base_deletes[d.chunk]), assume_unique=True)
        if np.intersect1d(mine, _deleted(self.staging, frag), assume_unique=True).size:
            raise ConflictError(f"table {self.table!r}: commit {self.other[:10]} deleted some of the same rows after "
                                "this transaction began; reload and retry")
        return _united(self.staging, d, frag)


def _united(staging: Staging, d: Deletes, frag: FragmentState) -> Deletes:
    """Our cumulative deletion vector `d` united with the new base's vector of the same fragment, staged."""
    return staging.deletion(frag, distinct_positions(_positions(staging, d.vector, frag.rows), _deleted(staging, frag)))


def _deleted(staging: Staging, frag: FragmentState) -> npt.NDArray[np.int64]:
    return np.asarray(staging.rows.deleted_positions(frag), np.int64)


def _positions(staging: Staging, vector: BlobId | None, rows: int) -> npt.NDArray[np.int64]:
    """The row positions a cumulative deletion vector names (None: every row of the fragment)."""
    if vector is None:
        return np.arange(rows, dtype=np.int64)
    return np.asarray(staging.vector(vector), dtype=np.int64)
