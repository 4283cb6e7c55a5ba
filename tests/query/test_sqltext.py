"""udr.query.sqltext: SQL text for DuckDB."""

from __future__ import annotations

import duckdb

from udr.query.sqltext import quote_ident


def test_quote_ident_escapes_quotes() -> None:
    con = duckdb.connect()
    try:
        name = 'we"ird'
        con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT 1 AS x")
        assert con.sql(f"SELECT x FROM {quote_ident(name)}").fetchall() == [(1,)]
    finally:
        con.close()
