"""Pins keep chunk files that no commit references alive through gc, per owner, until released."""

from __future__ import annotations

from pathlib import Path

import pytest

from udr.errors import ConflictError, UsageError
from udr.log.format import ChunkId
from udr.log.pins import PinStore
from udr.log.store import LogStore


def test_a_pinned_chunk_survives_gc_until_its_owner_releases_it(tmp_path: Path) -> None:
    log = LogStore(tmp_path)
    try:
        kept = log.chunks.put(b"kept by a pin")
        loose = log.chunks.put(b"referenced by nothing")
        pins = PinStore(log)
        pins.pin("iceberg:/a", {"x": kept})
        pins.pin("iceberg:/b", {"y": kept})
        assert pins.pins("iceberg:/a") == {"x": kept} and pins.pins("iceberg:/") == {}
        assert log.collect_garbage() > 0
        assert log.chunks.exists(kept) and not log.chunks.exists(loose)
        assert pins.release("iceberg:/a") == 1
        log.collect_garbage()
        assert log.chunks.exists(kept)
        pins.release("iceberg:/b")
        log.collect_garbage()
        assert not log.chunks.exists(kept)
    finally:
        log.close()


def test_pinning_a_missing_chunk_or_a_bad_owner_is_refused(tmp_path: Path) -> None:
    log = LogStore(tmp_path)
    try:
        with pytest.raises(ConflictError, match="vanished"):
            PinStore(log).pin("o", {"x": ChunkId("ab" * 32)})
        with pytest.raises(UsageError):
            PinStore(log).pins("")
        assert PinStore(log).pins("o") == {}
    finally:
        log.close()
