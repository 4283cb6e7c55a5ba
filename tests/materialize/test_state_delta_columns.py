"""udr.materialize.changes.state_delta with `columns`: the same rows as the full delta, only those columns
(what an incremental SQL rebuild reads to find the changed keys of its inputs)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

import udr
from udr.log.format import CommitId
from udr.materialize.changes import state_delta


def test_a_delta_of_some_columns_is_the_full_delta_projected(tmp_path: Path) -> None:
    rows = 50_000
    ids = pa.array(range(rows), pa.int64())
    first = pa.table({"id": ids, "v": pa.array([float(i) for i in range(rows)]), "s": pa.array(["x"] * rows)})
    with udr.open(tmp_path / "lake") as db:
        with db.transaction() as tx:
            tx.create_table("t", first.schema, primary_key=["id"])
            tx.append("t", first)
        before = db.resolve("main")
        # Rows spread over the whole base chunk change, a few go, a few come.
        changed = first.set_column(1, "v", pa.array([float(i) + (i % 97 == 0) for i in range(rows)]))
        changed = pa.concat_tables([changed.slice(0, rows - 10),
                                    pa.table({"id": pa.array([rows + 1], pa.int64()), "v": [1.0], "s": ["y"]})])
        with db.transaction() as tx:
            tx.overwrite("t", changed)
        ctx = db._handle.ctx
        old = ctx.materializer.snapshot(CommitId(before))["t"]
        new = ctx.materializer.snapshot(CommitId(db.resolve("main")))["t"]
        full = state_delta(ctx.rows, "t", old, new)
        keys = state_delta(ctx.rows, "t", old, new, columns=["id"])
    assert keys.removed.column_names == keys.added.column_names == ["id"]
    assert full.removed.num_rows == 10 + len(range(0, rows - 10, 97))
    assert keys.removed.equals(full.removed.select(["id"]))
    assert keys.added.equals(full.added.select(["id"]))
