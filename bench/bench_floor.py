"""C0: the disk's floor, measured in the same run as the benchmarks that compare to it.

`floor()` returns the durable-operation rates of this disk: `write` + `fdatasync` of one 4 KiB block appended per
operation, and LMDB alone committing one tiny put per durable transaction. Other benches import it and print their
figures as ratios to these; run this file to print them by itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import lmdb
from common import remove, report, scratch


@dataclass(frozen=True, slots=True)
class Floor:
    """Durable operations per second on this disk."""

    fdatasync_ops: float
    lmdb_tx: float


def append_fdatasync_rate(path: Path, operations: int = 2000) -> float:
    """Appends of one 4 KiB block, each followed by `fdatasync`, per second."""
    block = b"\xa5" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        start = time.perf_counter()
        for _ in range(operations):
            os.write(fd, block)
            os.fdatasync(fd)
        return operations / (time.perf_counter() - start)
    finally:
        os.close(fd)


def lmdb_put_rate(path: Path, transactions: int = 2000) -> float:
    """Durable LMDB write transactions of one 8-byte put each, per second (sync on, as UDR opens it)."""
    env = lmdb.open(str(path), map_size=1 << 30, sync=True, metasync=True)
    try:
        start = time.perf_counter()
        for i in range(transactions):
            with env.begin(write=True) as txn:
                txn.put(i.to_bytes(8, "big"), b"x")
        return transactions / (time.perf_counter() - start)
    finally:
        env.close()


def floor(operations: int = 2000) -> Floor:
    """Measure both rates in a scratch directory on the repository's disk."""
    path = scratch("floor")
    try:
        return Floor(append_fdatasync_rate(path / "blocks", operations), lmdb_put_rate(path / "lmdb", operations))
    finally:
        remove(path)


def print_floor(result: Floor) -> None:
    """Print (and record) the two C0 lines."""
    report("C0", "write+fdatasync 4 KiB append", result.fdatasync_ops, "ops/s")
    report("C0", "LMDB one tiny put per durable tx", result.lmdb_tx, "tx/s")


if __name__ == "__main__":
    print_floor(floor())
