"""udr.log.format: the constants the bytes on disk depend on are pinned; changing one is a format change."""

from __future__ import annotations

from udr.log import format as fmt


def test_the_version_written_is_readable() -> None:
    assert fmt.FORMAT_VERSION in fmt.READABLE_VERSIONS
    assert max(fmt.READABLE_VERSIONS) == fmt.FORMAT_VERSION


def test_blob_kinds_and_codecs_keep_their_numbers() -> None:
    assert {k.name: k.value for k in fmt.BlobKind} == {
        "COMMIT": 1, "ROWS": 2, "DELETES": 3, "SCHEMA": 4, "STATE": 5, "BEFORE": 6, "ERASURE": 7,
    }
    assert {c.name: c.value for c in fmt.Codec} == {"RAW": 0, "ZSTD": 1}
    assert fmt.BLOB_MAGIC == b"U"


def test_layout_names() -> None:
    assert (fmt.FORMAT_FILE, fmt.LOG_DIR, fmt.CACHE_DIR, fmt.CHUNK_DIR, fmt.CHUNK_SUFFIX) == (
        "FORMAT", "log", "cache", "chunks", ".parquet",
    )
    assert fmt.INLINE_MAX_BYTES == 256 * 1024


def test_log_and_cache_sub_databases_are_distinct() -> None:
    assert len(set(fmt.LOG_DBS)) == len(fmt.LOG_DBS)
    assert set(fmt.LOG_DBS).isdisjoint(fmt.CACHE_DBS)
    assert len(fmt.LOG_DBS) + len(fmt.CACHE_DBS) <= fmt.MAX_DBS
