"""Three-way merge of a keyed table (issue #4) against a model: random edits on `main` and on a branch from a
common base; the model computes, row by row and cell by cell, either the merged table or the exact set
of conflicts (table, key, column), and what `strategy="ours"` / `"theirs"` must produce instead.

Rule of the model: a row changed on one side only takes that side; a row changed on both sides merges
cell by cell (a cell changed on one side takes that side, the same cell changed to different values is a
conflict on that column); a row deleted on one side and changed on the other is a whole-row conflict
(column None); both sides making the same change is no conflict.

A revert is the same three-way merge (of a commit's parent over it): reverting a commit that later commits
did not touch must restore exactly its rows, and reverting the revert must bring them back.

Both sides may insert the same new key (then every differing cell conflicts, NULLs included: there is
no base value for either side to have kept), and keys may be missing from the base.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from row_model import NAN, SCHEMA, VALUES, Model, Row, denorm, norm

import udr

# One drawn edit: ("set", key, column, value), ("upsert", {key: row}) or ("delete", [key, ...]).
Edit = tuple[Any, ...]
BASE_KEYS = range(4)
NEW_KEYS = range(4, 6)


def as_model(table: pa.Table) -> Model:
    return {r["id"]: tuple(norm(r[c]) for c in VALUES) for r in table.to_pylist()}


def batch(rows: dict[int, Row]) -> pa.Table:
    columns: dict[str, list[object]] = {"id": list(rows)}
    for i, name in enumerate(VALUES):
        columns[name] = [denorm(r[i]) for r in rows.values()]
    return pa.table(columns, schema=SCHEMA)


# -- the model ----------------------------------------------------------------------------------------------


def merge_model(base: Model, ours: Model, theirs: Model) -> tuple[Model, set[tuple[int, str | None]], Model, Model]:
    """(merged, conflicts as (key, column), result with strategy "ours", result with strategy "theirs")."""
    merged: Model = {}
    conflicts: set[tuple[int, str | None]] = set()
    pick = {"ours": {}, "theirs": {}}  # type: dict[str, Model]
    for key in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(key), ours.get(key), theirs.get(key)
        if o == t:
            rows = {"merged": o, "ours": o, "theirs": o}
        elif o == b:
            rows = {"merged": t, "ours": t, "theirs": t}
        elif t == b:
            rows = {"merged": o, "ours": o, "theirs": o}
        elif o is None or t is None:
            conflicts.add((key, None))
            rows = {"merged": None, "ours": o, "theirs": t}
        else:
            cells: dict[str, list[object]] = {"merged": [], "ours": [], "theirs": []}
            for i, column in enumerate(VALUES):
                oc, tc = o[i], t[i]
                if oc == tc or (b is not None and tc == b[i]):
                    chosen = [oc, oc, oc]
                elif b is not None and oc == b[i]:
                    chosen = [tc, tc, tc]
                else:
                    conflicts.add((key, column))
                    chosen = [None, oc, tc]
                for side, value in zip(cells, chosen):
                    cells[side].append(value)
            rows = {side: tuple(values) for side, values in cells.items()}
        for side, target in (("merged", merged), ("ours", pick["ours"]), ("theirs", pick["theirs"])):
            if rows[side] is not None:
                target[key] = rows[side]  # type: ignore[assignment]
    return merged, conflicts, pick["ours"], pick["theirs"]


def counts(old: Model, new: Model) -> udr.TableChange:
    return udr.TableChange(
        inserted=len(set(new) - set(old)),
        updated=sum(1 for k in set(new) & set(old) if new[k] != old[k]),
        deleted=len(set(old) - set(new)),
    )


def apply_edit(db: udr.Lake, branch: str, model: Model, edit: Edit) -> Model:
    """Commit one edit on `branch` (or nothing, if it changes nothing); return the branch's new model."""
    kind = edit[0]
    new = dict(model)
    if kind == "set":  # change one cell of an existing row
        _, key, column, value = edit
        if key not in new:
            return model
        row = list(new[key])
        row[column] = value
        new[key] = tuple(row)
        db.upsert("t", batch({key: new[key]}), branch=branch)
    elif kind == "upsert":
        new.update(edit[1])
        db.upsert("t", batch(edit[1]), branch=branch)
    else:
        for key in edit[1]:
            new.pop(key, None)
        db.delete("t", keys={"id": pa.array(edit[1], pa.int64())}, branch=branch)
    return new


# -- strategies ----------------------------------------------------------------------------------------------

CELLS = (["a", "b", None], [None, NAN, 0.0, 1.5], [None, 0, 7])
any_row = st.tuples(*(st.sampled_from(c) for c in CELLS))
base_rows = st.dictionaries(st.sampled_from(list(BASE_KEYS)), any_row, min_size=2)
edit = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(list(BASE_KEYS)), st.integers(0, len(VALUES) - 1),
              st.sampled_from(["a", "b", None, NAN, 0.0, 2.5, 0, 7])),
    st.tuples(st.just("upsert"), st.dictionaries(st.sampled_from(list(BASE_KEYS)), any_row, min_size=1, max_size=2)),
    st.tuples(st.just("upsert"), st.dictionaries(st.sampled_from(list(NEW_KEYS)), any_row, min_size=1, max_size=2)),
    st.tuples(st.just("delete"), st.lists(st.sampled_from(list(BASE_KEYS) + list(NEW_KEYS)), min_size=1, max_size=2)),
)


def fix_types(edit_: Edit) -> Edit:
    """`set` draws a value for any column; make it one the column can hold."""
    if edit_[0] != "set":
        return edit_
    _, key, column, value = edit_
    kind = VALUES[column]
    ok: Callable[[object], bool] = {
        "s": lambda v: v is None or isinstance(v, str),
        "f": lambda v: v is None or v == NAN or isinstance(v, float),
        "n": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    }[kind]
    return edit_ if ok(value) else ("set", key, column, None)


edits = st.lists(edit.map(fix_types), min_size=1, max_size=3)


def check_merge_commit(commit: udr.Commit, ours_head: str, theirs_head: str, ours: Model, merged: Model) -> None:
    """A three-way merge commits with parents (ours, theirs) and counts its net changes to main, even when it
    changes no row (both sides made the same changes, or strategy "ours" kept everything)."""
    assert commit.parents == (ours_head, theirs_head)
    assert commit.tables.get("t", udr.TableChange()) == counts(ours, merged)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(base=base_rows, mine=edits, other=edits)
def test_a_keyed_merge_gives_the_models_rows_or_exactly_its_conflicts(
    tmp_path_factory: pytest.TempPathFactory, base: Model, mine: list[Edit], other: list[Edit]
) -> None:
    path: Path = tmp_path_factory.mktemp("merge") / "lake"
    with udr.open(path) as db:
        db.create_table("t", SCHEMA, primary_key=["id"])
        start = db.append("t", batch(base))
        db.create_branch("b")
        ours, theirs = dict(base), dict(base)
        for e in mine:
            ours = apply_edit(db, "main", ours, e)
        for e in other:
            theirs = apply_edit(db, "b", theirs, e)
        ours_head, theirs_head = db.resolve("main"), db.resolve("b")
        db.create_branch("copy", from_="main")
        merged, conflicts, with_ours, with_theirs = merge_model(base, ours, theirs)

        event("conflicts" if conflicts else "clean" if ours_head != start.id != theirs_head else "one side only")
        if theirs_head == start.id:  # nothing to merge
            assert db.merge("b").id == ours_head
            assert db.resolve("main") == ours_head
            return
        if ours_head == start.id:  # main has no commit of its own: a fast-forward
            assert db.merge("b").id == theirs_head
            assert db.resolve("main") == theirs_head
            assert as_model(db.read("t")) == theirs
            return

        if conflicts:
            with pytest.raises(udr.MergeConflict) as info:
                db.merge("b")
            found = info.value.conflicts
            assert all(isinstance(c, udr.Conflict) and c.table == "t" for c in found)
            assert {(c.key["id"], c.column) for c in found if c.key is not None} == conflicts
            assert len(found) == len(conflicts), "a conflict was reported twice, or without a key"
            for c in found:
                assert c.key is not None
                k = c.key["id"]
                assert isinstance(k, int)
                if c.column is not None:
                    i = VALUES.index(c.column)
                    assert (norm(c.ours), norm(c.theirs)) == (ours[k][i], theirs[k][i])
                    assert norm(c.base) == (base[k][i] if k in base else None)
            assert db.resolve("main") == ours_head, "a failed merge moved main"
            for strategy, branch, expected in (("ours", "main", with_ours), ("theirs", "copy", with_theirs)):
                commit = db.merge("b", into=branch, strategy=strategy)
                check_merge_commit(commit, ours_head, theirs_head, ours, expected)
                assert as_model(db.read("t", branch=branch)) == expected, strategy
        else:
            commit = db.merge("b")
            check_merge_commit(commit, ours_head, theirs_head, ours, merged)
            assert db.resolve("main") == commit.id
            assert as_model(db.read("t")) == merged
            assert db.merge("b").id == commit.id, "merging the same branch again is not a no-op"
        assert as_model(db.read("t", branch="b")) == theirs, "merging changed the source branch"
        assert db.verify().ok


# -- revert is a three-way merge too ----------------------------------------------------------------------------

key_sets = st.sets(st.integers(0, 7), min_size=1, max_size=4)


@st.composite
def revert_scripts(draw: st.DrawFn) -> tuple[Model, dict[int, Row | None], list[dict[int, Row | None]]]:
    """A base table, one commit's changes to a set of keys, and later commits touching only other keys
    (row -> None deletes the key)."""
    base = draw(st.dictionaries(st.integers(0, 7), any_row, min_size=2))
    touched = draw(key_sets)
    change = {k: draw(st.one_of(st.none(), any_row)) for k in touched}
    others = sorted(set(range(8)) - touched)
    later = draw(st.lists(st.dictionaries(st.sampled_from(others), st.one_of(st.none(), any_row), min_size=1,
                                          max_size=3), max_size=3)) if others else []
    return base, change, later


def commit_edit(db: udr.Lake, model: Model, edit: dict[int, Row | None]) -> Model:
    new = dict(model)
    upserts = {k: r for k, r in edit.items() if r is not None}
    deletes = [k for k, r in edit.items() if r is None]
    with db.transaction() as tx:
        if upserts:
            tx.upsert("t", batch(upserts))
        if deletes:
            tx.delete("t", keys={"id": pa.array(deletes, pa.int64())})
    new.update(upserts)
    for k in deletes:
        new.pop(k, None)
    return new


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(script=revert_scripts())
def test_revert_restores_exactly_the_cells_of_its_commit_when_later_commits_touched_other_rows(
    tmp_path_factory: pytest.TempPathFactory, script: tuple[Model, dict[int, Row | None], list[dict[int, Row | None]]]
) -> None:
    base, change, later = script
    path: Path = tmp_path_factory.mktemp("revert") / "lake"
    with udr.open(path) as db:
        db.create_table("t", SCHEMA, primary_key=["id"])
        db.append("t", batch(base))
        before = db.resolve(None)
        model = commit_edit(db, base, change)
        target = db.resolve(None)
        for edit in later:
            model = commit_edit(db, model, edit)
        head = db.resolve(None)
        expected = {k: r for k, r in model.items() if k not in change}
        expected.update({k: base[k] for k in change if k in base})
        if target == before:  # the change was a no-op: there is no commit to revert
            assert expected == model
            return
        reverted = db.revert(target)
        assert as_model(db.read("t")) == expected
        if reverted.id != head:
            assert reverted.parents == (head,)
            assert reverted.tables.get("t", udr.TableChange()) == counts(model, expected)
        else:
            assert expected == model
        # Reverting the revert brings the change back.
        if reverted.id != head:
            db.revert(reverted)
            assert as_model(db.read("t")) == model
