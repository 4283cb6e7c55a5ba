"""A generated Lotitude-like lake: 856,000 NYC-style parcels described by 77 source "compounds".

Each compound is one table keyed by `parcel_id` with a few typed columns (ints, floats, strings, dates,
booleans). Everything is drawn with numpy from one seed, vectorised, so a run is reproducible and a night
of 856,000 parcels is generated in a few seconds.

Every night each compound changes 0.5-3% of its rows (a changed row gets a different value in one or two
of its columns, as a re-assessment or a new inspection would); the `parcels` registry and the event-like
compounds (violations, permits, complaints, ...) also gain and lose rows. `Lotitude.night()` returns the full
content of every compound as its source would deliver it: whole tables, not changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

PARCELS = 856_000
EPOCH = np.datetime64("2000-01-01", "D")
BOROUGHS = ["Manhattan", "Bronx", "Brooklyn", "Queens", "Staten Island"]
ZONING = ["R1-2", "R3-2", "R4", "R5", "R6", "R6A", "R7-1", "R7A", "R8", "C1-9", "C4-4", "C6-2", "M1-1", "M1-6", "MX-8"]
FLOOD = ["X", "AE", "VE", "A", "AO", "0.2PCT"]
WORDS = ["open", "closed", "pending", "active", "resolved", "dismissed", "issued", "expired"]

# (compound, columns): the 16 compounds the master score reads come first, with their own column names.
SCORED: list[tuple[str, list[tuple[str, str]]]] = [
    ("parcels", [("borough", "borough"), ("block", "int"), ("lot_area_sqft", "float"), ("year_built", "year")]),
    ("assessments", [("assessed_value", "money"), ("market_value", "money"), ("tax_class", "class")]),
    ("zoning", [("zoning_code", "zoning"), ("max_far", "ratio"), ("commercial_overlay", "bool")]),
    ("flood_zones", [("flood_zone", "flood"), ("base_flood_elevation_ft", "float"), ("in_floodway", "bool")]),
    ("sales", [("last_sale_price", "money"), ("last_sale_date", "date"), ("arms_length", "bool")]),
    ("building_permits", [("open_permits", "count"), ("last_permit_date", "date"), ("permit_type", "word")]),
    ("hpd_violations", [("open_violations", "count"), ("class_c_violations", "count"),
                        ("last_violation_date", "date")]),
    ("dob_violations", [("open_dob_violations", "count"), ("ecb_penalty_due", "money")]),
    ("complaints_311", [("complaints_12m", "count"), ("top_complaint", "word")]),
    ("tax_liens", [("lien_amount", "money"), ("lien_sale_list", "bool")]),
    ("energy_benchmarks", [("energy_star_score", "score"), ("site_eui", "float"), ("ghg_tons", "float")]),
    ("transit_access", [("subway_distance_m", "distance"), ("bus_routes_500m", "count")]),
    ("school_zones", [("school_district", "class"), ("school_rating", "score")]),
    ("air_rights", [("unused_far", "ratio"), ("transferable", "bool")]),
    ("evictions", [("evictions_5y", "count"), ("last_eviction_date", "date")]),
    ("rent_stabilization", [("stabilized_units", "count"), ("registered", "bool"), ("last_registration_date", "date")]),
]
OTHER = [
    "landmarks", "historic_districts", "census_tracts", "street_trees", "air_quality", "noise_complaints",
    "crime_stats", "fire_incidents", "foreclosures", "mortgages", "deeds", "llc_owners", "building_footprints",
    "elevations", "soil_types", "e_designations", "brownfields", "solar_potential", "storm_surge",
    "heat_vulnerability", "green_roofs", "parking", "bike_lanes", "sidewalk_conditions", "street_conditions",
    "sanitation_routes", "water_mains", "sewer_capacity", "utility_outages", "broadband", "business_licenses",
    "restaurant_inspections", "liquor_licenses", "commercial_rents", "vacancies", "tax_abatements",
    "tax_exemptions", "opportunity_zones", "community_districts", "council_districts", "police_precincts",
    "fire_companies", "parks_access", "waterfront_access", "coastal_zone", "wetlands", "ferry_access",
    "construction_activity", "demolitions", "elevator_inspections", "boiler_inspections", "facade_inspections",
    "gas_inspections", "lead_paint", "asbestos_permits", "mold_complaints", "certificates_of_occupancy",
    "retaining_walls", "cooling_towers", "backflow_devices", "sidewalk_sheds",
]
# Generic columns for the other compounds: (suffix, kind).
GENERIC = [("count", "count"), ("score", "score"), ("value", "money"), ("distance_m", "distance"),
           ("status", "word"), ("category", "class"), ("updated_on", "date"), ("flagged", "bool"),
           ("ratio", "ratio"), ("area_sqft", "float")]
# Compounds whose rows come and go: the registry itself and the event-like sources.
CHURNING = {"parcels", "building_permits", "hpd_violations", "dob_violations", "complaints_311", "tax_liens",
            "evictions", "noise_complaints", "fire_incidents", "foreclosures", "business_licenses",
            "demolitions", "sidewalk_sheds"}
ARROW = {"borough": pa.string(), "zoning": pa.string(), "flood": pa.string(), "word": pa.string(),
         "class": pa.string(), "int": pa.int32(), "year": pa.int16(), "count": pa.int32(), "score": pa.int16(),
         "float": pa.float64(), "money": pa.float64(), "ratio": pa.float64(), "distance": pa.float64(),
         "date": pa.date32(), "bool": pa.bool_()}
VOCAB = {"borough": BOROUGHS, "zoning": ZONING, "flood": FLOOD, "word": WORDS,
         "class": ["1", "2", "2A", "2B", "2C", "3", "4"]}


@dataclass(frozen=True, slots=True)
class Compound:
    """One source table: its name, its (column, kind) pairs, how much of it changes per night."""

    name: str
    columns: list[tuple[str, str]]
    change_rate: float
    churn: float
    coverage: float


def compounds(seed: int = 7) -> list[Compound]:
    """The 77 compounds, deterministic for `seed`."""
    rng = np.random.default_rng(seed)
    out = []
    specs = SCORED + [(name, [(f"{name}_{s}", k) for s, k in
                              (GENERIC[i] for i in sorted(rng.choice(len(GENERIC), rng.integers(2, 5),
                                                                     replace=False)))])
                      for name in OTHER]
    for name, columns in specs:
        # Most sources change a little each night, a few change a lot: log-uniform over 0.5-3%.
        rate = float(np.exp(rng.uniform(np.log(0.005), np.log(0.03))))
        churning = name in CHURNING
        out.append(Compound(name, columns, rate, churn=0.002 if churning else 0.0,
                            coverage=1.0 if not churning or name == "parcels" else float(rng.uniform(0.2, 0.6))))
    return out


def draw(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` values of a column kind (strings as indexes into their vocabulary)."""
    if kind in VOCAB:
        return rng.integers(0, len(VOCAB[kind]), n).astype(np.int8)
    if kind == "int":
        return rng.integers(1, 16_000, n).astype(np.int32)
    if kind == "year":
        return rng.integers(1880, 2026, n).astype(np.int16)
    if kind == "count":
        return rng.poisson(1.5, n).astype(np.int32)
    if kind == "score":
        return rng.integers(0, 101, n).astype(np.int16)
    if kind == "money":
        return np.round(rng.lognormal(13.0, 0.8, n), -2)
    if kind in ("float", "distance"):
        return np.round(rng.gamma(2.0, 400.0, n), 1)
    if kind == "ratio":
        return np.round(rng.uniform(0.5, 12.0, n), 2)
    if kind == "date":
        return EPOCH + rng.integers(0, 9_500, n).astype("timedelta64[D]")
    if kind == "bool":
        return rng.random(n) < 0.2
    raise ValueError(f"unknown column kind {kind!r}")


def different(kind: str, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """`new`, with every value that equals its `old` one moved to a neighbouring value (a change changes)."""
    same = new == old
    if kind == "bool":
        new[same] = ~old[same]
    elif kind in VOCAB:
        new[same] = (old[same] + 1) % len(VOCAB[kind])
    elif kind == "date":
        new[same] = old[same] + np.timedelta64(1, "D")
    else:
        new[same] = old[same] + 1
    return new


def to_arrow(kind: str, values: np.ndarray) -> pa.Array:
    """A column of generated values as Arrow, with its declared type."""
    if kind in VOCAB:
        return pa.array(VOCAB[kind], pa.string()).take(pa.array(values))
    return pa.array(values, ARROW[kind])


class Lotitude:
    """The sources of a Lotitude-like lake, night after night (deterministic for `parcels` and `seed`)."""

    def __init__(self, parcels: int = PARCELS, seed: int = 7) -> None:
        self.parcels = parcels
        self.seed = seed
        self.nights = 0
        self.compounds = compounds(seed)
        rng = np.random.default_rng([seed, 0])
        self._next_id = 1_000_000 + parcels
        self._state: dict[str, dict[str, np.ndarray]] = {}
        for c in self.compounds:
            ids = np.arange(1_000_000, 1_000_000 + parcels, dtype=np.int64)
            if c.coverage < 1.0:
                ids = ids[rng.random(parcels) < c.coverage]
            cols = {"parcel_id": ids}
            cols.update({name: draw(kind, ids.size, rng) for name, kind in c.columns})
            self._state[c.name] = cols

    def tables(self) -> dict[str, pa.Table]:
        """Every compound's current content."""
        return {c.name: self._table(c) for c in self.compounds}

    def night(self) -> dict[str, pa.Table]:
        """Advance one night and return every compound's new content."""
        self.nights += 1
        rng = np.random.default_rng([self.seed, self.nights])
        for c in self.compounds:
            self._change(c, rng)
            if c.churn:
                self._churn(c, rng)
        return self.tables()

    def _table(self, c: Compound) -> pa.Table:
        cols = self._state[c.name]
        arrays = [pa.array(cols["parcel_id"])] + [to_arrow(kind, cols[name]) for name, kind in c.columns]
        return pa.Table.from_arrays(arrays, names=["parcel_id"] + [name for name, _ in c.columns])

    def _change(self, c: Compound, rng: np.random.Generator) -> None:
        cols = self._state[c.name]
        n = cols["parcel_id"].size
        changed = np.flatnonzero(rng.random(n) < c.change_rate)
        # Each changed row gets a new value in one column, and in a second one a third of the time.
        first = rng.integers(0, len(c.columns), changed.size)
        second = np.where(rng.random(changed.size) < 1 / 3, rng.integers(0, len(c.columns), changed.size), first)
        for i, (name, kind) in enumerate(c.columns):
            rows = changed[(first == i) | (second == i)]
            # A copy: tables handed out earlier share these arrays' memory (Arrow wraps numpy without copying).
            cols[name] = cols[name].copy()
            cols[name][rows] = different(kind, cols[name][rows], draw(kind, rows.size, rng))

    def _churn(self, c: Compound, rng: np.random.Generator) -> None:
        cols = self._state[c.name]
        n = cols["parcel_id"].size
        keep = rng.random(n) >= c.churn
        added = max(1, int(n * c.churn))
        if c.name == "parcels":
            new_ids = np.arange(self._next_id, self._next_id + added, dtype=np.int64)
            self._next_id += added
        else:
            universe = self._state["parcels"]["parcel_id"]
            candidates = rng.choice(universe, min(universe.size, 3 * added), replace=False)
            new_ids = np.setdiff1d(candidates, cols["parcel_id"])[:added]
            rng.shuffle(new_ids)
        for name, values in list(cols.items()):
            fresh = new_ids if name == "parcel_id" else draw(dict(c.columns)[name], new_ids.size, rng)
            cols[name] = np.concatenate([values[keep], fresh])
