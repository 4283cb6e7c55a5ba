"""The remote log: a linear sequence of entries `log/<seq, 20 digits>` in object storage, the lake's truth.

An entry is created only if absent (one conditional put), so exactly one writer wins each sequence number and
a commit is visible exactly when its entry exists. An entry's commits and ref moves never change; only an
erasure's purge rewrites it (`drop_blobs`, compare-and-swap on its ETag) without blobs the erasure replaced.
Entries are found by reading forward (GET seq+1 until there is none), never by listing. An entry carries
the stored bytes of the commits it adds, of the blobs they reference, and the ref-log records of the refs it
moves (docs/FORMAT.md, "Remote log entry"). Chunks an entry references were uploaded before it was created.
Safe across threads.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

from udr.errors import CorruptionError, FormatError
from udr.log.format import (
    REMOTE_ENTRY_VERSION,
    REMOTE_ENTRY_VERSION_PLAIN,
    REMOTE_LOG_PREFIX,
    REMOTE_SEQ_DIGITS,
    BlobId,
    CommitId,
)
from udr.remote.store import ObjectStore


@dataclass(frozen=True, slots=True)
class Entry:
    """One remote log entry.

    Attributes:
        seq: its position in the remote log (0: the lake's creation).
        format: the lake format version its writer labelled the lake with.
        commits: (id, stored commit blob) of every commit it adds, in local log order.
        blobs: stored bytes of the blobs those commits reference.
        moves: the ref-log records (`udr.log.reflog` documents) of the ref moves it makes, in order.
        groups: the consumer-group records it changes (`udr.log.groups`, `udr.log.members`): key -> new
            value, None for a deleted record (version 2 entries only).
    """

    seq: int
    format: int
    commits: tuple[tuple[CommitId, bytes], ...] = ()
    blobs: Mapping[BlobId, bytes] = field(default_factory=dict)
    moves: tuple[Mapping[str, object], ...] = ()
    groups: Mapping[bytes, bytes | None] = field(default_factory=dict)


def entry_key(seq: int) -> str:
    """The object key of entry `seq`."""
    return f"{REMOTE_LOG_PREFIX}{seq:0{REMOTE_SEQ_DIGITS}d}"


def encode_entry(entry: Entry) -> bytes:
    """The stored bytes of `entry`: JSON, binary parts in base64."""
    doc: dict[str, object] = {
        "v": REMOTE_ENTRY_VERSION if entry.groups else REMOTE_ENTRY_VERSION_PLAIN,
        "seq": entry.seq,
        "format": entry.format,
        "commits": [[cid, base64.b64encode(raw).decode()] for cid, raw in entry.commits],
        "blobs": {bid: base64.b64encode(raw).decode() for bid, raw in sorted(entry.blobs.items())},
        "moves": list(entry.moves),
    }
    if entry.groups:
        doc["groups"] = [[_b64(key), _b64(value) if value is not None else None]
                         for key, value in sorted(entry.groups.items())]
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def decode_entry(seq: int, raw: bytes) -> Entry:
    """Parse the stored bytes of entry `seq`.

    Raises:
        FormatError: written by a newer udr.
        CorruptionError: not a valid entry, or it names another position.
    """
    try:
        doc = json.loads(raw)
        version = int(doc["v"])
        if version > REMOTE_ENTRY_VERSION:
            raise FormatError(f"remote log entry {seq} has version {version}; this udr reads version "
                              f"{REMOTE_ENTRY_VERSION} and older: upgrade udr")
        entry = Entry(
            seq=int(doc["seq"]),
            format=int(doc["format"]),
            commits=tuple((CommitId(str(cid)), base64.b64decode(data)) for cid, data in doc["commits"]),
            blobs={BlobId(str(bid)): base64.b64decode(data) for bid, data in doc["blobs"].items()},
            moves=tuple(dict(move) for move in doc["moves"]),
            groups={base64.b64decode(key): base64.b64decode(value) if value is not None else None
                    for key, value in doc.get("groups", ())},
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptionError(f"remote log entry {seq} is not a valid entry ({exc}); "
                              "the remote lake is damaged") from exc
    if entry.seq != seq:
        raise CorruptionError(f"remote log entry {seq} says it is entry {entry.seq}; the remote lake is damaged")
    return entry


class RemoteLog:
    """Reads and appends entries of one remote lake's log."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def read(self, seq: int) -> Entry | None:
        """Entry `seq`, or None if no writer created it yet.

        Raises:
            StorageError: the store failed. CorruptionError, FormatError: see `decode_entry`.
        """
        raw = self.store.get(entry_key(seq))
        return decode_entry(seq, raw) if raw is not None else None

    def entries_from(self, seq: int) -> Iterator[Entry]:
        """Entries `seq`, `seq`+1, ... up to the newest one that exists (reading forward, never listing)."""
        while True:
            entry = self.read(seq)
            if entry is None:
                return
            yield entry
            seq += 1

    def drop_blobs(self, seq: int, gone: set[str]) -> bool:
        """Rewrite entry `seq` without the blobs named in `gone` (an erasure replaced them: readers no longer
        need them), by compare-and-swap on its ETag, retried until no concurrent rewrite intervenes; False if
        the entry carries none of them.

        Raises:
            StorageError: the store failed. CorruptionError, FormatError: see `decode_entry`.
        """
        key = entry_key(seq)
        while True:
            found = self.store.get_tagged(key)
            if found is None:
                return False
            entry = decode_entry(seq, found[0])
            if not gone & entry.blobs.keys():
                return False
            kept = {bid: raw for bid, raw in entry.blobs.items() if bid not in gone}
            if self.store.replace(key, encode_entry(replace(entry, blobs=kept)), found[1]):
                return True

    def append(self, entry: Entry) -> bool:
        """Create entry `entry.seq` if no writer has; False when another writer won that position.

        Raises:
            StorageError: the store failed; the entry may or may not exist (read it back to know).
        """
        return self.store.put_new(entry_key(entry.seq), encode_entry(entry))
