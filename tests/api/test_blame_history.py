"""Blame and history through merges (issue 12) against a pure-Python model of cell values and who set them.

Random upserts, keyed overwrites, deletes and compactions on `main` and `dev`, and merges both ways (no
strategy, "ours", "theirs"). The model keeps, per commit, key -> {column: (value, setter)}:
- an ordinary commit sets the cells whose value it changed (all cells of a row it inserts);
- a merge merges each row three ways, cell by cell, as `merge` does; each resulting cell keeps the setter of the
  first parent if it equals the first parent's cell, else the setter of the second parent's (a merge's cells all
  come from one side). A merge *decides* a key when both sides changed the same cell differently, or one deleted
  the row and the other changed it.
`blame` must give each current cell's setter; `history(key)` must list, in log order, every ordinary commit in
the ancestry that changed the row and every merge that decided it, each current cell in its setter's version.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pytest

import udr

SCHEMA = pa.schema([("id", pa.int64()), ("a", pa.int64()), ("b", pa.string())])
COLUMNS = ("a", "b")
Cell = tuple[object, str]
Rows = dict[int, dict[str, Cell]]


@dataclass
class Model:
    states: dict[str, Rows] = field(default_factory=dict)
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)
    decided: dict[str, set[int]] = field(default_factory=dict)

    def add(self, commit: udr.Commit, rows: Rows, decided: set[int] | None = None) -> None:
        self.states[commit.id] = rows
        self.parents[commit.id] = commit.parents
        self.seqs[commit.id] = commit.seq
        self.decided[commit.id] = decided or set()

    def ancestors(self, cid: str) -> set[str]:
        seen, stack = {cid}, [cid]
        while stack:
            for p in self.parents.get(stack.pop(), ()):
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen

    def base(self, a: str, b: str) -> str:
        common = self.ancestors(a) & self.ancestors(b)
        return max(common, key=lambda c: self.seqs[c])


def values(rows: Rows, key: int) -> dict[str, object] | None:
    row = rows.get(key)
    return None if row is None else {c: row[c][0] for c in COLUMNS}


def written(parent: Rows, batch: dict[int, dict[str, object]], cid: str) -> Rows:
    out = {k: dict(v) for k, v in parent.items()}
    for key, row in batch.items():
        old = out.get(key)
        out[key] = {c: (row[c], cid) if old is None or old[c][0] != row[c] else old[c] for c in COLUMNS}
    return out


def merged_row(b: dict[str, object] | None, o: dict[str, object] | None, t: dict[str, object] | None,
               strategy: str | None) -> tuple[dict[str, object] | None, bool]:
    """(the merged row, whether the merge decided a conflict on it); raises KeyError on an unresolved conflict."""
    if t in (o, b):
        return o, False
    if o == b:
        return t, False
    if o is None or t is None:
        if strategy is None:
            raise KeyError("row conflict")
        return (t if strategy == "theirs" else o), True
    out, clash = dict(o), False
    for c in COLUMNS:
        bc = b[c] if b is not None else object()
        if o[c] == t[c] or t[c] == bc:
            continue
        if o[c] == bc:
            out[c] = t[c]
            continue
        if strategy is None:
            raise KeyError("cell conflict")
        clash = True
        out[c] = t[c] if strategy == "theirs" else o[c]
    return out, clash


def model_merge(model: Model, ours: str, theirs: str, strategy: str | None) -> tuple[Rows, set[int]]:
    base, mine, other = (model.states[c] for c in (model.base(ours, theirs), ours, theirs))
    out: Rows = {}
    decided = set()
    for key in sorted(set(base) | set(mine) | set(other)):
        row, clash = merged_row(values(base, key), values(mine, key), values(other, key), strategy)
        if clash:
            decided.add(key)
        if row is None:
            continue
        cells = {}
        for c in COLUMNS:
            if key in mine and mine[key][c][0] == row[c]:
                cells[c] = mine[key][c]
            else:
                assert key in other and other[key][c][0] == row[c]
                cells[c] = other[key][c]
        out[key] = cells
    return out, decided


def random_batch(rng: random.Random) -> dict[int, dict[str, object]]:
    return {k: {"a": rng.randrange(3), "b": rng.choice("xy")} for k in rng.sample(range(6), rng.randint(1, 3))}


def step(db: udr.Lake, model: Model, rng: random.Random) -> None:
    branch = rng.choice(["main", "dev"])
    head = db.resolve(None, branch)
    choice = rng.random()
    if choice < 0.55:
        batch = random_batch(rng)
        commit = db.upsert("t", pa.Table.from_pylist([{"id": k, **r} for k, r in batch.items()], schema=SCHEMA),
                           branch=branch, author=f"w{rng.randrange(3)}")
        if commit.id != head:
            model.add(commit, written(model.states[head], batch, commit.id))
        else:
            assert written(model.states[head], batch, "?") == model.states[head]
    elif choice < 0.62:
        batch = random_batch(rng)
        commit = db.overwrite("t", pa.Table.from_pylist([{"id": k, **r} for k, r in batch.items()], schema=SCHEMA),
                              branch=branch)
        kept = {k: v for k, v in model.states[head].items() if k in batch}
        if commit.id != head:
            model.add(commit, written(kept, batch, commit.id))
    elif choice < 0.66:
        commit = db.compact("t", branch=branch)
        if commit.id != head:
            model.add(commit, model.states[head])
    elif choice < 0.74:
        present = sorted(model.states[head])
        if present:
            key = rng.choice(present)
            commit = db.delete("t", f"id = {key}", branch=branch)
            model.add(commit, {k: v for k, v in model.states[head].items() if k != key})
    else:
        other = "dev" if branch == "main" else "main"
        theirs = db.resolve(None, other)
        strategy = rng.choice([None, "ours", "theirs"])
        base = model.base(head, theirs)
        if base in (head, theirs):
            commit = db.merge(other, into=branch)
            assert commit.id == (theirs if base == head else head)
            return
        try:
            expected, decided = model_merge(model, head, theirs, strategy)
        except KeyError:
            with pytest.raises(udr.MergeConflict):
                db.merge(other, into=branch, strategy=strategy)
            return
        commit = db.merge(other, into=branch, strategy=strategy, author="merger")
        model.add(commit, expected, decided)


def row_changes(model: Model, cid: str, key: int) -> bool:
    parents = model.parents[cid]
    if len(parents) > 1:
        return key in model.decided[cid]
    return values(model.states[cid], key) != values(model.states[parents[0]], key)


@pytest.mark.parametrize("seed", range(4))
def test_blame_and_history_follow_every_parent(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    db = udr.open(tmp_path / "lake")
    model = Model()
    model.add(db.commit_info("main"), {})
    model.add(db.create_table("t", SCHEMA, primary_key=["id"]), {})
    db.create_branch("dev")
    for _ in range(28):
        step(db, model, rng)
    for branch in ("main", "dev"):
        head = db.resolve(None, branch)
        state = model.states[head]
        assert {r["id"]: {c: r[c] for c in COLUMNS} for r in db.read("t", branch).to_pylist()} == {
            k: {c: v[c][0] for c in COLUMNS} for k, v in state.items()}
        blamed = db.blame("t", branch=branch).to_pylist()
        assert [r["id"] for r in blamed] == sorted(state)
        for r in blamed:
            for c in COLUMNS:
                assert r[f"{c}__commit"] == state[r["id"]][c][1], (branch, r["id"], c)
                assert r[f"{c}__author"] == db.commit_info(state[r["id"]][c][1]).author
        for key in range(6):
            found = db.history("t", {"id": key}, branch)
            listed = list(dict.fromkeys(found.column("_commit_id").to_pylist()))
            expected = sorted((c for c in model.ancestors(head) if model.parents[c] and row_changes(model, c, key)),
                              key=lambda c: model.seqs[c])
            assert listed == expected, (branch, key)
            # Each current cell shows, in history, in the version its setter wrote.
            written_by = {(r["_commit_id"], c, r[c]) for r in found.to_pylist()
                          if r["_change"] in ("insert", "update_after") for c in COLUMNS}
            for c, (value, setter) in state.get(key, {}).items():
                assert (setter, c, value) in written_by, (branch, key, c)


def test_blame_of_one_key_and_errors(tmp_path: Path) -> None:
    db = udr.open(tmp_path / "lake")
    db.create_table("t", SCHEMA, primary_key=["id"])
    first = db.upsert("t", pa.table({"id": [1, 2], "a": [1, 2], "b": ["x", "y"]}), author="ann")
    second = db.upsert("t", pa.table({"id": [2], "a": [3], "b": ["y"]}), author="bo")
    one = db.blame("t", key={"id": 2})
    assert one.to_pylist()[0]["a__commit"] == second.id and one.to_pylist()[0]["b__commit"] == first.id
    assert one.column_names == ["id", "a__commit", "a__author", "a__time", "b__commit", "b__author", "b__time"]
    assert db.blame("t", key={"id": 9}).num_rows == 0
    with pytest.raises(udr.UsageError, match="keyed by id"):
        db.blame("t", key={"a": 1})
    db.create_table("plain", pa.schema([("x", pa.int64())]))
    with pytest.raises(udr.UsageError, match="no primary key"):
        db.blame("plain")
    with pytest.raises(udr.TableNotFound):
        db.blame("nope")


def test_history_shows_commit_metadata(tmp_path: Path) -> None:
    db = udr.open(tmp_path / "lake")
    db.create_table("t", SCHEMA, primary_key=["id"])
    with db.transaction(message="import", metadata={"ticket": "FIN-7"}) as tx:
        tx.upsert("t", pa.table({"id": [1], "a": [1], "b": ["x"]}))
    found = db.history("t", {"id": 1})
    assert found.column("_metadata").to_pylist() == ['{"ticket": "FIN-7"}']


def test_blame_with_a_composite_key_through_a_merge(tmp_path: Path) -> None:
    db = udr.open(tmp_path / "lake")
    schema = pa.schema([("o", pa.int64()), ("l", pa.string()), ("q", pa.int64()), ("note", pa.string())])
    db.create_table("lines", schema, primary_key=["o", "l"])
    db.append("lines", pa.table({"o": [1, 1, 2], "l": ["a", "b", "a"], "q": [1, 2, 3], "note": ["", "", ""]},
                                schema=schema), author="ann")
    db.create_branch("dev")
    db.upsert("lines", pa.table({"o": [1], "l": ["b"], "q": [20], "note": [""]}, schema=schema), author="bo")
    db.upsert("lines", pa.table({"o": [1], "l": ["b"], "q": [2], "note": ["late"]}, schema=schema), branch="dev",
              author="cy")
    db.delete("lines", "o = 2", branch="dev", author="cy")
    db.merge("dev", author="merger")
    blamed = {(r["o"], r["l"]): (r["q__author"], r["note__author"]) for r in db.blame("lines").to_pylist()}
    assert blamed == {(1, "a"): ("ann", "ann"), (1, "b"): ("bo", "cy")}
    assert db.blame("lines", key={"o": 1, "l": "b"}).column("note__author").to_pylist() == ["cy"]
