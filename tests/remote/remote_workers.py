"""Child processes of the remote-lake tests, run as `python remote_workers.py COMMAND URL CACHE ...`.

Each process is one "machine": it opens the lake in object storage through its own cache directory and
finds the S3 endpoint and credentials in the environment it inherits. Acknowledgements go to stdout, one line
each, flushed before the next step, so a parent that kills the process knows exactly which commits were
promised.

Commands:
- `write URL CACHE NAME N`: N commits, each appending 10 rows (writer NAME, commit number) to the multiset
  table `events`; prints `acked <commit id>` after each. A commit that conflicts is retried.
- `churn URL CACHE NAME`: like `write`, forever, every fifth commit adding a chunk file (the SIGKILL target).
- `read URL CACHE N`: subscribes to `events` from the start and prints `got <commit id> <rows>` for each of
  the first N commits that change it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from itertools import count

import anyio
import pyarrow as pa

import udr

ROWS = 10
BIG = 20_000  # above the inline limit: a Parquet chunk file


def _batch(name: str, n: int, rows: int) -> pa.Table:
    return pa.table({"writer": pa.array([name] * rows), "n": pa.array([n] * rows, pa.int64()),
                     "i": pa.array(range(rows), pa.int64())})


def _commit(db: udr.Lake, name: str, n: int, rows: int) -> str:
    while True:
        try:
            return db.append("events", _batch(name, n, rows)).id
        except udr.ConflictError:
            continue  # retryable: the other writer kept winning; go again


def write(url: str, cache: str, name: str, n: str) -> None:
    with udr.open(url, cache=cache, create=False) as db:
        for i in range(int(n)):
            print("acked", _commit(db, name, i, ROWS), flush=True)


def churn(url: str, cache: str, name: str) -> None:
    with udr.open(url, cache=cache, create=False) as db:
        for i in count():
            print("acked", _commit(db, name, i, BIG if i % 5 == 4 else ROWS), flush=True)


def read(url: str, cache: str, n: str) -> None:
    async def follow() -> None:
        with udr.open(url, cache=cache, create=False) as db:
            print("ready", flush=True)
            seen = 0
            async with db.subscribe("events", start="earliest") as sub:
                async for batch in sub:
                    print("got", batch.commit.id, batch.changes.num_rows, flush=True)
                    seen += 1
                    if seen == int(n):
                        return

    anyio.run(follow)


if __name__ == "__main__":
    commands: dict[str, Callable[..., None]] = {"write": write, "churn": churn, "read": read}
    commands[sys.argv[1]](*sys.argv[2:])
