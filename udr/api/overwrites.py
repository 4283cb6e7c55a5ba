"""Keyed overwrites of several tables at once, their comparisons side by side (`Transaction.overwrite_many`).

A refresh overwrites dozens of keyed tables in one transaction. Each overwrite reads the table's current
rows and compares them with the new ones (`writes.keyed_changes`), then stages the difference. The
comparisons of different tables are independent and stage nothing, and they are mostly Parquet decoding and
Arrow kernels, which release the GIL: here they run on worker threads while the caller's thread stages the
finished ones in the order given. The staged result (fragments, chunk ids, counts, before-images) is the one
overwriting the tables one after another gives. Staging stays on the caller's thread, the transaction's.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from udr.api import writes
from udr.api.context import LakeContext
from udr.materialize.staging import Staging

# Comparisons under way at once: one per core (they decode and compare in C++), at least two so that one
# table's comparison overlaps the staging of the one before it.
_WORKERS = max(2, min(4, os.cpu_count() or 2))


def overwrite_keyed(ctx: LakeContext, staging: Staging, tables: list[tuple[str, pa.Table]]) -> None:
    """Stage the overwrite of each keyed table of `tables` (name, new rows; each name once) with its rows, as
    `writes.keyed_write` with `remove_missing` does for one.

    Raises:
        KeyViolation: the rows of a table have a null or duplicate key (the first such table in order; the
            tables before it are staged).
    """
    if len(tables) < 2:
        for name, data in tables:
            writes.keyed_write(ctx, staging, name, data, remove_missing=True)
        return
    staging.pool()  # made here, before the workers ask for it: they share one
    jobs = [(name, data, staging.require(name), name not in staging.ops) for name, data in tables]
    with ThreadPoolExecutor(min(_WORKERS, len(jobs)), thread_name_prefix="udr-overwrite") as pool:
        futures = [pool.submit(writes.keyed_changes, ctx, staging, name, state, data, remove_missing=True)
                   for name, data, state, _ in jobs]
        try:
            for (name, data, _, first), future in zip(jobs, futures):
                writes.stage_keyed_diff(staging, name, future.result(), data.schema, first=first, replaced=True)
        finally:
            # After an error, comparisons not yet started never start; running ones end with the pool.
            for future in futures:
                future.cancel()
