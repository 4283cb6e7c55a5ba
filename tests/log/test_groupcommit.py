"""udr.log.groupcommit: appends of threads that overlap share one write transaction; each failure stays with its
owner. First the queue alone (a batch writer of the test's own), then through a real LogStore."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from udr.errors import ConflictError
from udr.log.commits import CommitRecord, Fragment, TableOp
from udr.log.format import BlobId, BlobKind, ChunkId, CommitId
from udr.log.groupcommit import Append, GroupCommit, Stored
from udr.log.hashing import content_id
from udr.log.store import LogStore


def _append(message: str) -> Append:
    record = CommitRecord(parents=(CommitId("0" * 64),), seq=0, branch="main", time_us=0, author="t", message=message)
    return Append(record, CommitId("0" * 64), True, {}, {}, frozenset(), frozenset(), "commit", None, {})


class _Writer:
    """A batch writer storing each append as a commit named after its message; the first batch waits for
    `release`, so appends made meanwhile queue; `fail` says which messages fail their checks."""

    def __init__(self, fail: Callable[[str], bool] = lambda message: False) -> None:
        self.release = threading.Event()
        self.batches: list[list[str]] = []
        self._fail = fail

    def __call__(self, batch: list[Append], outcomes: list[Stored | Exception]) -> None:
        if not self.batches:
            self.release.wait(10)
        self.batches.append([a.record.message for a in batch])
        outcomes.extend(ConflictError(f"{a.record.message} conflicts") if self._fail(a.record.message)
                        else Stored(CommitId(a.record.message), a.record, len(self.batches)) for a in batch)


def _run(group: GroupCommit, write: Callable[[list[Append], list[Stored | Exception]], None], messages: list[str],
         results: dict[str, object]) -> list[threading.Thread]:
    def one(message: str) -> None:
        try:
            results[message] = group.append(_append(message), write)
        except Exception as exc:  # noqa: BLE001 - the test compares what each thread got
            results[message] = exc

    threads = [threading.Thread(target=one, args=(m,)) for m in messages]
    for n, (message, thread) in enumerate(zip(messages, threads)):
        thread.start()
        # In this order: the first leads and waits, the others queue behind it. A loaded machine may start a
        # thread late, so each is seen leading or queued before the next one starts.
        deadline = time.monotonic() + 10
        while not (group._leadership.locked() if n == 0 else _queued(group, message)):
            assert time.monotonic() < deadline, f"{message} neither led nor queued"
            time.sleep(0.001)
    return threads


def _queued(group: GroupCommit, message: str) -> bool:
    return any(q.append.record.message == message for q in list(group._queue))


def test_appends_made_while_one_leads_are_stored_together_in_arrival_order() -> None:
    group, write = GroupCommit(lambda cid: False), _Writer()
    results: dict[str, object] = {}
    threads = _run(group, write, ["a", "b", "c", "d"], results)
    write.release.set()
    for thread in threads:
        thread.join(10)
    assert write.batches == [["a"], ["b", "c", "d"]]
    assert {m: r.cid for m, r in results.items() if isinstance(r, Stored)} == {m: m for m in "abcd"}
    assert [r.txnid for r in (results[m] for m in "bcd") if isinstance(r, Stored)] == [2, 2, 2]


def test_an_append_failing_its_checks_raises_in_its_own_thread_only() -> None:
    group, write = GroupCommit(lambda cid: False), _Writer(fail=lambda message: message == "c")
    results: dict[str, object] = {}
    threads = _run(group, write, ["a", "b", "c", "d"], results)
    write.release.set()
    for thread in threads:
        thread.join(10)
    assert isinstance(results["c"], ConflictError) and str(results["c"]) == "c conflicts"
    assert all(isinstance(results[m], Stored) for m in "abd")


def test_a_failed_transaction_is_raised_by_its_leader_and_the_others_go_to_the_next() -> None:
    calls: list[list[str]] = []
    release = threading.Event()

    def write(batch: list[Append], outcomes: list[Stored | Exception]) -> None:
        messages = [a.record.message for a in batch]
        calls.append(messages)
        if len(calls) == 1:
            release.wait(10)
        if len(calls) == 2:
            raise OSError("disk full")  # the transaction of the second batch fails as a whole
        outcomes.extend(Stored(CommitId(m), a.record, len(calls)) for m, a in zip(messages, batch, strict=True))

    group: GroupCommit = GroupCommit(lambda cid: False)
    results: dict[str, object] = {}
    threads = _run(group, write, ["a", "b", "c", "d"], results)
    release.set()
    for thread in threads:
        thread.join(10)
    assert calls[:2] == [["a"], ["b", "c", "d"]]
    [leader] = [m for m in "bcd" if isinstance(results[m], OSError)]  # whichever of them woke first
    assert calls[2:] == [[m for m in "bcd" if m != leader]]  # queued again in front, in their order
    assert all(isinstance(results[m], Stored) for m in "abcd" if m != leader)


def test_a_transaction_failing_after_its_commit_still_gives_the_others_their_commits() -> None:
    # Ctrl-C or a failed fsync after the commit: queued again, the others would commit twice.
    calls: list[list[str]] = []
    release = threading.Event()

    def write(batch: list[Append], outcomes: list[Stored | Exception]) -> None:
        calls.append([a.record.message for a in batch])
        if len(calls) == 1:
            release.wait(10)
        outcomes.extend(Stored(CommitId(a.record.message), a.record, len(calls)) for a in batch)
        if len(calls) == 2:
            raise OSError("fsync failed")  # after the commit: the log holds the batch's commits

    group = GroupCommit(lambda cid: cid in {m for batch in calls for m in batch})
    results: dict[str, object] = {}
    threads = _run(group, write, ["a", "b", "c", "d"], results)
    release.set()
    for thread in threads:
        thread.join(10)
    assert calls == [["a"], ["b", "c", "d"]]  # no third batch: nothing committed twice
    [leader] = [m for m in "bcd" if isinstance(results[m], OSError)]
    assert all(isinstance(results[m], Stored) for m in "abcd" if m != leader)


def test_an_append_interrupted_while_it_waits_leaves_the_queue_and_never_commits() -> None:
    group, write = GroupCommit(lambda cid: False), _Writer()
    results: dict[str, object] = {}
    leader = _run(group, write, ["a"], results)  # leads, and waits inside its write until released
    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main
    interrupter = threading.Timer(0.2, signal.pthread_kill, args=(main, signal.SIGINT))
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        group.append(_append("interrupted"), write)  # queues behind "a" and waits: Ctrl-C lands here
    threads = _run(group, write, ["b"], results)
    write.release.set()
    for thread in leader + threads:
        thread.join(10)
    assert write.batches == [["a"], ["b"]]  # "interrupted" was in no batch
    assert all(isinstance(results[m], Stored) for m in "ab")


def _ev_append(log: LogStore, base: CommitId, n: int) -> tuple[CommitRecord, dict[BlobId, tuple[BlobKind, bytes]]]:
    payload = f"rows {n}".encode()
    chunk = ChunkId(content_id(payload))
    schema = BlobId(content_id(b"schema"))
    record = CommitRecord(parents=(base,), seq=0, branch="main", time_us=0, author="t", message=f"append {n}",
                          tables={"ev": TableOp(add=(Fragment(chunk, 1, True, schema),), inserted=1)})
    return record, {BlobId(chunk): (BlobKind.ROWS, payload)}


def test_threads_appending_to_one_log_share_write_transactions_and_keep_a_linear_history(tmp_path: Path) -> None:
    threads = 8
    log = LogStore(tmp_path / "lake")
    try:
        schema = BlobId(content_id(b"schema"))
        root = log.head("main")
        assert root is not None
        created = CommitRecord(parents=(root,), seq=0, branch="main", time_us=0, author="t", message="create",
                               tables={"ev": TableOp(create=True, schema=schema)})
        base, _ = log.append(created, base=root, rebase=False, blobs={schema: (BlobKind.SCHEMA, b"schema")})
        made: dict[int, CommitId] = {}

        def append(n: int) -> None:
            record, blobs = _ev_append(log, base, n)  # every one begun on `base`: placed over the others
            made[n], _ = log.append(record, base=base, rebase=True, blobs=blobs, placeable=frozenset({"ev"}))

        before = log.env.last_txnid()
        with log.env.write():  # holds LMDB's writer lock: the first append leads and waits, the others queue
            workers = [threading.Thread(target=append, args=(n,)) for n in range(threads)]
            for worker in workers:
                worker.start()
            time.sleep(0.3)
        for worker in workers:
            worker.join(10)

        assert len(made) == threads
        assert log.env.last_txnid() - before <= 3  # the holder's, the first leader's, and one for the rest
        head = log.head("main")
        assert head is not None
        chain = [head]
        while chain[-1] != base:
            chain.append(log.get_commit(chain[-1], cached=False).parents[0])
        assert set(chain[:-1]) == set(made.values())  # each append one commit, one after another
        seqs = [log.get_commit(c).seq for c in chain[:-1]]
        assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == threads
    finally:
        log.close()


def test_a_conflicting_append_among_threads_fails_alone(tmp_path: Path) -> None:
    log = LogStore(tmp_path / "lake")
    try:
        root = log.head("main")
        assert root is not None
        schema = BlobId(content_id(b"schema"))
        first = CommitRecord(parents=(root,), seq=0, branch="main", time_us=0, author="t", message="create",
                             tables={"ev": TableOp(create=True, schema=schema)})
        base, _ = log.append(first, base=root, rebase=False, blobs={schema: (BlobKind.SCHEMA, b"schema")})
        outcomes: dict[int, object] = {}

        def append(n: int) -> None:
            record, blobs = _ev_append(log, base, n)
            try:  # n == 0 may not rebase (as a merge): the others moved the branch under it
                outcomes[n] = log.append(record, base=base, rebase=n != 0, blobs=blobs, placeable=frozenset({"ev"}))
            except ConflictError as exc:
                outcomes[n] = exc

        with log.env.write():
            workers = [threading.Thread(target=append, args=(n,)) for n in (1, 0, 2)]
            for worker in workers:
                worker.start()
                time.sleep(0.05)
        for worker in workers:
            worker.join(10)
        assert isinstance(outcomes[0], ConflictError) and "moved" in str(outcomes[0])
        assert all(isinstance(outcomes[n], tuple) for n in (1, 2))
    finally:
        log.close()
