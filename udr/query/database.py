"""The in-memory DuckDB database of one open lake, and cursors on it.

Opening a DuckDB database costs tens of milliseconds, a cursor microseconds: one `Database` per open lake is
opened on first use and shared by the snapshot server, which builds its views on cursors of it
(`udr.query.engine.SnapshotServer`), and by the facade's keyed comparisons and change pairing, which only
need a cursor. Views and registered Arrow tables are created TEMP, so each cursor sees only its own.
Cursors are not shared between threads; the database itself is safe across threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


class Database:
    """The lake's in-memory DuckDB database: cursors on it, and closing it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._database: duckdb.DuckDBPyConnection | None = None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection (cursor) to the database (opened on first use).

        Opening a DuckDB database costs tens of milliseconds; a cursor costs microseconds. Views and
        registered Arrow tables are created TEMP, so each cursor sees only its own.
        """
        with self._lock:
            if self._database is None:
                self._database = duckdb.connect()
                # Chunk files never change, so caching their Parquet footers is always safe.
                self._database.execute("SET parquet_metadata_cache = true")
            return self._database.cursor()

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor closed on exit (for work whose results are fetched inside the block)."""
        con = self.cursor()
        try:
            yield con
        finally:
            con.close()

    def close(self) -> None:
        """Close the DuckDB database (cursors handed out stop working)."""
        with self._lock:
            if self._database is not None:
                self._database.close()
                self._database = None
