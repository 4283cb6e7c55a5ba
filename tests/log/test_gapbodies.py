"""udr.log.gapbodies: the log's merge of small gaps bodies reads and writes what udr.materialize.vectors does."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from udr.log.format import GAPS_VECTOR_MAX
from udr.log.gapbodies import merged_gaps
from udr.materialize.vectors import decode_positions, encode_positions


@given(st.lists(st.sets(st.integers(0, 1 << 32 - 1), max_size=30), min_size=1, max_size=6))
def test_merged_bodies_hold_every_position_encoded_as_the_writer_would(parts: list[set[int]]) -> None:
    seen: set[int] = set()
    disjoint = []
    for part in parts:
        disjoint.append(part - seen)
        seen |= part
    bodies = [encode_positions(np.array(sorted(p), np.uint32), gaps=True) for p in disjoint]
    merged = merged_gaps(bodies)
    assert merged == encode_positions(np.array(sorted(seen), np.uint32), gaps=True)
    assert decode_positions(merged).to_pylist() == sorted(seen)


def test_what_it_cannot_merge() -> None:
    small = encode_positions(np.array([1, 5], np.uint32), gaps=True)
    assert merged_gaps([small, encode_positions(np.array([3], np.uint32))]) is None  # a Parquet body
    assert merged_gaps([small, small]) is None  # a position twice: not disjoint links
    wide = encode_positions(np.array([1, 300], np.uint32), gaps=True)  # 2-byte gaps
    assert merged_gaps([wide[:-1]]) is None  # cut inside a gap
    many = encode_positions(np.arange(GAPS_VECTOR_MAX - 1, dtype=np.uint32), gaps=True)
    assert merged_gaps([many, encode_positions(np.array([GAPS_VECTOR_MAX], np.uint32), gaps=True)]) is None
