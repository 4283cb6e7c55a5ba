"""Keyed tables (issue #3) against a model: random sequences of append, upsert, delete by predicate, delete
by keys, keyed overwrite and compaction, each in a commit of its own (plus now and then a transaction of
several of those writes), must leave at every commit exactly the rows a plain dict (key -> row) predicts,
with exactly the model's per-commit counts, and the change feed replayed from the start (or commit by
commit) must rebuild those dicts; `diff` and `history` must agree with the model too.

Values include NULLs in every non-key column, NaN, -0.0 (equal to 0.0 for "is this row identical"),
empty and non-ASCII strings, so "identical rows are no change" is exercised with the awkward cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from row_model import NAN, SCHEMA, VALUES, Model, Row, denorm, norm

import udr

# One drawn operation: its kind, then arguments whose types depend on the kind (rows, a predicate's name, keys,
# the operations of a transaction); `expect`, `run` and `stage` dispatch on the kind.
Op = tuple[Any, ...]


def as_model(table: pa.Table) -> Model:
    """A table read back from the lake, as a model dict (fails on a duplicate key)."""
    out: Model = {}
    for row in table.to_pylist():
        key = row["id"]
        assert key is not None, "a null key was stored"
        assert key not in out, f"key {key} is stored twice"
        out[key] = tuple(norm(row[c]) for c in VALUES)
    return out


def batch(rows: list[tuple[int | None, Row]]) -> pa.Table:
    columns: dict[str, list[object]] = {"id": [k for k, _ in rows]}
    for i, name in enumerate(VALUES):
        columns[name] = [denorm(r[i]) for _, r in rows]
    return pa.table(columns, schema=SCHEMA)


# -- what the model predicts ------------------------------------------------------------------------------

# SQL predicates for delete(where=...) and what they mean per row (NULL never matches; DuckDB orders NaN
# above every number, so `f < 0` never matches NaN).
PREDICATES: dict[str, Callable[[int, Row], bool]] = {
    "id % 3 = 0": lambda k, r: k % 3 == 0,
    "id >= 8": lambda k, r: k >= 8,
    "s = 'a'": lambda k, r: r[0] == "a",
    "s IS NULL": lambda k, r: r[0] is None,
    "s = '' OR n IS NULL": lambda k, r: r[0] == "" or r[2] is None,
    "f IS NULL": lambda k, r: r[1] is None,
    "isnan(f)": lambda k, r: r[1] == NAN,
    "f < 0": lambda k, r: r[1] is not None and r[1] != NAN and r[1] < 0,  # type: ignore[operator]
    "n > 0": lambda k, r: r[2] is not None and r[2] > 0,  # type: ignore[operator]
}


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    def change(self) -> udr.TableChange:
        return udr.TableChange(self.inserted, self.updated, self.deleted)


def net_change(old: Model, new: Model) -> udr.TableChange:
    return udr.TableChange(
        inserted=len(set(new) - set(old)),
        updated=sum(1 for k in set(old) & set(new) if old[k] != new[k]),
        deleted=len(set(old) - set(new)),
    )


def keys_ok(rows: list[tuple[int | None, Row]]) -> bool:
    keys = [k for k, _ in rows]
    return None not in keys and len(set(keys)) == len(keys)


def put(model: Model, rows: list[tuple[int, Row]], counts: Counts) -> None:
    for key, row in rows:
        if key not in model:
            counts.inserted += 1
        elif model[key] != row:
            counts.updated += 1
        else:
            continue
        model[key] = row


def expect(op: Op, model: Model) -> tuple[Model, Counts] | None:
    """The model after `op` and its counts; None if `op` must raise KeyViolation."""
    kind = op[0]
    new = dict(model)
    counts = Counts()
    if kind == "tx":  # several writes in one transaction: the net effect (counts: see the test)
        for sub in op[1]:
            step = expect(sub, new)
            if step is None:
                return None
            new = step[0]
        return new, counts
    if kind in ("append", "upsert", "overwrite"):
        rows = op[1]
        if not keys_ok(rows):
            return None
        if kind == "append" and any(k in model for k, _ in rows):
            return None
        if kind == "overwrite":
            wanted = {k for k, _ in rows}
            for key in [k for k in new if k not in wanted]:
                del new[key]
                counts.deleted += 1
        put(new, rows, counts)
    elif kind == "delete_where":
        matches = PREDICATES[op[1]]
        for key in [k for k, r in new.items() if matches(k, r)]:
            del new[key]
            counts.deleted += 1
    elif kind == "delete_keys":
        for key in set(op[1]) & set(new):
            del new[key]
            counts.deleted += 1
    return new, counts


def run(db: udr.Lake, op: Op) -> udr.Commit:
    kind = op[0]
    if kind == "tx":
        with db.transaction(message="several writes") as tx:
            for sub in op[1]:
                stage(tx, sub)
        assert tx.committed is not None
        return tx.committed
    if kind in ("append", "upsert", "overwrite"):
        write: Callable[[str, pa.Table], udr.Commit] = getattr(db, kind)
        return write("t", batch(op[1]))
    if kind == "delete_where":
        return db.delete("t", op[1])
    if kind == "delete_keys":
        return db.delete("t", keys=pa.table({"id": pa.array(op[1], pa.int64()), "junk": [0] * len(op[1])}))
    assert kind == "compact"
    return db.compact("t")


def stage(tx: udr.Transaction, op: Op) -> None:
    kind = op[0]
    if kind in ("append", "upsert", "overwrite"):
        getattr(tx, kind)("t", batch(op[1]))
    elif kind == "delete_where":
        tx.delete("t", op[1])
    else:
        tx.delete("t", keys={"id": pa.array(op[1], pa.int64())})


# -- what the change feed implies -------------------------------------------------------------------------


def replay(model: Model, changes: pa.Table) -> Model:
    """Apply change rows (insert, update_after, delete; update_before is checked, then skipped) to `model`."""
    out = dict(model)
    rows = changes.to_pylist()
    for n, row in enumerate(rows):
        key = row["id"]
        values = tuple(norm(row[c]) for c in VALUES)
        kind = row["_change"]
        if kind == "insert":
            assert key not in out, f"insert of existing key {key}"
            out[key] = values
        elif kind == "update_before":
            assert out.get(key) == values, f"update_before of key {key} is not the row it replaces"
            after = rows[n + 1] if n + 1 < len(rows) else None
            assert after is not None and after["_change"] == "update_after" and after["id"] == key, \
                "an update_before must be followed by its update_after"
            assert tuple(norm(after[c]) for c in VALUES) != values, "an update that changes nothing"
        elif kind == "update_after":
            assert key in out, f"update of missing key {key}"
            out[key] = values
        else:
            assert kind == "delete", kind
            assert out.get(key) == values, f"delete of key {key} does not carry the deleted row"
            del out[key]
    return out


def key_versions(states: list[tuple[str, Model]], key: int) -> list[tuple[str, str, Row]]:
    """(commit, change, row) for every version of `key`, oldest first, as `history` must list them."""
    out = []
    for (_, before), (cid, after) in pairwise(states):
        old, new = before.get(key), after.get(key)
        if old is None and new is not None:
            out.append((cid, "insert", new))
        elif old is not None and new is None:
            out.append((cid, "delete", old))
        elif old is not None and new is not None and old != new:
            out += [(cid, "update_before", old), (cid, "update_after", new)]
    return out


# -- strategies --------------------------------------------------------------------------------------------

keys = st.integers(0, 12).map(lambda k: None if k == 12 else k)  # a null key now and then
rows_values = st.tuples(
    st.sampled_from(["a", "b", "", "ü", None]),
    st.sampled_from([None, NAN, 0.0, -0.0, 1.5, -2.25]),
    st.one_of(st.none(), st.integers(-2, 3)),
)
keyed_rows = st.lists(st.tuples(keys, rows_values), min_size=1, max_size=5)
write_ops = [
    st.tuples(st.just("append"), keyed_rows),
    st.tuples(st.just("upsert"), keyed_rows),
    st.tuples(st.just("overwrite"), st.lists(st.tuples(keys, rows_values), max_size=9)),
    st.tuples(st.just("delete_where"), st.sampled_from(sorted(PREDICATES))),
    st.tuples(st.just("delete_keys"), st.lists(st.integers(0, 14), max_size=4)),
]


ops = st.one_of(
    *write_ops,
    st.tuples(st.just("compact")),
    st.tuples(st.just("tx"), st.lists(st.one_of(*write_ops), min_size=2, max_size=3)),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(ops, min_size=1, max_size=7), probe=st.integers(0, 11))
def test_keyed_writes_match_a_dict_model_at_every_commit(tmp_path_factory: pytest.TempPathFactory,
                                                         script: list[Op], probe: int) -> None:
    path: Path = tmp_path_factory.mktemp("keyed") / "lake"
    with udr.open(path) as db:
        created = db.create_table("t", SCHEMA, primary_key=["id"])
        model: Model = {}
        states: list[tuple[str, Model]] = [(created.id, {})]
        compactions: set[str] = set()
        for op in script:
            head = db.resolve(None)
            expected = expect(op, model)
            if expected is None:
                with pytest.raises(udr.KeyViolation, match="'t'"):
                    run(db, op)
                assert db.resolve(None) == head, "a rejected write moved the branch"
                continue
            model, counts = expected
            commit = run(db, op)
            if op[0] == "tx":
                # Several writes in one transaction: rows, change feed and counts are the net effect (a
                # transaction whose writes cancel out may or may not write an empty commit).
                if commit.id != head:
                    assert commit.parents == (head,)
                    assert commit.tables.get("t", udr.TableChange()) == net_change(states[-1][1], model), op
                    states.append((commit.id, model))
                else:
                    assert model == states[-1][1], "a transaction that changed rows wrote no commit"
                continue
            if op[0] != "compact" and counts.change() == udr.TableChange():
                assert commit.id == head, f"{op[0]} that changes no row wrote a commit"
                continue
            assert commit.parents == (head,)
            assert commit.tables == {"t": counts.change()}, op
            states.append((commit.id, model))
            if op[0] == "compact":
                compactions.add(commit.id)

        # Every version reads back as the model predicted.
        for cid, expected_rows in states:
            assert as_model(db.read("t", at=cid)) == expected_rows, f"rows at commit {cid[:10]}"

        # Commit by commit, the change feed takes the previous version to the next; compactions change nothing.
        for (before_id, before), (cid, after) in pairwise(states):
            feed = db.changes("t", since=before_id, until=cid)
            assert set(feed.column("_commit_id").to_pylist()) <= {cid}
            assert replay(before, feed) == after
            if cid in compactions:
                assert feed.num_rows == 0

        # From the start of the lake, the whole feed rebuilds the head, in commit order.
        feed = db.changes("t")
        assert feed.column_names == [*SCHEMA.names, "_change", "_commit_id", "_commit_seq", "_commit_time"]
        seqs = feed.column("_commit_seq").to_pylist()
        assert seqs == sorted(seqs)
        assert replay({}, feed) == model == as_model(db.read("t"))

        # The net diff from the empty table to the head is the head's rows as inserts.
        net = db.diff("t", created.id, None)
        assert set(net.column("_change").to_pylist()) <= {"insert"}
        assert replay({}, net) == model

        # One row's history lists every version, oldest first.
        history = db.history("t", key={"id": probe})
        seen = [(r["_commit_id"], r["_change"], tuple(norm(r[c]) for c in VALUES)) for r in history.to_pylist()]
        assert seen == key_versions(states, probe)
