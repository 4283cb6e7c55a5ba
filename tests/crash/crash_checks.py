"""Parent-side helpers of the crash tests: run worker processes, look at the lake's files, check the bank.

The checks read through the public API only, except `referenced_chunks`, which asks the log layer which
chunk files commits reference, to tell an orphan from live data.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from crash_workers import ACCOUNTS, BIG_ROWS, ROWS_PER_TABLE, START_BALANCE, TOTAL

import udr
from udr.log.format import CHUNK_DIR, CHUNK_SUFFIX, TMP_DIR
from udr.log.store import LogStore

WORKERS = Path(__file__).with_name("crash_workers.py")


class Worker:
    """One worker process (`crash_workers.py COMMAND ...`) whose complete stdout lines are collected."""

    def __init__(self, *args: object) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKERS), *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self.lines: list[str] = []
        self._errors: list[str] = []
        self._drains = [threading.Thread(target=self._read, daemon=True),
                        threading.Thread(target=self._read_errors, daemon=True)]
        for drain in self._drains:
            drain.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            # A line cut off by a kill was never acknowledged: keep only complete ones.
            if line.endswith("\n"):
                self.lines.append(line.rstrip("\n"))
                self._lines.put(line.rstrip("\n"))

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        self._errors.extend(self.proc.stderr)

    def next_line(self, timeout: float = 60) -> str | None:
        """The next complete line, or None if the process ends or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._lines.get(timeout=0.05)
            except queue.Empty:
                if self.proc.poll() is not None:
                    self.wait()  # joins the readers: every line printed is queued now
                    if self._lines.empty():
                        return None
                elif time.monotonic() > deadline:
                    return None

    def expect(self, prefix: str, timeout: float = 60) -> str:
        """Wait for the next line; fail unless it starts with `prefix`."""
        line = self.next_line(timeout)
        if line is None:
            state = "is still running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
            raise AssertionError(f"no {prefix!r} line in {timeout}s: worker {state}; stderr: {self.stderr()}")
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}; stderr: {self.stderr()}"
        return line

    def kill(self) -> None:
        """SIGKILL the process and reap it (a zombie would still count as a live intent owner)."""
        self.proc.send_signal(signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = 90) -> int:
        """Wait for the process to end and for its output to be read; return its exit code."""
        self.proc.wait(timeout)
        for drain in self._drains:
            drain.join(timeout)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.proc.returncode

    def stderr(self) -> str:
        """What the process has written to stderr so far (all of it once it has ended)."""
        return "".join(self._errors)


class Workers:
    """Starts workers and, on `close`, kills any still running (so a failing test leaves no process)."""

    def __init__(self) -> None:
        self._started: list[Worker] = []

    def start(self, *args: object) -> Worker:
        """Start a worker."""
        worker = Worker(*args)
        self._started.append(worker)
        return worker

    def run(self, *args: object, timeout: float = 90) -> Worker:
        """Run a worker to its end."""
        worker = self.start(*args)
        worker.wait(timeout)
        return worker

    def close(self) -> None:
        """Kill and reap every worker still running."""
        for worker in self._started:
            if worker.proc.poll() is None:
                worker.kill()
            else:
                worker.wait()


def chunk_files(lake: Path) -> set[str]:
    """Ids of the chunk files present under `chunks/`."""
    return {sub.name + f.name[: -len(CHUNK_SUFFIX)] for sub in (lake / CHUNK_DIR).glob("*") for f in sub.iterdir()}


def tmp_files(lake: Path) -> list[str]:
    """Names of the files left in `tmp/`."""
    tmp = lake / TMP_DIR
    return sorted(os.listdir(tmp)) if tmp.exists() else []


def referenced_chunks(lake: Path) -> set[str]:
    """Ids of the chunk files some commit in the log references (lake must be closed or open in-process)."""
    log = LogStore(lake)
    try:
        return set(log.referenced_chunks())
    finally:
        log.close()


@dataclass(frozen=True, slots=True)
class BankState:
    """What the bank tables hold at one commit."""

    balances: dict[str, int]
    ledger: list[tuple[str, str, int]]
    blob_rows: int

    @property
    def total(self) -> int:
        """Money across both accounts tables."""
        return sum(self.balances.values())


OPENING = BankState({f"{t}:{i}": START_BALANCE for t in ACCOUNTS for i in range(ROWS_PER_TABLE)}, [], 0)


def bank_state(db: udr.Lake, at: str) -> BankState:
    """Read every bank table at commit `at`, through one DuckDB connection on that version."""
    con = db.connect(at=at)
    try:
        balances = con.sql(
            " UNION ALL ".join(f"SELECT '{t}:' || id, balance FROM {t}" for t in ACCOUNTS)
        ).fetchall()
        ledger = con.sql("SELECT src, dst, amount FROM transfers ORDER BY ALL").fetchall()
        [(blob_rows,)] = con.sql("SELECT count(*) FROM blobs").fetchall()
    finally:
        con.close()
    return BankState(dict(balances), ledger, blob_rows)


def apply_transfer(state: BankState, metadata: dict[str, str]) -> BankState:
    """The state a transfer commit (described by its metadata) must leave, given its parent's state."""
    amount = int(metadata["amount"])
    balances = dict(state.balances)
    balances[metadata["src"]] -= amount
    balances[metadata["dst"]] += amount
    ledger = state.ledger
    if metadata["ledger"] == "1":
        ledger = sorted([*ledger, (metadata["src"], metadata["dst"], amount)])  # as ORDER BY ALL
    return replace(state, balances=balances, ledger=ledger,
                   blob_rows=state.blob_rows + (BIG_ROWS if metadata["blobs"] == "1" else 0))


@dataclass(frozen=True, slots=True)
class BankHistory:
    """The bank's state at every commit from the setup on, and how many commits wrote a chunk file."""

    states: dict[str, BankState]
    transfers: int
    with_blobs: int


def check_bank_history(db: udr.Lake, setup: str) -> BankHistory:
    """Replay every commit after `setup` against its parent: each one is a whole transfer, none partial."""
    states = {setup: bank_state(db, setup)}
    assert states[setup] == OPENING
    first = db.commit_info(setup).seq + 1
    with_blobs = 0
    for commit in reversed(db.log()):
        if commit.seq < first:
            continue
        seen = bank_state(db, commit.id)
        if "udr.maintenance" in commit.metadata:  # a flush of small writes changes no row
            assert seen == states[commit.parents[0]], f"maintenance commit {commit.short_id} changed balances"
            states[commit.id] = seen
            continue
        assert "amount" in commit.metadata, f"commit {commit.short_id} ({commit.message!r}) is not a transfer"
        expected = apply_transfer(states[commit.parents[0]], commit.metadata)
        assert seen == expected, f"commit {commit.short_id} is not exactly one transfer: {commit.metadata}"
        assert seen.total == TOTAL
        states[commit.id] = seen
        with_blobs += commit.metadata["blobs"] == "1"
    transfers = sum(1 for c in db.log() if c.seq >= first and "amount" in c.metadata)
    return BankHistory(states, transfers, with_blobs)


def kill_after_commits(worker: Path, args: list[str], commits: int, linger: float) -> list[str]:
    """Run script `worker` with `args`, wait until it printed `commits` lines starting with "commit", then
    `linger` seconds more, SIGKILL it and return every whole line it printed."""
    proc = subprocess.Popen([sys.executable, str(worker), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    lines: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        lines.extend(line.rstrip("\n") for line in proc.stdout if line.endswith("\n"))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while sum(line.startswith("commit") for line in lines) < commits:
            assert proc.poll() is None, f"the worker exited {proc.returncode}"
            assert time.monotonic() < deadline, f"the worker acknowledged fewer than {commits} commits in 60 s"
            time.sleep(0.01)
        time.sleep(linger)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        reader.join(30)
        assert proc.stdout is not None
        proc.stdout.close()
    return list(lines)
