"""Scrubbing the log environment: after `gc` dropped blobs an erasure replaced, no byte of them stays in
`log/data.mdb`.

LMDB never overwrites a page in place: a deleted value's bytes stay in freed pages, in the unused gap of a
live page it was deleted from, and in the page buffers LMDB recycles within a process without clearing them
(which then carry them into the unused space of pages it writes later). `scrub` reopens the environment
(dropping those buffers), rewrites every sub-database into fresh zero-filled pages, commits once more so every
page freed so far becomes reusable, then fills the free pages with zeros through a filler it deletes again.
Pages still pinned by another process's open read transaction are not reusable yet; `scrub` reports
whether the data file shrank to what is live. Each step is one durable write transaction, so a crash leaves
a consistent log (filler keys left by a crash are deleted by the next scrub). Callers: the facade's `gc`;
safe across processes.
"""

from __future__ import annotations

import struct

from udr.log.envtypes import Environment
from udr.log.format import DB_META, LOG_DBS

_FILLER = b"scrub:"


def scrub(env: Environment) -> None:
    """Rewrite every sub-database into fresh pages and zero every free page of the data file."""
    env.renew()  # no recycled page buffer may carry old bytes into the pages written below
    meta = env.db(DB_META)
    for name in LOG_DBS:
        db = env.db(name)
        with env.write() as txn:
            items = list(txn.cursor(db=db))
            txn.drop(db, delete=False)
            for key, value in items:
                txn.put(key, value, db=db, append=True)
    with env.write() as txn:
        # A write of its own: LMDB reuses a page only two transactions after the one that freed it.
        txn.put(_FILLER, b"", db=meta)
    page, free = env.free_pages()
    zeros = bytes(page // 2 - 64)  # two to a leaf page, so single free pages are taken one by one
    with env.write() as txn:
        for n in range(2 * free + 2):
            txn.put(_FILLER + struct.pack(">Q", n), zeros, db=meta)
    with env.write() as txn:
        cursor = txn.cursor(db=meta)
        doomed = []
        if cursor.set_range(_FILLER):
            doomed = [key for key in cursor.iternext(keys=True, values=False) if key.startswith(_FILLER)]
        for key in doomed:
            txn.delete(key, db=meta)
