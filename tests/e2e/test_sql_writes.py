"""Writing with SQL and evolving schemas, as a user does it: the API, the CLI and the errors."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

import udr
from udr.cli import cli
from udr.log.format import DB_META
from udr.log.store import LogStore


def _lake(path: Path) -> udr.Lake:
    db = udr.open(path / "lake")
    db.execute("CREATE TABLE acc (id INTEGER PRIMARY KEY, name VARCHAR, bal INTEGER);"
               "INSERT INTO acc VALUES (1, 'a', 10), (2, 'b', 20), (3, 'c', 30)", message="seed")
    return db


def test_ctas_on_a_keyed_table_stores_only_changed_rows(tmp_path: Path) -> None:
    with _lake(tmp_path) as db:
        db.execute("CREATE OR REPLACE TABLE acc AS SELECT id, name, bal + (id = 2)::INTEGER AS bal FROM acc")
        commit = db.commit_info("main")
        assert commit.tables["acc"] == udr.TableChange(0, 1, 0)
        assert db.primary_key("acc") == ["id"]
        db.execute("CREATE TABLE copy AS SELECT * FROM \"acc@main~1\"")
        assert db.query("SELECT bal FROM copy ORDER BY id").column("bal").to_pylist() == [10, 20, 30]


def test_unsupported_and_failing_statements_write_nothing(tmp_path: Path) -> None:
    with _lake(tmp_path) as db:
        head = db.commit_info("main").id
        for sql, word in [("CREATE INDEX i ON acc(id)", "CREATE INDEX"), ("COPY acc FROM 'x.csv'", "COPY"),
                          ("ATTACH 'other.db'", "ATTACH"), ("CREATE VIEW v AS SELECT 1", "CREATE VIEW")]:
            with pytest.raises(udr.UsageError, match=word):
                db.execute("INSERT INTO acc VALUES (9, 'z', 0); " + sql)
        with pytest.raises(udr.KeyViolation):
            db.execute("INSERT INTO acc VALUES (7, 'y', 0); INSERT INTO acc VALUES (1, 'dup', 0)")
        with pytest.raises(udr.SqlError):
            db.execute("UPDATE acc SET bal = 0; UPDATE acc SET nope = 1")
        assert db.commit_info("main").id == head
        assert db.query("SELECT sum(bal) AS s FROM acc").column("s").to_pylist() == [60]


def test_reading_apis_refuse_writes(tmp_path: Path) -> None:
    with _lake(tmp_path) as db:
        for call in (db.sql, db.query):
            with pytest.raises(udr.UsageError, match=re.escape("db.execute")):
                call("DELETE FROM acc")
        assert db.row_count("acc") == 3


def test_schema_evolution_round_trip_with_time_travel(tmp_path: Path) -> None:
    with _lake(tmp_path) as db:
        chunks_before = db.stats().chunks
        db.execute("ALTER TABLE acc DROP COLUMN name")
        assert db.stats().chunks == chunks_before  # metadata only
        assert db.schema("acc").names == ["id", "bal"]
        assert db.schema("acc", at="main~1").names == ["id", "name", "bal"]
        assert db.read("acc", at="main~1").column("name").to_pylist() == ["a", "b", "c"]
        db.execute("ALTER TABLE acc ALTER COLUMN bal TYPE BIGINT")
        assert db.schema("acc").field("bal").type == pa.int64()
        with pytest.raises(udr.SchemaError, match="widening"):
            db.execute("ALTER TABLE acc ALTER COLUMN bal TYPE INTEGER")
        db.execute("ALTER TABLE acc ADD COLUMN flag BOOLEAN DEFAULT true")
        assert db.query("SELECT count(*) AS n FROM acc WHERE flag").column("n").to_pylist() == [3]
        chunks_before = db.stats().chunks
        db.execute("ALTER TABLE acc RENAME COLUMN bal TO balance")
        assert db.stats().chunks == chunks_before  # the column keeps its id: no data rewritten
        assert db.query("SELECT sum(balance) AS s FROM acc").column("s").to_pylist() == [60]
        assert db.commit_info("main").tables["acc"] == udr.TableChange(0, 0, 0)
        assert db.read("acc", at="main~1").column_names == ["id", "bal", "flag"]
        assert db.diff("acc", "main~1").num_rows == 0  # a rename changes no row


def test_a_dropped_column_added_back_starts_empty(tmp_path: Path) -> None:
    with _lake(tmp_path) as db:
        db.execute("ALTER TABLE acc DROP COLUMN name; ALTER TABLE acc ADD COLUMN name VARCHAR")
        assert db.query("SELECT count(name) AS n FROM acc").column("n").to_pylist() == [0]
        db.execute("UPDATE acc SET name = 'new' WHERE id = 1")
        assert db.read("acc").sort_by("id").column("name").to_pylist() == ["new", None, None]
        assert db.read("acc", at="main~2").column("name").to_pylist() == ["a", "b", "c"]


def test_rename_follows_the_column_through_changes_history_and_merge(tmp_path: Path) -> None:
    with _lake(tmp_path) as db:
        db.create_branch("dev")
        db.execute("ALTER TABLE acc RENAME COLUMN name TO label")
        db.execute("UPDATE acc SET label = 'A' WHERE id = 1")
        db.execute("UPDATE acc SET name = 'B' WHERE id = 2", branch="dev")
        db.merge("dev")
        assert db.query("SELECT id, label FROM acc ORDER BY id").to_pylist() == [
            {"id": 1, "label": "A"}, {"id": 2, "label": "B"}, {"id": 3, "label": "c"}]
        versions = db.history("acc", {"id": 1})
        assert versions.column("label").to_pylist()[-2:] == ["a", "A"]  # update_before / update_after
        assert db.changes("acc", since="main~2").num_rows > 0


def test_primary_key_added_only_when_unique_and_not_null(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'x'), (1, 'y')) v(id, s)")
        with pytest.raises(udr.KeyViolation):
            db.execute("ALTER TABLE t ADD PRIMARY KEY (id)")
        db.execute("DELETE FROM t WHERE s = 'y'; ALTER TABLE t ADD PRIMARY KEY (id)")
        assert db.primary_key("t") == ["id"]
        assert db.execute("INSERT OR REPLACE INTO t VALUES (1, 'z')").tables["t"] == udr.TableChange(0, 1, 0)


def test_overwrite_drop_missing_and_tx_schema_methods(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.append("t", pa.table({"a": [1, 2], "b": ["x", "y"]}))
        db.overwrite("t", pa.table({"a": [3], "c": [1.5]}), evolve=True, drop_missing=True)
        assert db.schema("t").names == ["a", "c"]
        with db.transaction() as tx:
            tx.add_column("t", "d", pa.int32())
            tx.alter_column_type("t", "a", pa.int64())
        assert db.schema("t") == pa.schema([("a", pa.int64()), ("c", pa.float64()), ("d", pa.int32())])


def test_cli_sql_writes_and_reports_counts(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    udr.open(lake).close()
    runner = CliRunner()
    out = runner.invoke(cli, ["--lake", lake, "sql", "CREATE TABLE foo AS SELECT 1 AS a", "-m", "make foo"])
    assert out.exit_code == 0, out.output
    assert "foo: 1 inserted" in out.output and "commit" in out.output
    out = runner.invoke(cli, ["--lake", lake, "sql", "UPDATE foo SET a = 1"])
    assert out.exit_code == 0 and "no row changed" in out.output
    out = runner.invoke(cli, ["--lake", lake, "sql", "CREATE INDEX i ON foo(a)"])
    assert out.exit_code != 0 and "CREATE INDEX" in out.output
    with udr.open(lake) as db:
        assert db.log()[0].message == "make foo"
        assert db.query("SELECT a FROM foo").column("a").to_pylist() == [1]


def test_cli_import_evolve(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("id,x\n1,2\n")
    second.write_text("id,x,y\n2,3,4\n")
    udr.open(lake).close()
    runner = CliRunner()
    assert runner.invoke(cli, ["--lake", lake, "import", "t", str(first)]).exit_code == 0
    assert runner.invoke(cli, ["--lake", lake, "import", "t", str(second)]).exit_code != 0
    out = runner.invoke(cli, ["--lake", lake, "import", "t", str(second), "--evolve"])
    assert out.exit_code == 0, out.output
    with udr.open(lake) as db:
        assert db.schema("t").names == ["id", "x", "y"]


def test_merge_keeps_a_schema_change_made_on_one_side(tmp_path: Path) -> None:
    with _lake(tmp_path) as db:
        db.create_branch("dev")
        db.execute("ALTER TABLE acc DROP COLUMN name; ALTER TABLE acc ALTER COLUMN bal TYPE BIGINT", branch="dev")
        db.execute("UPDATE acc SET bal = 11 WHERE id = 1")
        db.merge("dev")
        assert db.schema("acc").names == ["id", "bal"]
        assert db.schema("acc").field("bal").type == pa.int64()
        assert db.query("SELECT id, bal FROM acc ORDER BY id").to_pylist() == [
            {"id": 1, "bal": 11}, {"id": 2, "bal": 20}, {"id": 3, "bal": 30}]


def test_changes_across_a_dropped_column_keep_old_versions_whole(tmp_path: Path) -> None:
    with _lake(tmp_path) as db:
        db.execute("ALTER TABLE acc DROP COLUMN name")
        db.execute("UPDATE acc SET bal = 0 WHERE id = 3")
        last = db.changes("acc", since="main~1")
        assert last.column("_change").to_pylist() == ["update_before", "update_after"]
        assert last.column("bal").to_pylist() == [30, 0]
        assert "name" not in last.column_names
        assert db.read("acc", at="main~2").column("name").to_pylist() == ["a", "b", "c"]


def test_a_failing_script_inside_a_transaction_undoes_only_itself(tmp_path: Path) -> None:
    with _lake(tmp_path) as db:
        with db.transaction() as tx:
            tx.execute("UPDATE acc SET bal = 0 WHERE id = 1")
            with pytest.raises(udr.KeyViolation):
                tx.execute("DELETE FROM acc WHERE id = 2; INSERT INTO acc VALUES (3, 'dup', 0)")
            assert tx.sql("SELECT count(*) FROM acc").fetchall() == [(3,)]
        assert tx.committed is not None and tx.committed.tables["acc"] == udr.TableChange(0, 1, 0)
        assert db.query("SELECT bal FROM acc ORDER BY id").column("bal").to_pylist() == [0, 20, 30]


def test_a_version_1_lake_reads_and_evolves(tmp_path: Path) -> None:
    with _lake(tmp_path) as db:
        pass
    # A version-1 lake: both labels say 1 (the log's meta and the FORMAT file).
    log = LogStore(tmp_path / "lake")
    with log.env.write() as txn:
        txn.put(b"format_version", b"1", db=log.env.db(DB_META))
    log.close()
    (tmp_path / "lake" / "FORMAT").write_text('{"format": "udr-lake", "version": 1}\n')
    with udr.open(tmp_path / "lake") as db:
        db.execute("UPDATE acc SET bal = 0 WHERE id = 3")
        assert '"version": 1' in (tmp_path / "lake" / "FORMAT").read_text()  # no id written: label kept
        db.execute("ALTER TABLE acc RENAME COLUMN name TO label")
        assert '"version": 2' in (tmp_path / "lake" / "FORMAT").read_text()  # relabelled before the commit
        assert db.read("acc").sort_by("id").column("label").to_pylist() == ["a", "b", "c"]
        assert db.rebuild() > 0
        assert db.query("SELECT label FROM acc WHERE id = 2").column("label").to_pylist() == ["b"]
