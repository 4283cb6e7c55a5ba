"""udr/api/merging.py: a merge whose target moved meanwhile is a retryable ConflictError."""

from __future__ import annotations

from pathlib import Path

import pytest

import udr
from udr.api import merging
from udr.log.format import CommitId


def test_a_merge_into_a_moved_branch_is_a_retryable_conflict(tmp_path: Path) -> None:
    with udr.open(tmp_path) as db:
        db.append("t", {"x": [1]})
        db.create_branch("dev")
        db.append("t", {"x": [2]}, branch="dev")
        stale = CommitId(db.append("t", {"x": [3]}).id)
        db.append("t", {"x": [4]})
        base = CommitId(db.branches()["dev"])
        with pytest.raises(udr.ConflictError, match=r"moved from .* during the merge; merge again") as caught:
            merging.three_way(db._handle, branch="main", base=base, ours=stale, theirs=base, parents=(stale, base),
                               message="m", author="a", strategy=None)
        assert caught.value.retryable
