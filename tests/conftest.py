"""Shared fixtures: a fresh lake per test, rows big enough to become Parquet chunk files, and a byte-level
picture of a lake directory for the "a rejected call changes nothing on disk" checks.

Real LMDB files in `tmp_path` and real DuckDB throughout; nothing of UDR is mocked.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import signal
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import hypothesis
import numpy as np
import pyarrow as pa
import pytest

import udr
from udr.log.memory import MemoryLogStore
from udr.log.store import LogStore

with warnings.catch_warnings():
    # On a failure hypothesis imports libcst (to print a patch), whose import warns; with the suite's
    # `filterwarnings = error` that turns every failing example into an INTERNALERROR. Import it quietly now.
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):  # libcst missing: nothing to pre-import
        import hypothesis.extra._patching

# A suite started in the background by a shell without job control (`(pytest &)`, some CI runners) inherits SIGINT
# ignored, and so would every process it starts: the tests of Ctrl-C (the CLI's exit 130, an append interrupted
# while it waits) would see nothing arrive. Python's own handler again, in this process and the workers it spawns.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# No per-example deadline: it asserts a wall time, and a shared 2-core machine misses 200 ms now and then.
hypothesis.settings.register_profile("udr", deadline=None)
hypothesis.settings.load_profile("udr")

RAM_DISK = Path("/dev/shm")
_RAM_BASETEMP = pytest.StashKey[Path]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Put the tests' directories in RAM where the machine has a tmpfs, unless `--basetemp` says otherwise.

    Most tests make a lake, and a lake's commits fsync: on this project's VMs the suite spends about a third
    of its time waiting for the disk. On a tmpfs every file operation is real (LMDB, Parquet, renames, locks,
    other processes, SIGKILL) and only the wait is gone; what the disk's speed does is measured in `bench/`.
    `UDR_TESTS_ON_DISK=1` keeps pytest's own temporary directory. Each run gets its own directory, so runs
    side by side do not share one.
    """
    if config.option.basetemp is not None or os.environ.get("UDR_TESTS_ON_DISK") == "1":
        return
    if RAM_DISK.is_dir() and os.access(RAM_DISK, os.W_OK):
        config.option.basetemp = tempfile.mkdtemp(prefix="udr-tests-", dir=RAM_DISK)
        config.stash[_RAM_BASETEMP] = Path(config.option.basetemp)


def pytest_unconfigure(config: pytest.Config) -> None:
    ram = config.stash.get(_RAM_BASETEMP, None)
    if ram is not None:
        shutil.rmtree(ram, ignore_errors=True)

# 20k rows of 4 int64 columns: 640 kB of Arrow, well above the 256 KiB below which rows are inlined in
# the log, so a write of this many rows produces a chunk file under <lake>/chunks/ (and stays fast).
BIG_ROWS = 20_000

DiskState = dict[str, str]


def _disk_state(root: Path) -> DiskState:
    """Relative path -> BLAKE3 of every file under `root`, except LMDB's lock files (readers touch them)."""
    return {
        str(path.relative_to(root)): blake3.blake3(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "lock.mdb"
    }


def _chunk_files(root: Path) -> list[Path]:
    """Every Parquet chunk file of the lake at `root`."""
    return sorted((root / "chunks").rglob("*.parquet"))


def _big_table(seed: int = 0, rows: int = BIG_ROWS) -> pa.Table:
    """Random int64 columns a..d: incompressible enough that the chunk file is megabytes."""
    rng = np.random.default_rng(seed)
    return pa.table({name: rng.integers(0, 2**62, rows, dtype=np.int64) for name in "abcd"})


@pytest.fixture
def disk_state() -> Callable[[Path], DiskState]:
    """A function giving the byte-level state of a lake directory."""
    return _disk_state


@pytest.fixture
def chunk_files() -> Callable[[Path], list[Path]]:
    """A function listing a lake's chunk files."""
    return _chunk_files


@pytest.fixture
def make_big() -> Callable[..., pa.Table]:
    """A function making a table big enough to be stored as a chunk file (`seed` varies the rows)."""
    return _big_table


@pytest.fixture
def lake_path(tmp_path: Path) -> Path:
    """Where the test's lake lives (not created yet)."""
    return tmp_path / "lake"


# Facade test modules whose `db` tests run twice: on a lake directory and on `udr.open(":memory:")` (the
# in-memory log, `udr.log.memory`), so the facade is checked on both logs; not the tests that look at the lake
# directory themselves (they take one of `ON_DISK`).
MEMORY_TOO = {"test_api", "test_keyed", "test_branches", "test_reflog", "test_erasure", "test_retention",
              "test_log_sql", "test_audit_report", "test_subscription"}


ON_DISK = {"lake_path", "chunk_files", "disk_state", "tmp_path"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if ("lake_kind" in metafunc.fixturenames and metafunc.module.__name__.rpartition(".")[2] in MEMORY_TOO
            and not ON_DISK & set(inspect.signature(metafunc.function).parameters)):
        metafunc.parametrize("lake_kind", ["disk", "memory"])


@pytest.fixture
def lake_kind() -> str:
    """Where `db` lives: "disk" (a directory) or "memory" (`udr.open(":memory:")`), see `MEMORY_TOO`."""
    return "disk"


@pytest.fixture
def db(lake_path: Path, lake_kind: str) -> Iterator[udr.Lake]:
    """A new, empty lake, closed after the test."""
    lake = udr.open(lake_path if lake_kind == "disk" else ":memory:")
    try:
        yield lake
    finally:
        lake.close()


@pytest.fixture(params=["lmdb", "memory"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    """A bare log on a fresh lake, for the layer tests: once in LMDB files, once in memory (`MemoryLogStore`),
    so every test using it checks that the two keep the same semantics."""
    store = LogStore(tmp_path / "lake") if request.param == "lmdb" else MemoryLogStore()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def disk_log(tmp_path: Path) -> Iterator[LogStore]:
    """A bare `LogStore` in LMDB files, for tests of what is on disk (reopening, files, other processes)."""
    store = LogStore(tmp_path / "lake")
    try:
        yield store
    finally:
        store.close()
