"""Refs as ISO-8601 strings wherever a ref is accepted: `at=`, `since=`/`until=` and SQL names."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

import udr


@pytest.fixture
def two_versions(tmp_path: Path) -> tuple[udr.Lake, str]:
    """A lake whose `t` has one row up to the returned time (ISO 8601, UTC "Z") and two rows after it."""
    db = udr.open(tmp_path)
    db.append("t", pa.table({"x": [1]}))
    time.sleep(0.01)
    between = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(0.01)
    db.append("t", pa.table({"x": [2]}))
    return db, between


def test_read_at_an_iso_string_sees_the_version_of_that_time(two_versions: tuple[udr.Lake, str]) -> None:
    db, between = two_versions
    assert db.read("t", at=between)["x"].to_pylist() == [1]
    assert db.read("t", at=datetime.fromisoformat(between))["x"].to_pylist() == [1]
    assert db.read("t")["x"].to_pylist() == [1, 2]


def test_sql_name_with_an_iso_time(two_versions: tuple[udr.Lake, str]) -> None:
    db, between = two_versions
    assert db.query(f'SELECT x FROM "t@{between}"')["x"].to_pylist() == [1]


def test_changes_since_an_iso_string(two_versions: tuple[udr.Lake, str]) -> None:
    db, between = two_versions
    assert db.changes("t", since=between)["x"].to_pylist() == [2]


def test_iso_time_with_a_space_and_offset(two_versions: tuple[udr.Lake, str]) -> None:
    db, _ = two_versions
    assert db.read("t", at="2999-01-01 00:00+01:00")["x"].to_pylist() == [1, 2]


def test_iso_time_before_the_first_commit_is_ref_not_found(two_versions: tuple[udr.Lake, str]) -> None:
    db, _ = two_versions
    with pytest.raises(udr.RefNotFound, match="no commit at or before"):
        db.read("t", at="2000-01-01T00:00:00Z")


def test_malformed_iso_time_is_a_usage_error(two_versions: tuple[udr.Lake, str]) -> None:
    db, _ = two_versions
    with pytest.raises(udr.UsageError, match="not ISO 8601"):
        db.read("t", at="2026-13-45T99:00")


def test_a_tag_named_like_a_date_wins_over_the_time(two_versions: tuple[udr.Lake, str]) -> None:
    db, _ = two_versions
    db.tag("2999-01-01", "main~1")
    assert db.read("t", at="2999-01-01")["x"].to_pylist() == [1]
