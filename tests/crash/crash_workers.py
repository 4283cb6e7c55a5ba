"""Child processes for the crash and multi-process tests, run as `python crash_workers.py COMMAND LAKE ...`.

Each command is one real writer or reader process. Acknowledgements go to stdout, one line each, flushed
before the next step, so a parent that kills the process knows exactly which commits were promised.

The bank workload: `accounts_a` and `accounts_b` (keyed by `id`) hold balances whose total never changes;
every transaction moves an amount from a row of one table to a row of the other, and records what it did
in the commit metadata, so a checker can replay each commit against its parent. Some transactions also
append to the `transfers` ledger and some append a batch big enough to become a Parquet chunk file in
`blobs`, so kills land inside chunk writes too.

Commands (see each function): `setup`, `bank` (the writer the SIGKILL test kills), `crash` and `crash-all`
(stop a commit at a named step), `paused-gc`, `append`, `race`, `reader`, `create`.

The module is also imported by the tests in this directory for the workload and the crash points.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import numpy as np
import pyarrow as pa

import udr

ACCOUNTS = ("accounts_a", "accounts_b")
ROWS_PER_TABLE = 8
START_BALANCE = 1_000
TOTAL = len(ACCOUNTS) * ROWS_PER_TABLE * START_BALANCE
# Above the inline limit (256 KiB of Arrow data), so every batch is written as a Parquet chunk file.
BIG_ROWS = 310_000
CRASH_EXIT = 77

ACCOUNT_SCHEMA = pa.schema([("id", pa.int64()), ("balance", pa.int64())])
TRANSFER_SCHEMA = pa.schema([("src", pa.string()), ("dst", pa.string()), ("amount", pa.int64())])
BLOB_SCHEMA = pa.schema([("x", pa.int64())])

TOTAL_QUERY = "SELECT (SELECT sum(balance) FROM accounts_a) + (SELECT sum(balance) FROM accounts_b)"


def setup_bank(lake: Path) -> str:
    """Create the bank tables with their opening balances; return the id of the setup commit."""
    ids = list(range(ROWS_PER_TABLE))
    with udr.open(lake) as db, db.transaction(message="open accounts") as tx:
        for table in ACCOUNTS:
            tx.create_table(table, ACCOUNT_SCHEMA, primary_key=["id"])
            tx.append(table, {"id": ids, "balance": [START_BALANCE] * ROWS_PER_TABLE})
        tx.create_table("transfers", TRANSFER_SCHEMA)
        tx.create_table("blobs", BLOB_SCHEMA)
    assert tx.committed is not None
    return tx.committed.id


def big_batch(rng: np.random.Generator) -> pa.Table:
    """Random integers: incompressible enough that each batch is a distinct chunk file."""
    return pa.table({"x": rng.integers(0, 1 << 62, BIG_ROWS, dtype=np.int64)}, schema=BLOB_SCHEMA)


@dataclass(frozen=True, slots=True)
class Transfer:
    """One planned transaction of the bank workload; `metadata` records it in the commit."""

    src: str
    dst: str
    amount: int
    ledger: bool
    blobs: bool

    @property
    def metadata(self) -> dict[str, str]:
        return {"src": self.src, "dst": self.dst, "amount": str(self.amount),
                "ledger": str(int(self.ledger)), "blobs": str(int(self.blobs))}


def plan_transfer(rng: np.random.Generator, *, ledger: bool, blobs: bool, lowest: int = 1) -> Transfer:
    """Pick a random move of money (`lowest` to `lowest + 98`) from a row of one accounts table to a row of the
    other."""
    src_table, dst_table = ACCOUNTS if rng.random() < 0.5 else ACCOUNTS[::-1]
    src_id, dst_id = int(rng.integers(ROWS_PER_TABLE)), int(rng.integers(ROWS_PER_TABLE))
    amount = int(rng.integers(lowest, lowest + 99))
    return Transfer(f"{src_table}:{src_id}", f"{dst_table}:{dst_id}", amount, ledger, blobs)


def stage(tx: udr.Transaction, move: Transfer, batch: pa.Table | None) -> None:
    """Stage `batch` (if any), then `move`: read both balances, upsert both rows, add the ledger row.

    The big batch goes first: its chunk file is durable while the rest is staged, which widens the window
    in which a kill leaves an orphan chunk behind.
    """
    if batch is not None:
        tx.append("blobs", batch)
    for account, delta in ((move.src, -move.amount), (move.dst, move.amount)):
        table, key = account.split(":")
        rows = tx.read(table).to_pydict()
        balance = rows["balance"][rows["id"].index(int(key))]
        tx.upsert(table, {"id": [int(key)], "balance": [balance + delta]})
    if move.ledger:
        tx.append("transfers", {"src": [move.src], "dst": [move.dst], "amount": [move.amount]})


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.001)


def _warm_up() -> None:
    """Pay the one-time cost of the first transaction early: pyarrow imports pandas on first use."""
    import pandas  # noqa: F401


def bank(lake: str, seed: str, count: str = "0", go: str = "", blob_share: str = "0.3",
         isolation: str = "snapshot", threads: str = "1") -> None:
    """Run transfers forever (or `count` of them), printing `ready` and then each acknowledged commit id.

    With `go`, first warm up, print `warm` and wait until the file `go` exists before opening the lake.
    A `blob_share` of the transfers also append a big batch (a chunk file) to `blobs`. A transfer that
    conflicts with a concurrent writer's is planned again from the new state and retried, as an
    application would; `conflicts N` is printed at the end. With `threads` above 1, that many threads of
    this process run transfers on the one open lake (their commits share write transactions), each `count`.
    """
    if go:
        _warm_up()
        print("warm", flush=True)
        _wait_for(Path(go))
    printing = threading.Lock()

    def say(line: str) -> None:
        with printing:
            print(line, flush=True)

    failures: list[BaseException] = []

    def transfers(n: int) -> None:
        try:
            _transfers(db, int(seed) + 1000 * n, int(count) or None, float(blob_share), isolation, say)
        except BaseException as exc:
            failures.append(exc)
            raise

    with udr.open(lake) as db:
        say("ready")
        runs = [threading.Thread(target=transfers, args=(n,)) for n in range(int(threads))]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
    if failures:  # a thread's exception ends only that thread: the process must still fail
        raise failures[0]


def _transfers(db: udr.Lake, seed: int, limit: int | None, share: float, isolation: str,
               say: Callable[[str], None]) -> None:
    rng = np.random.default_rng(seed)
    conflicts = done = 0
    while limit is None or done < limit:
        # Each worker moves its own range of amounts: under snapshot isolation two concurrent transfers that
        # leave one balance at the same value do not conflict (docs/concurrency.md), which this check would
        # count as a lost transfer.
        move = plan_transfer(rng, ledger=rng.random() < 0.5, blobs=rng.random() < share,
                             lowest=1 + 100 * (seed % 10) + 1000 * (seed // 1000))
        batch = big_batch(rng) if move.blobs else None
        while True:
            tx = db.transaction(message="transfer", metadata=move.metadata,
                                isolation=isolation)  # type: ignore[arg-type]
            try:
                with tx:
                    stage(tx, move, batch)
                break
            except udr.ConflictError:
                conflicts += 1
        assert tx.committed is not None
        say(tx.committed.id)
        done += 1
    say(f"conflicts {conflicts}")


def mixed(lake: str, seed: str, count: str, go: str) -> None:
    """`count` transactions, each appending 3 rows to `ev` and upserting 2 random keys (of 40) of `kv` to a value
    unique to this writer and transaction, retrying on conflict. Prints each commit id, and `false-conflict`
    for a conflict where no commit made since the transaction began had set one of its keys."""
    rng = np.random.default_rng(int(seed))
    _warm_up()
    print("warm", flush=True)
    _wait_for(Path(go))
    with udr.open(lake) as db:
        for i in range(int(count)):
            keys = sorted(int(k) for k in rng.choice(40, 2, replace=False))
            value = int(seed) * 1000 + i
            while True:
                tx = db.transaction(metadata={"keys": ",".join(map(str, keys)), "value": str(value)})
                base = tx.base
                tx.append("ev", {"w": [int(seed)] * 3, "i": [i] * 3})
                tx.upsert("kv", {"k": keys, "v": [value] * 2})
                try:
                    commit = tx.commit()
                    break
                except udr.ConflictError:
                    since: set[int] = set()
                    for c in db.log():
                        if c.id == base:
                            break
                        since.update(int(k) for k in c.metadata.get("keys", "").split(",") if k)
                    if not since & set(keys):
                        print("false-conflict", flush=True)
            print(commit.id, flush=True)


@dataclass(frozen=True, slots=True)
class CrashPoint:
    """A step of the write path, as a profile event: `event` of `name` happening in code from `module`.

    `name` is a builtin's name for `c_call`/`c_return` (the caller's module counts), else a function's
    qualified name; `RENAMER` names whichever function renamed a chunk into place.
    """

    event: str
    name: str
    module: str


RENAMER = "(the function that renamed the chunk)"
_CHUNKS = os.path.join("udr", "log", "chunks.py")
_STORE = os.path.join("udr", "log", "store.py")
_LABEL = os.path.join("udr", "log", "label.py")
_ANY = "udr" + os.sep

CRASH_POINTS: dict[str, CrashPoint] = {
    # Creating a lake: the log holds the root commit; the FORMAT file is not in place yet.
    "lake-created": CrashPoint("c_call", "replace", _LABEL),
    # Chunk bytes are in tmp/ and fsynced; the rename into chunks/ has not happened.
    "chunk-tmp-written": CrashPoint("c_call", "replace", _CHUNKS),
    # The rename happened; the directory is not yet fsynced.
    "chunk-renamed": CrashPoint("c_return", "replace", _CHUNKS),
    # The chunk is durable under its final name; nothing references it.
    "chunk-durable": CrashPoint("return", RENAMER, _CHUNKS),
    # Every change is staged and every chunk durable; the log write transaction has not begun.
    "before-commit-txn": CrashPoint("call", "LogStore.append", _STORE),
    # Inside the log write transaction: the commit record and head are written but not committed.
    "inside-commit-txn": CrashPoint("return", "LogStore._store_commit", _STORE),
    # The commit point has passed; the snapshot cache has not been told.
    "after-commit-point": CrashPoint("return", "LogStore.append", _STORE),
    # The new snapshot is about to be written to the cache.
    "during-cache-update": CrashPoint("call", "Materializer.remember_commit", _ANY),
    # The commit and cache update are done; the caller never got its acknowledgement.
    "before-ack": CrashPoint("return", "Transaction.commit", _ANY),
}


def _arm(point: CrashPoint, action: Callable[[], None]) -> None:
    """Call `action` the first time `point` happens, in this thread or any thread started later."""
    renamers: set[FrameType] = set()
    fired = threading.Event()

    def hook(frame: FrameType, event: str, arg: object) -> None:
        code = frame.f_code
        if fired.is_set() or code.co_filename.find(point.module) < 0:
            return
        if event == "c_return" and getattr(arg, "__name__", None) == "replace":
            renamers.add(frame)
        if event != point.event:
            return
        if event.startswith("c_"):
            hit = getattr(arg, "__name__", None) == point.name
        elif point.name == RENAMER:
            hit = frame in renamers
        else:
            hit = code.co_qualname == point.name
        if hit:
            fired.set()
            action()

    threading.setprofile(hook)
    sys.setprofile(hook)


def _disarm() -> None:
    sys.setprofile(None)
    threading.setprofile(None)


def _die() -> None:
    os._exit(CRASH_EXIT)


def _pause(sync_dir: str) -> Callable[[], None]:
    def pause() -> None:
        print("paused", flush=True)
        _wait_for(Path(sync_dir) / "resume")

    return pause


def crash_plan(seed: int) -> tuple[Transfer, pa.Table]:
    """The transaction `crash` runs for `seed`: a transfer with a ledger row and a big batch."""
    rng = np.random.default_rng(seed)
    return plan_transfer(rng, ledger=True, blobs=True), big_batch(rng)


def crash(lake: str, point: str, seed: str, pause_dir: str = "") -> None:
    """Run the `crash_plan` transaction and die (exit `CRASH_EXIT`) at `point` of its commit.

    With `pause_dir`, print `paused` at `point` instead, wait for `pause_dir/resume`, then finish and
    print `committed <id>`. Chunks are written while a transaction is staged, so the hook is armed
    before the lake is even opened, on this thread and on the pool threads that encode chunks.
    """
    move, batch = crash_plan(int(seed))
    _arm(CRASH_POINTS[point], _pause(pause_dir) if pause_dir else _die)
    with udr.open(lake) as db, db.transaction(message=f"crash at {point}", metadata=move.metadata) as tx:
        stage(tx, move, batch)
    _disarm()
    assert tx.committed is not None
    print(f"committed {tx.committed.id}" if pause_dir else "point not reached", flush=True)


def crash_all(seed: str, *specs: str) -> None:
    """Run `crash` for every `LAKE=POINT` at once, each in a process forked from this one.

    Forking after the imports spares each crash the interpreter start. Prints `LAKE EXIT_CODE` per spec.
    """
    children: dict[int, str] = {}
    for spec in specs:
        lake, point = spec.rsplit("=", 1)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                crash(lake, point, seed)
                code = 0
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = lake
    for pid, lake in children.items():
        _, status = os.waitpid(pid, 0)
        print(lake, os.waitstatus_to_exitcode(status), flush=True)


def paused_gc(lake: str, sync_dir: str) -> None:
    """Run `gc`, pausing (`paused`, then wait for `sync_dir/resume`) once it has listed referenced chunks."""
    _arm(CrashPoint("return", "referenced_chunks", os.path.join("udr", "log", "garbage.py")), _pause(sync_dir))
    with udr.open(lake) as db:
        freed = db.gc()
    _disarm()
    print(f"freed {freed}", flush=True)


def append_rows(lake: str, table: str, count: str, rows: str = "1", go: str = "", pause: str = "0") -> None:
    """Commit `count` appends of `rows` rows each to `table`, printing each commit id or `conflict ...`.

    One-row batches are inlined in the log; batches of 40_000 random rows or more become chunk files.
    Prints `ready` once the lake is open; with `go`, then waits for that file before writing. Sleeps
    `pause` seconds after each commit, so concurrent writers take turns even on a busy machine.
    """
    rng = np.random.default_rng(list(table.encode()))
    with udr.open(lake) as db:
        print("ready", flush=True)
        if go:
            _wait_for(Path(go))
        for i in range(int(count)):
            batch = {"i": np.full(int(rows), i), "x": rng.integers(0, 1 << 62, int(rows), dtype=np.int64)}
            try:
                commit = db.append(table, batch)
            except udr.ConflictError as exc:
                print(f"conflict {exc}", flush=True)
            else:
                print(commit.id, flush=True)
            time.sleep(float(pause))


def race(lake: str, table: str, sync_dir: str, name: str, how: str = "append") -> None:
    """Stage a big `how` ("append" or "overwrite") of `table`, signal `<name>.ready`, wait for `go`, commit;
    print the outcome."""
    sync = Path(sync_dir)
    with udr.open(lake) as db:
        tx = db.transaction(message=f"race {name}")
        getattr(tx, how)(table, big_batch(np.random.default_rng(list(name.encode()))))
        print(f"base {tx.base}", flush=True)
        (sync / f"{name}.ready").touch()
        _wait_for(sync / "go")
        try:
            commit = tx.commit()
        except udr.ConflictError as exc:
            print(f"conflict {exc}", flush=True)
        else:
            print(f"committed {commit.id}", flush=True)


def reader(lake: str, stop: str) -> None:
    """Until `stop` exists, print `<head> <total by one sql> <total by two reads at head>` per read."""
    with udr.open(lake) as db:
        print("ready", flush=True)
        while True:
            last = Path(stop).exists()
            # One `sql` call reads one version, whatever commits meanwhile.
            [(by_sql,)] = db.sql(TOTAL_QUERY).fetchall()
            # Two `read` calls are consistent only when pinned to one commit.
            head = db.resolve(None)
            by_read = sum(sum(db.read(t, at=head).column("balance").to_pylist()) for t in ACCOUNTS)
            print(f"{head} {by_sql} {by_read}", flush=True)
            if last:
                return
            time.sleep(0.01)


def create(prefix: str, sync_dir: str, rounds: str) -> None:
    """For each round, wait for `go<round>` and open the fresh lake `<prefix><round>`; print ok or the error."""
    sync = Path(sync_dir)
    print("ready", flush=True)
    for n in range(int(rounds)):
        _wait_for(sync / f"go{n}")
        try:
            with udr.open(f"{prefix}{n}") as db:
                print(f"ok {db.resolve(None)}", flush=True)
        except (udr.UdrError, OSError) as exc:
            print(f"error {type(exc).__name__}: {exc}", flush=True)


def setup(lake: str) -> None:
    """Create the bank tables (see `setup_bank`); print the setup commit id and the bank's total."""
    print(setup_bank(Path(lake)), TOTAL, flush=True)


COMMANDS: dict[str, Callable[..., None]] = {
    "setup": setup,
    "bank": bank,
    "mixed": mixed,
    "crash": crash,
    "append": append_rows,
    "race": race,
    "reader": reader,
    "crash-all": crash_all,
    "paused-gc": paused_gc,
    "create": create,
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
