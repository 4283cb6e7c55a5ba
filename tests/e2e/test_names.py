"""Branch, tag and group names are checked like git's check-ref-format, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

import udr


def test_a_bad_branch_tag_or_group_name_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.append("t", {"a": [1]})
        before = (db.branches(), db.tags(), db.log())
        with pytest.raises(udr.InvalidName):
            db.create_branch("bad name!")
        with pytest.raises(udr.InvalidName):
            db.tag("v1.lock")
        with pytest.raises(udr.InvalidName):
            db.subscribe("t", group="billing team")
        assert (db.branches(), db.tags(), db.log()) == before and db.groups() == []
        db.create_branch("feature-1.2_ok")
