"""W7: change-stream latency and throughput across processes, against Redis Streams on loopback.

- Latency: this process commits 2,000 small transactions (10 rows each) one at a time; a subscriber in
  another process records, per batch, `time.time()` at delivery minus `batch.commit.time` (same clock).
  The commit time is taken inside the commit's LMDB write transaction, *before* its fsyncs, so this
  figure includes the durable commit itself; "after commit returned" subtracts the time the producer's
  `append` returned (an upper bound of when the commit became visible), isolating the stream's own cost.
- Deliveries/s: live (bounded by the producer's durable commit rate) and draining the same 2,000 commits
  as a backlog from a new subscriber.
- Reference: the same 2,000 messages through Redis Streams (XADD / XREAD BLOCK) on a redis-server this
  benchmark starts on port 6399 with persistence off (`--save '' --appendonly no`): not durable.
- Catch-up: a new subscriber process reads 1,000,000 change rows (100 commits x 10,000 rows) from the start.
- Idle: CPU used by a subscriber process waiting 2 s with nothing to deliver.

Run: python bench/bench_stream.py   (or python bench/run.py stream). Never asserts a time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pyarrow as pa
from common import remove, report, scratch

import udr

MESSAGES = 2_000
WARMUP = 20
ROWS = 10
CATCHUP_COMMITS = 100
CATCHUP_ROWS = 10_000
REDIS_PORT = 6399


def _rows(i: int, n: int = ROWS) -> pa.Table:
    return pa.table({"id": pa.array(np.arange(i * n, (i + 1) * n), pa.int64()),
                     "value": pa.array(np.full(n, float(i))), "tag": pa.array([f"m{i}"] * n)})


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)


def _expect(child: subprocess.Popen[str], word: str) -> None:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if line != word:
        raise RuntimeError(f"child said {line!r}, expected {word!r}")


def _result(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    out = json.loads(child.stdout.readline())
    child.wait()
    return out


# -- child processes -------------------------------------------------------------------------------------


async def udr_subscriber(lake: Path, count: int) -> None:
    """Receive `count` batches as they commit, then drain them again as a backlog; print the figures."""
    with udr.open(lake) as db:
        pa.table({"warm": [1]})  # one-time imports happen here, not in the first delivery
        delivered: list[tuple[int, float, float]] = []
        async with db.subscribe("t", start="latest") as sub:
            print("ready", flush=True)
            async for batch in sub:
                now = time.time()
                if not delivered:
                    before_first = batch.commit.parents[0]  # not main~count: flush commits count there
                delivered.append((batch.commit.seq, now, now - batch.commit.time.timestamp()))
                if len(delivered) == count:
                    break
            print("idle", flush=True)
            cpu, wall = time.process_time(), time.monotonic()
            with anyio.move_on_after(2):
                await sub.__anext__()
            idle_cpu = (time.process_time() - cpu) / (time.monotonic() - wall)
        started = time.perf_counter()
        drained = 0
        async with db.subscribe("t", start=before_first) as sub:
            async for _ in sub:
                drained += 1
                if drained == count:
                    break
        backlog_rate = drained / (time.perf_counter() - started)
    print(json.dumps({"delivered": delivered, "idle_cpu": idle_cpu, "backlog_rate": backlog_rate}), flush=True)


def redis_subscriber(count: int) -> None:
    """XREAD BLOCK `count` messages from stream `w7`; print per-message latencies."""
    import redis

    client = redis.Redis(port=REDIS_PORT)
    last = "$"
    latencies: list[float] = []
    times: list[float] = []
    print("ready", flush=True)
    while len(latencies) < count:
        for _, messages in client.xread({"w7": last}, block=0, count=100) or []:
            for mid, fields in messages:
                now = time.time()
                latencies.append(now - float(fields[b"t"]))
                times.append(now)
                last = mid
    print(json.dumps({"latencies": latencies, "times": times}), flush=True)


async def catchup(lake: Path, rows: int) -> None:
    """Read `rows` change rows from the start of the lake; print rows/s (process start excluded)."""
    with udr.open(lake) as db:
        pa.table({"warm": [1]})
        started = time.perf_counter()
        seen = 0
        async with db.subscribe("big", start="earliest") as sub:
            async for batch in sub:
                seen += batch.changes.num_rows
                if seen >= rows:
                    break
        elapsed = time.perf_counter() - started
    print(json.dumps({"rows": seen, "seconds": elapsed}), flush=True)


# -- the measurements ------------------------------------------------------------------------------------


def udr_latency() -> dict[str, float]:
    path = scratch("stream")
    lake = path / "lake"
    db = udr.open(lake)
    db.append("t", _rows(0))
    subscriber = _child("--udr-subscriber", str(lake), str(MESSAGES + WARMUP))
    _expect(subscriber, "ready")
    returned: dict[int, float] = {}
    commit_seconds: list[float] = []
    for i in range(1, MESSAGES + WARMUP + 1):
        started = time.perf_counter()
        commit = db.append("t", _rows(i), message=f"m{i}")
        commit_seconds.append(time.perf_counter() - started)
        returned[commit.seq] = time.time()
    _expect(subscriber, "idle")
    figures = _result(subscriber)
    db.close()
    remove(path)
    delivered = figures["delivered"][WARMUP:]
    latencies = [lat for _, _, lat in delivered]
    after_return = [at - returned[seq] for seq, at, _ in delivered]
    span = delivered[-1][1] - delivered[0][1]
    return {
        "p50": _quantile(latencies, 0.5) * 1000, "p99": _quantile(latencies, 0.99) * 1000,
        "visible_p50": _quantile(after_return, 0.5) * 1000, "visible_p99": _quantile(after_return, 0.99) * 1000,
        "commit_p50": _quantile(commit_seconds[WARMUP:], 0.5) * 1000,
        "live_rate": (len(delivered) - 1) / span, "backlog_rate": figures["backlog_rate"],
        "idle_cpu": figures["idle_cpu"] * 100,
    }


def redis_latency() -> dict[str, float] | None:
    import redis

    server_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(server_bin).exists():
        print("redis-server not found: skipping the Redis Streams reference", flush=True)
        return None
    server = subprocess.Popen([server_bin, "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=REDIS_PORT)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.delete("w7")
        subscriber = _child("--redis-subscriber", str(MESSAGES + WARMUP))
        _expect(subscriber, "ready")
        time.sleep(0.2)  # XREAD from "$" must be blocking before the first XADD
        for i in range(MESSAGES + WARMUP):
            payload = json.dumps(_rows(i).to_pylist())
            client.xadd("w7", {"t": repr(time.time()), "rows": payload})
        figures = _result(subscriber)
    finally:
        server.terminate()
        server.wait()
    latencies = figures["latencies"][WARMUP:]
    times = figures["times"][WARMUP:]
    return {"p50": _quantile(latencies, 0.5) * 1000, "p99": _quantile(latencies, 0.99) * 1000,
            "live_rate": (len(times) - 1) / (times[-1] - times[0])}


def catchup_rate() -> float:
    path = scratch("catchup")
    lake = path / "lake"
    with udr.open(lake) as db:
        rng = np.random.default_rng(7)
        for i in range(CATCHUP_COMMITS):
            ids = np.arange(i * CATCHUP_ROWS, (i + 1) * CATCHUP_ROWS)
            db.append("big", pa.table({"id": ids, "a": rng.integers(0, 1 << 40, CATCHUP_ROWS),
                                       "b": rng.random(CATCHUP_ROWS), "c": pa.array([f"r{j % 97}" for j in ids])}))
    reader = _child("--catchup", str(lake), str(CATCHUP_COMMITS * CATCHUP_ROWS))
    figures = _result(reader)
    remove(path)
    return float(figures["rows"] / figures["seconds"])


def main() -> None:
    ours = udr_latency()
    theirs = redis_latency()
    rows_per_second = catchup_rate()
    ref = theirs or {}
    report("W7", "commit -> delivery p50 (2,000 x 10-row commits)", ours["p50"], "ms", baseline=ref.get("p50"),
           baseline_name="Redis XADD->XREAD", target="<= 2 ms", ok=ours["p50"] <= 2)
    report("W7", "commit -> delivery p99", ours["p99"], "ms", baseline=ref.get("p99"),
           baseline_name="Redis XADD->XREAD", target="<= 10 ms", ok=ours["p99"] <= 10)
    report("W7", "commit returned -> delivery p50", ours["visible_p50"], "ms", target="reported")
    report("W7", "commit returned -> delivery p99", ours["visible_p99"], "ms", target="reported")
    report("W7", "producer durable commit time p50", ours["commit_p50"], "ms", target="reported")
    report("W7", "deliveries/s live (producer-bound)", ours["live_rate"], "1/s", baseline=ref.get("live_rate"),
           baseline_name="Redis", target=">= 1000/s", ok=ours["live_rate"] >= 1000)
    report("W7", "deliveries/s draining a 2,000-commit backlog", ours["backlog_rate"], "1/s",
           baseline=ref.get("live_rate"), baseline_name="Redis live", target=">= 1000/s",
           ok=ours["backlog_rate"] >= 1000)
    report("W7", "catch-up: 1M change rows from the start", rows_per_second, "rows/s", target=">= 1,000,000/s",
           ok=rows_per_second >= 1_000_000)
    report("W7", "idle subscriber CPU", ours["idle_cpu"], "%", target="~0%", ok=ours["idle_cpu"] < 1)
    print()
    print(f"{'':28}{'UDR':>12}{'Redis':>12}{'ratio':>10}")
    for name, key in (("p50 latency (ms)", "p50"), ("p99 latency (ms)", "p99"), ("deliveries/s live", "live_rate")):
        other = ref.get(key)
        ratio = f"{ours[key] / other:.1f}x" if other else "-"
        print(f"{name:28}{ours[key]:12.2f}{other if other is not None else float('nan'):12.2f}{ratio:>10}")
    print(f"{'commit returned->delivery p50 (ms)':28}{ours['visible_p50']:12.2f}")
    print(f"{'backlog deliveries/s':28}{ours['backlog_rate']:12.0f}")
    print(f"{'catch-up rows/s':28}{rows_per_second:12.0f}")
    print(f"{'idle subscriber CPU (%)':28}{ours['idle_cpu']:12.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--udr-subscriber":
        anyio.run(udr_subscriber, Path(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--redis-subscriber":
        redis_subscriber(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--catchup":
        anyio.run(catchup, Path(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
