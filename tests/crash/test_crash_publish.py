"""A publisher SIGKILLed at random moments: the published table stays readable at a complete version, and
publishing again completes it with every snapshot reading what UDR reads."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pyiceberg.table import StaticTable

import udr

_PUBLISHER = textwrap.dedent("""
    import sys, udr
    with udr.open(sys.argv[1]) as db:
        print("ready", flush=True)
        db.publish_iceberg(sys.argv[2])
""")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_killed_publish_leaves_a_complete_version_and_publishing_again_finishes(
        tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")
    rng = random.Random(seed)
    lake, dest = tmp_path / "lake", tmp_path / "ice"
    with udr.open(lake) as db:
        db.append("t", pa.table({"a": np.arange(30_000), "b": np.arange(30_000) % 50}))
        db.publish_iceberg(dest)
        for n in range(60):
            if n % 3:
                db.append("t", pa.table({"a": [n], "b": [n % 50]}))
            else:
                db.delete("t", f"b = {n % 50}")
    proc = subprocess.Popen([sys.executable, "-c", _PUBLISHER, str(lake), str(dest)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    time.sleep(rng.uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    with udr.open(lake) as db:
        table = StaticTable.from_metadata(str(dest / "t"))
        current = table.current_snapshot()
        assert current is not None and current.summary is not None
        # Whatever version a reader finds is complete: its rows are UDR's at that commit.
        assert table.scan().to_arrow().num_rows == db.row_count("t", at=current.summary["udr.commit"])
        db.publish_iceberg(dest)
        table = StaticTable.from_metadata(str(dest / "t"))
        assert len(table.metadata.snapshots) == len(db.log(table="t"))
        for snap in table.metadata.snapshots[::7]:
            assert snap.summary is not None
            assert table.scan(snapshot_id=snap.snapshot_id).to_arrow().num_rows == db.row_count(
                "t", at=snap.summary["udr.commit"])
        assert table.scan().to_arrow().num_rows == db.row_count("t")
