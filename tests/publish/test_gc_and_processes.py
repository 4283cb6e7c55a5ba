"""Published tables and gc, a reader process polling during publishes, and the CLI (`--follow` included)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from iceberg_readers import check_every_snapshot
from pyiceberg.table import StaticTable

import udr


def _inline_copies(dest: Path) -> list[str]:
    table = StaticTable.from_metadata(str(dest / "t"))
    return [task.file.file_path for task in table.scan().plan_files()]


def test_gc_keeps_the_parquet_copies_of_inline_rows_until_unpublish(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        db.append("t", pa.table({"a": [1, 2, 3]}))  # small: stored inline in the log
        db.publish_iceberg(dest)
        (copy,) = _inline_copies(dest)
        path = Path(copy.removeprefix("file://"))
        assert path.exists() and db.gc() == 0 and path.exists()
        check_every_snapshot(db, dest, "t")
        # A second destination shares the copy; unpublishing one keeps it for the other.
        db.publish_iceberg(tmp_path / "ice2")
        assert db.unpublish_iceberg(dest) == ["t"] and not (dest / "t").exists()
        assert db.gc() == 0 and path.exists()
        db.unpublish_iceberg(tmp_path / "ice2")
        assert db.gc() > 0 and not path.exists()
        assert db.verify().ok


def test_gc_between_publishes_keeps_everything_a_published_version_reads(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        for n in range(5):
            db.append("t", pa.table({"a": [n] * 10}))
            db.publish_iceberg(dest)
            db.gc()
        db.overwrite("t", pa.table({"a": np.arange(30_000)}))
        db.publish_iceberg(dest)
        db.gc()
        check_every_snapshot(db, dest, "t")


def test_expire_and_gc_keep_every_version_a_published_table_reads_until_unpublish(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        for n in range(4):
            db.overwrite("t", pa.table({"a": np.arange(n * 20_000, (n + 1) * 20_000)}))
        db.publish_iceberg(dest)
        db.overwrite("t", pa.table({"a": np.arange(5)}))  # not published: may expire
        db.set_retention(keep_commits=1)
        report = db.expire()
        assert (report.expired, report.protected) == (0, 4)  # the four published versions are kept
        db.gc()
        assert check_every_snapshot(db, dest, "t") == 4
        db.unpublish_iceberg(dest)
        assert db.expire().expired == 4
        freed = db.gc()
        assert freed > 0 and db.verify().ok


_READER = textwrap.dedent("""
    import sys, time
    from pyiceberg.table import StaticTable
    dest, seconds = sys.argv[1], float(sys.argv[2])
    print("READY", flush=True)
    # Reads for `seconds`, and on until it has seen three versions (a busy machine publishes slowly).
    seen, end = set(), time.time() + seconds
    while time.time() < end or (len(seen) < 3 and time.time() < end + 60):
        try:
            table = StaticTable.from_metadata(dest)
        except FileNotFoundError:
            continue
        snap = table.current_snapshot()
        rows = table.scan().to_arrow().num_rows
        if rows != int(snap.summary["total-records"]):
            print("HALF", snap.snapshot_id, rows, snap.summary["total-records"], flush=True)
            sys.exit(1)
        seen.add(snap.snapshot_id)
    print("SEEN", len(seen), flush=True)
""")


def test_a_reader_process_never_sees_a_half_published_version(tmp_path: Path) -> None:
    dest = tmp_path / "ice"
    with udr.open(tmp_path / "lake") as db:
        db.append("t", pa.table({"a": np.arange(1000)}))
        db.publish_iceberg(dest)
        reader = subprocess.Popen([sys.executable, "-c", _READER, str(dest / "t"), "4"], stdout=subprocess.PIPE,
                                  text=True)
        assert reader.stdout is not None and reader.stdout.readline() == "READY\n"
        # Publishing goes on for as long as the reader reads (its start-up, slow on a busy machine, excluded).
        deadline = time.time() + 120
        n = 0
        while reader.poll() is None and time.time() < deadline:
            n += 1
            db.append("t", pa.table({"a": np.arange(n)}))
            db.delete("t", f"a = {n}")
            db.publish_iceberg(dest)
        out, _ = reader.communicate(timeout=60)
    assert reader.returncode == 0, out
    assert out.startswith("SEEN") and int(out.split()[1]) > 1


def _udr(lake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "udr.cli", "--lake", str(lake), *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_cli_publish_follow_and_unpublish(tmp_path: Path) -> None:
    lake, dest = tmp_path / "lake", tmp_path / "ice"
    with udr.open(lake) as db:
        db.append("t", pa.table({"a": [1]}))
    follower = subprocess.Popen([sys.executable, "-m", "udr.cli", "--lake", str(lake), "publish", "iceberg",
                                 str(dest), "--table", "t", "--follow"], stdout=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None and "t +1 snapshots" in follower.stdout.readline()
        with udr.open(lake) as db:
            db.append("t", pa.table({"a": [2, 3]}))
            deadline = time.time() + 30
            while StaticTable.from_metadata(str(dest / "t")).scan().to_arrow().num_rows != 3:
                assert time.time() < deadline, "--follow did not publish the new commit"
                time.sleep(0.05)
            check_every_snapshot(db, dest, "t")
    finally:
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=30)
    assert follower.returncode == 0
    done = _udr(lake, "unpublish", "iceberg", str(dest))
    assert done.returncode == 0 and "unpublished 1 table" in done.stdout
    assert not (dest / "t").exists()
    missing = _udr(lake, "publish", "iceberg", str(dest), "--table", "nope")
    assert missing.returncode != 0 and "nope" in missing.stderr


