"""Classifying statements: what writes, what UDR runs, and what it refuses before anything runs."""

from __future__ import annotations

import pytest

from udr.errors import SqlError, UsageError
from udr.query.parse import parse_script
from udr.query.statements import writing_kind


@pytest.mark.parametrize(("sql", "kind"), [
    ("SELECT 1", None),
    ("EXPLAIN SELECT 1", None),
    ("COPY (SELECT 1) TO 'out.csv'", None),
    ("SELECT 1; DELETE FROM t", "DELETE"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("COPY t FROM 'in.csv'", "COPY"),
    ("ATTACH 'x.db'", "ATTACH"),
    ("MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE", "MERGE"),
    ("not sql at all", None),
])
def test_writing_kind(sql: str, kind: str | None) -> None:
    assert writing_kind(sql) == kind


def test_parse_script_names_targets_and_kinds() -> None:
    parsed = parse_script("CREATE OR REPLACE TABLE m AS SELECT 1 AS a; INSERT INTO m VALUES (2);"
                          "UPDATE m AS x SET a = 3 WHERE x.a = 2; DROP TABLE IF EXISTS m; "
                          "ALTER TABLE m ADD COLUMN b INT")
    assert [(p.kind, p.table) for p in parsed] == [
        ("CREATE TABLE", "m"), ("INSERT", "m"), ("UPDATE", "m"), ("DROP TABLE", "m"), ("ALTER TABLE", "m")]


@pytest.mark.parametrize(("sql", "named"), [
    ("CREATE INDEX i ON t(a)", "CREATE INDEX"),
    ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
    ("CREATE SEQUENCE s", "CREATE SEQUENCE"),
    ("DROP VIEW v", "DROP VIEW"),
    ("INSERT INTO t VALUES (1); COPY t FROM 'x.csv'", "COPY"),
    ("ATTACH 'x.db'", "ATTACH"),
    ("SELECT 1", "SELECT"),
    ("ALTER TABLE t RENAME TO u", "ALTER TABLE"),
    ("INSERT INTO t VALUES (1) RETURNING *", "RETURNING"),
    ("INSERT INTO other.main.t VALUES (1)", "plainly"),
    ("CREATE TEMP TABLE t (a INT)", "TEMP"),
])
def test_refused_statements_are_named(sql: str, named: str) -> None:
    with pytest.raises(UsageError, match=named):
        parse_script(sql)


def test_a_script_that_does_not_parse_is_a_sql_error() -> None:
    with pytest.raises(SqlError):
        parse_script("INSERT INTO t VALUES (1); UPDATE SET")


def test_a_script_is_cut_only_at_semicolons_that_separate_statements() -> None:
    """The fallback split for DuckDB 1.5, which expands `ALTER TABLE ... ADD COLUMN ... DEFAULT` into statements
    without text: semicolons in strings, quoted names and comments stay inside their statement."""
    from udr.query.statements import _pieces

    sql = """CREATE TABLE "a;b" (x VARCHAR DEFAULT ';'); -- one; two
ALTER TABLE "a;b" ADD COLUMN y INT DEFAULT 1;;  SELECT 'x;y' """
    assert [p.strip() for p in _pieces(sql)] == [
        """CREATE TABLE "a;b" (x VARCHAR DEFAULT ';')""",
        """-- one; two\nALTER TABLE "a;b" ADD COLUMN y INT DEFAULT 1""",
        "SELECT 'x;y'",
    ]
