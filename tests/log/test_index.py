"""udr.log.index: blob framing round-trips and detects damage; LMDB environments are shared per process."""

from __future__ import annotations

from pathlib import Path

import pytest

from udr.errors import CorruptionError, UdrError
from udr.log.format import BLOB_MAGIC, ZSTD_MIN_BYTES, BlobKind, Codec
from udr.log.hashing import content_id
from udr.log.index import frame_blob, open_log_env, unframe_blob

SMALL = b"tiny payload"
COMPRESSIBLE = b"abcdefgh" * 1000
INCOMPRESSIBLE = bytes((i * 7919 + (i >> 3) * 104729) % 251 for i in range(4096))


@pytest.mark.parametrize("kind", list(BlobKind))
@pytest.mark.parametrize("payload", [b"", SMALL, COMPRESSIBLE, INCOMPRESSIBLE], ids=["empty", "small", "zstd", "raw"])
def test_frame_round_trips(kind: BlobKind, payload: bytes) -> None:
    blob_id, stored = frame_blob(kind, payload)
    assert unframe_blob(blob_id, stored, expect=kind) == payload


def test_header_is_magic_kind_codec() -> None:
    _, stored = frame_blob(BlobKind.ROWS, SMALL)
    assert stored[:1] == BLOB_MAGIC
    assert stored[1] == BlobKind.ROWS
    assert stored[2] == Codec.RAW
    assert stored[3:] == SMALL


def test_small_payloads_stay_raw_and_compressible_ones_use_zstd() -> None:
    assert len(SMALL) < ZSTD_MIN_BYTES
    assert frame_blob(BlobKind.ROWS, SMALL)[1][2] == Codec.RAW
    _, packed = frame_blob(BlobKind.ROWS, COMPRESSIBLE)
    assert packed[2] == Codec.ZSTD
    assert len(packed) < len(COMPRESSIBLE)


def test_id_hashes_the_logical_payload_so_the_codec_never_changes_it() -> None:
    for payload in (SMALL, COMPRESSIBLE):
        blob_id, _ = frame_blob(BlobKind.ROWS, payload)
        assert blob_id == content_id(payload)


def test_framing_is_deterministic() -> None:
    assert frame_blob(BlobKind.SCHEMA, COMPRESSIBLE) == frame_blob(BlobKind.SCHEMA, COMPRESSIBLE)


@pytest.mark.parametrize("payload", [SMALL, COMPRESSIBLE], ids=["raw", "zstd"])
def test_a_flipped_payload_byte_is_detected(payload: bytes) -> None:
    blob_id, stored = frame_blob(BlobKind.ROWS, payload)
    damaged = bytearray(stored)
    damaged[-1] ^= 0x01
    with pytest.raises(CorruptionError, match=blob_id):
        unframe_blob(blob_id, bytes(damaged), expect=BlobKind.ROWS)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: b"X" + s[1:], "header"),
        (lambda s: s[:2], "header"),
        (lambda s: s[:1] + bytes([BlobKind.SCHEMA]) + s[2:], "kind"),
        (lambda s: s[:2] + bytes([9]) + s[3:], "codec"),
        (lambda s: s[:2] + bytes([Codec.ZSTD]) + b"garbage that is not a zstd frame", "decompress"),
    ],
    ids=["magic", "truncated", "kind", "codec", "zstd"],
)
def test_damaged_framing_is_detected(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    blob_id, stored = frame_blob(BlobKind.ROWS, SMALL)
    with pytest.raises(CorruptionError, match=message):
        unframe_blob(blob_id, mutate(stored), expect=BlobKind.ROWS)


def test_unverified_read_skips_only_the_hash_check() -> None:
    _, stored = frame_blob(BlobKind.ROWS, SMALL)
    assert unframe_blob("not-the-id", stored, expect=BlobKind.ROWS, verify=False) == SMALL
    with pytest.raises(CorruptionError, match="hash"):
        unframe_blob("not-the-id", stored, expect=BlobKind.ROWS)


# -- environments -------------------------------------------------------------------------------------


def test_one_environment_per_path_is_shared_and_outlives_one_user(tmp_path: Path) -> None:
    first = open_log_env(tmp_path / "log")
    second = open_log_env(tmp_path / "log")
    try:
        with first.write() as txn:
            txn.put(b"k", b"v", db=first.db(b"meta"))
        with second.read() as txn:
            assert txn.get(b"k", db=second.db(b"meta")) == b"v"
        first.close()
        first.close()  # idempotent
        with second.read() as txn:
            assert txn.get(b"k", db=second.db(b"meta")) == b"v"
        with pytest.raises(UdrError, match="closed"), first.read():
            pass
    finally:
        second.close()


def test_a_failed_write_transaction_leaves_nothing(tmp_path: Path) -> None:
    env = open_log_env(tmp_path / "log")
    try:
        with pytest.raises(RuntimeError), env.write() as txn:
            txn.put(b"k", b"v", db=env.db(b"meta"))
            raise RuntimeError("abort")
        with env.read() as txn:
            assert txn.get(b"k", db=env.db(b"meta")) is None
    finally:
        env.close()
