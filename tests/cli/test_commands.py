"""The `udr` command line, driven as a user would: through click's runner and as a real process."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

import udr
from udr.cli import cli

ROWS = pa.table({"id": [1, 2, 3], "name": ["ann", "bob", "[bold]cy"], "score": [1.5, None, 3.0]})


def run(lake: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--lake", str(lake), *args])
    # An exception other than SystemExit would be a crash (a traceback for the user), never expected.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def ok(lake: Path, *args: str) -> str:
    result = run(lake, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(lake: Path, *args: str, code: int = 1) -> str:
    """Run a command that must fail with `code` and one `error:` line on stderr; return that line."""
    result = run(lake, *args)
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def write(path: Path, rows: pa.Table = ROWS) -> Path:
    suffix = path.suffix
    if suffix == ".parquet":
        pq.write_table(rows, path)
    elif suffix == ".csv":
        pa_csv.write_csv(rows, path)
    elif suffix in (".jsonl", ".ndjson"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows.to_pylist()))
    else:
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
            writer.write_table(rows)
    return path


def cells(rendered: str) -> list[list[str]]:
    """The body rows of a rich table, cell texts stripped."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in rendered.splitlines() if line.startswith("│")]


def query_json(lake: Path, query: str, *args: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(ok(lake, "sql", query, "--format", "json", *args))
    return rows


@pytest.fixture
def lake(lake_path: Path) -> Path:
    assert "now holds an empty lake" in ok(lake_path, "init")
    return lake_path


@pytest.fixture
def loaded(lake: Path, tmp_path: Path) -> Path:
    ok(lake, "import", "people", str(write(tmp_path / "people.parquet")), "--key", "id", "-m", "first load")
    return lake


# -- init and import ---------------------------------------------------------------------------------------


def test_init_takes_the_lake_as_an_argument_too(tmp_path: Path) -> None:
    where = tmp_path / "mine"
    assert str(where) in ok(tmp_path / "elsewhere", "init", str(where))
    assert (where / "FORMAT").is_file() and not (tmp_path / "elsewhere").exists()
    assert "already holds a lake" in ok(where, "init")


def test_init_is_idempotent_and_other_commands_never_create_a_lake(lake: Path, tmp_path: Path) -> None:
    assert (lake / "FORMAT").is_file()
    assert "already holds a lake" in ok(lake, "init")
    assert len(ok(lake, "log").splitlines()) > 1
    missing = tmp_path / "typo"
    assert f"udr init {missing}" in fails(missing, "tables")
    assert not missing.exists()


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl", ".ndjson", ".arrow", ".feather"])
def test_import_each_format(lake: Path, tmp_path: Path, suffix: str) -> None:
    out = ok(lake, "import", "people", str(write(tmp_path / f"people{suffix}")))
    assert "3 inserted" in out
    rows = query_json(lake, "SELECT id, name, score FROM people ORDER BY id")
    assert rows == [
        {"id": 1, "name": "ann", "score": 1.5},
        {"id": 2, "name": "bob", "score": None},
        {"id": 3, "name": "[bold]cy", "score": 3.0},
    ]


def test_import_modes_and_keys(lake: Path, tmp_path: Path) -> None:
    first = write(tmp_path / "a.csv")
    ok(lake, "import", "plain", str(first))
    ok(lake, "import", "plain", str(first), "--mode", "append")
    assert query_json(lake, "SELECT count(*) AS n FROM plain") == [{"n": 6}]
    out = ok(lake, "import", "plain", str(first), "--mode", "overwrite")
    assert "3 inserted" in out and "6 deleted" in out
    assert query_json(lake, "SELECT count(*) AS n FROM plain") == [{"n": 3}]

    changed = pa.table({"id": [3, 4], "name": ["cy", "dan"], "score": [9.0, 4.0]})
    ok(lake, "import", "keyed", str(first), "--mode", "upsert", "--key", "id", "-m", "seed keyed")
    out = ok(lake, "import", "keyed", str(write(tmp_path / "b.parquet", changed)), "--mode", "upsert")
    assert "1 inserted, 1 updated, 0 deleted" in out
    assert query_json(lake, "SELECT id, score FROM keyed WHERE id >= 3 ORDER BY id") == [
        {"id": 3, "score": 9.0}, {"id": 4, "score": 4.0},
    ]
    assert cells(ok(lake, "tables")) == [["keyed", "4", "id", "3"], ["plain", "3", "-", "3"]]
    assert "seed keyed" in ok(lake, "log", "--table", "keyed")


def test_import_key_problems_are_one_line_errors(lake: Path, tmp_path: Path) -> None:
    file = write(tmp_path / "p.parquet")
    assert "--key" in fails(lake, "import", "t", str(file), "--mode", "upsert")
    ok(lake, "import", "t", str(file))
    assert "no primary key" in fails(lake, "import", "t", str(file), "--key", "id")
    assert "nope" in fails(lake, "import", "u", str(file), "--key", "nope")
    assert "upsert" in fails(lake, "import", "t", str(file), "--mode", "upsert")
    assert query_json(lake, "SELECT count(*) AS n FROM t") == [{"n": 3}]


def test_import_input_problems(lake: Path, tmp_path: Path) -> None:
    assert "does not exist" in fails(lake, "import", "t", str(tmp_path / "none.csv"), code=2)
    unknown = tmp_path / "rows.txt"
    unknown.write_text("id\n1\n")
    assert "unknown file type" in fails(lake, "import", "t", str(unknown), code=2)
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"not parquet at all")
    assert "cannot read" in fails(lake, "import", "t", str(damaged))
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("id,name\n1,a\n2,b,extra\n")
    assert "cannot read" in fails(lake, "import", "t", str(bad_csv))
    assert "no tables yet" in ok(lake, "tables")


# -- sql ----------------------------------------------------------------------------------------------------


def test_sql_table_csv_json_and_parquet(loaded: Path, tmp_path: Path) -> None:
    query = "SELECT id, name, score FROM people ORDER BY id"
    table = ok(loaded, "sql", query)
    assert "[bold]cy" in table and "NULL" in table and "(3 rows)" in table
    assert list(csv.DictReader(io.StringIO(ok(loaded, "sql", query, "--format", "csv")))) == [
        {"id": "1", "name": "ann", "score": "1.5"},
        {"id": "2", "name": "bob", "score": ""},
        {"id": "3", "name": "[bold]cy", "score": "3"},
    ]
    assert [r["name"] for r in query_json(loaded, query)] == ["ann", "bob", "[bold]cy"]
    assert "--output" in run(loaded, "sql", query, "--format", "parquet").output
    assert run(loaded, "sql", query, "--format", "parquet").exit_code == 2
    out = tmp_path / "out.parquet"
    assert ok(loaded, "sql", query, "--format", "parquet", "--output", str(out)) == ""
    assert pq.read_table(out).equals(ROWS)
    text = tmp_path / "out.txt"
    ok(loaded, "sql", query, "-o", str(text))
    assert "[bold]cy" in text.read_text()


def test_sql_json_spells_every_type(lake: Path) -> None:
    rows = query_json(lake, "SELECT DATE '2024-05-01' AS d, 'x'::BLOB AS b, 1.25::DECIMAL(5,2) AS m, "
                            "'nan'::DOUBLE AS f, [1, 2] AS l, INTERVAL 90 SECOND AS i")
    assert rows == [{"d": "2024-05-01", "b": "eA==", "m": "1.25", "f": None, "l": [1, 2],
                     "i": {"months": 0, "days": 0, "nanoseconds": 90_000_000_000}}]


def test_sql_time_travel(loaded: Path, tmp_path: Path) -> None:
    more = pa.table({"id": [4], "name": ["dan"], "score": [4.0]})
    ok(loaded, "import", "people", str(write(tmp_path / "more.parquet", more)))
    assert query_json(loaded, "SELECT count(*) AS n FROM people", "--at", "main~1") == [{"n": 3}]
    assert query_json(loaded, 'SELECT count(*) AS n FROM people WHERE id NOT IN (SELECT id FROM "people@main~1")') == [
        {"n": 1}
    ]
    assert query_json(loaded, "SELECT count(*) AS n FROM people", "--at", "2999-01-01") == [{"n": 4}]
    assert "people" in ok(loaded, "tables", "--at", "main~1")


def test_sql_errors_are_one_line(loaded: Path, tmp_path: Path) -> None:
    assert "syntax" in fails(loaded, "sql", "SELEC nothing").lower()
    assert "peple" in fails(loaded, "sql", "SELECT * FROM peple")
    assert "nope" in fails(loaded, "sql", 'SELECT * FROM "people@nope"')
    assert "nope" in fails(loaded, "sql", "SELECT 1", "--at", "nope")
    assert "nope" in fails(loaded, "sql", "SELECT 1", "--branch", "nope")
    # Raised by DuckDB while rows are produced, after the query was planned.
    assert "Could not convert string 'a' to INT32" in fails(loaded, "sql", "select 'a'::int")
    assert "give a SQL query" in fails(loaded, "sql", "", code=2)
    missing_dir = tmp_path / "no" / "such" / "dir.csv"
    assert "cannot write" in fails(loaded, "sql", "SELECT 1", "--format", "csv", "-o", str(missing_dir), code=2)


# -- tables, log, show ------------------------------------------------------------------------------------


def test_tables_log_and_show(loaded: Path, tmp_path: Path) -> None:
    ok(loaded, "import", "notes", str(write(tmp_path / "n.csv")), "-m", "notes load")
    assert cells(ok(loaded, "tables")) == [["notes", "3", "-", "3"], ["people", "3", "id", "3"]]
    log = ok(loaded, "log")
    assert log.index("notes load") < log.index("first load") < log.index("create lake")
    assert "first load" not in ok(loaded, "log", "-n", "1")
    assert "notes load" not in ok(loaded, "log", "--table", "people")
    with udr.open(loaded) as db:
        head = db.commit_info("main")
    shown = ok(loaded, "show", "main~1")
    assert "first load" in shown and head.parents[0] in shown
    assert "people" in shown and "inserted" in shown
    assert head.id in ok(loaded, "show", head.id[:12])
    assert "unknown" in fails(loaded, "show", "unknown")
    assert "nope" in fails(loaded, "log", "--branch", "nope")


# -- maintenance ----------------------------------------------------------------------------------------------


def test_verify_ok_then_detects_a_flipped_byte(
    lake: Path, tmp_path: Path, make_big: Callable[[], pa.Table], chunk_files: Callable[[Path], list[Path]]
) -> None:
    ok(lake, "import", "big", str(write(tmp_path / "big.parquet", make_big())))
    assert ok(lake, "verify").startswith("ok: ")
    chunks = chunk_files(lake)
    assert len(chunks) == 1
    data = bytearray(chunks[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunks[0].write_bytes(bytes(data))
    result = run(lake, "verify")
    assert result.exit_code == 1
    assert chunks[0].parent.name + chunks[0].stem in result.stdout
    assert result.stderr.strip() == f"error: verify found 1 problem in {lake}"
    assert "big" in fails(lake, "sql", "SELECT sum(a) FROM big")


def test_rebuild_gc_and_stats(
    loaded: Path, make_big: Callable[[], pa.Table], chunk_files: Callable[[Path], list[Path]]
) -> None:
    with udr.open(loaded) as db:
        tx = db.transaction()
        tx.append("abandoned", make_big())
        tx.abort()
    garbage = chunk_files(loaded)
    assert len(garbage) == 1
    size = garbage[0].stat().st_size
    assert int(ok(loaded, "gc").split()[1].replace(",", "")) >= size
    assert not garbage[0].exists()
    assert ok(loaded, "gc").startswith("freed 0 bytes")
    assert "rebuilt derived state from 2 commits" in ok(loaded, "rebuild")
    assert query_json(loaded, "SELECT count(*) AS n FROM people") == [{"n": 3}]
    stats = ok(loaded, "stats")
    assert [line.split()[-1] for line in stats.splitlines() if line.startswith("commits")] == ["2"]
    assert "dedup ratio" in stats


def test_demo(tmp_path: Path) -> None:
    path = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", str(path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "if you ever held your breath during a pipeline run, this is for you" in text
    for step in ("Step 1/7: An atomic transaction", "Step 2/7: A transaction that fails midway",
                 "Step 3/7: SQL across tables", "Step 4/7: Time travel", "Step 5/7: Zero-copy branches",
                 "Step 6/7: Reacting to a commit in real time", "Step 7/7: The log, verify and stats"):
        assert step in text
    assert "Nothing of the failed transaction is visible" in text
    assert '"orders@main~1"' in text and "db.verify(): ok" in text
    with udr.open(path) as db:
        messages = [c.message for c in db.log()]
    assert messages == ["new customer with first orders", "merge experiment into main",
                        "day 3: shipped orders delivered", "experiment: 10% off for DE customers",
                        "day 2: shipments and new orders", "load customers and orders", "create lake"]
    assert "not empty" in fails(tmp_path, "demo", str(path))


def test_failed_commands_change_nothing_on_disk(
    loaded: Path, tmp_path: Path, disk_state: Callable[[Path], dict[str, str]]
) -> None:
    before = disk_state(loaded)
    wrong_schema = write(tmp_path / "w.parquet", pa.table({"other": [1]}))
    fails(loaded, "import", "people", str(wrong_schema))
    fails(loaded, "import", "people", str(tmp_path / "missing.parquet"), code=2)
    fails(loaded, "import", "fresh", str(wrong_schema), "--mode", "upsert")
    fails(loaded, "sql", "SELECT * FROM nowhere")
    fails(loaded, "sql", "SELECT 1", "-o", str(tmp_path / "x" / "y.csv"), code=2)
    assert run(loaded, "sql", "SELECT 1", "--format", "nope").exit_code == 2
    assert disk_state(loaded) == before
    assert not list(tmp_path.glob("**/*.tmp"))


# -- as a real process ----------------------------------------------------------------------------------------


def udr_process(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "udr.cli", *args], check=False, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_process_round_trip_with_env_lake(lake: Path, tmp_path: Path) -> None:
    file = write(tmp_path / "rows.csv")
    done = udr_process("import", "rows", str(file), env={"UDR_LAKE": str(lake)})
    assert done.returncode == 0, done.stderr
    done = udr_process("--lake", str(lake), "sql", "SELECT name FROM rows ORDER BY id", "--format", "csv")
    assert done.stdout.splitlines() == ['"name"', '"ann"', '"bob"', '"[bold]cy"']
    bad = udr_process("--lake", str(lake), "sql", "SELECT FROM WHERE")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1
    assert "Traceback" not in bad.stderr


def test_process_ctrl_c_exits_130_and_leaves_a_sound_lake(tmp_path: Path) -> None:
    path = tmp_path / "demo"
    child = subprocess.Popen([sys.executable, "-m", "udr.cli", "demo", str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert child.stdout is not None
    for line in child.stdout:
        if "Step 2/7" in line:
            break
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "Traceback" not in err
    with udr.open(path) as db:
        assert db.verify().ok
