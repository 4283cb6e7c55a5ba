"""The fold: the one pure, deterministic function that applies a commit to its first parent's snapshot.

Used live (`udr.materialize.staging` folds each staged op, `udr.api.committing` the new commit) and by
`udr.materialize.snapshot.Materializer` when it folds the log, cached or in `rebuild`, alike. No wall
clock, randomness, environment or set order: times come from the commit record. Pure values, safe from
any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter

from udr.errors import CorruptionError
from udr.log.commits import CommitRecord, TableOp
from udr.materialize.states import FragmentState, TableState

Snapshot = Mapping[str, TableState]


def apply_op(state: TableState | None, op: TableOp) -> TableState | None:
    """Apply one table operation to a table's state (None: the table does not exist)."""
    if op.drop:
        return None
    if op.create:
        if op.schema is None:
            raise CorruptionError("a create operation without a schema")
        state = TableState(op.schema, op.primary_key)
    if state is None:
        raise CorruptionError("an operation on a table that does not exist")
    fragments = () if op.truncate else state.fragments
    # Adds first: a commit may delete rows of fragments it adds itself.
    fragments += tuple(FragmentState(f.chunk, f.rows, f.inline, f.schema) for f in op.add)
    if op.deletes:
        changed = {d.chunk: d for d in op.deletes}
        # A keyed write deletes from a few of a table's hundreds of fragments: find those, copy the rest whole.
        kept = list(fragments)
        for at in reversed([i for i, chunk in enumerate(map(itemgetter(0), fragments)) if chunk in changed]):
            d = changed[kept[at].chunk]
            if d.vector is None:
                del kept[at]
            else:
                kept[at] = kept[at]._replace(deletes=d.vector, deleted=d.count)
        fragments = tuple(kept)
    schema = op.schema if op.schema is not None else state.schema
    pk = op.primary_key if op.primary_key is not None else state.primary_key
    return TableState(schema, pk, fragments)


def fold(snapshot: Snapshot, record: CommitRecord) -> dict[str, TableState]:
    """Return the snapshot after `record`, given the snapshot of its first parent."""
    out = dict(snapshot)
    for name in sorted(record.tables):
        new = apply_op(out.get(name), record.tables[name])
        if new is None:
            out.pop(name, None)
        else:
            out[name] = new
    return out
