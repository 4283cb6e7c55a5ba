"""Turning removed/added rows into a change table: `insert`, `update_before`, `update_after`, `delete`.

Keyed tables pair a removed and an added row with the same key into an update (or into nothing, if the
rows are identical); unkeyed tables cancel identical rows (multiset difference), leaving deletes and
inserts. Each call owns its DuckDB connection; safe from any thread.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from udr.errors import SqlError
from udr.materialize.data import conform
from udr.query.engine import own_or_given, quote_ident, same_key

CHANGE = "_change"


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


def _label(rows: pa.Table, change: str, schema: pa.Schema) -> pa.Table:
    return conform(rows.append_column(CHANGE, pa.array([change] * rows.num_rows, pa.string())), schema)
