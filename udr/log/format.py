"""On-disk format constants: every magic value, version and codec id the lake's bytes depend on.

`docs/FORMAT.md` is the contract these constants implement; change both together and bump
`FORMAT_VERSION` when a reader of the old version could misread the new bytes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from enum import IntEnum
from typing import NewType

FORMAT_NAME = "udr-lake"
FORMAT_VERSION = 5
READABLE_VERSIONS = frozenset({1, 2, 3, 4, 5})
# The version an older lake is relabelled to before its first commit of data only that version describes.
COLUMN_IDS_VERSION = 2
ERASURE_VERSION = 3
# Deletion vectors may chain onto an older vector (udr.materialize.vectors); only lakes created at this
# version or later are written so (older ones are not relabelled for it).
CHAINED_VECTORS_VERSION = 4
# A deletion vector of fewer positions than `GAPS_VECTOR_MAX` is stored as the gaps between its positions, not
# as Parquet: a Parquet file's footer outweighs a few hundred positions, and writing and reading it back took
# ~0.4 ms where the gaps take 0.06. Only lakes created at version 5 or later are written so.
GAPS_VECTORS_VERSION = 5
GAPS_VECTOR_MAX = 4096
# The most payloads one deletion vector's chain holds: a cold read decodes at most this many.
MAX_VECTOR_CHAIN = 16
# A chained vector's payload starts with this magic, its base's blob id (32 raw bytes) and its depth (1 byte).
VECTOR_CHAIN_MAGIC = b"UDRC"
# A gaps body (format 5) starts with this magic and its width (1 byte).
VECTOR_GAPS_MAGIC = b"UDRG"
# The most keys a keyed write hashes into its op (`TableOp.keys`) for the log to place it over concurrent keyed
# writes of other keys (`udr.log.keyplace`); a larger one is re-applied on a moved head instead.
KEY_HASHES_MAX = 1024
# The "v" field of a commit record (its canonical JSON encoding); a reader refuses a newer one.
COMMIT_RECORD_VERSION = 1

FORMAT_FILE = "FORMAT"
LOG_DIR = "log"
CACHE_DIR = "cache"
# Inside CACHE_DIR: one JSON file per table last built by a key-local SQL query (`udr.api.sqlbuilds`); derived.
SQL_BUILDS_DIR = "sqlbuilds"
CHUNK_DIR = "chunks"
TMP_DIR = "tmp"
CHUNK_SUFFIX = ".parquet"

# LMDB reserves the whole map as address space only; the file grows with the data.
LOG_MAP_SIZE = 1 << 40
CACHE_MAP_SIZE = 1 << 40
MAX_DBS = 32

# Sub-databases of the log environment (durable, the source of truth).
DB_META = b"meta"
DB_COMMITS = b"commits"
DB_SEQS = b"seqs"
DB_REFS = b"refs"
DB_BLOBS = b"blobs"
DB_INTENTS = b"intents"
DB_GROUPS = b"groups"
# Chunks that derived outputs outside the lake (published Iceberg tables) reference: gc keeps them.
DB_PINS = b"pins"
# Every move of a ref (who, when, from, to, why), written in the same transaction as the move; never rebuilt.
DB_REFLOG = b"reflog"
# Retention policies and holds (udr.log.retention), and the versions `expire` marked expired.
DB_RETENTION = b"retention"
DB_EXPIRED = b"expired"
# Erasures (udr.log.erasure): their replacement maps in order, and every chunk or blob one replaced.
DB_ERASURES = b"erasures"
DB_REPLACED = b"replaced"
# A published Iceberg table's own copy of a chunk file as a data file, under the destination (docs/FORMAT.md,
# "Published Iceberg tables"): of inline rows always, of every chunk when the destination is of the other kind
# than the lake (a directory for a lake in object storage, object storage for a local lake).
ICEBERG_INLINE_COPY = "{table}/data/inline-{chunk}.parquet"
ICEBERG_CHUNK_COPY = "{table}/data/{chunk}.parquet"
# Destinations outside the lake that mirror it (published Iceberg tables), brought up to date after an erasure.
DB_PUBLICATIONS = b"publications"
LOG_DBS = (DB_META, DB_COMMITS, DB_SEQS, DB_REFS, DB_BLOBS, DB_INTENTS, DB_GROUPS, DB_PINS, DB_RETENTION,
           DB_EXPIRED, DB_ERASURES, DB_REPLACED, DB_REFLOG, DB_PUBLICATIONS)

# Sub-databases of the cache environment (derived: deleting them loses nothing).
DB_SNAPSHOTS = b"snapshots"
DB_TABLESTATES = b"tablestates"
CACHE_DBS = (DB_SNAPSHOTS, DB_TABLESTATES)

REF_BRANCH = b"branch:"
REF_TAG = b"tag:"

# Keys of the `retention` sub-database: the lake's policy (`RETENTION_POLICY` alone) or one table's
# (`RETENTION_POLICY` + table name), and holds (`RETENTION_HOLD` + hold name).
RETENTION_POLICY = b"policy:"
RETENTION_HOLD = b"hold:"

# Keys of the `groups` sub-database: a consumer group's acknowledged position, and its subscriber lease.
GROUP_POSITION = b"position:"
GROUP_LEASE = b"lease:"
# Keys of a group with several members (`udr.log.members`): a member's lease, and one partition's position
# and owner; the group name and the member name or partition number are separated by a NUL byte.
GROUP_MEMBER = b"member:"
GROUP_PARTITION = b"partition:"
GROUP_PARTITIONS_DEFAULT = 8

# The file inside LOG_DIR that every committed LMDB write transaction writes (LMDB's own name for it):
# watching it for modification is how other processes learn of a new commit without polling.
LOG_DATA_FILE = "data.mdb"
# The file inside LOG_DIR whose `flock` is a writer's turn to rebase and append (`udr.log.turns`); it holds no data.
TURN_FILE = "turn.lock"
# The file inside LOG_DIR whose `flock` is a writer's turn to flush the lake's small writes (`udr.log.turns`); no data.
FLUSH_TURN_FILE = "flush.lock"
# The file inside LOG_DIR naming the newest log transaction an fsync of this boot covered (`udr.log.syncmark`).
SYNC_MARK_FILE = "synced"

BLOB_MAGIC = b"U"


class BlobKind(IntEnum):
    """What a framed blob holds; the first byte after the magic."""

    COMMIT = 1
    ROWS = 2
    DELETES = 3
    SCHEMA = 4
    STATE = 5
    BEFORE = 6
    ERASURE = 7


class Codec(IntEnum):
    """How a framed blob's payload is stored; ids hash the logical (decoded) payload."""

    RAW = 0
    ZSTD = 1


# Payloads below this size are stored raw: zstd does not pay for its frame header.
ZSTD_MIN_BYTES = 128
ZSTD_LEVEL = 3

# Parquet chunk layout (measured in bench/; see bench/RESULTS.md).
# Snappy, not zstd: with zstd DuckDB's Q1/Q6 ran 1.3-1.8x slower than on tpchgen's snappy files, while
# snappy ties them and still ingests faster than a single zstd write_table (bench/RESULTS.md).
ROW_GROUP_ROWS = 122_880
# Chunks are whole row groups, so a streamed chunk and an in-memory one are laid out (and named) alike.
ROW_GROUPS_PER_CHUNK = 8
CHUNK_ROWS = ROW_GROUP_ROWS * ROW_GROUPS_PER_CHUNK
PARQUET_COMPRESSION = "snappy"
# A chunk shorter than one row group (a keyed write's changed rows, a small append) is zstd: its decode time
# is mostly per-file overhead either way, and it is ~15% smaller (a refreshed lake's nightly growth).
SHORT_CHUNK_COMPRESSION = "zstd"
# zstd's own default level: 1-2% smaller than pyarrow's level 1 on a nightly refresh's changed rows, for the same
# CPU time (level 6 saved 2%, for 1.5x the encoding time).
SHORT_CHUNK_LEVEL = 3
# A decimal column with at most this many distinct values in a chunk's first row group keeps Parquet's
# dictionary encoding; other integer-like columns are delta-encoded (udr.materialize.encodings.column_encodings).
DICTIONARY_DECIMALS = 4096

# Row batches whose Arrow IPC encoding is below this many bytes are inlined in the log.
INLINE_MAX_BYTES = 256 * 1024
# From format 4, inline rows whose IPC encoding exceeds this are stored as a Parquet file instead (below
# it Parquet's footer outweighs what its encodings save, and tiny commits encode faster as IPC).
INLINE_PARQUET_BYTES = 16 * 1024
PARQUET_INLINE_VERSION = 4
# A table's trailing run of inline (small) writes is flushed into Parquet once it has this many fragments.
INLINE_FLUSH_FRAGMENTS = 256
# A keyed write's before-image is stored (a BEFORE blob) when it holds at most this many rows, or when a reader
# deriving it from the parent's chunks would decode more than `BEFORE_IMAGE_DERIVE_RATIO` stored rows per
# image row (the rows of the fragments it deletes from). A bulk refresh's image was a third of what a night
# stored, and the same old rows are in the parent's chunks; a few thousand upserts spread over a huge table
# are not worth a decode of all of it.
BEFORE_IMAGE_MAX_ROWS = 1024
BEFORE_IMAGE_DERIVE_RATIO = 512

# A keyed table refreshed by keyed overwrites ends in a run of small fragments (udr.materialize.compaction):
# a fragment is small when the table's largest one has `MERGE_RATIO` times its rows, and the run is merged
# into one fragment once it holds `MERGE_FRAGMENTS` of them, or once half its rows are deleted.
MERGE_RATIO = 8
MERGE_FRAGMENTS = 16

# Commit metadata marking a commit udr made by itself (key, and the value of an inline flush or a merge).
MAINTENANCE_KEY = "udr.maintenance"
MAINTENANCE_FLUSH_INLINE = "flush-inline"
MAINTENANCE_MERGE = "merge-fragments"

# Cached table states (cache sub-database) start with this tag and a NUL; the marshal format may differ
# between Python versions, so an entry written by another version is ignored and rebuilt.
CACHE_STATE_TAG = f"udr-state-py{sys.version_info[0]}.{sys.version_info[1]}".encode()

# Commit metadata of an erasure commit: the id of its replacement map (an ERASURE blob), the reason, the
# table, and the BLAKE3 hashes of the erased keys (comma-separated).
ERASURE_KEY = "udr.erasure"
ERASURE_REASON = "udr.erasure.reason"
ERASURE_TABLE = "udr.erasure.table"
ERASURE_KEYS = "udr.erasure.keys"

# A lake in object storage (udr.remote, docs/remote.md): object keys under the lake's URL, the version of a
# remote log entry, and the `meta` keys by which a local cache records which remote lake it replays and the
# last remote log entry it applied (written in the transaction that applies the entry).
REMOTE_LOG_PREFIX = "log/"
REMOTE_CHUNK_PREFIX = "chunks/"
REMOTE_SEQ_DIGITS = 20
REMOTE_ENTRY_VERSION = 2
# Entries that change no consumer-group record are still written as version 1, so older udr reads them.
REMOTE_ENTRY_VERSION_PLAIN = 1
# Consumer-group lease renewals: one object per live lease, `leases/<token>` (docs/FORMAT.md).
REMOTE_LEASE_PREFIX = "leases/"
META_REMOTE_URL = b"remote_url"
META_REMOTE_APPLIED = b"remote_applied"
META_REMOTE_PURGED = b"remote_purged"

CommitId = NewType("CommitId", str)
ChunkId = NewType("ChunkId", str)
BlobId = NewType("BlobId", str)


# One encoder for every JSON record below (it holds only its options; `json.dumps` with options builds one a call).
_RECORD_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def record_json(doc: Mapping[str, object]) -> bytes:
    """The stored bytes of a JSON record of the log (ref log entries, group positions and leases, retention
    and erasure records): keys sorted, no spaces, ASCII. Commit records have their own canonical form
    (`udr.log.commits.encode_commit`)."""
    return _RECORD_JSON.encode(doc).encode()
