"""SQL text for DuckDB: quoting identifiers and strings, join conditions on a key, one-line error messages,
and a connection of one's own when none is given.

Pure functions of their arguments (`own_or_given` opens and closes an in-memory connection), so safe across
threads. The SQL engine, keyed diffs, change pairing, incremental builds and writing SQL all build their
statements with them; keeping them apart from `udr.query.engine` lets those modules build SQL without
depending on how snapshots are served.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


def one_line(exc: Exception) -> str:
    """DuckDB's message on one line (its hints, like "Did you mean ...", included)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


@contextmanager
def own_or_given(con: duckdb.DuckDBPyConnection | None) -> Iterator[duckdb.DuckDBPyConnection]:
    """`con` if given (the caller closes it), else a private in-memory connection closed on exit."""
    if con is not None:
        yield con
        return
    own = duckdb.connect()
    try:
        yield own
    finally:
        own.close()


def quote_ident(name: str) -> str:
    """A DuckDB identifier literal."""
    return '"' + name.replace('"', '""') + '"'


def same_key(a: str, b: str, key: list[str]) -> str:
    """A join condition: rows of the relations named `a` and `b` have equal `key` columns.

    `IS NOT DISTINCT FROM`, not `=`: DuckDB 1.5's hash join never matches a NaN key with `=` (2.x does), and
    key columns hold no NULL, so nothing else changes. It is still a hash join.
    """
    return " AND ".join(f"{a}.{quote_ident(k)} IS NOT DISTINCT FROM {b}.{quote_ident(k)}" for k in key)


def quote_str(text: str) -> str:
    """A DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"
