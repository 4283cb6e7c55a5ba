"""What a table holds at a snapshot: its schema, primary key and fragments, each with its deletion vector;
and what the kept versions need of the stored data (`LiveData`, which `udr.materialize.retained` collects).

The values `udr.materialize.snapshot` folds from the log and every reader of table data takes: immutable
(a `FragmentState` is a NamedTuple, a `TableState` a frozen dataclass), so safe to share across threads.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

from udr.log.format import BlobId, BlobKind, ChunkId


class FragmentState(NamedTuple):
    """One fragment of a table at a snapshot, with its cumulative deletion vector.

    A NamedTuple rather than a dataclass: manifests hold up to tens of thousands of these, and building
    them is most of the cost of opening a snapshot.
    """

    chunk: ChunkId
    rows: int
    inline: bool
    schema: BlobId
    deletes: BlobId | None = None
    deleted: int = 0

    @property
    def live_rows(self) -> int:
        """Rows of this fragment not deleted."""
        return self.rows - self.deleted


@dataclass(frozen=True, slots=True)
class TableState:
    """A table at a snapshot: schema, primary key and fragments (in insertion order)."""

    schema: BlobId
    primary_key: tuple[str, ...] | None
    fragments: tuple[FragmentState, ...] = ()

    @property
    def rows(self) -> int:
        """Live rows in the table."""
        # Summed field by field in C: asked several times by every keyed write of a table of hundreds of fragments.
        rows: int = sum(map(itemgetter(1), self.fragments)) - sum(map(itemgetter(5), self.fragments))
        return rows

    def appended(self, chunks: AbstractSet[ChunkId]) -> tuple[FragmentState, ...]:
        """The fragments of `chunks`, which the commit that made this state added: adds go to the end of
        the manifest, so they are found in its tail without scanning a long table."""
        if not chunks:
            return ()
        return tuple(f for f in self.fragments[-len(chunks):] if f.chunk in chunks)

    def inline_tail(self) -> tuple[FragmentState, ...]:
        """The inline fragments at the end of the manifest: the small writes since the last larger one."""
        start = len(self.fragments)
        while start and self.fragments[start - 1].inline:
            start -= 1
        return self.fragments[start:]

    def inline_run_reaches(self, length: int) -> bool:
        """Whether `inline_tail` holds at least `length` fragments; asked after every small write, so the
        fragment `length` from the end is looked at first and a shorter run is not walked (a run that is due is
        walked in C: with several writers, every commit asks again until one of them has flushed it)."""
        frags = self.fragments
        return len(frags) >= length and frags[-length].inline and all(map(itemgetter(2), frags[-length:]))

    def chunk_ids(self) -> frozenset[ChunkId]:
        """The chunk ids of the table's fragments (a table never holds one chunk twice)."""
        return frozenset(map(itemgetter(0), self.fragments))


@dataclass(frozen=True, slots=True)
class LiveData:
    """The stored objects kept versions need: chunk files, and log blobs (rows, deletion vectors, before-images)."""

    chunks: set[ChunkId] = field(default_factory=set)
    blobs: dict[BlobId, BlobKind] = field(default_factory=dict)

    def needs(self, name: str) -> bool:
        """Whether a chunk or blob of id `name` is needed."""
        return name in self.chunks or name in self.blobs
