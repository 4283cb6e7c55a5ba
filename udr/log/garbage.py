"""Garbage collection of chunk files: those no commit references, no pin keeps and no live writer intends to
commit (`LogStore.collect_garbage`).

Everything happens inside one log write transaction, so no commit can land between deciding a chunk is garbage
and unlinking it. Chunks held by open transactions of this process (any handle) and intents of other live
processes are kept. Never decided by a directory listing alone: the log says what is referenced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from udr.log.envtypes import IndexTxn
from udr.log.format import DB_INTENTS, DB_PINS, DB_SEQS, ChunkId, CommitId
from udr.log.processes import process_alive
from udr.log.protocols import GcKeep, LakeLog


def referenced_chunks(log: LakeLog, txn: IndexTxn | None = None) -> set[ChunkId]:
    """Every file chunk that some commit in `log` adds (reachable from a ref or not)."""
    if txn is None:
        with log.env.read() as own:
            return referenced_chunks(log, own)
    out: set[ChunkId] = set()
    for _, raw in txn.cursor(db=log.env.db(DB_SEQS)):
        for op in log.get_commit(CommitId(raw.decode()), txn).tables.values():
            out.update(f.chunk for f in op.add if not f.inline)
    return out


def collect_garbage(log: LakeLog, progress: Callable[[int], None] | None = None, keep: GcKeep | None = None) -> int:
    """Delete `log`'s chunk files no commit references (or, with `keep`, that it does not keep), no pin keeps
    (udr.log.pins) and no live writer intends to commit; return bytes freed."""
    freed = 0
    with log.env.write() as txn:
        held = log.env.held()
        pinned = {ChunkId(value.decode()) for _, value in txn.cursor(db=log.env.db(DB_PINS))}
        if keep is None:
            referenced: set[str] = referenced_chunks(log, txn) | held | pinned
        else:
            kept, freed = keep(txn)
            referenced = kept | held | pinned
        live_intents = _live_intents(log, txn, held)
        own_busy = bool(held)
        freed += log.chunks.clear_tmp(
            lambda pid: (pid == os.getpid() and own_busy) or (pid != os.getpid() and process_alive(pid))
        )
        for n, chunk in enumerate(log.chunks.all_ids()):
            if chunk not in referenced and chunk not in live_intents:
                freed += log.chunks.delete(chunk)
            if progress is not None:
                progress(n)
    return freed


def _live_intents(log: LakeLog, txn: IndexTxn, held: set[str]) -> set[ChunkId]:
    """The chunks live writers intend to commit; the intents of dead ones are deleted."""
    intents = log.env.db(DB_INTENTS)
    live: set[ChunkId] = set()
    for key, value in list(txn.cursor(db=intents)):
        chunk = ChunkId(key.decode())
        owner = int(json.loads(value)["pid"])
        if (owner == os.getpid() and chunk in held) or (owner != os.getpid() and process_alive(owner)):
            live.add(chunk)
        else:
            txn.delete(key, db=intents)
    return live
