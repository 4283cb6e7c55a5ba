"""Interop check: DuckDB's own iceberg extension reads UDR's published Iceberg tables like UDR does.

DuckDB's iceberg extension is on PyPI only for DuckDB 1.5.5 (package `duckdb-extension-iceberg`), while UDR
uses a newer DuckDB, so the reader runs in a separate environment:

    python -m venv /tmp/duck155 && /tmp/duck155/bin/pip install duckdb==1.5.5 duckdb-extension-iceberg \
        duckdb-extension-avro
    python bench/interop_duckdb_iceberg.py /tmp/duck155/bin/python

For every snapshot of a published table with appends (inline and Parquet), deletes and a keyed upsert, it
compares DuckDB's `count(*)` and `sum(a)` at that snapshot id with UDR's at the snapshot's commit.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
from common import remove, scratch
from pyiceberg.table import StaticTable

import udr

_READER = """
import duckdb, glob, json, sys
con = duckdb.connect()
for name in ("avro", "iceberg"):
    con.load_extension(glob.glob(f"{sys.prefix}/lib/python*/site-packages/duckdb_extension_{name}/extensions/*/"
                                 f"{name}.duckdb_extension")[0])
metadata, ids = sys.argv[1], json.loads(sys.argv[2])
print(json.dumps({sid: con.sql(f"SELECT count(*), coalesce(sum(a), 0) FROM iceberg_scan('{metadata}', "
                               f"snapshot_from_id={sid})").fetchone() for sid in ids}))
"""


def main(duck_python: str) -> None:
    root = scratch("duck-interop")
    try:
        with udr.open(root / "lake") as db:
            db.create_table("t", pa.schema([("a", pa.int64()), ("b", pa.int64())]), primary_key=["a"])
            db.append("t", pa.table({"a": np.arange(50_000), "b": np.arange(50_000) % 7}))
            db.append("t", pa.table({"a": [-1, -2], "b": [1, 2]}))
            db.delete("t", "b = 3")
            db.upsert("t", pa.table({"a": np.arange(0, 50_000, 10), "b": np.full(5_000, 9)}))
            db.delete("t", "b = 9 AND a % 20 = 0")
            db.publish_iceberg(root / "ice")
            table = StaticTable.from_metadata(str(root / "ice" / "t"))
            expected = {}
            for snap in table.metadata.snapshots:
                assert snap.summary is not None
                rows = db.read("t", at=snap.summary["udr.commit"])
                expected[str(snap.snapshot_id)] = [rows.num_rows, int(pa.compute.sum(rows.column("a")).as_py() or 0)]
        run = subprocess.run([duck_python, "-c", _READER, table.metadata_location, json.dumps(list(expected))],
                             capture_output=True, text=True, check=True)
        got = json.loads(run.stdout)
        for sid, want in expected.items():
            verdict = "same" if list(got[sid]) == want else "DIFFERENT"
            print(f"snapshot {sid}: udr {want} duckdb-iceberg {list(got[sid])} {verdict}")
        print("DuckDB iceberg extension reads every snapshot like UDR:",
              all(list(got[s]) == w for s, w in expected.items()))
    finally:
        remove(root)


if __name__ == "__main__":
    main(sys.argv[1])
