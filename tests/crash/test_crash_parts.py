"""SIGKILL an exactly-once consumer between and inside the parts of one large commit: every part's output
commits exactly once, so no row is repeated or skipped, and the lake verifies clean."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from parts_worker import setup

import udr

WORKER = Path(__file__).with_name("parts_worker.py")
ROWS, MAX_ROWS = 40_000, 1_000


def _consumer(lake: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKER), str(lake), str(MAX_ROWS), "0.01"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _acked(line: str) -> int:
    word, part, parts = line.split()
    assert (word, parts) == ("acked", str(ROWS // MAX_ROWS)), line
    return int(part)


def test_a_consumer_killed_between_parts_resumes_at_the_next_part(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    setup(lake, ROWS)
    rng = random.Random(16)
    acked: list[int] = []
    # First kill: just after the third part's ack was printed (between parts); second: at a random moment
    # after the next part's ack, most often inside a part's transaction.
    for reads, pause in ((3, 0.0), (1, rng.uniform(0.0, 0.1))):
        child = _consumer(lake)
        assert child.stdout is not None
        for _ in range(reads):
            acked.append(_acked(child.stdout.readline()))
        time.sleep(pause)
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        # Only complete lines were promised: a line cut off by the kill was not.
        acked.extend(_acked(line) for line in out.split("\n")[:-1])
    child = _consumer(lake)
    try:
        out, err = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        raise AssertionError(f"the last consumer hung after {acked}: {out[-500:]} {err[-2000:]}") from None
    assert child.returncode == 0, err[-2000:]
    resumed = [_acked(line) for line in out.splitlines()]
    assert resumed[-1] == ROWS // MAX_ROWS - 1
    # Every printed ack was durable: each run went on right after the last part acknowledged before it.
    assert acked[:3] == [0, 1, 2] and acked == list(range(len(acked)))
    assert resumed[0] >= len(acked)
    with udr.open(lake) as db:
        seen = db.sql("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM seen").fetchall()[0]
        assert seen == (ROWS, ROWS, 0, ROWS - 1)
        per_part = db.sql("SELECT part, count(*), min(id) FROM seen GROUP BY part ORDER BY part").fetchall()
        assert per_part == [(p, MAX_ROWS, p * MAX_ROWS) for p in range(ROWS // MAX_ROWS)]
        assert db.groups()[0].lag_rows == 0
        assert db.verify().ok
