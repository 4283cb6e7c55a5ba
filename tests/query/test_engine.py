"""udr.query.engine: every table of a snapshot is a DuckDB view over its chunks; "table@REF" names resolve
through the caller; positions_where finds live rows by SQL predicate."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import duckdb
import pyarrow as pa
import pytest

from udr.errors import CorruptionError, SqlError
from udr.log.format import ROW_GROUP_ROWS, BlobId, BlobKind, ChunkId
from udr.log.hashing import content_id
from udr.log.store import LogStore
from udr.materialize.data import (
    RowReader,
    encode_chunk,
    encode_schema,
)
from udr.materialize.states import FragmentState, TableState
from udr.materialize.vectors import encode_positions
from udr.query.database import Database
from udr.query.engine import VERSIONED_NAME, SnapshotServer, named_tables
from udr.query.logviews import LogViews


@pytest.fixture
def database() -> Iterator[Database]:
    opened = Database()
    yield opened
    opened.close()


@pytest.fixture
def server(log: LogStore, database: Database) -> SnapshotServer:
    return SnapshotServer(database, log, RowReader(log.chunks, log.get_blob), LogViews(log))


def _schema(log: LogStore, schema: pa.Schema) -> BlobId:
    schema_id, payload = encode_schema(schema)
    log.put_blobs_now({schema_id: (BlobKind.SCHEMA, payload)})
    return schema_id


def _fragment(log: LogStore, table: pa.Table, schema_id: BlobId) -> FragmentState:
    encoded = encode_chunk(table, schema_id, log.chunks.put_written)
    if encoded.payload is not None:
        log.put_blobs_now({BlobId(encoded.fragment.chunk): (BlobKind.ROWS, encoded.payload)})
    f = encoded.fragment
    return FragmentState(f.chunk, f.rows, f.inline, f.schema)


def _deleted(log: LogStore, frag: FragmentState, positions: list[int]) -> FragmentState:
    payload = encode_positions(pa.array(positions, pa.uint32()))
    blob = BlobId(content_id(payload))
    log.put_blobs_now({blob: (BlobKind.DELETES, payload)})
    return FragmentState(frag.chunk, frag.rows, frag.inline, frag.schema, blob, len(positions))


def _ids(rows: int, start: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + rows), pa.int64()),
                     "v": pa.array([i % 7 for i in range(rows)], pa.int64())})


BIG = 60_000  # two int64 columns: 960 kB, stored as a Parquet file


@pytest.fixture
def mixed(log: LogStore) -> TableState:
    """A table with a file fragment (some rows deleted), a plain file fragment and an inline fragment."""
    schema_id = _schema(log, _ids(1).schema)
    pruned = _deleted(log, _fragment(log, _ids(BIG), schema_id), [0, 5, BIG - 1])
    plain = _fragment(log, _ids(BIG, start=BIG), schema_id)
    inline = _fragment(log, _ids(3, start=2 * BIG), schema_id)
    assert (pruned.inline, plain.inline, inline.inline) == (False, False, True)
    return TableState(schema_id, None, (pruned, plain, inline))


def test_views_show_exactly_the_live_rows(server: SnapshotServer, mixed: TableState) -> None:
    con, _ = server.connect({"t": mixed})
    try:
        [(count, total)] = con.sql("SELECT count(*), sum(id) FROM t").fetchall()
        expected = [i for i in range(2 * BIG + 3) if i not in (0, 5, BIG - 1)]
        assert count == len(expected)
        assert total == sum(expected)
        assert con.sql("SELECT count(*) FROM t WHERE id IN (0, 5, 59999)").fetchall() == [(0,)]
    finally:
        con.close()


def test_tables_are_views_reading_chunk_files_in_place(
    server: SnapshotServer, mixed: TableState, log: LogStore
) -> None:
    con, _ = server.connect({"t": mixed, "other": mixed})
    try:
        views = dict(con.sql("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
        assert {"t", "other"} <= set(views)
        # DuckDB 1.x keeps no SQL text for a view made from a relation; its plan shows the Parquet scan.
        plan = "".join(row[1] for row in con.sql("EXPLAIN SELECT * FROM t").fetchall())
        assert "READ_PARQUET" in plan
        assert not views["t"] or str(log.chunks.path(mixed.fragments[1].chunk)) in views["t"]
        kinds = dict(con.sql("SELECT table_name, table_type FROM information_schema.tables").fetchall())
        assert kinds["t"] == "VIEW"
    finally:
        con.close()


def test_the_catalog_lists_the_tables_and_nothing_of_how_they_are_read(
    server: SnapshotServer, mixed: TableState, log: LogStore
) -> None:
    # Inline rows, deletion masks, the empty row source of an older schema and a ready Arrow table.
    old_id = _schema(log, _ids(1).schema)
    evolved = _schema(log, _ids(1).append_column("note", pa.array(["x"])).schema)
    older = TableState(evolved, None, (_deleted(log, _fragment(log, _ids(BIG), old_id), [1]),))
    con, _ = server.connect({"t": mixed, "older": older})
    try:
        server.register(con, "t@main~1", "t", pa.table({"id": [1]}))
        gc.collect()  # the views hold what they read: nothing is freed under them
        names = {"t", "older", "t@main~1"}
        assert {row[0] for row in con.sql("SELECT table_name FROM information_schema.tables").fetchall()} == names
        assert {row[0] for row in con.sql("SHOW TABLES").fetchall()} == names
        views = con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        assert {row[0] for row in views} == names
        assert con.sql("SELECT count(*) FROM t").fetchall() == [(2 * BIG,)]
        assert con.sql("SELECT count(*), count(note) FROM older").fetchall() == [(BIG - 1, 0)]
        assert con.sql('SELECT * FROM "t@main~1"').fetchall() == [(1,)]
    finally:
        con.close()


def test_view_of_an_empty_table_has_its_columns(server: SnapshotServer, log: LogStore) -> None:
    schema_id = _schema(log, _ids(1).schema)
    con, _ = server.connect({"empty": TableState(schema_id, None)})
    try:
        rel = con.sql("SELECT * FROM empty")
        assert rel.columns == ["id", "v"]
        assert rel.fetchall() == []
    finally:
        con.close()


def test_deletes_in_several_file_fragments_and_schemas_hide_exactly_those_rows(
    server: SnapshotServer, log: LogStore
) -> None:
    # Fragments of the current schema share one positional join: each mask must line up with its file.
    old_id = _schema(log, _ids(1).schema)
    old = _deleted(log, _fragment(log, _ids(BIG), old_id), [3, BIG - 2])
    evolved = _ids(BIG, start=BIG).append_column("note", pa.array(["x"] * BIG))
    new_id = _schema(log, evolved.schema)
    first = _deleted(log, _fragment(log, evolved, new_id), [0, 1, 7])
    second_rows = _ids(BIG, start=2 * BIG).append_column("note", pa.array(["y"] * BIG))
    second = _deleted(log, _fragment(log, second_rows, new_id), [BIG - 1])
    con, _ = server.connect({"t": TableState(new_id, None, (old, first, second))})
    gone = {3, BIG - 2, BIG, BIG + 1, BIG + 7, 3 * BIG - 1}
    try:
        ids = [row[0] for row in con.sql("SELECT id FROM t ORDER BY id").fetchall()]
        assert ids == [i for i in range(3 * BIG) if i not in gone]
        assert con.sql("SELECT count(*) FROM t WHERE note = 'y'").fetchall() == [(BIG - 1,)]
    finally:
        con.close()


def test_deletes_in_a_fragment_read_in_row_ranges_one_per_thread_hide_exactly_those_rows(
    server: SnapshotServer, log: LogStore, database: Database
) -> None:
    # With 4 threads a share is one row group: the large fragment is read in three row ranges, each with its
    # slice of the keep-mask, the small one whole; deleted rows at both edges of each range.
    rows = 2 * ROW_GROUP_ROWS + 1_000
    schema_id = _schema(log, _ids(1).schema)
    edges = [0, ROW_GROUP_ROWS - 1, ROW_GROUP_ROWS, 2 * ROW_GROUP_ROWS - 1, 2 * ROW_GROUP_ROWS, rows - 1]
    large = _deleted(log, _fragment(log, _ids(rows), schema_id), edges)
    small = _deleted(log, _fragment(log, _ids(BIG, start=rows), schema_id), [0])
    with database.session() as setting:
        setting.execute("SET threads = 4")
    con, _ = server.connect({"t": TableState(schema_id, None, (large, small))})
    try:
        assert con.sql("EXPLAIN SELECT id FROM t").fetchall()[0][1].count("Positional Scan") == 4
        ids = [row[0] for row in con.sql("SELECT id FROM t ORDER BY id").fetchall()]
        assert ids == [i for i in range(rows + BIG) if i not in {*edges, rows}]
    finally:
        con.close()


def test_view_over_chunks_of_an_older_schema_fills_new_columns_with_nulls(
    server: SnapshotServer, log: LogStore
) -> None:
    old_id = _schema(log, _ids(1).schema)
    old = _deleted(log, _fragment(log, _ids(BIG), old_id), [1])
    evolved = _ids(BIG, start=BIG).append_column("note", pa.array(["x"] * BIG))
    new_id = _schema(log, evolved.schema)
    new = _fragment(log, evolved, new_id)
    plain_old = _fragment(log, _ids(BIG, start=2 * BIG), old_id)
    con, _ = server.connect({"t": TableState(new_id, None, (old, new, plain_old))})
    try:
        assert con.sql("SELECT count(*), count(note) FROM t").fetchall() == [(3 * BIG - 1, BIG)]
        assert con.sql("SELECT * FROM t").columns == ["id", "v", "note"]
    finally:
        con.close()


def test_a_damaged_chunk_is_reported_and_its_view_fails_naming_table_and_chunk(
        server: SnapshotServer, mixed: TableState, log: LogStore) -> None:
    chunk = mixed.fragments[1].chunk
    path = log.chunks.path(chunk)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    con, damaged = server.connect({"orders": mixed, "other": TableState(mixed.schema, None)})
    try:
        assert list(damaged) == ["orders"] and isinstance(damaged["orders"], CorruptionError)
        assert chunk in str(damaged["orders"]) and "'orders'" in str(damaged["orders"])
        assert con.sql("SELECT count(*) FROM other").fetchall() == [(0,)]
        with pytest.raises(duckdb.Error, match=f"'orders'.*{chunk}"):
            con.sql("SELECT count(*) FROM orders").fetchall()
    finally:
        con.close()


# -- versioned names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ('SELECT * FROM "orders@main~1"', [("orders", "main~1")]),
        ('SELECT * FROM "orders@v1" JOIN "users@abc1234" USING (id)', [("orders", "v1"), ("users", "abc1234")]),
        ('SELECT * FROM "orders@a..b"', [("orders", "a..b")]),
        ('SELECT * FROM "orders" WHERE x = \'a@b\'', []),
        ("SELECT * FROM orders", []),
    ],
)
def test_versioned_name_pattern(query: str, found: list[tuple[str, str]]) -> None:
    assert [(m.group(1), m.group(2)) for m in VERSIONED_NAME.finditer(query)] == found


def test_sql_registers_each_versioned_name_through_the_resolver(server: SnapshotServer, mixed: TableState) -> None:
    asked: list[tuple[str, str]] = []

    def resolve(table: str, ref: str) -> TableState | pa.Table:
        asked.append((table, ref))
        return mixed if ref == "old" else pa.table({"id": [1, 2], "v": [0, 0]})

    con = duckdb.connect()
    try:
        rel = server.sql(con, 'SELECT (SELECT count(*) FROM "t@old"), (SELECT count(*) FROM "t@new"), '
                              '(SELECT count(*) FROM "t@old")', resolve)
        assert rel.fetchall() == [(2 * BIG, 2, 2 * BIG)]
        assert sorted(asked) == [("t", "new"), ("t", "old")]
    finally:
        con.close()


@pytest.mark.parametrize("query", ["SELEC 1", "SELECT * FROM nowhere", "SELECT 1 +"])
def test_sql_errors_become_sql_error(server: SnapshotServer, query: str) -> None:
    con = duckdb.connect()
    try:
        with pytest.raises(SqlError):
            server.sql(con, query, lambda t, r: pa.table({}))
    finally:
        con.close()


# -- positions_where ------------------------------------------------------------------------------------


def test_positions_where_finds_live_matching_rows(server: SnapshotServer, mixed: TableState) -> None:
    hits = server.positions_where("t", mixed, "id < 10 OR id >= 120000")
    assert hits.column_names == ["__frag", "__pos"]
    found = sorted(zip(hits.column("__frag").to_pylist(), hits.column("__pos").to_pylist(), strict=True))
    assert found == [(0, p) for p in range(10) if p not in (0, 5)] + [(2, 0), (2, 1), (2, 2)]


def test_positions_where_with_no_match_is_empty(server: SnapshotServer, mixed: TableState) -> None:
    assert server.positions_where("t", mixed, "id < 0").num_rows == 0


@pytest.mark.parametrize("where", ["nope = 1", "id = ", "id = 'x' AND"])
def test_a_bad_predicate_is_sql_error_naming_the_table(server: SnapshotServer, mixed: TableState, where: str) -> None:
    with pytest.raises(SqlError, match="'orders'"):
        server.positions_where("orders", mixed, where)


def test_chunk_ids_are_typed(log: LogStore, mixed: TableState) -> None:
    # Sanity of the fixture: file fragments' chunks exist on disk under their ids.
    for frag in mixed.fragments[:2]:
        assert log.chunks.exists(ChunkId(frag.chunk))


def _views(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                      "AND view_name NOT LIKE '__udr_%'").fetchall()}


@pytest.mark.parametrize(("query", "views"), [
    ("SELECT * FROM Orders JOIN items USING (id)", {"orders", "items"}),  # DuckDB cannot bind USING: sqlglot
    ('UPDATE orders SET v = 1 FROM "items@main~1" i WHERE i.id = orders.id', {"orders"}),
    ("SELECT * FROM information_schema.tables", {"orders", "items", "users"}),  # not a lake table: all
    ("SELECT * FROM ordrs", {"orders", "items", "users"}),  # a typo: DuckDB's hint can name every table
    ("SELECT 1", {"orders", "items", "users"}),
])
def test_views_only_for_the_tables_a_query_names_when_it_names_only_tables(
        server: SnapshotServer, mixed: TableState, query: str, views: set[str]) -> None:
    tables = {"orders": mixed, "items": mixed, "users": mixed}
    con, _ = server.connect(tables, named=named_tables(query))
    try:
        assert _views(con) == views
    finally:
        con.close()


def _positioned(server: SnapshotServer, database: Database, state: TableState) -> list[tuple[object, ...]]:
    con = database.cursor()
    try:
        server.register_positioned(con, "p", "t", state)
        return sorted(con.sql("SELECT * FROM p").fetchall(), key=repr)
    finally:
        con.close()


def test_a_positioned_view_gives_each_live_row_its_fragment_and_position(
    server: SnapshotServer, database: Database, mixed: TableState, log: LogStore
) -> None:
    # Pruned, plain and inline fragments, in an order where the plain files are not contiguous, and
    # fragments of an older schema (deleted rows included).
    old_id = _schema(log, _ids(1).schema)
    evolved = _ids(BIG, start=3 * BIG).append_column("note", pa.array(["x"] * BIG))
    new_id = _schema(log, evolved.schema)
    older = _deleted(log, _fragment(log, _ids(BIG, start=4 * BIG), old_id), [2])
    newer = _fragment(log, evolved, new_id)
    cases = [mixed, TableState(mixed.schema, None, (mixed.fragments[1], mixed.fragments[2], mixed.fragments[0])),
             TableState(new_id, None, (older, newer, mixed.fragments[1], _fragment(log, _ids(BIG, 5 * BIG), old_id))),
             TableState(mixed.schema, None, (mixed.fragments[1], mixed.fragments[0], _fragment(log, _ids(BIG, 6 * BIG),
                                                                                               mixed.schema))),
             TableState(mixed.schema, None)]
    reader = RowReader(log.chunks, log.get_blob)
    for state in cases:
        expected = reader.table("t", state, with_position=True)
        order = [*(n for n in expected.column_names if not n.startswith("__")), "__frag", "__pos"]
        rows = [tuple(row.values()) for row in expected.select(order).to_pylist()]
        assert _positioned(server, database, state) == sorted(rows, key=repr)
