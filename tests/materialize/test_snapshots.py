"""`udr.materialize.protocols.Snapshots`: `Materializer` offers each of its methods with the same signature,
and a lake's snapshots read the same through it."""

from __future__ import annotations

from pathlib import Path

import pytest
from protocols import assert_offers, public_methods

import udr
from udr.log.format import CommitId
from udr.materialize.protocols import Snapshots
from udr.materialize.snapshot import Materializer

_METHODS = public_methods(Snapshots)


@pytest.mark.parametrize("name", _METHODS)
def test_the_materializer_has_each_method_with_the_same_signature(name: str) -> None:
    assert_offers(Materializer, Snapshots, name)


def test_a_lake_s_snapshots_read_the_same_through_the_protocol(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        first = CommitId(db.append("t", {"id": [1, 2]}).id)
        second = CommitId(db.append("u", {"x": [1]}).id)
        snapshots: Snapshots = db._handle.ctx.materializer
        assert sorted(snapshots.snapshot(second)) == ["t", "u"]
        assert snapshots.table(first, "u") is None
        assert snapshots.table(second, "t") == snapshots.snapshot(first)["t"]
        record = db._handle.ctx.log.get_commit(second)
        assert snapshots.replaced(record) == record  # nothing erased
        assert snapshots.any_expired() is False
        assert snapshots.rebuild() == 3  # the lake's first commit, then the two appends
        assert sorted(snapshots.snapshot(second)) == ["t", "u"]
