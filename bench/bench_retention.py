"""A4: `expire` + `gc` on the W5 lake (1M keyed rows, 10 nightly refreshes) keeping only the last version;
E1 (informational): erasing one key from every version of that lake, then `gc`.

Measures the bytes freed against the bytes no kept version needs (chunk files and droppable log blobs,
minus what the head's table state uses, counted independently of gc from the head's manifest), and the
time of `expire` + `gc` against the median W5 refresh time measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from bench_refresh import ROWS, initial, refreshed
from common import remove, report, scratch

import udr
from udr.log.format import CHUNK_DIR, DB_BLOBS, BlobId, BlobKind
from udr.log.store import LogStore
from udr.materialize.vectors import vector_chain

_DROPPABLE = {BlobKind.ROWS, BlobKind.DELETES, BlobKind.BEFORE}


def stored(db: udr.Lake) -> int:
    """Bytes of every chunk file and every log blob gc may drop."""
    files = sum(f.stat().st_size for f in (db.path / CHUNK_DIR).rglob("*.parquet"))
    env = db._handle.ctx.log.env
    with env.read() as txn:
        blobs = sum(len(v) for _, v in txn.cursor(db=env.db(DB_BLOBS)) if v[1] in _DROPPABLE)
    return files + blobs


def _deletes(log: LogStore) -> Callable[[BlobId], bytes]:
    return lambda vector: log.get_blob(vector, BlobKind.DELETES)


def needed_by_head(db: udr.Lake) -> int:
    """Bytes the head version uses: its fragments' chunk files or inline rows, deletion vectors (with the ones they
    chain onto), before-image."""
    log = db._handle.ctx.log
    head = db.resolve("main")
    total = 0
    for state in db._handle.ctx.materializer.snapshot(head).values():
        for frag in state.fragments:
            total += log.blob_size(BlobId(frag.chunk)) if frag.inline else log.chunks.size(frag.chunk)
            if frag.deletes is not None:  # from format 4 a vector chains onto older ones, which it needs too
                total += sum(log.blob_size(v) for v in vector_chain(frag.deletes, _deletes(log)))
    for op in log.get_commit(head).tables.values():
        if op.before is not None:
            total += log.blob_size(op.before)
    return total


def main(refreshes: int = 10) -> None:
    rng = np.random.default_rng(42)
    path = scratch("a4")
    data = initial(ROWS, rng)
    db = udr.open(path / "lake")
    with db.transaction(message="first load") as tx:
        tx.create_table("parcels", data.schema, primary_key=["id"])
        tx.append("parcels", data)
    next_id = ROWS
    times = []
    for i in range(refreshes):
        data, next_id = refreshed(data, rng, next_id)
        os.sync()
        start = time.perf_counter()
        db.overwrite("parcels", data, message=f"refresh {i}")
        times.append(time.perf_counter() - start)
    refresh = statistics.median(times)
    before = stored(db)
    unneeded = before - needed_by_head(db)
    os.sync()
    start = time.perf_counter()
    db.set_retention(keep_commits=1)
    expired = db.expire()
    freed = db.gc()
    elapsed = time.perf_counter() - start
    left = stored(db)
    report("A4", f"bytes freed of {unneeded / 1e6:.1f} MB unneeded ({expired.expired} versions expired)",
           freed / 1e6, "MB", baseline=unneeded / 1e6, baseline_name="unneeded", target=">= 0.9x",
           ok=freed >= 0.9 * unneeded)
    report("A4", f"bytes left vs head's ({before / 1e6:.1f} MB before)", left / 1e6, "MB",
           baseline=needed_by_head(db) / 1e6, baseline_name="head needs", target="1.0x")
    report("A4", "expire + gc time", elapsed, "s", baseline=refresh, baseline_name="median W5 refresh",
           target="<= 1.0x", ok=elapsed <= refresh)
    assert db.verify().ok
    os.sync()
    start = time.perf_counter()
    db.erase("parcels", {"id": [123_456]}, reason="bench")
    db.gc()
    elapsed = time.perf_counter() - start
    report("E1", "erase one key from every version + gc (scrub)", elapsed, "s", baseline=refresh,
           baseline_name="median W5 refresh", target="(no target)")
    assert db.verify().ok and db.row_count("parcels") == data.num_rows - 1
    db.close()
    remove(path)


if __name__ == "__main__":
    main()
