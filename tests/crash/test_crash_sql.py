"""SIGKILL a process running multi-statement `execute` scripts: each script commits whole or not at all."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import udr

# Each script moves money between accounts in two UPDATEs and logs the move in a third table: the total
# stays 1000 and the log has one row per committed script, whatever moment the writer dies at.
WRITER = """
import sys, udr
with udr.open(sys.argv[1]) as db:
    i = 0
    while True:
        i += 1
        a, b = i % 10, (i * 7 + 3) % 10
        db.execute(f"UPDATE acc SET bal = bal - 1 WHERE id = {a}; UPDATE acc SET bal = bal + 1 WHERE id = {b};"
                   f"INSERT INTO moves VALUES ({i}, {a}, {b})")
        print(i, flush=True)
"""


def test_killed_sql_writer_leaves_whole_scripts_only(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with udr.open(lake) as db:
        db.execute("CREATE TABLE acc (id INTEGER PRIMARY KEY, bal INTEGER);"
                   "INSERT INTO acc SELECT i, 100 FROM range(10) r(i);"
                   "CREATE TABLE moves (n INTEGER PRIMARY KEY, src INTEGER, dst INTEGER)")
    committed = 0
    for delay in (0.0, 0.3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(lake)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        # Kill mid-stream, whatever the machine's load: after the writer acknowledged a few scripts.
        first = [proc.stdout.readline() for _ in range(3)]
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        acknowledged = [int(line) for line in "".join(first).split() + (proc.communicate()[0] or "").split()]
        with udr.open(lake) as db:
            assert db.query("SELECT sum(bal) AS s FROM acc").column("s").to_pylist() == [1000]
            moves = db.query("SELECT count(*) AS n FROM moves").column("n").to_pylist()[0]
            # Every acknowledged script is there; at most the one in flight beyond them.
            assert len(acknowledged) <= moves <= len(acknowledged) + 1
            commits_with_moves = [c for c in db.log() if "moves" in c.tables]
            assert all(set(c.tables) == {"acc", "moves"} for c in commits_with_moves if c.message.startswith("UPDATE"))
            assert db.verify().ok
            committed += moves
            db.execute("DELETE FROM moves")  # the next round's writer numbers from 1 again
    assert committed > 0  # the writers got far enough to be killed mid-stream
