"""udr.materialize.keyhashes: which committed keyed ops carry their keys' hashes (so the log may place them over
concurrent keyed writes of other keys), and that the hashes name exactly the keys written."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

import udr
from udr.log.commits import TableOp
from udr.log.format import KEY_HASHES_MAX, CommitId
from udr.log.hashing import key_hashes
from udr.materialize.keyhashes import canonical_keys


def _op(db: udr.Lake, commit: udr.Commit, table: str = "kv") -> TableOp:
    return db._handle.ctx.log.get_commit(CommitId(commit.id)).tables[table]


@pytest.fixture
def kv(db: udr.Lake) -> udr.Lake:
    db.create_table("kv", pa.schema([pa.field("k", pa.int64(), nullable=False), ("v", pa.int64())]),
                    primary_key=["k"])
    db.append("kv", {"k": list(range(100)), "v": [0] * 100})
    return db


def test_upserts_and_deletes_by_key_carry_the_hashes_of_their_keys(kv: udr.Lake) -> None:
    with kv.transaction() as tx:
        tx.upsert("kv", {"k": [5, 200], "v": [1, 1]})
        tx.delete("kv", keys={"k": [7]})
    committed = kv.commit_info("main")
    assert _op(kv, committed).keys == key_hashes(k.to_bytes(8, "big") for k in (5, 7, 200))
    assert _op(kv, committed).added == (2,)  # rows 5 and 7 of the loaded fragment


def test_any_other_write_of_the_table_leaves_the_hashes_out(kv: udr.Lake) -> None:
    with kv.transaction() as tx:
        tx.upsert("kv", {"k": [5], "v": [1]})
        tx.delete("kv", "v = 0 AND k < 3")  # rows the hashes would not name
    assert _op(kv, kv.commit_info("main")).keys is None
    with kv.transaction() as tx:
        tx.delete("kv", "k = 50")
        tx.upsert("kv", {"k": [6], "v": [1]})
    assert _op(kv, kv.commit_info("main")).keys is None
    kv.overwrite("kv", {"k": [1, 2], "v": [3, 3]})
    assert _op(kv, kv.commit_info("main")).keys is None


def test_a_write_of_more_keys_than_the_limit_leaves_the_hashes_out(kv: udr.Lake) -> None:
    many = KEY_HASHES_MAX + 1
    kv.upsert("kv", {"k": list(range(1000, 1000 + many)), "v": [1] * many})
    assert _op(kv, kv.commit_info("main")).keys is None


def test_canonical_keys_of_each_indexed_key_type() -> None:
    when = dt.datetime(2026, 12, 6, 9, 0)
    stamp = pa.schema([pa.field("t", pa.timestamp("us"), nullable=False)])
    assert canonical_keys(pa.table({"t": pa.array([when], pa.timestamp("us"))}), stamp, ("t",)) == [
        (int(when.replace(tzinfo=dt.timezone.utc).timestamp()) * 1_000_000).to_bytes(8, "big")]
    text = pa.schema([pa.field("s", pa.string(), nullable=False)])
    assert canonical_keys(pa.table({"s": ["é", "b"]}), text, ("s",)) == ["é".encode(), b"b"]
    # Keys given as another integer type hash as the key's own type would.
    ints = pa.schema([pa.field("k", pa.int64(), nullable=False)])
    assert canonical_keys(pa.table({"k": pa.array([3], pa.int8())}), ints, ("k",)) == [(3).to_bytes(8, "big")]
    pair = pa.schema([("a", pa.int64()), ("b", pa.int64())])
    assert canonical_keys(pa.table({"a": [1], "b": [2]}), pair, ("a", "b")) is None  # two columns: not hashed
    floats = pa.schema([("f", pa.float64())])
    assert canonical_keys(pa.table({"f": [1.5]}), floats, ("f",)) is None
