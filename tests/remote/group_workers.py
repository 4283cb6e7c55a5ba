"""Child processes of the remote consumer-group tests, run as `python group_workers.py member URL CACHE NAME LEASE`.

Each process is one "machine" with its own cache directory. It joins group `derive` of the lake in object
storage as member NAME (leases of LEASE seconds) and derives the tables of `tests/stream/member_workers.py`
exactly once, each batch's effect committed with its ack (`Transaction.ack`). Prints `ready` once
subscribed (waiting, after a restart, until the killed process's lease of the same name lapsed), then
`applied SEQ TABLE PARTITION` per batch, until killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

import udr

sys.path.insert(0, str(Path(__file__).parents[1] / "stream"))
from member_workers import derive  # the derivation the local member tests check

PARTITIONS = 4


async def member(url: str, cache: str, name: str, lease: float) -> None:
    with udr.open(url, cache=cache, group_lease=lease) as db:
        while True:
            try:
                sub = db.subscribe(["ev", "log"], group="derive", member=name, partitions=PARTITIONS)
                break
            except udr.GroupBusy:  # restarted after a kill: its old lease lapses within one lease time
                await anyio.sleep(lease / 4)
        await derive(db, sub)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command != "member":
        raise SystemExit(f"unknown command {command!r}")
    anyio.run(member, args[0], args[1], args[2], float(args[3]))
