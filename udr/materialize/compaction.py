"""Rewrites of a table's trailing run of small fragments that change no row: the flush of small inline writes
into Parquet, and the LSM-style merge of a keyed table's delta fragments.

A keyed refresh (a keyed overwrite of the whole table, such as a nightly reload of a source) stores the rows
that changed as one new small fragment and deletes their old versions from older fragments. A table refreshed
every night so ends in a run of small fragments, each with a deletion vector the next night extends: every
read and every keyed write pays per fragment (a vector to apply, a chunk to open, a vector to rewrite when it
loses rows), so the cost of a night would grow with the nights. Once the run holds `MERGE_FRAGMENTS` small
fragments, or half of its rows are deleted, `merge_fragments` rewrites its live rows as one fragment. The
large chunks before the run (the bulk load) are never rewritten, so their bytes are not stored again, and old
versions keep the merged fragments for time travel. A merge is a `rewrite` op: the change feed and history
show no change for it.

Functions over a `Staging` (one thread at a time) and pure checks over snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pyarrow as pa

from udr.log import format as lake_format
from udr.log.commits import Deletes, TableOp
from udr.materialize import schemas
from udr.materialize.staging import Staging
from udr.materialize.states import FragmentState, TableState


def flush_due(snapshot: Mapping[str, TableState], tables: list[str]) -> list[str]:
    """Which of `tables` (just written) have a run of `INLINE_FLUSH_FRAGMENTS` inline writes to flush."""
    return [t for t in tables if t in snapshot and snapshot[t].inline_run_reaches(lake_format.INLINE_FLUSH_FRAGMENTS)]


def flush_inline(staging: Staging, table: str) -> None:
    """Stage the trailing run of inline fragments of `table` rewritten as Parquet chunk(s); no row changes.

    Small writes are inlined in the log, one fragment each. Flushing them keeps a table's manifest, its
    snapshot opens, queries and change-feed looks from growing with the number of tiny commits; the log
    still holds every inline write. Only a trailing run is taken, so row order is kept.
    """
    run = staging.require(table).inline_tail()
    if len(run) >= 2 and table not in staging.ops:
        rewrite_run(staging, table, run, inline=False)


def delta_run(state: TableState) -> tuple[FragmentState, ...]:
    """The trailing run of fragments each with at most 1/`MERGE_RATIO` of the rows of the table's largest."""
    if not state.fragments:
        return ()
    limit = max(f.rows for f in state.fragments) // lake_format.MERGE_RATIO
    start = len(state.fragments)
    while start and state.fragments[start - 1].rows <= limit:
        start -= 1
    return state.fragments[start:]


def merge_due(snapshot: Mapping[str, TableState], tables: list[str]) -> list[str]:
    """Which of `tables` (just refreshed by a keyed overwrite) have a run of delta fragments to merge: at least
    `MERGE_FRAGMENTS` of them, or at least two with half their rows deleted."""
    due = []
    for table in tables:
        state = snapshot.get(table)
        run = delta_run(state) if state is not None and state.primary_key else ()
        deleted = sum(f.deleted for f in run)
        if len(run) >= lake_format.MERGE_FRAGMENTS or (len(run) >= 2 and 2 * deleted >= sum(f.rows for f in run)):
            due.append(table)
    return due


def merge_fragments(staging: Staging, table: str) -> None:
    """Stage the live rows of `table`'s run of delta fragments rewritten as one fragment (inline if small)."""
    run = delta_run(staging.require(table))
    if len(run) >= 2 and table not in staging.ops:
        rewrite_run(staging, table, run, inline=True)


def rewrite_run(staging: Staging, table: str, run: tuple[FragmentState, ...], *, inline: bool) -> None:
    """Stage `run` (the last fragments of `table`) replaced by new chunks of its live rows, in order, with no row
    changed (a `rewrite`); `inline`: small enough rows may stay in the log."""
    schema = staging.rows.schema(staging.require(table).schema)
    parts = [schemas.conform(staging.rows.live(f, table=table), schema) for f in run]
    staging.ops[table] = TableOp(rewrite=True, deletes=tuple(Deletes(f.chunk, None, f.rows) for f in run))
    if all(f.inline for f in run):
        # Small writes (at most `INLINE_MAX_BYTES` each) joined: sizing and encoding one array per column instead
        # of one per write cost a flush of 256 of them 2 ms less (the chunk's bytes are the same).
        parts = [pa.concat_tables(parts).combine_chunks()] if parts else []
    staging.add_rows(table, schema, (b for part in parts for b in part.to_batches()), inline=inline)
    staging.ops[table] = replace(staging.ops[table], inserted=0)
