"""Hand-built depth: lay down by hand each leftover a crash can leave, then reopen and recover.

Leftovers: files in `tmp/`, chunk files no commit references (whole, damaged, in a new directory),
`intents` records of dead and of live processes, and a missing, emptied or damaged snapshot cache. The
lake must open, read exactly what was committed, pass `verify()`, and `gc` must remove every orphan and
never a referenced chunk. States are built from the layout in docs/FORMAT.md, with the constants of
`udr.log.format`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from crash_checks import (
    BankState,
    check_bank_history,
    chunk_files,
    referenced_chunks,
    tmp_files,
)
from crash_workers import crash_plan, plan_transfer, setup_bank, stage

import udr
from udr.log.format import (
    CACHE_DIR,
    CHUNK_DIR,
    CHUNK_SUFFIX,
    DB_INTENTS,
    LOG_DIR,
    LOG_MAP_SIZE,
    MAX_DBS,
    TMP_DIR,
)

SEED = 11


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """A bank lake with three committed transfers, one of which wrote a chunk file."""
    path = tmp_path / "lake"
    setup_bank(path)
    move, batch = crash_plan(SEED)
    rng = np.random.default_rng(SEED)
    with udr.open(path) as db:
        for planned, rows in [(move, batch), (plan_transfer(rng, ledger=False, blobs=False), None),
                              (plan_transfer(rng, ledger=True, blobs=False), None)]:
            with db.transaction(message="transfer", metadata=planned.metadata) as tx:
                stage(tx, planned, rows)
    assert len(chunk_files(path)) == 1
    return path


def _history(lake: Path) -> dict[str, BankState]:
    with udr.open(lake) as db:
        setup = db.log()[-2].id
        return check_bank_history(db, setup).states


def _reaped_pid() -> int:
    """The pid of a process that has exited and been reaped: it owns nothing any more."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _parquet_bytes(values: list[int]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": values}), sink)
    return sink.getvalue()


def _put_chunk_file(lake: Path, data: bytes, *, name: str | None = None) -> str:
    """Write `data` where the chunk named `name` (default: the BLAKE3 hex of `data`) lives."""
    chunk = name or blake3.blake3(data).hexdigest()
    path = lake / CHUNK_DIR / chunk[:2] / (chunk[2:] + CHUNK_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return chunk


def _log_env(lake: Path) -> lmdb.Environment:
    return lmdb.open(str(lake / LOG_DIR), max_dbs=MAX_DBS, map_size=LOG_MAP_SIZE)


def _put_intent(lake: Path, chunk: str, pid: int) -> None:
    """Record, as a writer does before committing a chunk, that process `pid` intends to commit `chunk`."""
    env = _log_env(lake)
    try:
        with env.begin(write=True) as txn:
            value = json.dumps({"pid": pid, "time_us": time.time_ns() // 1000}).encode()
            txn.put(chunk.encode(), value, db=env.open_db(DB_INTENTS, txn=txn))
    finally:
        env.close()


def _intents(lake: Path) -> dict[str, int]:
    env = _log_env(lake)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(DB_INTENTS, txn=txn)
            return {k.decode(): json.loads(v)["pid"] for k, v in txn.cursor(db=db)}
    finally:
        env.close()


def _check_recovered(lake: Path, history: dict[str, BankState]) -> None:
    """Every commit reads as before, verify is clean, and only referenced chunk files are left."""
    assert _history(lake) == history
    with udr.open(lake) as db:
        report = db.verify()
        assert report.ok, report.problems
    assert chunk_files(lake) == referenced_chunks(lake)
    assert len(chunk_files(lake)) == 1


def test_leftover_tmp_files_are_ignored_then_collected(lake: Path) -> None:
    history = _history(lake)
    tmp = lake / TMP_DIR
    tmp.mkdir(exist_ok=True)
    half = _parquet_bytes(list(range(1000)))[:700]
    leftovers = {f"{_reaped_pid()}-0123abcd.tmp": half, "stray.tmp": b"", "no-pid-at-all": b"x" * 10}
    for name, data in leftovers.items():
        (tmp / name).write_bytes(data)

    assert _history(lake) == history
    with udr.open(lake) as db:
        report = db.verify()
        assert report.ok, report.problems
        assert db.gc() >= sum(map(len, leftovers.values()))
    assert tmp_files(lake) == []
    _check_recovered(lake, history)


def test_orphan_chunk_files_are_collected_and_referenced_ones_kept(lake: Path) -> None:
    history = _history(lake)
    referenced = chunk_files(lake)
    whole = _put_chunk_file(lake, _parquet_bytes([1, 2, 3]))
    damaged = _put_chunk_file(lake, b"PAR1 torn", name=blake3.blake3(b"other bytes").hexdigest())
    empty = _put_chunk_file(lake, b"", name="ff" + "0" * 62)
    assert chunk_files(lake) == referenced | {whole, damaged, empty}

    assert _history(lake) == history
    with udr.open(lake) as db:
        report = db.verify()
        assert report.ok, report.problems
        assert db.gc() > 0
        assert db.gc() == 0
    assert chunk_files(lake) == referenced
    _check_recovered(lake, history)


def test_intents_of_dead_processes_pin_nothing(lake: Path) -> None:
    history = _history(lake)
    [referenced] = chunk_files(lake)
    orphan = _put_chunk_file(lake, _parquet_bytes([4, 5, 6]))
    never_written = blake3.blake3(b"never written").hexdigest()
    dead = _reaped_pid()
    for chunk in (orphan, referenced, never_written):
        _put_intent(lake, chunk, dead)
    (lake / TMP_DIR).mkdir(exist_ok=True)
    (lake / TMP_DIR / f"{dead}-feedbeef.tmp").write_bytes(b"half a chunk")

    assert _history(lake) == history
    with udr.open(lake) as db:
        report = db.verify()
        assert report.ok, report.problems
        assert db.gc() > 0
    assert _intents(lake) == {}
    assert (chunk_files(lake), tmp_files(lake)) == ({referenced}, [])
    _check_recovered(lake, history)

    # The lake takes the next transaction, and it commits its own chunk again.
    move, batch = crash_plan(SEED + 1)
    with udr.open(lake) as db, db.transaction(metadata=move.metadata) as tx:
        stage(tx, move, batch)
    assert len(chunk_files(lake)) == 2 and chunk_files(lake) == referenced_chunks(lake)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process that stays alive until the test kills it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_intent_of_a_live_process_protects_its_chunk_until_the_process_dies(
    lake: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    history = _history(lake)
    [referenced] = chunk_files(lake)
    in_flight = _put_chunk_file(lake, _parquet_bytes([7, 8, 9]))
    _put_intent(lake, in_flight, sleeper.pid)

    with udr.open(lake) as db:
        assert db.gc() == 0
        assert chunk_files(lake) == {referenced, in_flight}
        assert _history(lake) == history
        sleeper.kill()
        sleeper.wait()
        assert db.gc() > 0
    assert _intents(lake) == {}
    _check_recovered(lake, history)


def test_snapshot_cache_deleted_while_closed_is_rebuilt_from_the_log(lake: Path) -> None:
    history = _history(lake)
    shutil.rmtree(lake / CACHE_DIR)
    assert _history(lake) == history
    shutil.rmtree(lake / CACHE_DIR)
    with udr.open(lake) as db:
        assert db.rebuild() == len(history) + 1
    _check_recovered(lake, history)


def test_snapshot_cache_emptied_while_closed_is_rebuilt_from_the_log(lake: Path) -> None:
    history = _history(lake)
    os.truncate(lake / CACHE_DIR / "data.mdb", 0)
    _check_recovered(lake, history)


def _damage_cache(lake: Path) -> None:
    """Overwrite the head of the cache's data file, as a power loss can (the cache is never fsynced)."""
    with open(lake / CACHE_DIR / "data.mdb", "r+b") as fh:
        fh.write(b"\xa5" * 8192)


def test_damaged_snapshot_cache_is_rebuilt_from_the_log(lake: Path) -> None:
    history = _history(lake)
    _damage_cache(lake)
    _check_recovered(lake, history)


def test_a_failed_open_leaves_nothing_behind_in_the_process(lake: Path) -> None:
    _damage_cache(lake)
    with contextlib.suppress(udr.FormatError):
        udr.open(lake).close()
    shutil.rmtree(lake)
    with udr.open(lake) as db:
        db.append("fresh", {"x": [1]})
    with udr.open(lake) as db:
        assert db.tables() == ["fresh"]
