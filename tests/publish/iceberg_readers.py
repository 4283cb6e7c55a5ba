"""Readers of published Iceberg tables, used to compare what they return with what UDR returns."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
from pyiceberg.table import StaticTable

import udr


def bag(table: pa.Table, columns: list[str]) -> Counter[tuple[object, ...]]:
    """The rows of `table` (only `columns`, in that order) as a multiset."""
    return Counter(zip(*[table.column(c).to_pylist() for c in columns])) if table.num_rows else Counter()


def check_every_snapshot(db: udr.Lake, dest: Path, table: str, *, with_polars: bool = True) -> int:
    """Assert that pyiceberg, polars and Daft (a third engine, reading by Parquet field ids) read, at every
    snapshot of the published table, exactly the rows UDR reads at the snapshot's commit; return the
    snapshots checked."""
    import daft
    import polars as pl

    ice = StaticTable.from_metadata(str(dest / table))
    for snap in ice.metadata.snapshots:
        commit = snap.summary["udr.commit"] if snap.summary is not None else None
        assert commit is not None
        exists = table in db.tables(at=commit)
        expected = db.read(table, at=commit) if exists else None
        got = ice.scan(snapshot_id=snap.snapshot_id).to_arrow()
        if expected is None:
            assert got.num_rows == 0
            continue
        columns = expected.column_names
        assert sorted(got.column_names) == sorted(columns), commit
        assert bag(got, columns) == bag(expected, columns), f"pyiceberg differs at {commit[:10]}"
        if with_polars:
            frame = pl.scan_iceberg(ice, snapshot_id=snap.snapshot_id).collect().to_arrow()
            assert bag(frame, columns) == bag(expected, columns), f"polars differs at {commit[:10]}"
            frame = daft.read_iceberg(ice, snapshot_id=snap.snapshot_id).to_arrow()
            assert bag(frame, columns) == bag(expected, columns), f"Daft differs at {commit[:10]}"
    return len(ice.metadata.snapshots)
