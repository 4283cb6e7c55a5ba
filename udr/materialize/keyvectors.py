"""The deletion vectors of a transaction's keyed writes as the log needs them to place the commit over
concurrent keyed writes of other keys (`udr.log.keyplace`), prepared before each append.

Each vector of an op that carries key hashes gets its `added` count (the positions it adds to the fragment's
vector at the base). A chain at least `RESET_DEPTH` deep is staged whole instead, so that the chain is reset
whenever such a commit lands over no concurrent change of the fragment, before the log could no longer link
onto it; beside it the log gets the body of the vector's own positions (`own`), which it re-points onto the
head's vector when writers raced. Runs on the committing thread, on the transaction's `Staging`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa

from udr.log.commits import Deletes
from udr.log.format import MAX_VECTOR_CHAIN, BlobId, BlobKind
from udr.log.hashing import content_id
from udr.materialize.staging import Staging
from udr.materialize.states import FragmentState
from udr.materialize.vectors import chain_link, encode_positions, in_sorted, link_body

# A keyed write whose vector would chain this deep stages it whole: half the chain stays for the links the log
# makes while concurrent writers race (one a commit each), where a full chain would refuse them.
RESET_DEPTH = MAX_VECTOR_CHAIN // 2


def prepare(staging: Staging, *, gaps: bool) -> dict[BlobId, bytes]:
    """Set `added` on each staged op with key hashes (resetting deep chains); return the own-positions bodies
    of its whole vectors, by vector. `gaps`: the lake stores small vectors as gaps (format 5)."""
    own: dict[BlobId, bytes] = {}
    for table, op in list(staging.ops.items()):
        base = staging.base_tables.get(table)
        if op.keys is None or base is None:
            continue
        wanted = {d.chunk for d in op.deletes}
        frags = {f.chunk: f for f in base.fragments if f.chunk in wanted}  # of hundreds, a few
        linked = [_prepared(staging, d, frags.get(d.chunk), own, gaps) for d in op.deletes]
        staging.ops[table] = replace(op, deletes=tuple(d for d, _ in linked), added=tuple(n for _, n in linked))
    return own


def _prepared(staging: Staging, d: Deletes, frag: FragmentState | None, own: dict[BlobId, bytes], gaps: bool
              ) -> tuple[Deletes, int | None]:
    vector = d.vector
    staged = staging.blobs.get(vector) if vector is not None else None
    if frag is None or staged is None or vector is None or frag.live_rows == 0:
        return d, None
    base, depth = chain_link(staged[1])
    added = d.count - frag.deleted
    if base is not None and base != frag.deletes:
        return d, None
    if frag.deletes is None or depth < RESET_DEPTH:
        return d, added  # its payload holds exactly its own positions, or the log stacks the others' onto it
    positions = np.asarray(staging.vector(vector), np.uint32)
    if base is not None:  # a deep chain: staged whole, its own positions kept for the log
        body = link_body(staged[1])
        whole = encode_positions(positions, gaps=gaps)
        vector = BlobId(content_id(whole))
        staging.blobs[vector] = (BlobKind.DELETES, whole)
        staging.rows.remember_vector(vector, pa.array(positions, pa.uint32()))
        d = Deletes(d.chunk, vector, d.count)
    else:
        old = np.asarray(staging.rows.deleted_positions(frag), np.uint32)
        body = encode_positions(positions[~in_sorted(positions, old)], gaps=gaps)
    own[vector] = body
    return d, added
