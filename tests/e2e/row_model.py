"""The row model shared by the keyed-table and merge property tests: a table `id -> (s, f, n)` where NaN is
normalized to a marker, so that NaN equals NaN as SQL's `IS DISTINCT FROM` has it."""

from __future__ import annotations

import math

import pyarrow as pa

SCHEMA = pa.schema([("id", pa.int64()), ("s", pa.string()), ("f", pa.float64()), ("n", pa.int64())])
VALUES = [c for c in SCHEMA.names if c != "id"]
NAN = ("NaN",)  # stands for float NaN in model rows

Row = tuple[object, ...]  # (s, f, n), normalized
Model = dict[int, Row]


def norm(value: object) -> object:
    return NAN if isinstance(value, float) and math.isnan(value) else value


def denorm(value: object) -> object:
    return math.nan if value == NAN else value
