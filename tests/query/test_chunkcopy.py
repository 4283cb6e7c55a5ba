"""udr.query.chunkcopy: `CREATE TABLE AS` has DuckDB write the chunks; every reader reads them as the table,
`verify` passes, identical results share chunks, and nothing is left in the lake's tmp directory."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import udr
from udr.log.format import CHUNK_ROWS, ROW_GROUP_ROWS, TMP_DIR, ChunkId
from udr.materialize.schemas import parquet_field_id

ROWS = CHUNK_ROWS + 5_000  # two chunk files: one full, one short
QUERY = (f"SELECT i AS id, i % 7 AS g, i / 4 AS x, 'n' || (i % 1000) AS name, DATE '2020-01-01' + (i % 9)::INT AS d, "
         f"(i % 100)::DECIMAL(9, 2) AS price, i % 2 = 0 AS even, NULLIF(i % 5, 0) AS maybe FROM range({ROWS}) r(i)")


def _fragments(db: udr.Lake, table: str) -> list[tuple[str, int, bool]]:
    state = db._handle.ctx.materializer.snapshot(db._handle.head("main"))[table]
    return [(f.chunk, f.rows, f.inline) for f in state.fragments]


def _path(db: udr.Lake, chunk: str) -> Path:
    return Path(db._handle.ctx.log.chunks.path(ChunkId(chunk)))


def test_a_created_table_is_stored_in_files_duckdb_wrote_that_read_back_as_the_table(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.execute(f"CREATE TABLE t AS {QUERY}")
        frags = _fragments(db, "t")
        assert [(rows, inline) for _, rows, inline in frags] == [(CHUNK_ROWS, False), (ROWS - CHUNK_ROWS, False)]
        schema = db.schema("t")
        for chunk, _, _ in frags:
            with pq.ParquetFile(_path(db, chunk)) as parquet:
                assert "DuckDB" in parquet.metadata.created_by
                groups = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
                assert len(groups) <= 8 and set(groups[:-1]) <= {ROW_GROUP_ROWS} and groups[-1] <= ROW_GROUP_ROWS
                assert [f.metadata[b"PARQUET:field_id"] for f in parquet.schema_arrow] == [
                    str(parquet_field_id(f)).encode() for f in schema]
        # pyarrow (the lake's reader) and DuckDB (its views) both see exactly DuckDB's own result.
        read = db.read("t")
        assert read.schema.equals(schema)
        expected = duckdb_result(QUERY)
        assert read.sort_by("id").equals(expected.sort_by("id").cast(schema))
        assert db.query("SELECT count(*) AS n, sum(x) AS s, count(maybe) AS m FROM t").to_pylist() == \
            duckdb_result(f"SELECT count(*) AS n, sum(x) AS s, count(maybe) AS m FROM ({QUERY})").to_pylist()
        assert db.verify().ok
        assert list((tmp_path / "lake" / TMP_DIR).iterdir()) == []
        # Identical results are identical files (one stored chunk); an identical chunk within one table is
        # re-encoded as a numbered copy, as for any write.
        db.execute(f"CREATE TABLE u AS {QUERY}")
        assert [c for c, _, _ in _fragments(db, "u")] == [c for c, _, _ in frags]
        db.execute(f"CREATE TABLE twice AS SELECT 1 AS one FROM range({2 * CHUNK_ROWS})")
        chunks = [c for c, _, _ in _fragments(db, "twice")]
        assert len(set(chunks)) == len(chunks) == 2
        assert db.query("SELECT count(*) AS n, sum(one) AS s FROM twice").to_pylist() == [
            {"n": 2 * CHUNK_ROWS, "s": 2 * CHUNK_ROWS}]
        assert db.verify().ok


def duckdb_result(query: str) -> pa.Table:
    import duckdb

    with duckdb.connect() as con:
        return con.sql(query).to_arrow_table()


def test_small_results_are_inlined_and_other_types_take_the_arrow_path(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.execute("CREATE TABLE small AS SELECT i AS id FROM range(100) r(i)")
        assert [inline for _, _, inline in _fragments(db, "small")] == [True]
        # A nested type is not tried; a HUGEINT (Arrow decimal128(38, 0)) is, but reads back differently.
        for table, column in [("nested", "{'a': i} AS s"), ("huge", "i::HUGEINT * 2 AS h")]:
            db.execute(f"CREATE TABLE {table} AS SELECT i AS id, {column} FROM range({ROWS}) r(i)")
            frags = _fragments(db, table)
            assert sum(rows for _, rows, _ in frags) == ROWS
            with pq.ParquetFile(_path(db, next(c for c, _, inline in frags if not inline))) as parquet:
                assert "DuckDB" not in parquet.metadata.created_by
        assert db.query("SELECT sum(s.a) AS a FROM nested").to_pylist() == [{"a": ROWS * (ROWS - 1) // 2}]
        assert db.query("SELECT sum(h) AS h FROM huge").column("h").to_pylist() == [ROWS * (ROWS - 1)]
        assert list((tmp_path / "lake" / TMP_DIR).iterdir()) == []
        assert db.verify().ok


def test_a_query_failing_while_it_writes_leaves_nothing(tmp_path: Path) -> None:
    with udr.open(tmp_path / "lake") as db:
        db.execute("CREATE TABLE keep AS SELECT 1 AS one")
        head = db.commit_info("main").id
        with pytest.raises(udr.SqlError, match="boom"):
            db.execute(f"CREATE TABLE t AS SELECT i, CASE WHEN i > {ROWS - 10} THEN error('boom') END AS e "
                       f"FROM range({ROWS}) r(i)")
        assert db.commit_info("main").id == head
        assert "t" not in db.tables()
        assert list((tmp_path / "lake" / TMP_DIR).iterdir()) == []
