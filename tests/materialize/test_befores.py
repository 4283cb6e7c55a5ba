"""udr/materialize/befores.py: the before-images a writing process keeps, by commit and table."""

from __future__ import annotations

import pyarrow as pa

from udr.log.commits import Deletes, TableOp
from udr.log.format import (
    BEFORE_IMAGE_DERIVE_RATIO,
    BEFORE_IMAGE_MAX_ROWS,
    BlobId,
    ChunkId,
    CommitId,
)
from udr.materialize.befores import KeptBefores, stores_image
from udr.materialize.states import FragmentState, TableState


def test_an_image_is_handed_out_only_for_the_op_it_was_kept_with() -> None:
    kept = KeptBefores()
    op, image = TableOp(updated=1), pa.table({"id": [1]})
    kept.keep(CommitId("c1"), "t", op, image)
    assert kept.image(CommitId("c1"), "t", op) is image
    assert kept.image(CommitId("c1"), "t", TableOp(updated=2)) is None  # e.g. an erasure replaced a chunk
    assert kept.image(CommitId("c1"), "u", op) is None
    assert kept.image(CommitId("c2"), "t", op) is None


def test_the_oldest_images_go_first_once_over_budget() -> None:
    image = pa.table({"x": pa.array(range(1000), pa.int64())})  # 8,000 bytes
    kept = KeptBefores(budget=20_000)
    op = TableOp()
    for n in range(3):
        kept.keep(CommitId(f"c{n}"), "t", op, image)
    assert kept.image(CommitId("c0"), "t", op) is None
    assert kept.image(CommitId("c1"), "t", op) is image and kept.image(CommitId("c2"), "t", op) is image
    kept.keep(CommitId("big"), "t", op, pa.table({"x": pa.array(range(5000), pa.int64())}))  # over the budget alone
    assert kept.image(CommitId("big"), "t", op) is None


def _state(*fragment_rows: int) -> TableState:
    return TableState(BlobId("s"), ("id",), tuple(FragmentState(ChunkId(f"f{n}"), rows, False, BlobId("s"))
                                                  for n, rows in enumerate(fragment_rows)))


def test_the_log_stores_an_image_when_small_or_when_deriving_it_would_decode_too_much() -> None:
    base = _state(1_000_000, 5_000)
    touches_big = TableOp(deletes=(Deletes(ChunkId("f0"), BlobId("v"), 10),))
    touches_small = TableOp(deletes=(Deletes(ChunkId("f1"), BlobId("v"), 10),))
    assert stores_image(BEFORE_IMAGE_MAX_ROWS, touches_small, base)  # small: always stored
    assert not stores_image(BEFORE_IMAGE_MAX_ROWS + 1, touches_small, base)
    # 1M stored rows decoded for 1,025 image rows is over the ratio; for 1M / ratio rows it is not.
    assert stores_image(BEFORE_IMAGE_MAX_ROWS + 1, touches_big, base)
    assert not stores_image(1_000_000 // BEFORE_IMAGE_DERIVE_RATIO + 1, touches_big, base)
    assert not stores_image(BEFORE_IMAGE_MAX_ROWS + 1, TableOp(), None)  # a new table: nothing to decode
