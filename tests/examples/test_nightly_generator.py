"""The flagship's generated lake has the shape its README promises: 77 keyed compounds of mixed types,
reproducible from a seed, 0.5-3% of rows changing a night, some compounds gaining and losing parcels."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pyarrow.compute as pc

SOURCE = Path(__file__).resolve().parents[2] / "examples" / "nightly_refresh" / "lotitude.py"


def _lotitude() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lotitude", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("lotitude", module)
    spec.loader.exec_module(module)
    return module


def _changed(before: pa.Table, after: pa.Table) -> int:
    """Rows whose key is in both tables and whose values differ."""
    joined = before.join(after, "parcel_id", join_type="inner", right_suffix="_new")
    differs = None
    for name in before.column_names[1:]:
        flag = pc.fill_null(pc.not_equal(joined.column(name), joined.column(name + "_new")), False)
        differs = flag if differs is None else pc.or_(differs, flag)
    assert differs is not None
    return int(pc.sum(differs).as_py() or 0)


def test_generated_lake_shape_determinism_and_nightly_changes() -> None:
    lotitude = _lotitude()
    lake = lotitude.Lotitude(20_000, seed=3)
    first = lake.tables()
    assert len(first) == 77 and "parcels" in first and "assessments" in first
    assert all(t.column_names[0] == "parcel_id" and 2 <= t.num_columns <= 5 for t in first.values())
    kinds = {f.type for t in first.values() for f in t.schema}
    assert {pa.int64(), pa.float64(), pa.string(), pa.date32(), pa.bool_()} <= kinds
    assert first["parcels"].num_rows == 20_000
    assert lotitude.Lotitude(20_000, seed=3).tables()["zoning"].equals(first["zoning"])

    night = lake.night()
    rates = {name: _changed(first[name], night[name]) / first[name].num_rows for name in first}
    assert all(0.004 < rate < 0.035 for rate in rates.values()), rates
    assert night["parcels"].num_rows == 20_000 - len(set(first["parcels"].column("parcel_id").to_pylist())
                                                       - set(night["parcels"].column("parcel_id").to_pylist())) + 40
    churned = [name for name in first if first[name].column("parcel_id") != night[name].column("parcel_id")]
    assert "parcels" in churned and 5 <= len(churned) <= 20
