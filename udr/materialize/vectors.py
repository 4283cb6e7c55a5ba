"""Deletion vectors: the sorted distinct row positions deleted from a fragment, as DELETES blob payloads.

A vector is cumulative: it names every deleted row of its fragment so far. Its payload may hold only the
positions added to an older vector of the same fragment, its base, named in the payload (a chain, format
version 4). A table refreshed every night then stores each night's deletions once, where a payload holding
the whole vector would store night n's deletions again on every later night (bytes growing with the square
of the nights). A writer chains only onto a vector already committed, only when that vector's positions are
all still deleted, and at most `MAX_CHAIN` links deep, so a cold read decodes a bounded number of payloads.
From format version 5 a payload of fewer than `GAPS_VECTOR_MAX` positions holds the gaps between them
instead of a Parquet file (a refresh of 77 tables writes hundreds of small vectors a night: Parquet's
footer was most of their bytes and its writer most of their time). Pure functions; safe from any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from udr.errors import CorruptionError
from udr.log.format import (
    GAPS_VECTOR_MAX,
    MAX_VECTOR_CHAIN,
    VECTOR_CHAIN_MAGIC,
    VECTOR_GAPS_MAGIC,
    BlobId,
)

VectorGetter = Callable[[BlobId], bytes]
"""The DELETES payload of a vector blob (raises `CorruptionError` when it is missing)."""

# A chained payload: this magic, the base's blob id (32 raw bytes), the depth (1 byte), then the Parquet file.
_CHAINED = VECTOR_CHAIN_MAGIC
_HEADER = len(_CHAINED) + 32 + 1
# A gaps body: this magic, a width w (1, 2 or 4), then each gap to the previous position (the first: the
# position itself) as a w-byte little-endian unsigned integer; the log's zstd framing packs the high bytes.
_GAPS = VECTOR_GAPS_MAGIC
_GAPS_HEADER = len(_GAPS) + 1
_GAP_TYPES: dict[int, str] = {1: "<u1", 2: "<u2", 4: "<u4"}


@dataclass(frozen=True, slots=True)
class VectorLink:
    """One DELETES payload: its own positions, and the vector it adds them to (None: it is whole)."""

    positions: pa.Array
    base: BlobId | None = None
    depth: int = 0  # how many payloads lie below this one in its chain


def sorted_distinct(values: np.ndarray) -> np.ndarray:
    """The distinct `values`, sorted."""
    # Sort and drop repeats: numpy 2's np.unique took 65 ms on 110,000 positions where this takes 1.2. A
    # stable sort merges sorted runs (a vector and the positions added to it) in linear time: 15x quicksort.
    ordered = np.sort(values, kind="stable")
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(ordered) else ordered


def distinct_positions(*parts: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """The sorted distinct row positions found in any of `parts`, as uint32."""
    return sorted_distinct(np.concatenate([np.asarray(p, dtype=np.uint32) for p in parts]))


def in_sorted(values: np.ndarray, positions: np.ndarray) -> npt.NDArray[np.bool_]:
    """Which of `values` are among the sorted distinct `positions` (a vector): a binary search each, where
    `np.isin` or `np.setdiff1d` would sort or hash all of `positions` again on every call."""
    if not len(positions):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(positions, values), len(positions) - 1)
    found: npt.NDArray[np.bool_] = positions[at] == values
    return found


def encode_positions(positions: pa.Array | np.ndarray, *, base: BlobId | None = None, depth: int = 0,
                     gaps: bool = False) -> bytes:
    """Payload of a deletion vector: a Parquet file of the sorted distinct row positions (one uint32
    column, DELTA_BINARY_PACKED, zstd): about 0.7 byte a position where raw deltas under zstd take 1.2.
    With `gaps` (a lake of format 5 or later), fewer than `GAPS_VECTOR_MAX` positions are stored as gaps.
    With `base`, the positions are those added to vector `base`, `depth` payloads deep, after a header."""
    distinct = distinct_positions(positions)
    header = b"" if base is None else _CHAINED + bytes.fromhex(base) + bytes([depth])
    if gaps and len(distinct) < GAPS_VECTOR_MAX:
        return header + _encode_gaps(distinct)
    values = pa.array(distinct, pa.uint32())
    sink = pa.BufferOutputStream()
    # No Arrow schema in the footer: Parquet's UINT_32 reads back as uint32 alone, and the ~500 bytes it
    # took were most of a small vector's payload (a nightly refresh writes hundreds of those a night).
    pq.write_table(pa.table({"p": values}), sink, compression="zstd", use_dictionary=False,
                   column_encoding={"p": "DELTA_BINARY_PACKED"}, write_statistics=False, store_schema=False)
    return header + cast(bytes, sink.getvalue().to_pybytes())  # pyarrow is untyped: its calls return Any


def _encode_gaps(positions: np.ndarray) -> bytes:
    """A gaps body of sorted distinct uint32 `positions`."""
    gaps = np.diff(positions.astype(np.int64), prepend=0)
    top = int(gaps.max()) if len(gaps) else 0
    width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4
    return _GAPS + bytes([width]) + gaps.astype(_GAP_TYPES[width]).tobytes()


def _decode_gaps(body: bytes) -> pa.Array:
    """The positions of a gaps body (raises `CorruptionError` when it does not hold what it says)."""
    width = body[len(_GAPS)] if len(body) > len(_GAPS) else 0
    if width not in _GAP_TYPES or (len(body) - _GAPS_HEADER) % width:
        raise CorruptionError(f"a deletion vector payload of {len(body)} bytes is damaged (gap width {width})")
    gaps = np.frombuffer(body, dtype=_GAP_TYPES[width], offset=_GAPS_HEADER)
    positions = np.cumsum(gaps, dtype=np.int64)
    if len(gaps) and (positions[-1] >= 1 << 32 or not np.all(gaps[1:])):
        raise CorruptionError("a deletion vector payload holds positions out of range or repeated")
    return pa.array(positions.astype(np.uint32), pa.uint32())


def parse_vector(payload: bytes) -> VectorLink:
    """Parse one DELETES payload (its own positions: `read_vector` gives a chained vector's whole set)."""
    base, depth = chain_link(payload)
    body = payload[_HEADER:] if base is not None else payload
    if body[:len(_GAPS)] == _GAPS:
        return VectorLink(_decode_gaps(body), base, depth)
    # One small column: `pq.read_table` (datasets, a thread pool) costs 3-40x this, more on a busy machine.
    positions = pq.ParquetFile(pa.BufferReader(body)).read(use_threads=False).column("p").combine_chunks()
    return VectorLink(positions.cast(pa.uint32()), base, depth)


def chain_link(payload: bytes) -> tuple[BlobId | None, int]:
    """The base and depth a payload names (None, 0: a whole vector), from its header alone."""
    if payload[:len(_CHAINED)] != _CHAINED:
        return None, 0
    if len(payload) < _HEADER:
        raise CorruptionError(f"a chained deletion vector payload of {len(payload)} bytes is cut short")
    return BlobId(payload[len(_CHAINED):_HEADER - 1].hex()), payload[_HEADER - 1]


def decode_positions(payload: bytes) -> pa.Array:
    """The positions one DELETES payload holds itself (a whole vector's, unless it is chained)."""
    return parse_vector(payload).positions


def read_vector(vector: BlobId, get: VectorGetter,
                known: Callable[[BlobId], pa.Array | None] = lambda _: None) -> pa.Array:
    """Every position of deletion vector `vector`, following its chain; `known` may hold decoded vectors.

    Raises:
        CorruptionError: a payload of the chain is missing, damaged, or the chain is longer than written.
    """
    parts: list[pa.Array] = []
    link_id: BlobId | None = vector
    while link_id is not None:
        cached = known(link_id)
        if cached is not None:
            parts.append(cached)
            break
        if len(parts) > MAX_VECTOR_CHAIN:
            raise CorruptionError(f"deletion vector {vector} chains through more than {MAX_VECTOR_CHAIN} payloads")
        link = parse_vector(get(link_id))
        parts.append(link.positions)
        link_id = link.base
    if len(parts) == 1:
        return parts[0]
    # Each part is sorted: a stable sort merges the runs (see `distinct_positions`).
    return pa.array(np.sort(np.concatenate([np.asarray(p) for p in parts]), kind="stable"), pa.uint32())


def vector_chain(vector: BlobId, get: VectorGetter) -> list[BlobId]:
    """`vector` and every vector its payload chains onto, newest first."""
    chain = [vector]
    while (base := chain_link(get(chain[-1]))[0]) is not None and len(chain) <= MAX_VECTOR_CHAIN:
        chain.append(base)
    return chain


def added_between(vector: BlobId, base: BlobId, get: VectorGetter) -> np.ndarray | None:
    """The positions vector `vector` adds to vector `base` when its chain passes through `base`, read from the
    payloads between them alone (a night's few, where the whole vectors hold every night's); None when it
    does not chain onto `base`."""
    payloads: list[bytes] = []
    link_id: BlobId | None = vector
    while link_id != base:
        if link_id is None or len(payloads) > MAX_VECTOR_CHAIN:
            return None
        payloads.append(get(link_id))
        link_id = chain_link(payloads[-1])[0]
    return distinct_positions(*(parse_vector(p).positions for p in payloads), np.empty(0, np.uint32))


def encode_vector(positions: np.ndarray, base: BlobId | None, get: VectorGetter,
                  known: Callable[[BlobId], pa.Array | None] = lambda _: None, *, gaps: bool = False,
                  added: np.ndarray | None = None) -> bytes:
    """Payload of the vector of sorted distinct `positions` of a fragment whose committed vector is `base`:
    chained onto `base` when every position of `base` is among `positions`, the chain stays within
    `MAX_VECTOR_CHAIN` and it saves at least half the positions, else whole. `gaps`: as `encode_positions`.
    `added`: the positions of `positions` that `base` lacks, when the caller united them itself (then
    `positions` holds every position of `base`, which is not read back)."""
    if base is not None:
        depth = chain_link(get(base))[1] + 1
        if added is None:
            added = _added_to(base, positions, get, known)
        if depth < MAX_VECTOR_CHAIN and added is not None and 2 * (len(positions) - len(added)) >= len(positions):
            return encode_positions(added, base=base, depth=depth, gaps=gaps)
    return encode_positions(positions, gaps=gaps)


def _added_to(base: BlobId, positions: np.ndarray, get: VectorGetter,
              known: Callable[[BlobId], pa.Array | None]) -> np.ndarray | None:
    """The `positions` vector `base` lacks, sorted; None when `base` names a position `positions` lacks."""
    old = np.asarray(read_vector(base, get, known), dtype=np.int64)
    ours = np.asarray(positions, dtype=np.int64)
    at = np.minimum(np.searchsorted(ours, old), max(len(ours) - 1, 0))
    if not len(ours) or not np.all(ours[at] == old):
        return None
    # `at` is where each old position sits in `ours`: dropping those leaves the added ones, sorted.
    return np.delete(ours, at)


def united(old: np.ndarray | pa.Array, new: np.ndarray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct union of vector `old` (sorted distinct positions) with any positions `new`, and the
    positions of it `old` lacks, both uint32: a binary search each of `new` in `old` and one insertion, where
    `distinct_positions(old, new)` sorts both again (a fragment's vector grows by a few positions a night)."""
    held = np.asarray(old, dtype=np.uint32)
    fresh = distinct_positions(new)
    added = fresh[~in_sorted(fresh, held)]
    return np.insert(held, np.searchsorted(held, added), added), added
