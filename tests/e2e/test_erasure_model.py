"""Model-based: random keyed writes on two branches (a Parquet load, upserts, deletes, overwrites), erasures
of random keys and `gc` at random moments. Every version must read as the model says: what it held when it
was committed, minus every key erased after it existed; rows written after an erasure are untouched by it.
The change feed never shows an erased value, and `verify` stays clean."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest

import udr

LOAD = 30_000  # one Parquet chunk
SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.string())])

Rows = dict[int, str]


def _read(db: udr.Lake, cid: str) -> Rows:
    table = db.read("k", at=cid)
    return dict(zip(table.column("id").to_pylist(), table.column("v").to_pylist(), strict=True))


def _step(db: udr.Lake, rng: random.Random, branch: str, state: Rows, tag: int) -> tuple[udr.Commit, Rows]:
    kind = rng.choice(["upsert", "upsert", "upsert", "delete", "overwrite"])
    ids = rng.sample(range(40), rng.randint(1, 6))
    if kind == "upsert":
        values = [f"w{tag}-{i}" for i in ids]
        return db.upsert("k", {"id": ids, "v": values}, branch=branch), {**state, **dict(zip(ids, values, strict=True))}
    if kind == "delete":
        return db.delete("k", keys={"id": ids}, branch=branch), {i: v for i, v in state.items() if i not in ids}
    kept = {i: v for i, v in state.items() if i >= 40 or rng.random() < 0.7}
    rows = sorted(kept.items())
    data = pa.table({"id": [i for i, _ in rows], "v": [v for _, v in rows]}, schema=SCHEMA)
    return db.overwrite("k", data, branch=branch), kept


@pytest.mark.parametrize("seed", range(4))
def test_erasure_against_a_model(db: udr.Lake, seed: int) -> None:
    rng = random.Random(seed)
    db.create_table("k", SCHEMA, primary_key=["id"])
    ids = np.arange(LOAD, dtype=np.int64)
    load = db.append("k", pa.table({"id": ids, "v": [f"load-{i}" for i in range(LOAD)]}, schema=SCHEMA))
    model: dict[str, Rows] = {load.id: {i: f"load-{i}" for i in range(LOAD)}}
    heads = {"main": load.id}
    erased_values: set[str] = set()
    for step in range(24):
        if step == 6:
            db.create_branch("side", at=rng.choice(list(model)))
            heads["side"] = db.resolve(None, "side")
        if step % 7 == 5:
            keys = rng.sample(range(40), rng.randint(1, 3))
            commit = db.erase("k", {"id": keys}, reason=f"request {step}", branch=rng.choice(sorted(heads)))
            for rows in model.values():
                for key in keys:
                    if key in rows:
                        erased_values.add(rows.pop(key))
            model[commit.id] = dict(model[heads[commit.branch]])
            heads[commit.branch] = commit.id
            if rng.random() < 0.6:
                db.gc()
            continue
        branch = rng.choice(sorted(heads))
        commit, rows = _step(db, rng, branch, model[heads[branch]], step)
        model[commit.id] = rows
        heads[branch] = commit.id
    db.gc()
    for cid, rows in model.items():
        assert _read(db, cid) == rows, cid[:10]
    for branch in heads:
        feed = db.changes("k", branch=branch)
        assert not erased_values & set(feed.column("v").drop_null().to_pylist())
    assert erased_values
    report = db.verify()
    assert report.ok, report.problems
