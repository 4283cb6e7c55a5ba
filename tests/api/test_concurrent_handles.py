"""Several handles of one lake appending side by side, as writer processes do: each transaction begins before the
others commit, so each commit is placed over the ones made since its base (decoded before the append takes LMDB's
writer lock) and each handle folds the others' commits into the snapshot its next transaction begins from."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

import udr
from udr.log.format import CommitId
from udr.materialize.snapshot import Materializer, encode_state

WRITERS = 4
ROUNDS = 12  # 48 commits: past the checkpoints every 16 first-parent steps


def _batch(n: int) -> pa.Table:
    return pa.table({"id": pa.array([n, n + 1], pa.int64()), "note": [f"row {n}", f"row {n + 1}"]})


def test_interleaved_appends_from_several_handles_form_one_line_every_handle_folds_alike(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with udr.open(lake) as db:
        db.append("orders", _batch(-2))
        db.append("payments", _batch(-2))
    handles = [udr.open(lake) for _ in range(WRITERS)]
    try:
        made = []
        for r in range(ROUNDS):
            txs = [db.transaction(message=f"w{w} {r}") for w, db in enumerate(handles)]
            for w, tx in enumerate(txs):
                tx.append("orders", _batch(100 * (r * WRITERS + w)))
                tx.append("payments", _batch(100 * (r * WRITERS + w)))
            for tx in txs:
                made.append(tx.commit())
        # Each commit sits on the one before it: placed over the commits made since its base, never conflicting.
        assert [c.parents[0] for c in made[1:]] == [c.id for c in made[:-1]]
        fresh = Materializer(handles[0]._handle.ctx.log)
        for db in handles:
            assert db.row_count("orders") == db.row_count("payments") == 2 + 2 * WRITERS * ROUNDS
            for commit in made[::5] + made[-1:]:
                cid = CommitId(commit.id)
                ours = db._handle.ctx.materializer.snapshot(cid)
                assert {t: encode_state(s) for t, s in ours.items()} == {
                    t: encode_state(s) for t, s in fresh.snapshot(cid).items()}
    finally:
        for db in handles:
            db.close()
