"""Ref moves the facade makes without a commit (fast-forward merges and resets), each recorded in the ref
log with its reason in the same LMDB transaction as the move (`udr.log.reflog`).

A reset whose target does not contain the old head hides commits from the branch; the ref log says so, and
the hidden commits stay in the log, readable by id. Safe from any thread (moves are compare-and-swap).
"""

from __future__ import annotations

from udr.log import graph
from udr.log.format import CommitId
from udr.log.protocols import LakeLog
from udr.log.reflog import Reason
from udr.log.refs import branch_key


def fast_forward(log: LakeLog, branch: str, old: CommitId, new: CommitId, source: str, author: str) -> None:
    """Move `branch` from `old` to its descendant `new` (a merge of `source` with nothing to merge).

    Raises:
        ConflictError: the branch moved meanwhile.
    """
    log.update_ref(branch_key(branch), new, old, Reason("merge", f"fast-forward {branch} to {source}", author))


def reset_branch(log: LakeLog, branch: str, old: CommitId, new: CommitId, author: str) -> None:
    """Move `branch` from `old` to any commit `new`, saying in the ref log whether that hides commits.

    Raises:
        ConflictError: the branch moved meanwhile.
    """
    hides = "" if graph.merge_base(log, old, new) == old else f", hiding commits up to {old[:10]}"
    why = Reason("reset", f"reset {branch} from {old[:10]} to {new[:10]}{hides}", author)
    log.update_ref(branch_key(branch), new, old, why)
