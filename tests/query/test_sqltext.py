"""udr.query.sqltext: SQL text for DuckDB."""

from __future__ import annotations

import duckdb
import pytest

from udr.query.sqltext import one_line, own_or_given, quote_ident, quote_str, same_key


def test_quote_ident_escapes_quotes() -> None:
    con = duckdb.connect()
    try:
        name = 'we"ird'
        con.execute(f"CREATE TABLE {quote_ident(name)} AS SELECT 1 AS x")
        assert con.sql(f"SELECT x FROM {quote_ident(name)}").fetchall() == [(1,)]
    finally:
        con.close()


def test_quote_str_escapes_quotes() -> None:
    with own_or_given(None) as con:
        literal = quote_str("it's")
        assert con.sql(f"SELECT {literal}").fetchall() == [("it's",)]


def test_same_key_matches_nan_keys_and_every_key_column() -> None:
    with own_or_given(None) as con:
        for name, rows in (("a", "('NaN', 1), (2, 1), (2, 5)"), ("b", "('NaN', 1), (2, 1), (3, 5)")):
            con.execute(f'CREATE TABLE {name} (k DOUBLE, "g""x" INTEGER); INSERT INTO {name} VALUES {rows}')
        on = same_key("a", "b", ["k", 'g"x'])
        joined = con.sql(f"SELECT count(*) FROM a JOIN b ON {on}").fetchall()
    assert joined == [(2,)]


def test_own_or_given_closes_only_its_own_connection() -> None:
    given = duckdb.connect()
    try:
        with own_or_given(given) as con:
            assert con is given
        assert given.sql("SELECT 1").fetchall() == [(1,)]
        with own_or_given(None) as own:
            assert own is not given
        with pytest.raises(duckdb.ConnectionException):
            own.sql("SELECT 1")
    finally:
        given.close()


def test_one_line_joins_a_multi_line_message() -> None:
    assert one_line(ValueError("first\n  second\n\nthird")) == "first second third"
    assert one_line(ValueError("")) == "ValueError"
