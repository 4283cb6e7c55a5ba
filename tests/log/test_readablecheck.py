"""`udr.log.protocols.ReadableCheck`: `RetentionStore` offers `check_readable` with the protocol's signature,
and a lake's context checks versions through it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import udr
from udr.log.format import CommitId
from udr.log.protocols import ReadableCheck
from udr.log.retention import RetentionStore


def test_the_retention_store_checks_with_the_same_signature() -> None:
    assert inspect.signature(RetentionStore.check_readable) == inspect.signature(ReadableCheck.check_readable)


def test_a_lake_checks_expired_versions_through_the_protocol(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        old = CommitId(db.overwrite("t", {"x": [1]}).id)
        new = CommitId(db.overwrite("t", {"x": [2]}).id)
        check: ReadableCheck = db._handle.ctx.retention
        check.check_readable(old, ["t"])
        db.set_retention(keep_commits=1)
        db.expire()
        with pytest.raises(udr.Expired, match="keep_commits=1"):
            check.check_readable(old, ["t"])
        check.check_readable(old, ["u"])  # another table's data at that version is not expired
        check.check_readable(new, ["t"])
