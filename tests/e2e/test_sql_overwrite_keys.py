"""A keyed `CREATE OR REPLACE TABLE ... AS` over each kind of key and value (`udr.query.sqldiff`): the table
ends as DuckDB's own statement leaves it (rows compared as `IS NOT DISTINCT FROM` compares them), and the commit
counts exactly the rows whose values are distinct from the current ones."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

import udr

# (table, its rows, the query replacing them, (inserted, updated, deleted)).
CASES = [
    # A string key: -0.0 equals 0.0 and NaN equals NaN, so neither row changes; a value
    # becoming NULL does; 'd' goes, 'e' comes.
    ("k (id VARCHAR PRIMARY KEY, v DOUBLE)",
     "('a', 0.0), ('b', 'nan'::DOUBLE), ('c', 1.5), ('d', NULL), ('f', NULL)",
     "SELECT * FROM (VALUES ('a', -0.0), ('b', 'nan'::DOUBLE), ('c', NULL), ('e', 2.0), ('f', NULL)) t(id, v)",
     (1, 1, 1)),
    # A composite key of a date and an integer; nested values with NULLs inside them.
    ("k (d DATE, n INTEGER, l INTEGER[], s STRUCT(a INTEGER, b VARCHAR), PRIMARY KEY (d, n))",
     ("('2024-01-01', 1, [1, NULL], {'a': NULL, 'b': 'x'}), ('2024-01-01', 2, [1, 2], {'a': 1, 'b': NULL}), "
     "('2024-01-02', 1, NULL, NULL), ('2024-01-03', 1, [], {'a': 3, 'b': 'z'})"),
     ("SELECT * FROM (VALUES ('2024-01-01'::DATE, 1, [1, NULL], {'a': NULL, 'b': 'x'}), "
     "('2024-01-01'::DATE, 2, [1, 3], {'a': 1, 'b': NULL}), ('2024-01-02'::DATE, 1, NULL, {'a': NULL, 'b': NULL}), "
     "('2024-01-04'::DATE, 1, [], {'a': 3, 'b': 'z'})) t(d, n, l, s)"),
     (1, 2, 1)),
    # A float key: the NaN key is the same row.
    ("k (f DOUBLE PRIMARY KEY, v INTEGER)",
     "('nan'::DOUBLE, 1), (1.5, 2), (2.5, 3)",
     "SELECT * FROM (VALUES ('nan'::DOUBLE, 1), (1.5, 20), (3.5, 4)) t(f, v)",
     (1, 1, 1)),
    # A decimal and a string key, a blob and a timestamp value.
    ("k (p DECIMAL(10, 2), q VARCHAR, b BLOB, t TIMESTAMP, PRIMARY KEY (p, q))",
     "(1.50, 'x', 'ab'::BLOB, '2024-01-01 00:00:00'), (2.00, 'x', NULL, '2024-01-01 00:00:01')",
     ("SELECT * FROM (VALUES (1.50::DECIMAL(10, 2), 'x', 'ab'::BLOB, '2024-01-01 00:00:00'::TIMESTAMP), "
     "(2.00::DECIMAL(10, 2), 'x', 'c'::BLOB, '2024-01-01 00:00:01'::TIMESTAMP), "
     "(2.00::DECIMAL(10, 2), 'y', NULL, NULL)) t(p, q, b, t)"),
     (1, 1, 0)),
]


@pytest.mark.parametrize("table, rows, query, counts", CASES)
def test_a_keyed_overwrite_leaves_what_duckdb_leaves_and_counts_distinct_rows(
        tmp_path: Path, table: str, rows: str, query: str, counts: tuple[int, int, int]) -> None:
    name = table.split(maxsplit=1)[0]
    setup = f"CREATE TABLE {table}; INSERT INTO {name} VALUES {rows}"
    plain = duckdb.connect()
    plain.execute(setup)
    plain.execute(f"CREATE OR REPLACE TABLE {name} AS {query}")
    with udr.open(tmp_path / "lake") as db:
        db.execute(setup)
        commit = db.execute(f"CREATE OR REPLACE TABLE {name} AS {query}")
        assert db.primary_key(name) is not None
        change = commit.tables[name]
        assert (change.inserted, change.updated, change.deleted) == counts
        ours = db.query(f"SELECT * FROM {name}")
    plain.register("ours", ours)
    # EXCEPT compares rows as IS NOT DISTINCT FROM does (NULL equals NULL, NaN equals NaN, -0.0 equals 0.0).
    for a, b in (("ours", name), (name, "ours")):
        missing = plain.execute(f"SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})")
        assert missing.fetchone() == (0,)
    assert ours.num_rows == plain.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]


@pytest.mark.parametrize("query, message", [
    ("SELECT * FROM (VALUES ('2024-01-01'::DATE, 1, 5), ('2024-01-01'::DATE, 1, 5)) t(d, n, v)", "duplicate"),
    ("SELECT * FROM (VALUES ('2024-01-01'::DATE, 1, 5), ('2024-01-01'::DATE, NULL, 6)) t(d, n, v)", "null"),
    ("SELECT * FROM (VALUES ('2024-01-01'::DATE, 1, 5), (NULL, 2, 6)) t(d, n, v)", "null"),
])
def test_a_composite_key_overwrite_with_a_bad_key_writes_nothing(tmp_path: Path, query: str, message: str) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.execute("CREATE TABLE k (d DATE, n INTEGER, v INTEGER, PRIMARY KEY (d, n));"
                   "INSERT INTO k VALUES ('2024-01-01', 1, 5), ('2024-01-01', 2, 6)")
        head = db.commit_info("main").id
        with pytest.raises(udr.KeyViolation, match=message):
            db.execute(f"CREATE OR REPLACE TABLE k AS {query}")
        assert db.commit_info("main").id == head
        assert db.row_count("k") == 2
