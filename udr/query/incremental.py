"""Incremental rebuilds of a keyed table by `CREATE OR REPLACE TABLE t AS <query>`: which queries are
key-local, and such a query restricted to the keys whose input rows changed.

A query is key-local when each output row with key k depends only on the input rows with key k. Then, if
t holds the query's rows over earlier versions of its inputs (the caller knows: `udr.api.sqlbuilds`), only
the keys changed in the inputs since can change in t, and the query recomputed for those keys, compared
with t's rows of those keys (`udr.query.dml`), gives exactly the diff the full comparison
(`sqldiff.overwrite_diff`) gives.
The analysis is conservative: anything it does not recognise makes the query not key-local, which only
means the full comparison. Pure functions over a syntax tree or a connection the caller owns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import pyarrow as pa
import sqlglot
from sqlglot import exp

from udr.query.keydelta import Reads, read_columns
from udr.query.sqltext import quote_ident

# The relation of changed keys a restricted query reads, and its one column.
KEYS, KEY_COLUMN = "__udr_keys", "__udr_k"
# Above this share of the table's rows changed, the full comparison is cheaper than the restricted one.
MAX_CHANGED_SHARE = 0.2
# The parts of a SELECT a key-local query may have (sqlglot argument names).
_SELECT_PARTS = frozenset({"expressions", "from_", "joins", "where", "order"})
# A table reference may carry its name and an alias without column names, nothing else.
_TABLE_PARTS = frozenset({"this", "alias"})
# Functions sqlglot knows whose result is not a function of their arguments (class-name prefixes).
_NONDETERMINISTIC = ("Current", "Rand", "Uuid", "NextValue", "Seq", "Session", "Systimestamp", "Localtime",
                     "UtcTime", "UtcTimestamp", "Generate", "AI", "Explode", "Unnest", "Posexplode")
# DuckDB functions sqlglot does not know (it parses them as `Anonymous`) that are deterministic.
_DETERMINISTIC_ANONYMOUS = frozenset({"hash", "greatest", "least", "list_value", "struct_pack", "strip_accents",
                                      "nfc_normalize", "bit_length", "ascii", "chr", "isnan", "isinf", "isfinite",
                                      "sign", "gcd", "lcm", "even", "factorial", "ifnull", "nullif"})
# Key types whose equality the changed-key filter (`IN`) and the query's joins agree on (no float: NaN).
_KEY_TYPES = (pa.types.is_integer, pa.types.is_string, pa.types.is_large_string, pa.types.is_date,
              pa.types.is_timestamp, pa.types.is_decimal, pa.types.is_boolean)


@dataclass(frozen=True, slots=True)
class KeyLocal:
    """A key-local query: the key column, the lake tables it reads (sorted), a digest of its text and the
    columns it reads of each table (`udr.query.keydelta.read_columns`)."""

    key: str
    inputs: tuple[str, ...]
    digest: str
    reads: Reads


def key_local(query: exp.Expr, key: list[str], keys: Mapping[str, list[str] | None],
              key_type: pa.DataType) -> KeyLocal | None:
    """`query` as a `KeyLocal` if it is one for a table keyed on `key` (of type `key_type`), else None.

    `keys` maps each lake table to its primary key. Key-local: one SELECT (no set operation, CTE,
    subquery, GROUP BY, aggregate, window, DISTINCT, LIMIT, QUALIFY, SAMPLE) from lake tables each keyed
    on exactly `key` or not keyed, joined by INNER or LEFT joins on `USING (key)` or `x.key = y.key`, whose output key
    is the first table's key column passed through, with deterministic functions only.
    """
    if len(key) != 1 or not any(check(key_type) for check in _KEY_TYPES) or not isinstance(query, exp.Select):
        return None
    k = key[0]
    if any(query.args.get(part) for part in query.args if part not in _SELECT_PARTS):
        return None
    from_ = query.args.get("from_")
    joins = query.args.get("joins") or []
    if from_ is None or not isinstance(from_.this, exp.Table):
        return None
    tables = [from_.this, *(join.this for join in joins)]
    names = [_lake_table(table, keys, k) for table in tables]
    aliases = [table.alias_or_name.lower() for table in tables]
    if None in names or len(set(aliases)) != len(aliases):
        return None
    if not all(_key_join(join, k, aliases[:i + 2]) for i, join in enumerate(joins)):
        return None
    using = all(join.args.get("using") for join in joins)
    if not _passes_key(query.expressions, k, aliases[0], using) or not _deterministic(query, len(tables)):
        return None
    digest = hashlib.sha256(query.sql(dialect="duckdb").encode()).hexdigest()
    lake = [n for n in names if n is not None]
    return KeyLocal(k, tuple(sorted(set(lake))), digest, read_columns(query, tables, lake))


def _lake_table(table: exp.Table, keys: Mapping[str, list[str] | None], k: str) -> str | None:
    """The lake table `table` names, if it is one keyed on exactly `k` or not keyed, named plainly.

    An input need not be unique on `k`: an output row with key k still comes only from input rows with
    key k, and a key repeated in the output is found among the recomputed keys (no other key changed)."""
    if any(table.args.get(part) for part in table.args if part not in _TABLE_PARTS):
        return None
    alias = table.args.get("alias")
    if alias is not None and alias.args.get("columns"):
        return None
    matches = [name for name in keys if name.lower() == table.name.lower()]
    if len(matches) != 1 or not isinstance(table.this, exp.Identifier) or keys[matches[0]] not in ([k], None):
        return None
    return matches[0]


def _key_join(join: exp.Join, k: str, aliases: list[str]) -> bool:
    """Whether `join` is an INNER or LEFT join on the key alone (`aliases`: the tables so far, its own last)."""
    if join.args.get("method") or str(join.args.get("kind") or "").upper() not in {"", "INNER", "OUTER"}:
        return False
    side = str(join.args.get("side") or "").upper()
    if side not in {"", "LEFT"} or (side == "" and str(join.args.get("kind") or "").upper() == "OUTER"):
        return False
    using, on = join.args.get("using"), join.args.get("on")
    if using:
        return on is None and len(using) == 1 and using[0].name.lower() == k.lower()
    if not isinstance(on, exp.EQ) or not all(isinstance(side, exp.Column) for side in (on.this, on.expression)):
        return False
    sides = [(column.table.lower(), column.name.lower()) for column in (on.this, on.expression)]
    return (all(name == k.lower() and table in aliases for table, name in sides)
            and aliases[-1] in {table for table, _ in sides} and sides[0][0] != sides[1][0])


def _passes_key(projections: list[exp.Expr], k: str, first: str, using: bool) -> bool:
    """Whether exactly one output column is named `k`, and it is the first table's key passed through."""
    found = 0
    for item in projections:
        if isinstance(item, exp.Star):
            if not using:
                return False
            found += 1
        elif isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
            if item.table.lower() != first:
                return False
            found += 1
        elif item.alias_or_name.lower() == k.lower():
            column = item.this if isinstance(item, exp.Alias) else item
            if not isinstance(column, exp.Column) or column.name.lower() != k.lower():
                return False
            if column.table.lower() != first and not (column.table == "" and using):
                return False
            found += 1
    return found == 1


def _deterministic(query: exp.Select, table_count: int) -> bool:
    """Whether `query` reads no table but its FROM and JOIN ones, has no nested query, aggregate or window,
    and calls only functions known to be deterministic."""
    if sum(1 for _ in query.find_all(exp.Table)) != table_count:
        return False
    if any(node is not query for node in query.find_all(exp.Query, exp.Subquery, exp.AggFunc, exp.Window)):
        return False
    for func in query.find_all(exp.Func):
        if isinstance(func, exp.Anonymous):
            if func.name.lower() not in _DETERMINISTIC_ANONYMOUS:
                return False
        elif type(func).__name__.startswith(_NONDETERMINISTIC):
            return False
    return True


def restricted(query: exp.Expr, key: str, views: Mapping[str, str]) -> str:
    """`query` reading only the rows of each table whose `key` is in relation `KEYS`: a table named in `views`
    (by lower-case name) from the view given there, which holds only those rows (a positioned view filtered
    inside its Parquet scan, see `key_filter`; its places are left out), any other by a semi join."""
    tree = query.copy()
    without_places = cast(exp.Select, sqlglot.parse_one("SELECT * EXCLUDE (__frag, __pos)", dialect="duckdb"))
    # A semi join, not `IN (SELECT ...)`: DuckDB runs it about twice as fast (S1, 2% of 1M keys).
    semi = cast(exp.Select, sqlglot.parse_one(f"SELECT * FROM t SEMI JOIN {KEYS} ON {quote_ident(key)} = {KEY_COLUMN}",
                                              dialect="duckdb"))
    for table in list(tree.find_all(exp.Table)):
        view = views.get(table.name.lower())
        filtered = (without_places.from_(exp.to_table(view), copy=True) if view is not None
                    else semi.from_(exp.Table(this=table.this.copy()), copy=True))
        alias = exp.TableAlias(this=exp.to_identifier(table.alias_or_name, quoted=True))
        table.replace(exp.Subquery(this=filtered, alias=alias))
    return tree.sql(dialect="duckdb")


def key_filter(alias: str, key: str) -> tuple[str, str]:
    """The `where` (alias, condition) keeping a table's rows whose `key` is in relation `KEYS`."""
    return quote_ident(alias), f"{quote_ident(alias)}.{quote_ident(key)} IN (SELECT {KEY_COLUMN} FROM {KEYS})"

