"""udr.materialize.touched: the keys two states of a keyed table differ in, read through the key index, are
exactly the keys of the rows `state_delta` finds removed or added, over upserts, deletes, a flush of small
writes and a Parquet chunk; erased rows (null keys) leave the answer to the row comparison."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pyarrow as pa

import udr
from udr.materialize.changes import state_delta
from udr.materialize.touched import shared_keys, touched_keys


def test_touched_keys_equal_the_keys_of_the_row_delta(tmp_path: Path) -> None:
    rng = random.Random(5)
    with udr.open(tmp_path / "lake") as db:
        db.create_table("t", pa.schema([pa.field("k", pa.int64(), nullable=False), ("v", pa.int64())]),
                        primary_key=["k"])
        db.append("t", {"k": np.arange(70_000), "v": np.zeros(70_000, np.int64)})
        heads = [db._handle.head("main")]
        for step in range(12):
            keys = rng.sample(range(70_010), 6)
            if step % 4 == 3:
                db.delete("t", keys={"k": keys[:3]})
            else:
                db.upsert("t", {"k": keys, "v": [step + 1] * len(keys)})
            if step == 7:
                db.compact("t")
            heads.append(db._handle.head("main"))
        ctx = db._handle.ctx
        states = [ctx.materializer.snapshot(h)["t"] for h in heads]
        pairs = [(a, b) for a, b in itertools.combinations(range(len(states)), 2) if b - a <= 2 or a == 0]
        for old, new in ((states[a], states[b]) for a, b in pairs):
            delta = state_delta(ctx.rows, "t", old, new)
            expected = sorted(set(delta.removed.column("k").to_pylist()) | set(delta.added.column("k").to_pylist()))
            found = touched_keys(ctx.rows, ctx.keys, old, new)
            assert found is not None and found.tolist() == expected
        base, ours, theirs = states[0], states[1], states[2]
        mine = set(touched_keys(ctx.rows, ctx.keys, base, ours).tolist())  # type: ignore[union-attr]
        other = set(touched_keys(ctx.rows, ctx.keys, base, theirs).tolist())  # type: ignore[union-attr]
        assert shared_keys(ctx.rows, ctx.keys, base, ours, theirs) is bool(mine & other)
        assert shared_keys(ctx.rows, ctx.keys, base, ours, ours) is True


def test_a_key_the_index_cannot_hold_is_left_to_the_rows(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.create_table("t", pa.schema([pa.field("k", pa.float64(), nullable=False), ("v", pa.int64())]),
                        primary_key=["k"])
        db.append("t", {"k": [1.0, 2.0], "v": [0, 0]})
        before = db._handle.head("main")
        db.upsert("t", {"k": [2.0], "v": [1]})
        ctx = db._handle.ctx
        old, new = (ctx.materializer.snapshot(h)["t"] for h in (before, db._handle.head("main")))
        assert touched_keys(ctx.rows, ctx.keys, old, new) is None
        assert shared_keys(ctx.rows, ctx.keys, old, new, new) is None
