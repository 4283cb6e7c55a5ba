"""Row-level differences by primary key (NULL- and NaN-aware): Arrow and numpy for one flat key, DuckDB otherwise.

Used by keyed writes (upsert, keyed overwrite, delete by keys) to find exactly the rows that change.
Pure functions over Arrow tables; safe from any thread (each call owns its DuckDB connection).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from udr.errors import KeyViolation, SqlError
from udr.materialize.currentrows import CurrentRows
from udr.query.aligned import ColumnMap, Compared, any_of, compare_aligned, distinct, gather
from udr.query.sqltext import own_or_given, quote_ident, same_key


@dataclass(frozen=True, slots=True)
class KeyedDiff:
    """What a keyed write changes.

    `inserted` and `updated` are rows of the new data to write; `replaced` and `removed` are
    (`__frag`, `__pos`) of current rows to delete (the old versions of `updated`, and rows to remove).
    `before` is the before-image of the change (see `udr.materialize.changes.BEFORE_KIND`): per updated row
    its key, the old value of each changed cell and a bit mask of changed columns; per removed row all of
    its old values. None when the table has too many columns for the mask.
    """

    inserted: pa.Table
    updated: pa.Table
    replaced: pa.Table
    removed: pa.Table
    before: pa.Table | None


def check_keys(con: duckdb.DuckDBPyConnection, view: str, key: list[str], table: str,
               data: pa.Table | None = None) -> None:
    """Raise `KeyViolation` if `view` has a null or duplicate key."""
    column = data.column(key[0]) if data is not None and len(key) == 1 else None
    # One non-null key column: a distinct count settles it without a GROUP BY. Not for floats: Arrow
    # counts -0.0 and 0.0 apart, where keys (like SQL) take them as equal.
    if column is not None and column.null_count == 0 and not pa.types.is_floating(column.type):
        try:
            if pc.count_distinct(column).as_py() == len(column):
                return
        except pa.ArrowNotImplementedError:
            pass  # a type Arrow cannot count (dictionary, string_view): DuckDB below checks every type
    keys = ", ".join(quote_ident(k) for k in key)
    nulls = " OR ".join(f"{quote_ident(k)} IS NULL" for k in key)
    # fetchall, not fetchone: on DuckDB 2 a result not fetched to its end keeps the connection busy.
    rows = con.execute(f"SELECT {keys} FROM {view} WHERE {nulls} LIMIT 1").fetchall()
    if rows:
        raise KeyViolation(f"table {table!r}: null primary key in row with key {dict(zip(key, rows[0]))}")
    rows = con.execute(f"SELECT {keys} FROM {view} GROUP BY ALL HAVING count(*) > 1 LIMIT 1").fetchall()
    if rows:
        raise KeyViolation(f"table {table!r}: duplicate primary key {dict(zip(key, rows[0]))} in the written data")


def keyed_diff(old: CurrentRows, new: pa.Table, key: list[str], *, table: str, remove_missing: bool,
               con: duckdb.DuckDBPyConnection | None = None, before: bool = True,
               pool: Executor | None = None) -> KeyedDiff:
    """Compare `new` rows with the current rows `old` by `key`.

    Rows of `new` identical to the current row are no change (NULL equals NULL, NaN equals NaN, as
    `IS DISTINCT FROM`). With `remove_missing`, current rows whose key is absent from `new` are removed
    (a keyed overwrite). `before=False` skips the before-image; `pool` compares columns side by side (else
    a pool is started for a large write).

    Raises:
        KeyViolation: `new` has a null or duplicate key.
    """
    # Float keys go to DuckDB, which (unlike Arrow's hashing) equates -0.0 with 0.0.
    if len(key) == 1 and not pa.types.is_floating(new.schema.field(key[0]).type) and all(
            _flat(f.type) for f in new.schema):
        try:
            return _single_key_diff(old, new, key[0], table=table, remove_missing=remove_missing, before=before,
                                    pool=pool)
        except pa.ArrowNotImplementedError:
            pass  # a type the vectorized comparison lacks: DuckDB below handles every type
    with own_or_given(con) as cursor:
        return _duckdb_diff(old.positioned(), new, key, table=table, remove_missing=remove_missing, con=cursor,
                            before=before)


def _flat(t: pa.DataType) -> bool:
    return not (pa.types.is_nested(t) or pa.types.is_dictionary(t) or isinstance(t, pa.ExtensionType))


# Below this many written rows the columns are compared one after another: starting a thread pool costs
# more (~1 ms) than comparing a few thousand rows.
_PARALLEL_ROWS = 50_000


def _single_key_diff(current: CurrentRows, new: pa.Table, key: str, *, table: str, remove_missing: bool,
                     before: bool, pool: Executor | None) -> KeyedDiff:
    column = new.column(key)
    if column.null_count:
        raise KeyViolation(f"table {table!r}: null in primary key column {key!r} of the written data")
    values = [c for c in new.column_names if c != key]
    with ExitStack() as stack:
        if pool is None and new.num_rows >= _PARALLEL_ROWS and len(values) >= 2:
            pool = stack.enter_context(ThreadPoolExecutor(max(1, min(len(values), pa.cpu_count()))))

        def columns(differs: Callable[[str], pa.ChunkedArray], names: list[str]) -> list[pa.ChunkedArray]:
            if pool is None or new.num_rows < _PARALLEL_ROWS or len(names) < 2:
                return [differs(c) for c in names]
            return list(pool.map(differs, names))  # Arrow's kernels release the GIL: columns compare side by side

        old = current.rows
        found = compare_aligned(new, old, key, current.live, values, distinct, columns)
        if found is None:
            # A contiguous old table for the general match: take on many-chunk columns is several times
            # slower than the copy.
            old = old.combine_chunks()
            found = _compare_matched(old, new, key, current.live, values, columns, table=table)
    inserted, updated = new.take(pa.array(found.inserted)), new.take(pa.array(found.updated))
    replaced = current.positions(found.prior)
    gone_index = np.empty(0, dtype=np.int64)
    if remove_missing:
        gone_index = np.flatnonzero(~found.kept if current.live is None else current.live & ~found.kept)
    removed = current.positions(gone_index)
    if not before or len(values) >= 64:
        return KeyedDiff(inserted, updated, replaced, removed, None)
    prior = gather(old, found.prior)
    mask = np.zeros(updated.num_rows, dtype=np.uint64)
    olds = []
    for bit, (c, hit) in enumerate(zip(values, found.hits)):
        mask |= hit.astype(np.uint64) << np.uint64(bit)
        olds.append(pc.if_else(pa.array(hit), prior.column(c), pa.scalar(None, prior.column(c).type)))
    image = pa.table([updated.column(key), pa.array(mask), *olds],
                     names=[key, "__mask", *["__old_" + c for c in values]])
    gone = gather(old, gone_index)
    return KeyedDiff(inserted, updated, replaced, removed, before_image(image, gone, new.schema, [key], values))


def _compare_matched(old: pa.Table, new: pa.Table, key: str, live: np.ndarray | None, values: list[str],
                     columns: ColumnMap, *, table: str) -> Compared:
    """`Compared` for `new` rows against the contiguous `old` rows by a general match of keys."""
    where, kept = _match(new.column(key), old.column(key), live, table=table, key=key)
    is_new = where < 0
    # The old row of each new row, aligned with `new` (which is then never copied whole). New keys point
    # at row 0, a stand-in whose comparison `is_new` masks out; nulls there would cost every comparison
    # its NULL bookkeeping.
    aligned = pa.array(np.maximum(where, 0)) if old.num_rows else pa.nulls(len(where), pa.int64())

    def differs(c: str) -> pa.ChunkedArray:
        return distinct(new.column(c), old.column(c).take(aligned).cast(new.schema.field(c).type))

    flags = columns(differs, values)
    updated = np.flatnonzero(any_of(flags, new.num_rows) & ~is_new)
    rows = pa.array(updated)
    hits = [np.asarray(flag.take(rows).to_numpy(zero_copy_only=False), dtype=bool) for flag in flags]
    return Compared(np.flatnonzero(is_new), updated, where[updated], hits, kept)


def _match(new: pa.ChunkedArray, old: pa.ChunkedArray, live: np.ndarray | None, *, table: str,
           key: str) -> tuple[np.ndarray, np.ndarray]:
    """For each new key the row index of the same key among the `live` rows of `old` (-1: none), and for
    each old key whether it is among the new keys (deleted rows included: callers mask them out).

    Raises:
        KeyViolation: a key repeats in `new`.
    """
    kind = new.type
    # Deleted rows may repeat a live row's key (an updated row's old version): they must never match.
    index = None if live is None else np.flatnonzero(live)
    if old.null_count:
        # Only deleted rows have a null key (an erased row's stored key): any key of the column stands in.
        old = pc.fill_null(old, pc.min(old))
    if pa.types.is_integer(kind) or pa.types.is_temporal(kind):
        n = np.asarray(new.combine_chunks().cast(kind).to_numpy(zero_copy_only=False))
        o = np.asarray(old.combine_chunks().cast(kind).to_numpy(zero_copy_only=False))
        dense = _dense_match(n, o, index) if pa.types.is_integer(kind) and len(n) and len(o) else None
        if dense is None:
            dense = _sorted_match(n, o, index)
        where, kept, repeated = dense
        if repeated is None:
            return where, kept
        raise KeyViolation(f"table {table!r}: duplicate primary key {{{key!r}: {repeated!r}}} in the written data")
    if pc.count_distinct(new).as_py() != len(new):
        counts = pc.value_counts(new)
        dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        raise KeyViolation(f"table {table!r}: duplicate primary key {{{key!r}: {dup!r}}} in the written data")
    candidates = old.combine_chunks() if index is None else old.take(pa.array(index)).combine_chunks()
    where = np.asarray(pc.fill_null(pc.index_in(new, value_set=candidates), -1).combine_chunks(), dtype=np.int64)
    if index is not None and len(index):
        where = np.where(where >= 0, index[np.maximum(where, 0)], -1)
    kept = np.asarray(pc.is_in(old, value_set=new.combine_chunks()).combine_chunks(), dtype=bool)
    return where, kept


_Matched = tuple[np.ndarray, np.ndarray, object]  # where, kept and the first repeated new key (None: none)


def _sorted_match(new: np.ndarray, old: np.ndarray, index: np.ndarray | None) -> _Matched:
    """`_match` of numeric keys by sorting: linear on already sorted keys, the common case for nightly
    refreshes. `index`: the live rows of `old` (None: all)."""
    n_order = np.argsort(new, kind="stable")
    n_sorted = new[n_order]
    repeats = np.flatnonzero(n_sorted[1:] == n_sorted[:-1])
    if len(repeats):
        return np.empty(0, np.int64), np.empty(0, bool), n_sorted[repeats[0]].item()
    candidates = old if index is None else old[index]
    o_order = np.argsort(candidates, kind="stable")
    # Merge the two sorted key lists (a stable sort of two sorted runs is a linear merge): keys are
    # unique on each side, so equal neighbours are exactly the matches, the old one first. Twice as
    # fast as binary-searching each side in the other.
    both = np.concatenate([candidates[o_order], n_sorted])
    merged = np.argsort(both, kind="stable")
    hits = np.flatnonzero(both[merged[1:]] == both[merged[:-1]])
    old_hit = o_order[merged[hits]]
    if index is not None:
        old_hit = index[old_hit]
    where = np.full(len(new), -1, dtype=np.int64)
    where[n_order[merged[hits + 1] - len(candidates)]] = old_hit
    kept = np.zeros(len(old), dtype=bool)
    kept[old_hit] = True
    return where, kept, None


def _dense_match(new: np.ndarray, old: np.ndarray, index: np.ndarray | None) -> _Matched | None:
    """`_match` for integer keys spanning a range at most a few times their count (ids, the common case):
    a direct-address table instead of sorting, about 5x faster. None when the keys are too sparse.
    `index`: the live rows of `old` (None: all).
    """
    low = min(int(new.min()), int(old.min()))
    span = max(int(new.max()), int(old.max())) - low + 1
    if span > 4 * (len(new) + len(old)):
        return None
    new_slot, old_slot = _slots(new, low), _slots(old, low)
    counts = np.bincount(new_slot, minlength=span)
    repeated = np.flatnonzero(counts > 1)
    if len(repeated):
        return np.empty(0, np.int64), np.empty(0, bool), int(repeated[0]) + low
    row = np.full(span, -1, dtype=np.int64)
    if index is None:
        row[old_slot] = np.arange(len(old), dtype=np.int64)
    else:
        row[old_slot[index]] = index
    return row[new_slot], counts[old_slot] > 0, None


def _duckdb_diff(old: pa.Table, new: pa.Table, key: list[str], *, table: str, remove_missing: bool,
                 con: duckdb.DuckDBPyConnection, before: bool) -> KeyedDiff:
    try:
        con.register("n", new)
        con.register("o", old)
        check_keys(con, "n", key, table, new)
        on = same_key("n", "o", key)
        values = [c for c in new.column_names if c not in key]
        distinct = [f"n.{quote_ident(c)} IS DISTINCT FROM o.{quote_ident(c)}" for c in values]
        differs = " OR ".join(distinct) or "false"
        cols = ", ".join(f"n.{quote_ident(c)}" for c in new.column_names)
        with_before = before and len(values) < 64
        old_cells = "".join(
            f", CASE WHEN {d} THEN o.{quote_ident(c)} END AS {quote_ident('__old_' + c)}"
            for c, d in zip(values, distinct)
        ) if with_before else ""
        mask = (", (" + " + ".join(f"(CASE WHEN {d} THEN {1 << i} ELSE 0 END)::UBIGINT" for i, d in enumerate(distinct))
                + ")::UBIGINT AS __mask") if with_before and values else ", 0::UBIGINT AS __mask"
        changed = con.sql(
            f"SELECT {cols}, o.__frag AS __ofrag, o.__pos AS __opos{old_cells}{mask} FROM n LEFT JOIN o ON {on} "
            f"WHERE o.__pos IS NULL OR {differs}"
        ).to_arrow_table()
        is_new = changed.column("__opos").is_null()
        inserted = changed.filter(is_new).select(new.column_names)
        updates = changed.filter(pc.invert(is_new))
        updated = updates.select(new.column_names)
        replaced = pa.table({"__frag": updates.column("__ofrag"), "__pos": updates.column("__opos")})
        ocols = ", ".join(f"o.{quote_ident(c)}" for c in new.column_names)
        if remove_missing:
            gone = con.sql(f"SELECT {ocols}, o.__frag, o.__pos FROM o ANTI JOIN n ON {on}").to_arrow_table()
        else:
            gone = con.sql(f"SELECT {ocols}, o.__frag, o.__pos FROM o LIMIT 0").to_arrow_table()
        removed = gone.select(["__frag", "__pos"])
        image = before_image(updates, gone, new.schema, key, values) if with_before else None
        return KeyedDiff(inserted, updated, replaced, removed, image)
    except duckdb.Error as exc:
        raise SqlError(f"table {table!r}: key comparison failed: {' '.join(str(exc).split())}") from exc


def before_image(updates: pa.Table, gone: pa.Table, schema: pa.Schema, key: list[str],
                 values: list[str]) -> pa.Table:
    """Key, changed-column mask, deleted flag and old values of every updated or removed row."""
    image_schema = pa.schema(
        [schema.field(k) for k in key]
        + [pa.field("__mask", pa.uint64()), pa.field("__deleted", pa.bool_())]
        + [schema.field(c).with_nullable(True) for c in values]
    )
    changed = [updates.column(k) for k in key] + [
        updates.column("__mask").cast(pa.uint64()), pa.array([False] * updates.num_rows)
    ] + [updates.column("__old_" + c) for c in values]
    full = (1 << len(values)) - 1
    removed = [gone.column(k) for k in key] + [
        pa.array([full] * gone.num_rows, pa.uint64()), pa.array([True] * gone.num_rows)
    ] + [gone.column(c) for c in values]
    return pa.concat_tables([
        pa.Table.from_arrays([a.cast(f.type) for a, f in zip(changed, image_schema)], schema=image_schema),
        pa.Table.from_arrays([a.cast(f.type) for a, f in zip(removed, image_schema)], schema=image_schema),
    ])


def upsert_hits(current: CurrentRows, data: pa.Table, key: list[str], *, table: str,
                con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """(`__frag`, `__pos`) of the live rows of `current` (which holds at least the key columns) whose key
    appears in `data`, the rows an upsert of `data` replaces if they changed.

    One flat key is matched in memory (a bitmap of the key range for integers, else `_match`: a few
    milliseconds for a million stored keys, where a DuckDB semi-join costs several times that); other
    keys go through `matching_keys`.

    Raises:
        KeyViolation: a key repeats in `data`.
    """
    column = data.column(key[0])
    if len(key) == 1 and column.null_count == 0 and not pa.types.is_floating(column.type) and _flat(column.type):
        hit = _members(column, current.rows.column(key[0])) if pa.types.is_integer(column.type) else None
        if hit is not None:
            return current.positions(np.flatnonzero(hit if current.live is None else hit & current.live))
        try:
            where, _ = _match(column, current.rows.column(key[0]), current.live, table=table, key=key[0])
            return current.positions(np.sort(where[where >= 0]))
        except pa.ArrowNotImplementedError:
            pass  # a type the vectorized match lacks: DuckDB below handles every type
    return matching_keys(current.positioned(), data, key, table=table, con=con)


def _members(new: pa.ChunkedArray, old: pa.ChunkedArray) -> np.ndarray | None:
    """For each `old` key whether it is among the `new` keys, by a bitmap over the key range: a few keys
    written to a large table need one byte per key of the range, not the 8-byte tables of `_dense_match`.
    None when the keys are too sparse, or a new key repeats (`_match` then names it)."""
    if old.null_count:
        old = pc.fill_null(old, pc.min(old))  # only deleted rows have a null key (see `_match`)
    n = np.asarray(new.combine_chunks().to_numpy(zero_copy_only=False))
    o = np.asarray(old.combine_chunks().cast(new.type).to_numpy(zero_copy_only=False))
    if not len(n) or not len(o):
        return np.zeros(len(o), dtype=bool)
    low = min(int(n.min()), int(o.min()))
    span = max(int(n.max()), int(o.max())) - low + 1
    if span > 4 * (len(n) + len(o)):
        return None
    present = np.zeros(span, dtype=bool)
    present[_slots(n, low)] = True
    if np.count_nonzero(present) != len(n):
        return None
    hit: np.ndarray = present[_slots(o, low)]
    return hit


def _slots(keys: np.ndarray, low: int) -> np.ndarray:
    """Integer keys as offsets from `low` (their smallest), in any integer type up to uint64."""
    return (keys - low).astype(np.intp, copy=False) if low >= 0 else (keys.astype(np.int64) - low).astype(np.intp)


def matching_keys(old: pa.Table, keys: pa.Table, key: list[str], *, table: str,
                  con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """(`__frag`, `__pos`) of the rows of `old` whose key appears in `keys` (`con`: a cursor to use)."""
    with own_or_given(con) as cursor:
        return _matching_keys(old, keys, key, table=table, con=cursor)


def _matching_keys(old: pa.Table, keys: pa.Table, key: list[str], *, table: str,
                   con: duckdb.DuckDBPyConnection) -> pa.Table:
    try:
        con.register("o", old)
        con.register("k", keys.select(key))
        on = same_key("k", "o", key)
        return con.sql(f"SELECT o.__frag, o.__pos FROM o SEMI JOIN k ON {on}").to_arrow_table()
    except duckdb.Error as exc:
        raise SqlError(f"table {table!r}: key lookup failed: {str(exc).splitlines()[0]}") from exc


@dataclass(frozen=True, slots=True)
class MultisetDiff:
    """What replacing the rows of an unkeyed table changes: rows compared as a multiset (NULL equals NULL).

    `removed` is (`__frag`, `__pos`) of current rows to delete; `added` the new rows to write.
    """

    removed: pa.Table
    added: pa.Table


def multiset_diff(old: pa.Table, new: pa.Table, *, table: str, con: duckdb.DuckDBPyConnection) -> MultisetDiff:
    """Compare `new` rows with `old` rows (which carry `__frag`, `__pos`) as multisets.

    The n-th copy of a row in `old` matches the n-th copy in `new`; rows left unmatched in `old` are
    removed and those left in `new` are added, so an unchanged row is never rewritten.

    Raises:
        SqlError: DuckDB cannot compare the columns.
    """
    cols = [quote_ident(c) for c in new.column_names]
    numbered = ", ".join(cols)
    on = " AND ".join([f"a.{c} IS NOT DISTINCT FROM b.{c}" for c in cols] + ["a.__n = b.__n"])
    try:
        con.register("__udr_old", old)
        con.register("__udr_new", new)
        rank = f"row_number() OVER (PARTITION BY {numbered})" if cols else "row_number() OVER ()"
        con.execute(f"CREATE OR REPLACE TEMP VIEW __udr_o AS SELECT *, {rank} AS __n FROM __udr_old")
        con.execute(f"CREATE OR REPLACE TEMP VIEW __udr_n AS SELECT *, {rank} AS __n FROM __udr_new")
        removed = con.sql(f"SELECT a.__frag, a.__pos FROM __udr_o a ANTI JOIN __udr_n b ON {on}").to_arrow_table()
        added = con.sql(f"SELECT {', '.join('a.' + c for c in cols)} FROM __udr_n a ANTI JOIN __udr_o b ON {on}"
                        ).to_arrow_table()
    except duckdb.Error as exc:
        raise SqlError(f"table {table!r}: row comparison failed: {' '.join(str(exc).split())}") from exc
    return MultisetDiff(removed, added.cast(new.schema))
