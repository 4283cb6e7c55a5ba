"""udr.log.turns: shared turns coexist, an exclusive turn excludes every other turn (threads and processes alike),
and a process killed in its turn releases it."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from udr.errors import UdrError
from udr.log.format import LOG_DIR, SYNC_MARK_FILE, TURN_FILE
from udr.log.memory import MemoryEnvironment
from udr.log.store import LogStore
from udr.log.syncmark import boot_id
from udr.log.turns import Turns

HOLD = """
import sys, time
from pathlib import Path
from udr.log.memory import MemoryEnvironment
from udr.log.turns import Turns
with Turns(Path(sys.argv[1]) / "log", MemoryEnvironment(())).writer(exclusive=True):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / LOG_DIR).mkdir()
    return tmp_path


@pytest.fixture
def turns(root: Path) -> Iterator[Turns]:
    turns = Turns(root / LOG_DIR, MemoryEnvironment(()))
    yield turns
    turns.close()


def _entered(turns: Turns, *, exclusive: bool, out: list[float]) -> threading.Thread:
    def body() -> None:
        with turns.writer(exclusive=exclusive):
            out.append(time.monotonic())

    thread = threading.Thread(target=body)
    thread.start()
    return thread


def test_shared_turns_are_held_together(root: Path, turns: Turns) -> None:
    entered: list[float] = []
    with turns.writer(exclusive=False):
        thread = _entered(turns, exclusive=False, out=entered)
        thread.join(5)
        assert entered, "a second shared turn waited for the first"
    assert (root / LOG_DIR / TURN_FILE).exists()


# An exclusive turn keeps every other turn out, and waits for shared ones.
@pytest.mark.parametrize(("first_exclusive", "second_exclusive"), [(True, False), (True, True), (False, True)])
def test_a_turn_that_excludes_the_other_waits_until_it_is_released(turns: Turns, first_exclusive: bool,
                                                                   second_exclusive: bool) -> None:
    entered: list[float] = []
    with turns.writer(exclusive=first_exclusive):
        thread = _entered(turns, exclusive=second_exclusive, out=entered)
        time.sleep(0.2)
        assert not entered
        released = time.monotonic()
    thread.join(5)
    assert entered and entered[0] >= released


def test_a_process_killed_in_its_turn_releases_it(root: Path, turns: Turns) -> None:
    with subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            entered: list[float] = []
            thread = _entered(turns, exclusive=False, out=entered)
            time.sleep(0.2)
            assert not entered  # the other process's exclusive turn keeps this one out
            holder.send_signal(signal.SIGKILL)
            thread.join(10)
            assert entered
        finally:
            holder.kill()


def test_a_lake_without_a_log_directory_reports_a_udr_error(tmp_path: Path) -> None:
    with pytest.raises(UdrError, match="cannot open"), Turns(tmp_path / "missing" / LOG_DIR,
                                                                         MemoryEnvironment(())).writer(exclusive=False):
        pass



def test_commits_in_a_commit_turn_are_made_in_it_and_durable_once_it_ended(tmp_path: Path) -> None:
    log = LogStore(tmp_path / "lake")
    mark = tmp_path / "lake" / LOG_DIR / SYNC_MARK_FILE
    with log.turns.commit(exclusive=True):
        with log.env.write() as txn:
            txn.put(b"k", b"v", db=log.env.db(b"meta"))
        assert int.from_bytes(mark.read_bytes()[:8], "big") < log.env.last_txnid()  # made, not yet synced
    if boot_id() is not None:
        assert int.from_bytes(mark.read_bytes()[:8], "big") == log.env.last_txnid()
    entered: list[float] = []
    _entered(log.turns, exclusive=True, out=entered).join(timeout=5)
    assert entered  # the turn is free
    log.close()


def test_turns_reuse_their_descriptors_and_close_them(root: Path) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    turns = Turns(root / LOG_DIR, MemoryEnvironment(()))
    for exclusive in (False, True) * 50:
        with turns.writer(exclusive=exclusive):
            pass
        with turns.flush() as mine:
            assert mine
    assert open_fds() == before + 2  # one kept per lock file
    entered: list[float] = []
    with turns.writer(exclusive=True):  # the kept descriptor, locked again, still excludes the others
        thread = _entered(turns, exclusive=False, out=entered)
        time.sleep(0.2)
        assert not entered
    thread.join(5)
    assert entered
    with turns.writer(exclusive=True):
        turns.close()  # a turn held as its handle closes gives its descriptor back as it ends
    assert open_fds() == before


def test_a_forked_child_takes_its_turns_through_descriptors_of_its_own(turns: Turns) -> None:
    with turns.writer(exclusive=False):
        pass  # a descriptor is kept: a child sharing it would share its lock with the parent
    ready, done = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the child holds an exclusive turn until the parent has looked
        with turns.writer(exclusive=True):
            os.write(ready[1], b"x")
            os.read(done[0], 1)
        os._exit(0)
    try:
        os.read(ready[0], 1)
        with pytest.raises(BlockingIOError):
            turns._turn.lock(fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.write(done[1], b"x")
        os.waitpid(pid, 0)
