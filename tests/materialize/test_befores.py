"""udr/materialize/befores.py: the before-images a writing process keeps, by commit and table."""

from __future__ import annotations

import pyarrow as pa

from udr.log.commits import TableOp
from udr.log.format import CommitId
from udr.materialize.befores import KeptBefores


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
