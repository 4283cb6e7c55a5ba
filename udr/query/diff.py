"""Row-level differences by primary key, computed by DuckDB (multi-threaded, NULL- and NaN-aware).

Used by keyed writes (upsert, keyed overwrite, delete by keys) to find exactly the rows that change.
Pure functions over Arrow tables; safe from any thread (each call owns its DuckDB connection).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from udr.errors import KeyViolation, SqlError
from udr.query.engine import quote_ident


@dataclass(frozen=True, slots=True)
class KeyedDiff:
    """What a keyed write changes.

    `inserted` and `updated` are rows of the new data to write; `replaced` and `removed` are
    (`__frag`, `__pos`) of current rows to delete (the old versions of `updated`, and rows to remove).
    """

    inserted: pa.Table
    updated: pa.Table
    replaced: pa.Table
    removed: pa.Table


def check_keys(con: duckdb.DuckDBPyConnection, view: str, key: list[str], table: str) -> None:
    """Raise `KeyViolation` if `view` has a null or duplicate key."""
    keys = ", ".join(quote_ident(k) for k in key)
    nulls = " OR ".join(f"{quote_ident(k)} IS NULL" for k in key)
    row = con.execute(f"SELECT {keys} FROM {view} WHERE {nulls} LIMIT 1").fetchone()
    if row is not None:
        raise KeyViolation(f"table {table!r}: null primary key in row with key {dict(zip(key, row))}")
    row = con.execute(f"SELECT {keys} FROM {view} GROUP BY ALL HAVING count(*) > 1 LIMIT 1").fetchone()
    if row is not None:
        raise KeyViolation(f"table {table!r}: duplicate primary key {dict(zip(key, row))} in the written data")


def keyed_diff(old: pa.Table, new: pa.Table, key: list[str], *, table: str, remove_missing: bool) -> KeyedDiff:
    """Compare `new` rows with `old` rows (which carry `__frag`, `__pos`) by `key`.

    Rows of `new` identical to the current row are no change. With `remove_missing`, current rows whose
    key is absent from `new` are removed (a keyed overwrite).

    Raises:
        KeyViolation: `new` has a null or duplicate key.
    """
    con = duckdb.connect()
    try:
        con.register("n", new)
        con.register("o", old)
        check_keys(con, "n", key, table)
        on = " AND ".join(f"n.{quote_ident(k)} = o.{quote_ident(k)}" for k in key)
        values = [c for c in new.column_names if c not in key]
        differs = " OR ".join(f"n.{quote_ident(c)} IS DISTINCT FROM o.{quote_ident(c)}" for c in values) or "false"
        cols = ", ".join(f"n.{quote_ident(c)}" for c in new.column_names)
        changed = con.sql(
            f"SELECT {cols}, o.__frag AS __ofrag, o.__pos AS __opos FROM n LEFT JOIN o ON {on} "
            f"WHERE o.__pos IS NULL OR {differs}"
        ).to_arrow_table()
        is_new = changed.column("__opos").is_null()
        inserted = changed.filter(is_new).select(new.column_names)
        updates = changed.filter(pc.invert(is_new))
        updated = updates.select(new.column_names)
        replaced = pa.table({"__frag": updates.column("__ofrag"), "__pos": updates.column("__opos")})
        if remove_missing:
            removed = con.sql(
                f"SELECT o.__frag, o.__pos FROM o ANTI JOIN n ON {on}"
            ).to_arrow_table()
        else:
            removed = pa.table({"__frag": pa.array([], pa.uint32()), "__pos": pa.array([], pa.uint32())})
        return KeyedDiff(inserted, updated, replaced, removed)
    except duckdb.Error as exc:
        raise SqlError(f"table {table!r}: key comparison failed: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()


def matching_keys(old: pa.Table, keys: pa.Table, key: list[str], *, table: str) -> pa.Table:
    """(`__frag`, `__pos`) of the rows of `old` whose key appears in `keys`."""
    con = duckdb.connect()
    try:
        con.register("o", old)
        con.register("k", keys.select(key))
        on = " AND ".join(f"k.{quote_ident(c)} = o.{quote_ident(c)}" for c in key)
        return con.sql(f"SELECT o.__frag, o.__pos FROM o SEMI JOIN k ON {on}").to_arrow_table()
    except duckdb.Error as exc:
        raise SqlError(f"table {table!r}: key lookup failed: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
