"""The deletion vectors of a transaction's keyed writes as the log needs them to place the commit over
concurrent keyed writes of other keys (`udr.log.keyplace`), prepared before each append.

Each vector of an op that carries key hashes gets its `added` count (the positions it adds to the fragment's
vector at the base). A payload chained onto that vector holds exactly those positions; for a whole one (its
chain was full) the log gets the body of those positions besides (`own`, never stored), to re-point them
when writers raced. Runs on the committing thread, on the transaction's `Staging`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from udr.log.commits import Deletes
from udr.log.format import BlobId
from udr.materialize.staging import Staging
from udr.materialize.states import FragmentState
from udr.materialize.vectors import chain_link, encode_positions, in_sorted


def prepare(staging: Staging, *, gaps: bool) -> dict[BlobId, bytes]:
    """Set `added` on each staged op with key hashes; return the own-positions bodies of its whole vectors, by
    vector. `gaps`: the lake stores small vectors as gaps (format 5)."""
    own: dict[BlobId, bytes] = {}
    for table, op in list(staging.ops.items()):
        base = staging.base_tables.get(table)
        if op.keys is None or base is None:
            continue
        wanted = {d.chunk for d in op.deletes}
        frags = {f.chunk: f for f in base.fragments if f.chunk in wanted}  # of hundreds, a few
        staging.ops[table] = replace(op, added=tuple(_prepared(staging, d, frags.get(d.chunk), own, gaps)
                                                     for d in op.deletes))
    return own


def _prepared(staging: Staging, d: Deletes, frag: FragmentState | None, own: dict[BlobId, bytes], gaps: bool
              ) -> int | None:
    """The positions `d` adds to `frag` (its fragment at the base; None: unknown), its own positions' body in
    `own` when its payload is whole over an older vector."""
    staged = staging.blobs.get(d.vector) if d.vector is not None else None
    if frag is None or staged is None or d.vector is None or frag.live_rows == 0:
        return None
    base = chain_link(staged[1])[0]
    if base is None and frag.deletes is not None:
        positions = np.asarray(staging.vector(d.vector), np.uint32)
        old = np.asarray(staging.rows.deleted_positions(frag), np.uint32)
        body = encode_positions(positions[~in_sorted(positions, old)], gaps=gaps)
        if own.setdefault(d.vector, body) != body:
            # Payloads are content-addressed: another fragment's vector has these bytes over another vector, and
            # the log looks own positions up by payload, so this fragment's are not known to it.
            return None
    elif base != frag.deletes:
        return None
    return d.count - frag.deleted
