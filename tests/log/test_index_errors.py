"""LMDB open failures: damage is a `FormatError` (a cache is then started afresh); trouble with the
machine (permissions, a full map, locks) is a plain `UdrError` and never deletes a file."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest

import udr
from udr.log.index import open_failure


@pytest.mark.parametrize("exc", [lmdb.CorruptedError("x"), lmdb.InvalidError("x"), lmdb.VersionMismatchError("x")])
def test_damage_is_a_format_error(exc: lmdb.Error, tmp_path: Path) -> None:
    assert isinstance(open_failure(tmp_path, exc), udr.FormatError)


@pytest.mark.parametrize("exc", [lmdb.MapFullError("x"), lmdb.LockError("x"), lmdb.ReadersFullError("x"),
                                 lmdb.Error("Permission denied")])
def test_machine_trouble_is_not_a_format_error(exc: lmdb.Error, tmp_path: Path) -> None:
    failure = open_failure(tmp_path, exc)
    assert isinstance(failure, udr.UdrError) and not isinstance(failure, udr.FormatError)
    assert "retry" in str(failure)


def test_a_damaged_cache_is_started_afresh(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        db.append("t", {"x": [1]})
    (tmp_path / "cache" / "data.mdb").write_bytes(b"not lmdb" * 1000)
    with udr.open(tmp_path) as db:
        assert db.read("t")["x"].to_pylist() == [1]
