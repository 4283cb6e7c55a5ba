"""The two ways a write to the log loses a race with another writer, as the writer sees them.

`HeadMoved`: the log's placement (`udr.log.placement`) found that a commit made since the writer's base
changed the same tables in a way it cannot place the new commit over; `LostRace`: the replicated log of a lake
in object storage (`udr.remote.mirror`) took another writer's entry first. Both are retryable `ConflictError`s
and nothing was written. Low in `udr/log` so the record stores that retry a lost race (`udr.log.groups`) need
not import the placement rules. Plain exception classes: safe anywhere.
"""

from __future__ import annotations

from udr.errors import ConflictError
from udr.log.format import CommitId


class HeadMoved(ConflictError):
    """The branch moved since the writer's base and a commit in between changed one of the same tables in a way
    the log cannot place the new commit over by itself; the writer may re-express its changes on `head`."""

    def __init__(self, message: str, head: CommitId) -> None:
        super().__init__(message)
        self.head = head


class LostRace(ConflictError):
    """A write of a log replicated elsewhere (a cache of a lake in object storage) lost the race for the other
    log's next entry: nothing was written, the replica pulled the winner's entry; the writer retries."""
