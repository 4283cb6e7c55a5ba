"""What the versions a lake still keeps need of its stored data, once retention expired others or an
erasure replaced chunks.

`live_data` folds every commit in the log (through every erasure's replacement map) and collects, for each
table of each version that is not expired, the chunk files, inline row blobs and deletion vectors of its
fragments, plus the before-images of the commits whose changes are still readable. `gc` deletes everything
else; `verify` counts what is absent but unneeded as expired rather than damaged. Pure over the log and its
snapshots (`Snapshots`); safe from any thread.
"""

from __future__ import annotations

from collections.abc import Mapping

from udr.log.format import BlobId, BlobKind, CommitId
from udr.log.protocols import LakeLog
from udr.materialize.protocols import Snapshots
from udr.materialize.states import LiveData, TableState
from udr.materialize.vectors import vector_chain


def live_data(log: LakeLog, materializer: Snapshots, expired: Mapping[CommitId, Mapping[str, str]]) -> LiveData:
    """Everything the versions not in `expired` (commit -> expired tables) need, over the whole log."""
    out = LiveData()

    def payload(vector: BlobId) -> bytes:
        return log.get_blob(vector, BlobKind.DELETES)

    counted: dict[str, TableState] = {}  # per table, the last state collected: untouched tables repeat it
    for _, commit in log.commits_from(0):
        gone = expired.get(commit, {})
        for table, state in materializer.snapshot(commit).items():
            if table in gone or counted.get(table) is state:
                continue
            counted[table] = state
            for frag in state.fragments:
                if frag.inline:
                    out.blobs[BlobId(frag.chunk)] = BlobKind.ROWS
                else:
                    out.chunks.add(frag.chunk)
                if frag.deletes is not None and frag.deletes not in out.blobs:
                    # A chained vector reads the vectors below it too (udr.materialize.vectors).
                    out.blobs.update((v, BlobKind.DELETES) for v in vector_chain(frag.deletes, payload))
        for table, op in materializer.replaced(log.get_commit(commit)).tables.items():
            if op.before is not None and table not in gone:
                out.blobs[op.before] = BlobKind.BEFORE
    return out
