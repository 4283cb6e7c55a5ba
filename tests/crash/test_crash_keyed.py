"""SIGKILL depth for keyed writes (issue #3): kill a writer doing upserts and deletes at random moments.

The writer keeps accounts in `acct` (keyed by id) whose balances always sum to TOTAL. Each transaction
moves money between two accounts (two upserts), closes an account (a delete, by predicate or by keys,
plus an upsert of the account that takes its balance) or opens one (an upsert inserting a new key);
about a quarter also append a batch big enough to become a Parquet chunk file, so kills land in chunk
writes too. Each commit records what it did in its metadata and the writer prints the commit id once
`commit()` returned (its acknowledgement). After ~20 kills the lake is reopened: every acknowledged
commit must be there, `verify()` clean, and every commit exactly its recorded operation applied to its
parent, with the total conserved and the change feed showing exactly that operation.

This file is also the writer: `python test_crash_keyed.py LAKE SEED GO_FILE`.
"""

from __future__ import annotations

import queue
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

import udr

ACCOUNTS = 10
START = 100
TOTAL = ACCOUNTS * START
ACCT = pa.schema([("id", pa.int64()), ("balance", pa.int64()), ("note", pa.string())])
BLOB = pa.schema([("x", pa.int64())])
BIG_ROWS = 310_000  # one int64 column: 2.5 MB, far above the inline limit, so a Parquet chunk file
KILLS = 20
SEED = 20251125
COMMIT_ID = re.compile(r"^[0-9a-f]{64}$")


# -- the writer (child process) ------------------------------------------------------------------------------


def setup(lake: Path) -> str:
    with udr.open(lake) as db, db.transaction(message="open accounts") as tx:
        tx.create_table("acct", ACCT, primary_key=["id"])
        tx.append("acct", pa.table({"id": list(range(ACCOUNTS)), "balance": [START] * ACCOUNTS,
                                    "note": [None] * ACCOUNTS}, schema=ACCT))
        tx.create_table("blobs", BLOB)
    assert tx.committed is not None
    return tx.committed.id


def plan(rng: np.random.Generator, balances: dict[int, int]) -> dict[str, str]:
    """Pick the next operation given the current balances; the commit metadata that describes it."""
    ids = sorted(balances)
    src, dst = (int(i) for i in rng.choice(ids, 2, replace=False))
    amount = int(rng.integers(1, 60))
    roll = rng.random()
    if roll < 0.2 and len(ids) > 3:
        op = {"op": "close", "src": str(src), "dst": str(dst), "by": "where" if rng.random() < 0.5 else "keys"}
    elif roll < 0.4:
        op = {"op": "open", "src": str(src), "new": str(max(ids) + 1), "amount": str(amount)}
    else:
        op = {"op": "move", "src": str(src), "dst": str(dst), "amount": str(amount)}
    op["blobs"] = "1" if rng.random() < 0.25 else "0"
    op["note"] = str(rng.choice(["", "x", "ü", "-"]))
    return op


def stage(tx: udr.Transaction, op: dict[str, str], rng: np.random.Generator) -> None:
    if op["blobs"] == "1":
        tx.append("blobs", pa.table({"x": rng.integers(0, 1 << 62, BIG_ROWS, dtype=np.int64)}, schema=BLOB))
    rows = tx.read("acct").to_pydict()
    balance = dict(zip(rows["id"], rows["balance"]))
    note = op["note"] or None
    src = int(op["src"])
    if op["op"] == "close":
        dst = int(op["dst"])
        if op["by"] == "where":
            assert tx.delete("acct", f"id = {src}") == 1
        else:
            assert tx.delete("acct", keys={"id": [src]}) == 1
        tx.upsert("acct", pa.table({"id": [dst], "balance": [balance[dst] + balance[src]], "note": [note]},
                                   schema=ACCT))
    elif op["op"] == "open":
        amount = int(op["amount"])
        tx.upsert("acct", pa.table({"id": [src, int(op["new"])], "balance": [balance[src] - amount, amount],
                                    "note": [note, note]}, schema=ACCT))
    else:
        dst, amount = int(op["dst"]), int(op["amount"])
        tx.upsert("acct", pa.table({"id": [src, dst], "balance": [balance[src] - amount, balance[dst] + amount],
                                    "note": [note, note]}, schema=ACCT))


def _warm_up() -> None:
    """One transaction on a scratch lake, so imports and first-call costs are paid before the lake opens."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        setup(Path(scratch) / "lake")
        with udr.open(Path(scratch) / "lake") as db, db.transaction() as tx:
            stage(tx, {"op": "move", "src": "0", "dst": "1", "amount": "1", "blobs": "0", "note": ""}, rng)


def writer(lake: str, seed: str, go: str) -> None:
    """Print `warm`, wait for the file `go`, print `ready`, then run transactions forever, printing each
    acknowledged commit id."""
    rng = np.random.default_rng(int(seed))
    _warm_up()
    print("warm", flush=True)
    while not Path(go).exists():
        time.sleep(0.002)
    with udr.open(lake) as db:
        print("ready", flush=True)
        rows = db.read("acct").to_pydict()
        state = {i: (b, n) for i, b, n in zip(rows["id"], rows["balance"], rows["note"])}
        while True:
            op = plan(rng, {i: b for i, (b, _) in state.items()})
            with db.transaction(message=op["op"], metadata=op) as tx:
                stage(tx, op, rng)
            assert tx.committed is not None
            print(tx.committed.id, flush=True)
            state = apply(state, op)[0]  # this process is the only writer


# -- the parent -----------------------------------------------------------------------------------------------


class Writer:
    """One writer process whose complete stdout lines are collected (a line cut by a kill is dropped)."""

    def __init__(self, lake: Path, seed: int, go: Path) -> None:
        self.go = go
        self.proc = subprocess.Popen([sys.executable, __file__, str(lake), str(seed), str(go)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._errors: list[str] = []
        self._threads = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._read_errors, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n"):
                self.lines.append(line[:-1])
                self._queue.put(line[:-1])

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        self._errors.extend(self.proc.stderr)

    def expect(self, prefix: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=0.02)
            except queue.Empty:
                if self.proc.poll() is not None and self._queue.empty():
                    self.reap()
                    if self._queue.empty():
                        raise AssertionError(f"writer exited ({self.proc.returncode}): "
                                             f"{''.join(self._errors)}") from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"writer printed no {prefix!r} in {timeout}s") from None
                continue
            assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}: {''.join(self._errors)}"
            return line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.reap()

    def reap(self) -> None:
        self.proc.wait(60)
        for thread in self._threads:
            thread.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def kill_writers(lake: Path, started: list[Writer]) -> list[str]:
    """Run writers one after another and SIGKILL each at a random moment; return acknowledged commit ids.

    Two spare writers warm up while the current one runs, so a round costs little more than its run time.
    """
    plan_rng = random.Random(SEED)
    acknowledged: list[str] = []

    def start(n: int) -> Writer:
        writer_ = Writer(lake, SEED + n, lake.with_name(f"go{n}"))
        started.append(writer_)
        return writer_

    spares = [start(0), start(1)]
    for n in range(KILLS):
        current = spares.pop(0)
        if n + 2 < KILLS:
            spares.append(start(n + 2))
        current.expect("warm")
        current.go.touch()
        current.expect("ready")
        for _ in range(plan_rng.randint(0, 5)):
            current.expect("")
        time.sleep(plan_rng.uniform(0.0, 0.12))
        current.kill()
        assert current.proc.returncode == -signal.SIGKILL, f"writer died on its own: {''.join(current._errors)}"
        lines = current.lines[2:]
        assert all(COMMIT_ID.match(line) for line in lines), lines
        acknowledged += lines
    for spare in spares:
        spare.kill()
    return acknowledged


def balances(db: udr.Lake, at: str) -> dict[int, tuple[int, str | None]]:
    data = db.read("acct", at=at).to_pydict()
    assert len(set(data["id"])) == len(data["id"]), f"a key is stored twice at {at[:10]}"
    return {i: (b, n) for i, b, n in zip(data["id"], data["balance"], data["note"])}


def apply(state: dict[int, tuple[int, str | None]],
          op: dict[str, str]) -> tuple[dict[int, tuple[int, str | None]], set[tuple[int, str]]]:
    """The accounts after `op`, and the (id, change) pairs its change feed must show."""
    new = dict(state)
    note = op["note"] or None
    src = int(op["src"])
    if op["op"] == "close":
        dst = int(op["dst"])
        new[dst] = (state[dst][0] + state[src][0], note)
        del new[src]
        feed = {(src, "delete")}
    elif op["op"] == "open":
        amount = int(op["amount"])
        new[src] = (state[src][0] - amount, note)
        new[int(op["new"])] = (amount, note)
        feed = {(int(op["new"]), "insert")}
    else:
        dst, amount = int(op["dst"]), int(op["amount"])
        new[src] = (state[src][0] - amount, note)
        new[dst] = (state[dst][0] + amount, note)
        feed = set()
    for key in set(new) & set(state):
        if new[key] != state[key]:
            feed |= {(key, "update_before"), (key, "update_after")}
    return new, feed


def test_sigkilled_keyed_writer_keeps_every_acknowledged_commit_and_no_partial_one(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    opened = setup(lake)
    started: list[Writer] = []
    try:
        acknowledged = kill_writers(lake, started)
    finally:
        for w in started:
            w.kill()
    assert len(acknowledged) >= KILLS // 2, "too few acknowledged commits to prove anything"

    with udr.open(lake) as db:
        report = db.verify()
        assert report.ok, report.problems
        chain = [c for c in reversed(db.log())]
        ids = [c.id for c in chain]
        assert set(acknowledged) <= set(ids), "an acknowledged commit is missing"
        assert [i for i in ids if i in set(acknowledged)] == acknowledged, "acknowledged commits out of order"
        start = ids.index(opened)
        state = balances(db, opened)
        blob_rows = 0
        for commit in chain[start + 1:]:
            op = commit.metadata
            assert commit.parents == (ids[ids.index(commit.id) - 1],)
            expected, feed = apply(state, op)
            seen = balances(db, commit.id)
            assert seen == expected, f"commit {commit.short_id} is not exactly its {op}"
            assert sum(b for b, _ in seen.values()) == TOTAL
            changes = db.changes("acct", since=commit.parents[0], until=commit.id)
            assert set(zip(changes.column("id").to_pylist(), changes.column("_change").to_pylist())) == feed
            blob_rows += BIG_ROWS if op["blobs"] == "1" else 0
            assert db.row_count("blobs", at=commit.id) == blob_rows
            state = seen
        # The lake stays writable after the crashes, and gc clears the orphans of killed transactions.
        db.upsert("acct", pa.table({"id": [10_000], "balance": [0], "note": ["after"]}, schema=ACCT))
        db.gc()
        assert db.verify().ok
        assert sum(db.read("acct").column("balance").to_pylist()) == TOTAL


if __name__ == "__main__":
    writer(*sys.argv[1:])
