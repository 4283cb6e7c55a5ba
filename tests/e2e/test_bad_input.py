"""Bad input gets a clear `udr.UdrError` and changes nothing on disk (every file but LMDB's lock files is
compared byte for byte before and after); damaged lakes are reported, never read as if they were fine."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

import udr
from udr.log.commits import encode_commit
from udr.log.format import DB_BLOBS, DB_COMMITS, FORMAT_VERSION, BlobKind
from udr.log.index import frame_blob
from udr.log.store import LogStore

DiskState = dict[str, str]
ORDERS = {"id": [1, 2, 3], "status": ["ok", "void", "ok"]}
BIG_ROWS = 20_000  # 4 int64 columns: 640 kB, above the 256 KiB inline limit, so stored as a chunk file


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[udr.Lake, Path]]:
    """One lake shared by the module (every test here must leave it unchanged): an inline table `orders`,
    a chunk-file table `big`, two commits of history, and warm caches."""
    path = tmp_path_factory.mktemp("bad_input") / "lake"
    db = udr.open(path)
    try:
        db.append("orders", ORDERS)
        db.append("big", pa.table({name: pa.array(range(BIG_ROWS), pa.int64()) for name in "abcd"}))
        for ref in ("main", "main~1", "main~2"):
            for table in db.tables(at=ref):
                db.read(table, at=ref)
            db.sql("SELECT 1", at=ref).fetchall()
        yield db, path
    finally:
        db.close()


def rejected(seeded: tuple[udr.Lake, Path], disk_state: Callable[[Path], DiskState], call: Callable[[udr.Lake], object],
             error: type[Exception], *names: str) -> str:
    """Run `call`, expect `error` whose message names each of `names`, and check the lake is byte-identical."""
    db, path = seeded
    before = disk_state(path)
    head = db.log()[0]
    with pytest.raises(error) as info:
        call(db)
    assert isinstance(info.value, udr.UdrError)
    message = str(info.value)
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    assert db.log()[0] == head
    assert disk_state(path) == before, "a rejected call changed the lake on disk"
    return message


def test_the_disk_comparison_sees_a_commit(tmp_path: Path, disk_state: Callable[[Path], DiskState]) -> None:
    path = tmp_path / "lake"
    with udr.open(path) as db:
        db.tables()
        before = disk_state(path)
        db.append("orders", ORDERS)
        assert disk_state(path) != before


BAD_NAMES = ["", "a/b", "/", "a\\b", "..", "x..y", "a\x00b", "tab\tle", "new\nline", "x" * 256, "a\x7f"]


# -- names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
@pytest.mark.parametrize(
    "op",
    [
        lambda db, name: db.append(name, ORDERS),
        lambda db, name: db.overwrite(name, ORDERS),
        lambda db, name: db.create_table(name, pa.schema([("x", pa.int64())])),
    ],
    ids=["append", "overwrite", "create_table"],
)
def test_bad_table_names_are_invalid(seeded: tuple[udr.Lake, Path], disk_state: Callable[[Path], DiskState],
                                     name: str, op: Callable[[udr.Lake, str], object]) -> None:
    rejected(seeded, disk_state, lambda db: op(db, name), udr.InvalidName, "table")


@pytest.mark.parametrize("name", [*BAD_NAMES, "a~1", "a:b", "a^", "a@b"], ids=repr)
@pytest.mark.parametrize(
    "op",
    [
        lambda db, name: db.transaction(branch=name),
        lambda db, name: db.append("orders", ORDERS, branch=name),
        lambda db, name: db.tables(branch=name),
        lambda db, name: db.log(branch=name),
    ],
    ids=["transaction", "append", "tables", "log"],
)
def test_bad_branch_names_are_invalid(seeded: tuple[udr.Lake, Path], disk_state: Callable[[Path], DiskState],
                                      name: str, op: Callable[[udr.Lake, str], object]) -> None:
    rejected(seeded, disk_state, lambda db: op(db, name), udr.InvalidName, "branch")


def test_a_bad_name_inside_a_transaction_leaves_it_usable(seeded: tuple[udr.Lake, Path],
                                                          disk_state: Callable[[Path], DiskState]) -> None:
    db, path = seeded
    before = disk_state(path)
    tx = db.transaction()
    with pytest.raises(udr.InvalidName):
        tx.append("a/b", ORDERS)
    assert tx.tables() == ["big", "orders"]
    tx.abort()
    assert disk_state(path) == before


# -- missing tables and refs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda db: db.read("ordrs"),
        lambda db: db.schema("ordrs"),
        lambda db: db.delete("ordrs", "id = 1"),
        lambda db: db.drop_table("ordrs"),
        lambda db: db.read("ordrs", at="main~1"),
        lambda db: db.sql('SELECT * FROM "ordrs@main"'),
    ],
    ids=["read", "schema", "delete", "drop_table", "read at", "sql versioned"],
)
def test_missing_tables_name_close_matches(seeded: tuple[udr.Lake, Path], disk_state: Callable[[Path], DiskState],
                                           call: Callable[[udr.Lake], object]) -> None:
    rejected(seeded, disk_state, call, udr.TableNotFound, "ordrs", "'orders'")


def test_a_table_missing_at_an_old_version_is_not_found(seeded: tuple[udr.Lake, Path],
                                                        disk_state: Callable[[Path], DiskState]) -> None:
    rejected(seeded, disk_state, lambda db: db.read("big", at="main~1"), udr.TableNotFound, "big")


def test_a_missing_table_in_plain_sql_names_close_matches(seeded: tuple[udr.Lake, Path],
                                                          disk_state: Callable[[Path], DiskState]) -> None:
    rejected(seeded, disk_state, lambda db: db.sql("SELECT * FROM ordrs"), udr.UdrError, "ordrs", "orders")


@pytest.mark.parametrize(
    ("ref", "names"),
    [
        ("mian", ["mian", "'main'"]),
        ("main~99", ["main~99"]),
        ("deadbeef", ["deadbeef"]),
        ("0123456789abcdef" * 4, ["0123456789abcdef"]),
        ("abc", ["abc"]),
        (datetime(2000, 1, 1, tzinfo=timezone.utc), ["2000"]),
    ],
    ids=["typo", "too far back", "unknown prefix", "unknown id", "short", "before the first commit"],
)
def test_unknown_refs_are_ref_not_found(seeded: tuple[udr.Lake, Path], disk_state: Callable[[Path], DiskState],
                                        ref: object, names: list[str]) -> None:
    rejected(seeded, disk_state, lambda db: db.read("orders", at=ref), udr.RefNotFound, *names)  # type: ignore[arg-type]
    rejected(seeded, disk_state, lambda db: db.tables(at=ref), udr.RefNotFound)  # type: ignore[arg-type]


def test_a_prefix_shorter_than_seven_digits_is_not_a_ref(seeded: tuple[udr.Lake, Path],
                                                         disk_state: Callable[[Path], DiskState]) -> None:
    head = seeded[0].log()[0].id
    assert seeded[0].resolve(head[:7]) == head
    rejected(seeded, disk_state, lambda db: db.resolve(head[:6]), udr.RefNotFound, head[:6])


@pytest.mark.parametrize(
    "call",
    [
        lambda db: db.transaction(branch="mian"),
        lambda db: db.append("orders", ORDERS, branch="mian"),
        lambda db: db.commit_info("mian"),
        lambda db: db.sql('SELECT * FROM "orders@mian"'),
        lambda db: db.log(branch="mian"),
    ],
    ids=["transaction", "append", "commit_info", "sql versioned", "log"],
)
def test_unknown_branches_name_close_matches(seeded: tuple[udr.Lake, Path], disk_state: Callable[[Path], DiskState],
                                             call: Callable[[udr.Lake], object]) -> None:
    rejected(seeded, disk_state, call, udr.RefNotFound, "mian", "'main'")


def test_a_ref_of_the_wrong_type_is_a_usage_error(seeded: tuple[udr.Lake, Path],
                                                  disk_state: Callable[[Path], DiskState]) -> None:
    rejected(seeded, disk_state, lambda db: db.read("orders", at=42), udr.UsageError, "42")  # type: ignore[arg-type]


# -- schemas --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "data", "names"),
    [
        ("orders", {"id": ["one"], "status": ["ok"]}, ["id", "string", "int64"]),
        ("orders", {"id": [4]}, ["status", "evolve"]),
        ("orders", {"id": [4], "status": ["ok"], "extra": [1]}, ["extra", "evolve"]),
        ("orders", {"id": [4.5], "status": ["ok"]}, ["id", "double"]),
        ("orders", pa.table([pa.array([1]), pa.array(["ok"]), pa.array([2])], names=["id", "status", "id"]),
         ["duplicate"]),
        ("big", pa.table({name: pa.array(range(BIG_ROWS), pa.int64()) for name in "abce"}), ["e", "d"]),
        ("big", pa.table({**{n: pa.array(range(BIG_ROWS), pa.int64()) for n in "abc"},
                          "d": pa.array(["x"] * BIG_ROWS)}), ["d", "string"]),
    ],
    ids=["type", "missing column", "extra column", "float into int", "duplicate columns", "big renamed",
         "big type"],
)
@pytest.mark.parametrize("op", ["append", "overwrite"])
def test_data_that_does_not_fit_the_schema_is_a_schema_error(
    seeded: tuple[udr.Lake, Path], disk_state: Callable[[Path], DiskState], table: str, data: object,
    names: list[str], op: str,
) -> None:
    rejected(seeded, disk_state, lambda db: getattr(db, op)(table, data), udr.SchemaError, f"'{table}'", *names)


def test_a_value_that_does_not_fit_the_column_type_is_a_schema_error(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.create_table("small", pa.schema([("x", pa.int8())]))
        with pytest.raises(udr.SchemaError, match="x"):
            db.append("small", {"x": [1, 1000]})
        assert db.read("small").num_rows == 0


def test_a_rejected_append_leaves_the_transaction_as_it_was(seeded: tuple[udr.Lake, Path],
                                                            disk_state: Callable[[Path], DiskState]) -> None:
    db, path = seeded
    before = disk_state(path)
    tx = db.transaction()
    tx.append("orders", {"id": [4], "status": ["new"]})
    with pytest.raises(udr.SchemaError):
        tx.append("orders", {"id": ["x"], "status": ["new"]})
    assert tx.read("orders").num_rows == 4
    tx.abort()
    assert disk_state(path) == before


def test_a_rejected_append_to_a_new_table_does_not_create_it(seeded: tuple[udr.Lake, Path]) -> None:
    db, _ = seeded
    tx = db.transaction()
    try:
        with pytest.raises(udr.SchemaError):
            tx.append("fresh", pa.table([pa.array([1]), pa.array([2])], names=["x", "x"]))
        assert "fresh" not in tx.tables()
    finally:
        tx.abort()


# -- other usage errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "names"),
    [
        (lambda db: db.append("orders", [1, 2, 3]), udr.UsageError, ["list"]),
        (lambda db: db.append("orders", 42), udr.UsageError, ["int"]),
        (lambda db: db.create_table("orders", pa.schema([("x", pa.int64())])), udr.UsageError, ["orders", "exists"]),
        (lambda db: db.create_table("new", {"x": "int64"}), udr.UsageError, ["Schema"]),
        (lambda db: db.create_table("new", pa.schema([("x", pa.int64())]), primary_key=["id"]), udr.KeyViolation,
         ["id"]),
        (lambda db: db.delete("orders"), udr.UsageError, ["where"]),
        (lambda db: db.delete("orders", "nope = 1"), udr.SqlError, ["orders", "nope"]),
        (lambda db: db.delete("orders", "id ="), udr.SqlError, ["orders"]),
        (lambda db: db.read("orders", where="nope = 1"), udr.SqlError, ["nope"]),
        (lambda db: db.read("orders", columns=["id", "nope"]), udr.UsageError, ["nope"]),
        (lambda db: db.sql("SELEC 1"), udr.SqlError, ["SELEC"]),
    ],
    ids=["list", "int", "create existing", "schema not a Schema", "key not in schema", "delete without where",
         "delete unknown column", "delete syntax", "read where", "read columns", "sql syntax"],
)
def test_other_bad_calls_are_usage_errors(seeded: tuple[udr.Lake, Path], disk_state: Callable[[Path], DiskState],
                                          call: Callable[[udr.Lake], object], error: type[Exception],
                                          names: list[str]) -> None:
    rejected(seeded, disk_state, call, error, *names)


# -- conflicts ------------------------------------------------------------------------------------------


def test_a_conflicting_commit_changes_nothing_on_disk(tmp_path: Path, disk_state: Callable[[Path], DiskState]) -> None:
    path = tmp_path / "lake"
    with udr.open(path) as db:
        db.append("orders", ORDERS)
        first, second = db.transaction(), db.transaction()
        first.append("orders", {"id": [4], "status": ["a"]})
        second.overwrite("orders", {"id": [5], "status": ["b"]})
        second.append("other", {"x": [1]})
        first.commit()
        db.tables()
        before = disk_state(path)
        with pytest.raises(udr.ConflictError, match="orders"):
            second.commit()
        assert disk_state(path) == before
        assert db.tables() == ["orders"]


# -- lakes that cannot be opened ------------------------------------------------------------------------


def test_a_directory_that_is_not_a_lake_is_refused_untouched(tmp_path: Path,
                                                             disk_state: Callable[[Path], DiskState]) -> None:
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.csv").write_text("a,b\n1,2\n")
    before = disk_state(tmp_path)
    entries = sorted(os.listdir(tmp_path))
    with pytest.raises(udr.FormatError, match="not a UDR lake"):
        udr.open(tmp_path)
    assert disk_state(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == entries


def test_a_file_is_not_a_lake(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"data")
    with pytest.raises(udr.FormatError):
        udr.open(path)
    assert path.read_bytes() == b"data"


@pytest.fixture
def closed_lake(tmp_path: Path) -> Path:
    path = tmp_path / "lake"
    with udr.open(path) as db:
        db.append("orders", ORDERS)
    return path


def test_a_lake_of_a_newer_format_is_refused_naming_both_versions(closed_lake: Path,
                                                                  disk_state: Callable[[Path], DiskState]) -> None:
    (closed_lake / "FORMAT").write_text(json.dumps({"format": "udr-lake", "version": 99}) + "\n")
    before = disk_state(closed_lake)
    with pytest.raises(udr.FormatError) as info:
        udr.open(closed_lake)
    assert "99" in str(info.value) and str(FORMAT_VERSION) in str(info.value).replace("99", "")
    assert "upgrade" in str(info.value)
    assert disk_state(closed_lake) == before


@pytest.mark.parametrize("content", ["", "{not json", '{"format": "udr-lake"}', '{"format": "x", "version": 1}'])
def test_a_damaged_format_file_is_refused(closed_lake: Path, disk_state: Callable[[Path], DiskState],
                                          content: str) -> None:
    (closed_lake / "FORMAT").write_text(content)
    before = disk_state(closed_lake)
    with pytest.raises(udr.FormatError):
        udr.open(closed_lake)
    assert disk_state(closed_lake) == before


# -- damage ---------------------------------------------------------------------------------------------


@pytest.fixture
def damaged(tmp_path: Path, chunk_files: Callable[[Path], list[Path]]) -> Callable[[str], tuple[Path, str]]:
    """Make a lake with tables `big` (one chunk file) and `small` (inline), damage the chunk file
    (`flip` a byte or `delete` it) and return the lake path and the chunk id."""

    def make(how: str) -> tuple[Path, str]:
        path = tmp_path / "lake"
        with udr.open(path) as db:
            db.append("big", pa.table({name: pa.array(range(BIG_ROWS), pa.int64()) for name in "abcd"}))
            db.append("small", ORDERS)
        [chunk_file] = chunk_files(path)
        if how == "flip":
            data = bytearray(chunk_file.read_bytes())
            data[len(data) // 2] ^= 0xFF
            chunk_file.write_bytes(bytes(data))
        else:
            chunk_file.unlink()
        return path, chunk_file.parent.name + chunk_file.name.removesuffix(".parquet")

    return make


@pytest.mark.parametrize("how", ["flip", "delete"])
def test_a_damaged_chunk_is_reported_by_verify(damaged: Callable[[str], tuple[Path, str]], how: str) -> None:
    path, chunk = damaged(how)
    with udr.open(path) as db:
        report = db.verify()
        assert not report.ok
        assert len(report.problems) == 1
        assert chunk in report.problems[0] and "'big'" in report.problems[0]
        assert report.commits_checked == 3


@pytest.mark.parametrize("how", ["flip", "delete"])
@pytest.mark.parametrize(
    "call",
    [
        lambda db: db.read("big"),
        lambda db: db.read("big", columns=["a"], where="a < 10"),
        lambda db: db.sql("SELECT count(*) FROM big").fetchall(),
        lambda db: db.sql('SELECT count(*) FROM "big@main"').fetchall(),
        lambda db: db.delete("big", "a < 10"),
    ],
    ids=["read", "read where", "sql", "sql versioned", "delete"],
)
def test_reading_a_damaged_chunk_raises_corruption_error_naming_chunk_and_table(
    damaged: Callable[[str], tuple[Path, str]], disk_state: Callable[[Path], DiskState], how: str,
    call: Callable[[udr.Lake], object],
) -> None:
    path, chunk = damaged(how)
    with udr.open(path) as db:
        db.tables()
        before = disk_state(path)
        with pytest.raises(udr.CorruptionError) as info:
            call(db)
        assert chunk in str(info.value) and "'big'" in str(info.value)
        assert db.read("small").num_rows == 3, "an undamaged table must stay readable"
        assert disk_state(path) == before


@pytest.mark.parametrize("how", ["flip", "delete"])
def test_a_damaged_table_leaves_the_other_tables_queryable_in_sql(
    damaged: Callable[[str], tuple[Path, str]], how: str,
) -> None:
    path, chunk = damaged(how)
    with udr.open(path) as db:
        assert db.sql("SELECT count(*) FROM small").fetchall() == [(3,)]
        assert db.query("SELECT count(*) AS n FROM small").column("n").to_pylist() == [3]
        for query in ("WITH b AS (SELECT a FROM big) SELECT count(*) FROM small, b", 'SELECT count(*) FROM "BIG"'):
            with pytest.raises(udr.CorruptionError, match=chunk):
                db.query(query)
        con = db.connect()
        try:
            assert con.sql("SELECT count(*) FROM small").fetchall() == [(3,)]
            assert [c[0] for c in con.sql("DESCRIBE big").fetchall()] == ["a", "b", "c", "d"]
            for query in ("SELECT count(*) FROM big", "SELECT a FROM big WHERE a > 3", "SELECT * FROM big"):
                with pytest.raises(duckdb.Error, match=f"'big'.*{chunk}"):
                    con.sql(query).fetchall()
        finally:
            con.close()


def test_a_chunk_damaged_after_a_handle_read_it_is_still_detected(tmp_path: Path,
                                                                  chunk_files: Callable[[Path], list[Path]]) -> None:
    path = tmp_path / "lake"
    with udr.open(path) as db:
        db.append("big", pa.table({name: pa.array(range(BIG_ROWS), pa.int64()) for name in "abcd"}))
        assert db.sql("SELECT sum(b) FROM big").fetchall() == [(sum(range(BIG_ROWS)),)]
        [chunk_file] = chunk_files(path)
        stat = chunk_file.stat()
        data = bytearray(chunk_file.read_bytes())
        data[len(data) // 3] ^= 0x01
        chunk_file.write_bytes(bytes(data))
        os.utime(chunk_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert not db.verify().ok
        with pytest.raises(udr.CorruptionError):
            db.sql("SELECT sum(a), sum(b), sum(c), sum(d) FROM big").fetchall()
        with pytest.raises(udr.CorruptionError, match=chunk_file.stem[:8]):
            db.read("big")


def test_a_damaged_inline_blob_is_corruption_naming_blob_and_table(tmp_path: Path) -> None:
    path = tmp_path / "lake"
    with udr.open(path) as db:
        commit = db.append("small", ORDERS)
    log = LogStore(path)
    try:
        blob = log.get_commit(commit.id).tables["small"].add[0].chunk  # type: ignore[arg-type]
        with log.env.write() as txn:
            found = txn.get(blob.encode(), db=log.env.db(DB_BLOBS))
            assert found is not None
            stored = bytearray(found)
            stored[-1] ^= 0xFF
            txn.put(blob.encode(), bytes(stored), db=log.env.db(DB_BLOBS))
    finally:
        log.close()
    with udr.open(path) as db:
        report = db.verify()
        assert not report.ok and blob in " ".join(report.problems)
        with pytest.raises(udr.CorruptionError, match=f"'small'.*{blob}"):
            db.read("small")
        with pytest.raises(udr.CorruptionError, match=blob):
            db.sql("SELECT * FROM small").fetchall()


def test_a_damaged_commit_record_is_reported_and_never_read(tmp_path: Path) -> None:
    path = tmp_path / "lake"
    with udr.open(path) as db:
        first = db.append("a", {"x": [1]}, message="first")
        db.append("a", {"x": [2]}, message="second")
    log = LogStore(path)
    try:
        forged = encode_commit(log.get_commit(first.id)).replace(b"first", b"First")  # type: ignore[arg-type]
        with log.env.write() as txn:
            txn.put(first.id.encode(), frame_blob(BlobKind.COMMIT, forged)[1], db=log.env.db(DB_COMMITS))
    finally:
        log.close()
    with udr.open(path) as db:
        report = db.verify()
        assert not report.ok
        assert first.id in report.problems[0]
        with pytest.raises(udr.CorruptionError, match=first.id):
            db.read("a", at="main~1")
        with pytest.raises(udr.CorruptionError, match=first.id):
            db.log()
