"""Every golden lake (one per on-disk format version) still opens, reads the rows it was made with, and verifies.

Golden lakes are made once by make_golden.py and never rewritten: a later udr that cannot read one has
broken the format contract (docs/FORMAT.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.compute as pc
import pytest

import udr
from udr.log.format import BlobKind, CommitId

GOLDEN = Path(__file__).resolve().parent


@pytest.fixture()
def v2(tmp_path: Path) -> Path:
    """A copy of the version-2 golden lake (opening writes caches, never into the checkout)."""
    return Path(shutil.copytree(GOLDEN / "v2" / "lake", tmp_path / "lake"))


def test_v2_reads_its_rows_at_the_head(v2: Path) -> None:
    with udr.open(v2, create=False) as db:
        accounts = db.read("accounts").sort_by("id")
        assert accounts.num_rows == 19_999 and accounts.column_names == ["id", "balance", "label"]
        assert accounts.slice(0, 3).to_pylist() == [
            {"id": 0, "balance": 0, "label": "n0"}, {"id": 1, "balance": -1, "label": "one"},
            {"id": 4, "balance": 40, "label": "n4"}]
        assert accounts.slice(19_998).to_pylist() == [{"id": 20_000, "balance": 7, "label": "new"}]
        assert pc.sum(accounts["balance"]).as_py() == 1_999_899_847
        assert db.read("events").sort_by("n").to_pylist() == [{"kind": "open", "n": 1}, {"kind": "open", "n": 3}]
        assert db.sql("SELECT label FROM accounts WHERE id = 10").fetchall() == [("fixed",)]


def test_v2_time_travels_to_its_tag_with_the_old_column_name(v2: Path) -> None:
    with udr.open(v2, create=False) as db:
        assert db.tags() == {"v1": "e4f4fe55eb0475a5fb39471fac5f1020cfc833b9bad0860e63284c915c849b78"}
        assert sorted(db.branches()) == ["fix", "main"] and len(db.log()) == 8
        old = db.read("accounts", at="v1").sort_by("id")
        assert old.column_names == ["id", "balance", "name"] and old.num_rows == 19_999
        assert pc.sum(old["balance"]).as_py() == 1_999_899_946


def test_v2_verifies_clean_and_rebuilds_to_the_same_rows(v2: Path) -> None:
    with udr.open(v2, create=False) as db:
        assert db.verify().ok
        before = db.read("accounts").sort_by("id")
        db.rebuild()
        assert db.read("accounts").sort_by("id").equals(before)


@pytest.fixture()
def v3(tmp_path: Path) -> Path:
    """A copy of the version-3 golden lake: the version-2 history, then an erasure of account 5 and a gc."""
    return Path(shutil.copytree(GOLDEN / "v3" / "lake", tmp_path / "lake"))


def test_v3_reads_every_version_through_its_erasure(v3: Path) -> None:
    with udr.open(v3, create=False) as db:
        accounts = db.read("accounts").sort_by("id")
        assert accounts.num_rows == 19_998 and 5 not in accounts.column("id").to_pylist()
        assert accounts.slice(2, 2).to_pylist() == [{"id": 4, "balance": 40, "label": "n4"},
                                                     {"id": 6, "balance": 60, "label": "n6"}]
        assert pc.sum(accounts["balance"]).as_py() == 1_999_899_797
        old = db.read("accounts", at="v1")
        assert old.num_rows == 19_998 and pc.sum(old["balance"]).as_py() == 1_999_899_896
        erasure = db.log()[0]
        assert erasure.metadata["udr.erasure.reason"] == "golden erasure" and erasure.author == "golden"
        assert set(db.history("accounts", {"id": 5}).column("balance").to_pylist()) <= {None}  # erased: no value shows


def test_v3_verifies_clean_and_rebuilds_to_the_same_rows(v3: Path) -> None:
    with udr.open(v3, create=False) as db:
        report = db.verify()
        assert report.ok and report.expired == 4
        before = db.read("accounts", at="v1").sort_by("id")
        db.rebuild()
        assert db.read("accounts", at="v1").sort_by("id").equals(before)


@pytest.fixture(params=["v4", "v5"])
def v4(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of the version-4 golden lake: the version-3 history, then two deletes whose vectors chain; and of
    the version-5 one, the same history with every deletion vector stored as gaps."""
    return Path(shutil.copytree(GOLDEN / request.param / "lake", tmp_path / "lake"))


def test_v4_reads_its_chained_deletion_vectors(v4: Path) -> None:
    with udr.open(v4, create=False) as db:
        accounts = db.read("accounts").sort_by("id")
        assert accounts.num_rows == 19_995 and {5, 6, 7, 8}.isdisjoint(accounts.column("id").to_pylist())
        assert accounts.slice(2, 2).to_pylist() == [{"id": 4, "balance": 40, "label": "n4"},
                                                     {"id": 9, "balance": 90, "label": "n9"}]
        assert pc.sum(accounts["balance"]).as_py() == 1_999_899_587
        assert db.sql("SELECT count(*) FROM accounts WHERE id BETWEEN 5 AND 8").fetchall() == [(0,)]
        assert db.read("accounts", at="main~1").num_rows == 19_996  # before the chained delete of 8
        assert db.changes("accounts", since="main~1").column("id").to_pylist() == [8]
        assert len(db.log()) == 12


def test_v4_reads_inline_rows_stored_as_parquet(v4: Path) -> None:
    with udr.open(v4, create=False) as db:
        events = db.read("events")
        assert events.num_rows == 3_002 and pc.sum(events["n"]).as_py() == 4 + sum(range(3_000))
        assert db.read("events", at="main~3").sort_by("n").to_pylist() == [
            {"kind": "open", "n": 1}, {"kind": "open", "n": 3}]
        assert db.sql("SELECT count(*), max(n) FROM events WHERE kind = 'bulk'").fetchall() == [(3_000, 2_999)]


def test_v4_verifies_clean_and_rebuilds_to_the_same_rows(v4: Path) -> None:
    with udr.open(v4, create=False) as db:
        assert db.verify().ok
        before = db.read("accounts").sort_by("id")
        db.rebuild()
        assert db.read("accounts").sort_by("id").equals(before)


@pytest.mark.parametrize("version", [4, 5])
def test_each_lake_keeps_the_vector_payloads_of_its_version(tmp_path: Path, version: int) -> None:
    lake = Path(shutil.copytree(GOLDEN / f"v{version}" / "lake", tmp_path / "lake"))
    with udr.open(lake, create=False) as db:
        db.delete("accounts", keys={"id": [9]})
        log = db._handle.ctx.log
        op = log.get_commit(CommitId(db.resolve("main"))).tables["accounts"]
        vector = next(d.vector for d in op.deletes if d.vector is not None)
        payload = log.get_blob(vector, BlobKind.DELETES)
        body = payload[37:] if payload[:4] == b"UDRC" else payload
        assert body[:4] == (b"UDRG" if version == 5 else b"PAR1")  # an older lake stays readable by older udr
        assert log.version == version
        assert db.read("accounts").num_rows == 19_994 and db.verify().ok
