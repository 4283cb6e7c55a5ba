"""The keys a key-local query's output can change at (`udr.query.incremental`), narrowed to the input rows
that changed in a column the query reads.

A key-local query's output row with key k depends only on the input rows with key k, and only on the
columns of them that the query names. An input keyed on k that changed only in columns the query does not
read (a refresh rewriting a column no score uses) cannot change the output at k, so k need not be
recomputed. `read_columns` finds the columns a query names per input, conservatively (anything it does not
recognise means every column); `changed_read_keys` compares the removed and added versions of an input's
changed rows in those columns only. Exact: values are compared (NULL equals NULL, NaN equals NaN), never
hashed. Pure functions over a syntax tree or Arrow tables.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from udr.query.aligned import distinct

# Per input table: the lower-case names of the columns the query reads of it; None: it may read any.
Reads = dict[str, frozenset[str] | None]


def read_columns(query: exp.Select, tables: list[exp.Table], names: list[str]) -> Reads:
    """The columns `query` reads of each lake table of `names` (`tables`: the references of them, in order).

    A column qualified by a table's alias is read of that table; an unqualified one of every table that has
    it. A star, a qualifier that is no alias of `tables`, or a deeper path (`t.struct.field`) makes every
    column of every table read.
    """
    by_alias = {table.alias_or_name.lower(): name for table, name in zip(tables, names)}
    reads: dict[str, set[str] | None] = {name: set() for name in names}
    everything: Reads = dict.fromkeys(names)
    unqualified: set[str] = set()
    for star in query.find_all(exp.Star):
        if not isinstance(star.parent, exp.Column):
            return everything
    for column in query.find_all(exp.Column):
        qualifier = column.table.lower()
        if column.args.get("db") or column.args.get("catalog") or (qualifier and qualifier not in by_alias):
            return everything
        if not qualifier:
            unqualified.add(column.name.lower())
        elif isinstance(column.this, exp.Star):
            reads[by_alias[qualifier]] = None
        elif (read := reads[by_alias[qualifier]]) is not None:
            read.add(column.name.lower())
    return {name: None if read is None else frozenset(read | unqualified) for name, read in reads.items()}


def changed_read_keys(removed: pa.Table, added: pa.Table, key: str) -> pa.ChunkedArray:
    """The keys of a table keyed on `key` whose row changed between two states, given the `removed` and
    `added` rows of that change (each key at most once in each), both with the same columns: a key only
    removed or only added, or both with a value differing in one of those columns."""
    old_keys, new_keys = removed.column(key).combine_chunks(), added.column(key).combine_chunks()
    where = np.asarray(pc.fill_null(pc.index_in(old_keys, value_set=new_keys), -1), dtype=np.int64)
    paired = np.flatnonzero(where >= 0)
    before, after = removed.take(pa.array(paired)), added.take(pa.array(where[paired]))
    differs = np.zeros(len(paired), dtype=bool)
    for name in removed.column_names:
        if name != key:
            differs |= np.asarray(distinct(before.column(name), after.column(name)).to_numpy(zero_copy_only=False),
                                  dtype=bool)
    gone = np.ones(len(where), dtype=bool)
    gone[paired[~differs]] = False  # a pair that differs keeps its key once, from the removed side
    arrived = np.asarray(pc.invert(pc.is_in(new_keys, value_set=old_keys)), dtype=bool)
    return pa.chunked_array([old_keys.filter(pa.array(gone)), new_keys.filter(pa.array(arrived))], old_keys.type)
