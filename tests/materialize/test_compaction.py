"""udr.materialize.compaction: which trailing fragments of a table are its delta run, when a merge of them is
due, and what a merge stages (their live rows as one fragment, no row changed, the large chunks untouched)."""

from __future__ import annotations

import pyarrow as pa
import pytest

import udr
import udr.log.format
from udr.log.format import BlobId, ChunkId, CommitId
from udr.materialize.compaction import delta_run, merge_due, merge_fragments
from udr.materialize.staging import Staging
from udr.materialize.states import FragmentState, TableState


def _state(*rows: int, deleted: tuple[int, ...] = (), key: tuple[str, ...] | None = ("id",)) -> TableState:
    gone = deleted + (0,) * (len(rows) - len(deleted))
    return TableState(BlobId("s"), key, tuple(FragmentState(ChunkId(f"c{i}"), n, True, BlobId("s"), None, d)
                                             for i, (n, d) in enumerate(zip(rows, gone))))


def test_the_delta_run_is_the_trailing_fragments_far_smaller_than_the_largest() -> None:
    assert [f.rows for f in delta_run(_state(8_000, 2_000, 1_000, 20))] == [1_000, 20]
    assert [f.rows for f in delta_run(_state(8_000, 1_001, 1_000))] == [1_000]
    assert delta_run(_state(8_000)) == () and delta_run(_state()) == ()
    assert delta_run(_state(8_000, 7_000, 20_000)) == ()


def test_a_merge_is_due_for_many_delta_fragments_or_a_mostly_deleted_run_of_a_keyed_table(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udr.log.format, "MERGE_FRAGMENTS", 4)
    snapshot = {"three": _state(8_000, 10, 10, 10), "four": _state(8_000, 10, 10, 10, 10),
                "unkeyed": _state(8_000, 10, 10, 10, 10, key=None), "dead": _state(8_000, 10, 10, deleted=(0, 6, 5)),
                "one": _state(8_000, 10, deleted=(0, 10))}
    assert merge_due(snapshot, [*sorted(snapshot), "missing"]) == ["dead", "four"]


def test_a_merge_stages_the_live_rows_of_the_run_as_one_fragment_and_changes_no_row(tmp_path: str) -> None:
    with udr.open(f"{tmp_path}/lake") as db:
        db.create_table("t", pa.schema([("id", pa.int64()), ("v", pa.string())]), primary_key=["id"])
        db.append("t", {"id": list(range(1_000)), "v": ["a"] * 1_000})
        for night in range(3):
            db.upsert("t", {"id": [night, night + 1, 500], "v": [f"n{night}"] * 3})
        before = db.read("t").sort_by("id")
        ctx = db._handle.ctx
        head = CommitId(db.resolve("main"))
        staging = Staging(ctx.log, ctx.rows, head, ctx.materializer.snapshot(head), branch="main")
        merge_fragments(staging, "t")
        op = staging.op("t")
        assert op.rewrite and (op.inserted, op.updated, op.deleted) == (0, 0, 0)
        assert len(op.deletes) == 3 and all(d.vector is None for d in op.deletes)  # the run, deleted whole
        assert [f.rows for f in op.add] == [5]  # its live rows: ids 0-3 and 500
        state = staging.require("t")
        assert [f.rows for f in state.fragments] == [1_000, 5]
        assert staging.rows.table("t", state).sort_by("id").equals(before)
        staging.release()
