"""Turning removed/added rows into a change table: `insert`, `update_before`, `update_after`, `delete`.

Keyed tables pair a removed and an added row with the same key into an update (or into nothing, if the
rows are identical); unkeyed tables cancel identical rows (multiset difference), leaving deletes and
inserts. Each call owns its DuckDB connection; safe from any thread.
"""

from __future__ import annotations

import math

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from udr.errors import SqlError
from udr.materialize.schemas import conform
from udr.query.sqltext import own_or_given, quote_ident, same_key

CHANGE = "_change"
# Keyed pairings of at most this many rows run in memory: starting a DuckDB query costs ~5-9 ms, which
# dominates re-applying a small commit (a replay, a rebase, a cherry-pick).
_SMALL = 2_048


def pair_changes(schema: pa.Schema, removed: pa.Table, added: pa.Table, key: list[str] | None,
                 con: duckdb.DuckDBPyConnection | None = None, *, ordered: bool = True) -> pa.Table:
    """The change rows taking a table from `removed` to `added`, deletes first, then update pairs, then inserts.

    Without a key, rows are sorted by value within deletes and inserts unless `ordered` is false (for
    callers that only count them)."""
    out_schema = schema.append(pa.field(CHANGE, pa.string()))
    if removed.num_rows == 0 and added.num_rows == 0:
        return out_schema.empty_table()
    if removed.num_rows == 0:
        return _label(added, "insert", out_schema)
    if added.num_rows == 0:
        return _label(removed, "delete", out_schema)
    if key and removed.num_rows + added.num_rows <= _SMALL:
        return _paired_in_memory(schema, out_schema, removed, added, key)
    with own_or_given(con) as cursor:
        return _paired(schema, out_schema, removed, added, key, cursor, ordered)


def _paired(schema: pa.Schema, out_schema: pa.Schema, removed: pa.Table, added: pa.Table, key: list[str] | None,
            con: duckdb.DuckDBPyConnection, ordered: bool) -> pa.Table:
    try:
        con.register("r", removed)
        con.register("a", added)
        cols = ", ".join(quote_ident(c) for c in schema.names)
        if key:
            on = same_key("r", "a", key)
            differs = " OR ".join(
                f"r.{quote_ident(c)} IS DISTINCT FROM a.{quote_ident(c)}" for c in schema.names if c not in key
            ) or "false"
            order = ", ".join(quote_ident(k) for k in key)
            rcols = ", ".join(f"r.{quote_ident(c)}" for c in schema.names)
            acols = ", ".join(f"a.{quote_ident(c)}" for c in schema.names)
            query = f"""
                SELECT {cols}, {CHANGE} FROM (
                    SELECT {rcols}, 'delete' AS {CHANGE}, 0 AS __g, 0 AS __o FROM r ANTI JOIN a ON {on}
                    UNION ALL
                    SELECT {rcols}, 'update_before', 1, 0 FROM r JOIN a ON {on} WHERE {differs}
                    UNION ALL
                    SELECT {acols}, 'update_after', 1, 1 FROM a JOIN r ON {on} WHERE {differs}
                    UNION ALL
                    SELECT {acols}, 'insert', 2, 0 FROM a ANTI JOIN r ON {on}
                ) ORDER BY __g, {order}, __o"""
        else:
            # Sorted by value within deletes and inserts: EXCEPT ALL's own order varies from run to run, and a
            # batch delivered again (or read through `changes`) must list its rows alike.
            query = f"""
                SELECT {cols}, {CHANGE} FROM (
                    SELECT {cols}, 'delete' AS {CHANGE} FROM (SELECT {cols} FROM r EXCEPT ALL SELECT {cols} FROM a)
                    UNION ALL
                    SELECT {cols}, 'insert' FROM (SELECT {cols} FROM a EXCEPT ALL SELECT {cols} FROM r)
                ){f" ORDER BY {CHANGE} = 'insert', {cols}" if ordered else ""}"""
        result = con.sql(query).to_arrow_table()
    except duckdb.Error as exc:
        raise SqlError(f"computing row changes failed: {str(exc).splitlines()[0]}") from exc
    return conform(result, out_schema)


def _paired_in_memory(schema: pa.Schema, out_schema: pa.Schema, removed: pa.Table, added: pa.Table,
                      key: list[str]) -> pa.Table:
    """`_paired` for a keyed table, in Python: the same rows in the same order (keys unique on each side,
    matched as `IS NOT DISTINCT FROM` matches them, sorted as DuckDB sorts them: ascending, NULLs last)."""
    removed, added = conform(removed, schema), conform(added, schema)
    mine, theirs = _by_key(removed, key), _by_key(added, key)
    values = [c for c in schema.names if c not in key]
    old_rows, new_rows = removed.select(values).to_pylist(), added.select(values).to_pylist()
    deletes = [i for k, i in mine.items() if k not in theirs]
    inserts = [j for k, j in theirs.items() if k not in mine]
    pairs = [(i, theirs[k]) for k, i in mine.items()
             if k in theirs and any(_distinct(old_rows[i][c], new_rows[theirs[k]][c]) for c in values)]
    deleted = _sorted(_take(removed, deletes), key)
    before, after = _take(removed, [i for i, _ in pairs]), _take(added, [j for _, j in pairs])
    order = _sort_order(before, key)
    both = pa.concat_tables([before.take(order), after.take(order)])
    interleaved = _take(both, [n + half for n in range(len(pairs)) for half in (0, len(pairs))])
    parts = [(deleted, ["delete"] * deleted.num_rows),
             (interleaved, ["update_before", "update_after"] * len(pairs)),
             (_sorted(_take(added, inserts), key), ["insert"] * len(inserts))]
    stamped = [rows.append_column(CHANGE, pa.array(kinds, pa.string())) for rows, kinds in parts]
    return conform(pa.concat_tables(stamped), out_schema)


def _take(rows: pa.Table, indices: list[int]) -> pa.Table:
    return rows.take(pa.array(indices, pa.int64()))


def _by_key(rows: pa.Table, key: list[str]) -> dict[tuple[object, ...], int]:
    columns = [[_same(v) for v in rows.column(k).to_pylist()] for k in key]
    return {k: i for i, k in enumerate(zip(*columns))}


def _same(value: object) -> object:
    """A value as a dictionary key that matches what `IS NOT DISTINCT FROM` matches (every NaN one value)."""
    return _NAN if isinstance(value, float) and math.isnan(value) else value


def _distinct(a: object, b: object) -> bool:
    return _same(a) != _same(b)


def _sort_order(rows: pa.Table, key: list[str]) -> pa.Array:
    return pc.sort_indices(rows, sort_keys=[(k, "ascending") for k in key])  # keys hold no NULL


def _sorted(rows: pa.Table, key: list[str]) -> pa.Table:
    return rows.take(_sort_order(rows, key))


_NAN = ("NaN",)


def _label(rows: pa.Table, change: str, schema: pa.Schema) -> pa.Table:
    return conform(rows.append_column(CHANGE, pa.array([change] * rows.num_rows, pa.string())), schema)
