"""G1: a consumer group's throughput with 4 members against 1 member, each batch costing 5 ms of work.

A lake holds one unkeyed table; COMMITS single-row appends are committed while the members are joined but
paused, so each member's first look sees the whole backlog and the group's final membership (no rebalance
during the measurement). Then every member is told to go: for each batch it sleeps 5 ms (the work: a
blocking call, as a handler doing I/O would make) and acknowledges it durably (`await sub.ack`). The
figure is batches per second from "go" to the last ack, counted from the members' output. With 8
partitions and unkeyed batches going to partition `seq mod 8`, 4 members own 2 partitions each.

Baseline: the same with one member, in the same run; rounds alternate (1, 4, 1, 4, 1, 4) and the median of each
is reported. Target: >= 3.5x.

Run: python bench/bench_groups.py   (or python bench/run.py groups). Never asserts a time.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
from common import remove, report, scratch

import udr

COMMITS = 400
WORK_SECONDS = 0.005
ROUNDS = 3


async def _member(lake: Path, name: str) -> None:
    with udr.open(lake) as db:
        async with db.subscribe("ev", group="g1", member=name, start="latest") as sub:
            print("ready", flush=True)
            sys.stdin.readline()  # "go"
            async for batch in sub:
                time.sleep(WORK_SECONDS)  # blocking work on purpose: a handler doing I/O
                await sub.ack(batch)
                print("a", flush=True)


def _round(members: int) -> float:
    lake = scratch("g1") / "lake"
    try:
        with udr.open(lake) as db:
            db.append("ev", {"x": [0]})
        children = [subprocess.Popen([sys.executable, __file__, "member", str(lake), f"m{i}"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True) for i in range(members)]
        try:
            for child in children:
                assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            with udr.open(lake) as db:
                for i in range(COMMITS):
                    db.append("ev", {"x": [i]})
            acked = threading.Semaphore(0)

            def count(child: subprocess.Popen[str]) -> None:
                assert child.stdout is not None
                for _ in child.stdout:
                    acked.release()

            readers = [threading.Thread(target=count, args=(c,), daemon=True) for c in children]
            for reader in readers:
                reader.start()
            start = time.perf_counter()
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
            for _ in range(COMMITS):
                acked.acquire()
            return COMMITS / (time.perf_counter() - start)
        finally:
            for child in children:
                child.kill()
                child.wait()
    finally:
        remove(lake.parent)


def main() -> None:
    one: list[float] = []
    four: list[float] = []
    for _ in range(ROUNDS):
        one.append(_round(1))
        four.append(_round(4))
    print(f"G1 rounds: 1 member {[round(x) for x in one]} batches/s, 4 members {[round(x) for x in four]} batches/s")
    base, value = statistics.median(one), statistics.median(four)
    report("G1", "group of 4 members, 5 ms work per batch", value, "b/s", baseline=base,
           baseline_name="1 member", target=">= 3.5x", ok=value / base >= 3.5)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "member":
        anyio.run(_member, Path(sys.argv[2]), sys.argv[3])
    else:
        main()
