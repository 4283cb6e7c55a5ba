"""The nightly job of a Lotitude-like lake, write-audit-publish on a staging branch.

    python examples/nightly_refresh/nightly.py [--parcels N] [--nights K] [--lake DIR]

One night (`refresh`):
1. branch `staging` from main (a ref: nothing is copied);
2. refresh all 77 compounds in one transaction with a keyed `tx.overwrite` each: the sources deliver whole
   tables, UDR stores only the rows that differ (plus the keys that disappeared);
3. rebuild the `master` scoring table with SQL, `CREATE OR REPLACE TABLE master AS SELECT ... JOIN ...`:
   master is keyed, so this too stores only the master rows whose score or features changed;
4. check staging with SQL (one master row per parcel, no null key or score, scores within 0-100, no
   sudden loss of parcels); a failed check deletes the staging branch and main never sees the night;
5. publish every table at once: `db.merge("staging", into="main")` (a fast-forward, one ref update);
6. report what changed per table (inserted, updated, deleted) and the bytes the night added, delete staging.

Run as a script it is the demo: a first load, a few nights, one of them with a broken feed that the checks
stop, and a comparison with doing the same on Delta Lake.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from lotitude import PARCELS, Lotitude

import udr

STAGING = "staging"
# The score reads 15 compounds, joined to the parcel registry; a parcel missing from one gets nulls.
MASTER_QUERY = """SELECT p.parcel_id, p.borough, p.lot_area_sqft, a.market_value, z.zoning_code, z.max_far,
    f.flood_zone, s.last_sale_price, s.last_sale_date, e.energy_star_score, t.subway_distance_m, sz.school_rating,
    ar.unused_far, coalesce(hv.open_violations, 0) + coalesce(dv.open_dob_violations, 0) AS open_violations,
    coalesce(bp.open_permits, 0) AS open_permits, coalesce(c.complaints_12m, 0) AS complaints_12m,
    coalesce(tl.lien_amount, 0) AS lien_amount, coalesce(ev.evictions_5y, 0) AS evictions_5y,
    coalesce(rs.stabilized_units, 0) AS stabilized_units,
    CAST(greatest(0, least(100, round(40
        + 15 * least(coalesce(ar.unused_far, 0), 6) / 6
        + 10 * least(coalesce(z.max_far, 0), 12) / 12
        + 10 * (1 - least(coalesce(t.subway_distance_m, 2000), 2000) / 2000)
        + 0.1 * coalesce(sz.school_rating, 50)
        + 5 * coalesce(z.commercial_overlay, false)::INTEGER
        - 15 * coalesce(f.flood_zone IN ('AE', 'VE', 'A', 'AO'), false)::INTEGER
        - 2 * least(coalesce(hv.open_violations, 0) + coalesce(dv.open_dob_violations, 0), 10)
        - 10 * coalesce(tl.lien_sale_list, false)::INTEGER
        - least(coalesce(ev.evictions_5y, 0), 5)
        - 5 * (coalesce(rs.stabilized_units, 0) > 0)::INTEGER))) AS INTEGER) AS score
FROM parcels p
    LEFT JOIN assessments a USING (parcel_id) LEFT JOIN zoning z USING (parcel_id)
    LEFT JOIN flood_zones f USING (parcel_id) LEFT JOIN sales s USING (parcel_id)
    LEFT JOIN building_permits bp USING (parcel_id) LEFT JOIN hpd_violations hv USING (parcel_id)
    LEFT JOIN dob_violations dv USING (parcel_id) LEFT JOIN complaints_311 c USING (parcel_id)
    LEFT JOIN tax_liens tl USING (parcel_id) LEFT JOIN energy_benchmarks e USING (parcel_id)
    LEFT JOIN transit_access t USING (parcel_id) LEFT JOIN school_zones sz USING (parcel_id)
    LEFT JOIN air_rights ar USING (parcel_id) LEFT JOIN evictions ev USING (parcel_id)
    LEFT JOIN rent_stabilization rs USING (parcel_id)
ORDER BY p.parcel_id"""
# A night may lose parcels (merged lots), but not this share of them at once: that is a broken feed.
MAX_LOSS = 0.01


@dataclass(frozen=True, slots=True)
class NightReport:
    """What one night did: published or not (and why), the net changes per table, the bytes it added."""

    label: str
    published: bool
    reason: str = ""
    changes: dict[str, udr.TableChange] = field(default_factory=dict)
    bytes_added: int = 0
    seconds: float = 0.0
    commit: str = ""

    def lines(self) -> list[str]:
        """The report as printed."""
        if not self.published:
            return [f"{self.label}: NOT published, main untouched: {self.reason} ({self.seconds:.1f} s)"]
        ins, upd, dele = (sum(getattr(c, f) for c in self.changes.values()) for f in ("inserted", "updated", "deleted"))
        out = [(f"{self.label}: published {self.commit} in {self.seconds:.1f} s: {len(self.changes)} tables changed, "
                f"{ins:,} rows inserted, {upd:,} updated, {dele:,} deleted; {self.bytes_added / 1e6:.1f} MB added")]
        for name in ["parcels", "assessments", "master"]:
            if name in self.changes:
                c = self.changes[name]
                out.append(f"    {name:12} +{c.inserted:,} ~{c.updated:,} -{c.deleted:,}")
        return out


def lake_bytes(path: Path) -> int:
    """Bytes of every file in the lake directory (LMDB files by their allocated size)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(root, name))
            total += min(st.st_size, st.st_blocks * 512)
    return total


def refresh(db: udr.Lake, sources: dict[str, pa.Table], *, label: str) -> NightReport:
    """Load `sources` (every compound's full content) and rebuild master, write-audit-publish.

    Args:
        db: the lake; main holds the published tables (none before the first load).
        sources: compound name -> its whole table as delivered tonight (keyed by `parcel_id`).
        label: names the night in commit messages and the report.

    Returns:
        What the night changed. When a check fails, or a write is refused (a duplicate or null key in a
        feed, a changed schema), the staging branch is deleted, main is untouched and the report says why.
    """
    start = time.perf_counter()
    bytes_before = lake_bytes(db.path)
    if STAGING in db.branches():
        db.delete_branch(STAGING, force=True)  # a crashed night's leftovers
    db.create_branch(STAGING)
    try:
        changes = _write(db, sources, label)
        problem = check(db)
    except udr.UdrError as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        db.delete_branch(STAGING, force=True)
        return NightReport(label, False, reason=problem, seconds=time.perf_counter() - start)
    published = db.merge(STAGING, into="main", message=f"publish {label}")
    db.delete_branch(STAGING)
    return NightReport(label, True, changes=changes, bytes_added=lake_bytes(db.path) - bytes_before,
                       seconds=time.perf_counter() - start, commit=published.short_id)


def _write(db: udr.Lake, sources: dict[str, pa.Table], label: str) -> dict[str, udr.TableChange]:
    """Refresh every compound in one transaction, then rebuild master in a second, both on staging.

    Returns the rows each table changed. The two commits touch different tables, so their own counts are
    the night's net changes: `db.diff_summary(last_night, "main")` gives the same figures, but recomputes
    them by reading both versions of every table (about a third more time a night at 856,000 parcels).
    """
    existing = set(db.tables(STAGING))
    with db.transaction(STAGING, message=f"{label}: refresh {len(sources)} compounds", author="nightly") as tx:
        # One call for the refreshed compounds: their comparisons with the stored rows run side by side.
        tx.overwrite_many({name: table for name, table in sources.items() if name in existing})
        for name, table in sources.items():
            if name not in existing:
                tx.create_table(name, table.schema, primary_key=["parcel_id"])
                tx.append(name, table)
    assert tx.committed is not None
    sql = f"CREATE OR REPLACE TABLE master AS {MASTER_QUERY}"
    if "master" not in existing:
        sql += "; ALTER TABLE master ADD PRIMARY KEY (parcel_id)"
    master = db.execute(sql, STAGING, message=f"{label}: rebuild master", author="nightly")
    changes = {**tx.committed.tables, **master.tables}
    return {name: change for name, change in sorted(changes.items()) if change != udr.TableChange()}


def check(db: udr.Lake) -> str:
    """The audit of staging: "" when master may be published, else what is wrong."""
    row = db.query("""SELECT (SELECT count(*) FROM master) AS master_rows, (SELECT count(*) FROM parcels) AS parcels,
        (SELECT count(*) FROM master WHERE parcel_id IS NULL OR score IS NULL) AS nulls,
        (SELECT count(*) FROM master WHERE score NOT BETWEEN 0 AND 100) AS out_of_range""",
                   STAGING).to_pylist()[0]
    if row["master_rows"] != row["parcels"]:
        return f"master has {row['master_rows']:,} rows for {row['parcels']:,} parcels"
    if row["nulls"]:
        return f"{row['nulls']:,} master rows have a null key or score"
    if row["out_of_range"]:
        return f"{row['out_of_range']:,} scores fall outside 0-100"
    if "master" in db.tables("main"):
        published = db.row_count("master")
        if row["master_rows"] < published * (1 - MAX_LOSS):
            lost = published - row["master_rows"]
            return (f"master would lose {lost:,} of {published:,} parcels ({lost / published:.0%}, more than "
                    f"{MAX_LOSS:.0%}): is the parcels feed complete?")
    return ""


def demo(path: Path, parcels: int, nights: int) -> None:
    """First load, `nights` nightly refreshes with one broken feed among them, then the comparison."""
    lake = Lotitude(parcels)
    with udr.open(path) as db:
        first = refresh(db, lake.tables(), label="night 0 (first load)")
        print("\n".join(first.lines()))
        loaded = lake_bytes(path)
        print(f"    {len(db.tables())} tables, {db.row_count('master'):,} master rows, {loaded / 1e6:.1f} MB")
        for night in range(1, nights + 1):
            sources = lake.night()
            if night == 2:
                # A broken download: the parcel registry arrives cut at 60%.
                broken = dict(sources, parcels=sources["parcels"].slice(0, int(sources["parcels"].num_rows * 0.6)))
                head = db.resolve("main")
                print("\n".join(refresh(db, broken, label=f"night {night} (truncated parcels feed)").lines()))
                print(f"    main still at the previous night's commit: {db.resolve('main') == head}; master still has "
                      f"{db.row_count('master'):,} rows; branches: {sorted(db.branches())}")
            before = db.resolve("main")
            done = refresh(db, sources, label=f"night {night}")
            print("\n".join(done.lines()))
        # The report's counts come from the night's two commits; diff_summary recomputes them from the data.
        agrees = db.diff_summary(before, "main") == done.changes
        print(f"diff_summary(last night, main) agrees with the report: {agrees}")
        after = lake_bytes(path)
        print(f"after {nights} nights: {after / 1e6:.1f} MB, {after / loaded:.2f}x the first load "
              f"(a full copy per night would be {nights + 1}x)")
        moved = db.query('SELECT count(*) AS n FROM master m JOIN "master@main~2" y USING (parcel_id) '
                         'WHERE m.score <> y.score').column("n")[0].as_py()
        print(f"time travel: {moved:,} parcels scored differently than the night before (master vs \"master@main~2\")")
    print("OK")
    print("""
Try this with Delta Lake: Delta commits one table at a time (no multi-table transactions), so readers
can see tonight's compounds beside yesterday's master, and a broken feed is caught only after some
tables were rewritten; a staging copy is a SHALLOW CLONE per table (Spark; delta-rs 1.6.6 has none)
with no merge back. Its only correct keyed refresh, MERGE with a "row changed" predicate, took 57.8 s
per 1M-row table (388x bare Parquet; anchors run of 2026-11-25, deltalake 1.6.6): about an hour a night
for 77 compounds of 856,000 rows, and storage grew 11.2x over 10 refreshes. Without the predicate it
reports every matched row as updated and grew 24.7x. Here a night is one fast-forward of main that
stores only the changed rows and reports true per-table changes.""")


def main(argv: list[str] | None = None) -> None:
    """The command line: run the demo at a chosen scale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=PARCELS, help="parcels in the generated lake")
    parser.add_argument("--nights", type=int, default=3, help="nightly refreshes after the first load")
    parser.add_argument("--lake", type=Path, help="lake directory (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.lake is not None:
        demo(args.lake, args.parcels, args.nights)
        return
    with tempfile.TemporaryDirectory() as tmp:
        demo(Path(tmp) / "lake", args.parcels, args.nights)


if __name__ == "__main__":
    sys.exit(main())
