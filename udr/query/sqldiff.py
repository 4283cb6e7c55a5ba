"""Keyed changes found inside DuckDB: an `UPDATE` or a keyed `CREATE OR REPLACE TABLE ... AS` compared with the
rows it replaces in the same query that computes the new rows, so only changed rows leave DuckDB.

The target table is read through a positioned view (`SnapshotServer.register_positioned`), whose `__frag`
and `__pos` say where each current row is stored: nothing is looked up again by key afterwards. The
result is a `udr.query.diff.KeyedDiff`, as `keyed_diff` gives for Arrow input (NULL equals NULL, NaN
equals NaN, as `IS DISTINCT FROM`). Pure functions over a connection the caller owns.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from udr.errors import KeyViolation, SqlError
from udr.query.diff import KeyedDiff, before_image
from udr.query.sqltext import one_line, quote_ident, same_key

# Names of the helper columns of a candidate relation (see `changes_sql`).
IN, FRAG, POS = "__udr_in", "__udr_frag", "__udr_pos"
_COUNT, _LIVE = "__udr_count", "__udr_live"
# Before-image masks are 64 bits wide: wider tables get no before-image (as `keyed_diff`).
_MASK_COLUMNS = 64


def old_name(index: int) -> str:
    """The name of the candidate relation's column holding the current value of the table's `index`-th column."""
    return f"__udr_o{index}"


def changes_sql(columns: list[str], key: list[str], candidates: str) -> str:
    """A SELECT of the rows of `candidates` that change the table: new rows (`POS` null), removed rows (`IN`
    null) and rows whose values differ; each with the old value of every changed cell as `__old_<column>`
    and a bit mask of the changed non-key columns as `__mask`.

    `candidates` has, per row, the new values under the table's column names (null for a removed row), `IN`
    (true; null for a removed row), the old values as `old_name(i)` and the old row's `FRAG` and `POS` (null
    for a new row).
    """
    values = [(i, c) for i, c in enumerate(columns) if c not in key]
    distinct = {c: f"{quote_ident(c)} IS DISTINCT FROM {old_name(i)}" for i, c in values}
    olds = [f"CASE WHEN {distinct[c]} THEN {old_name(i)} END AS {quote_ident('__old_' + c)}" for i, c in values]
    bits = [f"(CASE WHEN {distinct[c]} THEN {1 << bit} ELSE 0 END)::UBIGINT" for bit, (_, c) in enumerate(values)]
    mask = f"({' + '.join(bits)})::UBIGINT" if bits and len(values) < _MASK_COLUMNS else "0::UBIGINT"
    keys = [f"{old_name(columns.index(k))} AS {quote_ident('__oldkey_' + k)}" for k in key]
    cols = [quote_ident(c) for c in columns]
    changed = " OR ".join([f"{IN} IS NULL", f"{POS} IS NULL", *distinct.values()])
    return (f"SELECT {', '.join([*cols, IN, FRAG, POS, *keys, *olds])}, {mask} AS __mask "
            f"FROM ({candidates}) WHERE {changed}")


def overwrite_diff(con: duckdb.DuckDBPyConnection, query: str, target: str, columns: list[str], key: list[str],
                   schema: pa.Schema, *, live_rows: int | None, table: str) -> KeyedDiff:
    """What making keyed `table` (read as positioned view `target`, `live_rows` rows; None: counted in the
    same query) exactly the rows of `query` changes: the query runs once, joined with the table by key
    inside DuckDB.

    Raises:
        KeyViolation: the query gives a null or duplicate key.
        SqlError: DuckDB rejected the query or failed running it.
    """
    new = ", ".join(f"n.{quote_ident(c)}" for c in columns)
    old = ", ".join(f"o.{quote_ident(c)} AS {old_name(i)}" for i, c in enumerate(columns))
    candidates = (f"SELECT {new}, n.{IN}, {old}, o.__frag AS {FRAG}, o.__pos AS {POS} "
                  f"FROM __udr_new n FULL JOIN {target} o ON {same_key('n', 'o', key)}")
    # The new rows are computed once and kept: the join reads them, and so does their count, which tells
    # whether a key repeats among the rows that match a current row (identical ones never leave DuckDB).
    sql = (f"WITH __udr_new AS MATERIALIZED (SELECT *, true AS {IN} FROM ({query})) "
           f"SELECT * FROM ({changes_sql(columns, key, candidates)}) "
           f"UNION ALL BY NAME SELECT count(*) AS {_COUNT} FROM __udr_new")
    helpers = [_COUNT] if live_rows is not None else [_COUNT, _LIVE]
    if live_rows is None:
        sql += f" UNION ALL BY NAME SELECT count(*) AS {_LIVE} FROM {target}"
    rows = _fetch(con, sql)
    is_count = rows.column(_COUNT).is_valid()
    if live_rows is None:
        is_count = pc.or_(is_count, rows.column(_LIVE).is_valid())
        live_rows = pc.max(rows.column(_LIVE)).as_py()
    total = pc.max(rows.column(_COUNT)).as_py()
    diff = split(rows.filter(pc.invert(is_count)).drop_columns(helpers), schema, key, table=table)
    if total != live_rows - diff.removed.num_rows + diff.inserted.num_rows:
        keys = ", ".join(quote_ident(k) for k in key)
        dup = _fetch(con, f"SELECT {keys} FROM ({query}) GROUP BY ALL HAVING count(*) > 1 LIMIT 1")
        raise KeyViolation(f"table {table!r}: duplicate primary key {dup.to_pylist()[:1]} in the written data")
    return diff


def split(rows: pa.Table, schema: pa.Schema, key: list[str], *, table: str) -> KeyedDiff:
    """The `KeyedDiff` of the rows of a `changes_sql` query (table schema `schema`).

    Raises:
        KeyViolation: a new row has a null key, or two new rows share a key.
    """
    columns = schema.names
    values = [c for c in columns if c not in key]
    removed_mask = rows.column(IN).is_null()
    inserted_mask = pc.and_not(rows.column(POS).is_null(), removed_mask)
    updated_mask = pc.invert(pc.or_(removed_mask, inserted_mask))
    inserted = rows.filter(inserted_mask).select(columns)
    _check_new_keys(inserted, key, table)
    updates = rows.filter(updated_mask)
    gone = rows.filter(removed_mask)
    image = None
    if len(values) < _MASK_COLUMNS:
        old_rows = pa.table([gone.column("__oldkey_" + k) for k in key] + [gone.column("__old_" + c) for c in values],
                            names=[*key, *values])
        image = before_image(updates, old_rows, schema, key, values)
    return KeyedDiff(inserted.cast(schema), updates.select(columns).cast(schema), _places(updates), _places(gone),
                     image)


def _places(rows: pa.Table) -> pa.Table:
    return pa.table({"__frag": rows.column(FRAG).cast(pa.uint32()), "__pos": rows.column(POS).cast(pa.uint32())})


def _check_new_keys(inserted: pa.Table, key: list[str], table: str) -> None:
    for k in key:
        if inserted.column(k).null_count:
            raise KeyViolation(f"table {table!r}: null in primary key column {k!r} of the written data")
    if inserted.num_rows < 2:
        return
    counts = inserted.select(key).group_by(key).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts.column("count_all"), 1))
    if repeated.num_rows:
        first = {k: repeated.column(k)[0].as_py() for k in key}
        raise KeyViolation(f"table {table!r}: duplicate primary key {first} in the written data")


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise SqlError(one_line(exc)) from exc
