"""`udr.materialize.protocols.RowSource`: `RowReader` offers each of its methods with the same signature, and
reads a table's rows the same through it."""

from __future__ import annotations

from pathlib import Path

import pytest
from protocols import assert_offers, public_methods

import udr
from udr.materialize.data import RowReader
from udr.materialize.protocols import RowSource

_METHODS = public_methods(RowSource)


@pytest.mark.parametrize("name", _METHODS)
def test_the_reader_has_each_method_with_the_same_signature(name: str) -> None:
    assert_offers(RowReader, RowSource, name)


def test_a_table_reads_the_same_through_the_protocol(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.append("t", {"id": [1, 2, 3], "v": ["a", "b", "c"]})
        db.delete("t", "id = 2")
        source: RowSource = db._handle.ctx.rows
        state = db._handle.table("t", "main", None)
        assert source.table("t", state).to_pydict() == {"id": [1, 3], "v": ["a", "c"]}
        frag = state.fragments[0]
        assert source.keep_mask(frag).tolist() == [True, False, True]
        assert source.deleted_positions(frag).to_pylist() == [1]
