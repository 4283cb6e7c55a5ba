"""udr.log.memory: `MemoryLogStore` behaves as the LMDB `LogStore` on random sequences of commits, ref moves,
blob writes and garbage collection (a differential test), and holds nothing on disk but chunk files."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from udr.errors import UdrError
from udr.log.commits import CommitRecord, Fragment, TableOp
from udr.log.format import LOG_DATA_FILE, LOG_DIR, BlobId, BlobKind, ChunkId, CommitId
from udr.log.hashing import content_id
from udr.log.memory import MemoryLogStore
from udr.log.reflog import Reason
from udr.log.refs import branch_key, tag_key
from udr.log.store import LogStore

BRANCHES = ("main", "dev", "ops")
TABLES = ("a", "b", "c")
Outcome = tuple[str, object]


def _schema(n: int) -> tuple[BlobId, bytes]:
    payload = f"schema {n}".encode()
    return BlobId(content_id(payload)), payload


def _by_seq(log: LogStore, seq: int) -> CommitId:
    cid = log.commit_at_seq(seq)
    assert cid is not None
    return cid


def _seq(log: LogStore, cid: CommitId | None) -> int | None:
    return None if cid is None else log.get_commit(cid).seq


def _commit(log: LogStore, rng: random.Random) -> Outcome:
    branch = rng.choice(sorted(log.branches()) if rng.random() < 0.8 and log.branches() else BRANCHES)
    head = log.head(branch)
    stale = rng.random() < 0.3 and log.last_seq() > 0
    base = _by_seq(log, rng.randrange(log.last_seq() + 1)) if stale or head is None else head
    schema, payload = _schema(rng.randrange(3))
    table = rng.choice(TABLES)
    if rng.random() < 0.5:
        op = TableOp(create=True, schema=schema)
    else:
        chunk = log.chunks.put(f"rows {rng.randrange(5)}".encode())
        log.register_intents([chunk])
        op = TableOp(add=(Fragment(chunk=ChunkId(chunk), rows=1, inline=False, schema=schema),))
    record = CommitRecord(parents=(base,), seq=0, branch=branch, time_us=0, author="t",
                          message=f"m{rng.randrange(100)}", tables={table: op})
    _, final = log.append(record, base=base, rebase=rng.random() < 0.5,
                            blobs={schema: (BlobKind.SCHEMA, payload)}, placeable=frozenset({table}))
    return "commit", (final.seq, _seq(log, final.parents[0]))


def _move(log: LogStore, rng: random.Random) -> Outcome:
    tag = rng.random() < 0.3
    name = rng.choice(("v1", "v2")) if tag else rng.choice(BRANCHES)
    key = tag_key(name) if tag else branch_key(name)
    current = (log.tags() if tag else log.branches()).get(name)
    expected = current if rng.random() < 0.7 else _by_seq(log, rng.randrange(log.last_seq() + 1))
    new = None if rng.random() < 0.2 else _by_seq(log, rng.randrange(log.last_seq() + 1))
    log.update_ref(key, new, expected, Reason("reset", f"move {name}", "t"))
    return "move", (name, _seq(log, new))


def _blobs(log: LogStore, rng: random.Random) -> Outcome:
    blob, payload = _schema(rng.randrange(6))
    if rng.random() < 0.5:
        log.put_blobs_now({blob: (BlobKind.SCHEMA, payload)})
    return "blob", (log.has_blob(blob), log.blob_size(blob) > 0)


def _gc(log: LogStore, rng: random.Random) -> Outcome:
    log.chunks.put(f"orphan {rng.randrange(3)}".encode())
    log.collect_garbage()
    return "gc", sorted(log.chunks.all_ids())


STEPS: tuple[Callable[[LogStore, random.Random], Outcome], ...] = (_commit, _commit, _commit, _move, _blobs, _gc)


def _run(log: LogStore, seed: int) -> list[Outcome]:
    rng = random.Random(seed)
    outcomes: list[Outcome] = []
    for _ in range(40):
        step = rng.choice(STEPS)
        try:
            outcomes.append(step(log, rng))
        except UdrError as exc:  # the same refusal, with the same class, from both stores
            outcomes.append(("error", type(exc).__name__))
    return outcomes


def _state(log: LogStore) -> dict[str, object]:
    return {
        "branches": {name: _seq(log, cid) for name, cid in log.branches().items()},
        "tags": {name: _seq(log, cid) for name, cid in log.tags().items()},
        "commits": [(seq, log.get_commit(cid).branch, log.get_commit(cid).message,
                     [_seq(log, p) for p in log.get_commit(cid).parents], sorted(log.get_commit(cid).tables))
                    for seq, cid in log.commits_from(0)],
        "moves": [(m.position, m.ref, _seq(log, m.old), _seq(log, m.new), m.reason.action, m.reason.message)
                  for m in log.ref_moves(newest_first=False)],
        "chunks": sorted(log.referenced_chunks()),
    }


@pytest.mark.parametrize("seed", range(25))
def test_memory_and_lmdb_logs_agree_on_random_sequences(tmp_path: Path, seed: int) -> None:
    disk, memory = LogStore(tmp_path / "lake"), MemoryLogStore()
    try:
        outcomes = _run(disk, seed)
        assert _run(memory, seed) == outcomes
        assert _state(memory) == _state(disk)
        assert any(kind == "commit" for kind, _ in outcomes)
    finally:
        disk.close()
        memory.close()


def test_a_memory_log_keeps_nothing_once_closed() -> None:
    log = MemoryLogStore()
    scratch = log.root
    log.chunks.put(b"some rows")
    assert log.head("main") is not None
    assert {p.name for p in scratch.iterdir()} >= {"chunks"}
    assert not (scratch / LOG_DIR / LOG_DATA_FILE).exists()  # the log itself lives in dicts
    log.close()
    assert not scratch.exists()
    with pytest.raises(UdrError, match="closed"):
        log.head("main")
