"""Row history and git for data on the command line (issues #3 and #4), driven as a user would.

`udr history`, `changes`, `compact`, `import --mode upsert`, `branch`, `tag`, `merge`, `diff`, `reset`,
`revert`, `log --graph` and the demo's branching step, through click's runner against real lakes; plus
unit tests of the pure lane-drawing function behind `log --graph`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from cli_helpers import Udr, cells

import udr
from udr.cli.graph import graph_rows

PEOPLE = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])


@pytest.fixture
def lake(lake_path: Path) -> Path:
    """A lake whose keyed `people` table was seeded, rescored (id 2) and then lost id 3."""
    with udr.open(lake_path) as db:
        db.create_table("people", PEOPLE, primary_key=["id"], author="ann")
        db.append("people", {"id": [1, 2, 3], "name": ["ann", "bob", "cy"], "score": [1.0, 2.0, 3.0]},
                  message="seed", author="ann")
        db.upsert("people", {"id": [2], "name": ["bob"], "score": [20.0]}, message="rescore", author="bob")
        db.delete("people", "id = 3", message="drop cy", author="cy")
    return lake_path


@pytest.fixture
def udr_cli(lake: Path) -> Udr:
    return Udr(lake)


def head(lake: Path, ref: str = "main") -> udr.Commit:
    with udr.open(lake) as db:
        return db.commit_info(ref)


def people(lake: Path, at: str = "main") -> dict[int, float]:
    with udr.open(lake) as db:
        rows = db.read("people", at=at)
    return dict(zip(rows.column("id").to_pylist(), rows.column("score").to_pylist(), strict=True))


# -- history ------------------------------------------------------------------------------------------------


def test_history_prints_every_version_of_a_row_oldest_first(udr_cli: Udr, lake: Path) -> None:
    seed, rescore, drop = (head(lake, f"main~{n}") for n in (2, 1, 0))
    rows = cells(udr_cli.ok("history", "people", "--key", "id=2"))
    assert [r[:2] + r[3:] for r in rows] == [
        ["insert", seed.short_id, "ann", "seed", "", "2", "bob", "2.0"],
        ["update", rescore.short_id, "bob", "rescore", "", "2", "bob", "20.0"],
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", r[2]) for r in rows)
    gone = cells(udr_cli.ok("history", "people", "--key", "id=3"))
    assert [(r[0], r[1], r[4]) for r in gone] == [("insert", seed.short_id, "seed"),
                                                  ("delete", drop.short_id, "drop cy")]
    assert "no version of the row id=99 in people on main" in udr_cli.ok("history", "people", "--key", "id=99")


def test_history_casts_a_composite_key_to_the_column_types(lake_path: Path) -> None:
    schema = pa.schema([("region", pa.string()), ("day", pa.date32()), ("sales", pa.int64())])
    with udr.open(lake_path) as db:
        db.create_table("sales", schema, primary_key=["region", "day"])
        db.append("sales", pa.table({"region": ["eu", "eu", "us"], "day": [date(2024, 5, 1), date(2024, 5, 2),
                                                                           date(2024, 5, 1)], "sales": [1, 2, 3]},
                                    schema=schema), message="load")
        db.upsert("sales", pa.table({"region": ["eu"], "day": [date(2024, 5, 1)], "sales": [10]}, schema=schema),
                  message="late sale")
    udr_cli = Udr(lake_path)
    rows = cells(udr_cli.ok("history", "sales", "--key", "region=eu", "--key", "day=2024-05-01"))
    assert [(r[0], r[4], r[-1]) for r in rows] == [("insert", "load", "1"), ("update", "late sale", "10")]
    assert "keyed by (region, day)" in udr_cli.fails("history", "sales", "--key", "region=eu")
    assert "cannot read 'May 1st' as date32" in udr_cli.fails("history", "sales", "--key", "region=eu",
                                                              "--key", "day=May 1st")


def test_history_errors(udr_cli: Udr) -> None:
    assert udr_cli.run("history", "people", "--key", "id").exit_code == 2
    assert "given twice" in udr_cli.run("history", "people", "--key", "id=1", "--key", "id=2").output
    assert udr_cli.run("history", "people").exit_code == 2
    assert "peple" in udr_cli.fails("history", "peple", "--key", "id=1")
    assert "'nope'" in udr_cli.fails("history", "people", "--key", "id=1", "--branch", "nope")
    assert "cannot read 'x' as int64" in udr_cli.fails("history", "people", "--key", "id=x")


# -- changes and compact ------------------------------------------------------------------------------------


def test_changes_in_each_format_and_range(udr_cli: Udr, lake: Path) -> None:
    every = udr_cli.json("changes", "people")
    assert [(r["id"], r["_change"]) for r in every] == [
        (1, "insert"), (2, "insert"), (3, "insert"), (2, "update_before"), (2, "update_after"), (3, "delete")]
    assert every[-1]["_commit_id"] == head(lake).id
    assert [(r["id"], r["_change"]) for r in udr_cli.json("changes", "people", "--since", "main~1")] == [(3, "delete")]
    assert [(r["score"], r["_change"]) for r in udr_cli.json("changes", "people", "--since", "main~2",
                                                          "--until", "main~1")] == [
        (2.0, "update_before"), (20.0, "update_after")]
    rows = list(csv.DictReader(io.StringIO(udr_cli.ok("changes", "people", "--format", "csv"))))
    assert [r["_change"] for r in rows] == [r["_change"] for r in every]
    table = cells(udr_cli.ok("changes", "people", "--since", "main~1"))
    assert len(table) == 1 and table[0][:4] == ["3", "cy", "3.0", "delete"]
    assert table[0][4] == head(lake).short_id  # the table view shortens ids
    assert "nope" in udr_cli.fails("changes", "people", "--branch", "nope")
    assert udr_cli.run("changes", "people", "--since", "2024-13-45").exit_code == 2
    assert "(0 rows)" in udr_cli.ok("changes", "people", "--since", "main")


def test_compact_commits_no_row_change(lake_path: Path) -> None:
    with udr.open(lake_path) as db:
        for n in range(5):
            db.append("events", {"n": [n, n + 10]}, message=f"append {n}")
        db.delete("events", "n = 2")
    udr_cli = Udr(lake_path)
    before = udr_cli.json("changes", "events")
    out = udr_cli.ok("compact", "events")
    assert re.fullmatch(r"compacted events \(9 rows\) in commit [0-9a-f]{10} on main; no row changed\n", out)
    after = head(lake_path)
    assert after.message == "compact events" and out.split()[6] == after.short_id
    assert udr_cli.json("changes", "events") == before
    assert udr_cli.json("changes", "events", "--since", "main~1") == []
    assert "nope" in udr_cli.fails("compact", "nope")


# -- import --mode upsert --key -----------------------------------------------------------------------------


def test_import_upsert_with_a_composite_key(lake_path: Path, tmp_path: Path) -> None:
    udr_cli = Udr(lake_path)
    udr_cli.ok("init")
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("id,k,v\n1,a,1.5\n1,b,2.5\n2,a,3.5\n")
    second.write_text("id,k,v\n1,b,20.5\n3,c,4.5\n")
    assert "3 inserted, 0 updated" in udr_cli.ok("import", "t", str(first), "--mode", "upsert", "--key", "id,k")
    assert "1 inserted, 1 updated, 0 deleted" in udr_cli.ok("import", "t", str(second), "--mode", "upsert")
    with udr.open(lake_path) as db:
        assert db.primary_key("t") == ["id", "k"]
        assert sorted(db.read("t").to_pylist(), key=lambda r: (r["id"], r["k"])) == [
            {"id": 1, "k": "a", "v": 1.5}, {"id": 1, "k": "b", "v": 20.5}, {"id": 2, "k": "a", "v": 3.5},
            {"id": 3, "k": "c", "v": 4.5}]
        commits = len(db.log())
    again = udr_cli.ok("import", "t", str(second), "--mode", "upsert")
    assert again.startswith("t: no row changed, so no commit was made (main stays at ")
    with udr.open(lake_path) as db:
        assert len(db.log()) == commits
    assert "primary key (id, k)" in udr_cli.fails("import", "t", str(second), "--mode", "upsert", "--key", "id")
    assert [r[0] for r in cells(udr_cli.ok("history", "t", "--key", "id=1", "--key", "k=b"))] == ["insert", "update"]


# -- branch and tag -----------------------------------------------------------------------------------------


def test_branch_create_list_and_delete(
    udr_cli: Udr, lake: Path, disk_state: Callable[[Path], dict[str, str]], chunk_files: Callable[[Path], list[Path]]
) -> None:
    main = head(lake)
    chunks = chunk_files(lake)
    out = udr_cli.ok("branch", "exp")
    assert out == f"created branch exp at {main.short_id} (drop cy); no data was copied\n"
    assert chunk_files(lake) == chunks
    udr_cli.ok("branch", "old", "--from", "main~2")
    assert head(lake, "old").id == head(lake, "main~2").id
    listing = udr_cli.ok("branch").splitlines()
    assert [line.split()[:3] for line in listing] == [
        ["exp", main.short_id, "drop"], ["*", "main", main.short_id], ["old", head(lake, "main~2").short_id, "seed"]]
    assert listing[1].startswith("* main") and listing[0].startswith("  exp")

    assert "already exists" in udr_cli.fails("branch", "exp")
    assert "cannot be deleted" in udr_cli.fails("branch", "-d", "main")
    assert "nope" in udr_cli.fails("branch", "-d", "nope")
    assert "nowhere" in udr_cli.fails("branch", "x", "--from", "nowhere")
    assert udr_cli.run("branch", "--force").exit_code == 2
    assert udr_cli.run("branch", "-d", "exp", "--from", "main").exit_code == 2

    with udr.open(lake) as db:
        db.upsert("people", {"id": [9], "name": ["zed"], "score": [9.0]}, branch="exp", message="exp only")
    before = disk_state(lake)
    assert "force" in udr_cli.fails("branch", "-d", "exp")
    assert disk_state(lake) == before
    exp_head = head(lake, "exp").short_id
    assert udr_cli.ok("branch", "-d", "exp", "--force").startswith(f"deleted branch exp (was {exp_head};")
    assert "exp" not in udr_cli.ok("branch")
    assert head(lake, exp_head).message == "exp only"  # still reachable by id


def test_tags_list_create_refuse_to_move_and_delete(
    udr_cli: Udr, lake: Path, disk_state: Callable[[Path], dict[str, str]]
) -> None:
    assert "no tags yet" in udr_cli.ok("tag")
    seed = head(lake, "main~2")
    assert udr_cli.ok("tag", "v1", "main~2") == f"tagged {seed.short_id} (seed) as v1\n"
    udr_cli.ok("tag", "latest")
    assert udr_cli.ok("tag").splitlines() == [f"latest  {head(lake).short_id}  drop cy",
                                              f"v1      {seed.short_id}  seed"]
    before = disk_state(lake)
    assert "tags never move" in udr_cli.fails("tag", "v1", "main")
    assert "nowhere" in udr_cli.fails("tag", "v2", "nowhere")
    assert disk_state(lake) == before
    assert people(lake, "v1") == {1: 1.0, 2: 2.0, 3: 3.0}
    assert "deleted tag v1" in udr_cli.ok("tag", "-d", "v1")
    assert "v1" not in udr_cli.ok("tag")
    assert "'v1'" in udr_cli.fails("tag", "-d", "v1")
    assert udr_cli.run("tag", "-d").exit_code == 2


# -- merge, diff, reset, revert -----------------------------------------------------------------------------


def test_merge_fast_forwards_then_makes_a_merge_commit(udr_cli: Udr, lake: Path) -> None:
    udr_cli.ok("branch", "exp")
    with udr.open(lake) as db:
        db.upsert("people", {"id": [1], "name": ["ann"], "score": [10.0]}, branch="exp", message="exp: ann")
    before = head(lake).short_id
    out = udr_cli.ok("merge", "exp").splitlines()
    assert out == [f"fast-forwarded main from {before} to {head(lake, 'exp').short_id}: no merge commit needed",
                   "  people +0 ~1 -0"]
    assert udr_cli.ok("merge", "exp") == f"main already contains exp: nothing to merge (main stays at " \
                                      f"{head(lake).short_id})\n"

    with udr.open(lake) as db:
        db.upsert("people", {"id": [4], "name": ["dee"], "score": [4.0]}, branch="exp", message="exp: dee")
        db.upsert("people", {"id": [2], "name": ["bob"], "score": [21.0]}, message="main: bob")
    ours, theirs = head(lake), head(lake, "exp")
    out = udr_cli.ok("merge", "exp", "-m", "bring dee in").splitlines()
    merge = head(lake)
    assert out == [
        f"merged exp into main: merge commit {merge.short_id} (parents {ours.short_id} and {theirs.short_id})",
        "  people +1 ~0 -0",
    ]
    assert merge.message == "bring dee in" and merge.parents == (ours.id, theirs.id)
    assert people(lake) == {1: 10.0, 2: 21.0, 4: 4.0}
    assert "nope" in udr_cli.fails("merge", "nope")
    assert "nope" in udr_cli.fails("merge", "exp", "--into", "nope")
    assert udr_cli.run("merge", "exp", "--strategy", "mine").exit_code == 2


def test_a_conflicting_merge_prints_the_conflicts_exits_1_and_changes_nothing(
    udr_cli: Udr, lake: Path, disk_state: Callable[[Path], dict[str, str]]
) -> None:
    udr_cli.ok("branch", "exp")
    with udr.open(lake) as db:
        db.upsert("people", {"id": [1], "name": ["ann"], "score": [11.0]}, branch="exp", message="exp: ann")
        db.upsert("people", {"id": [1], "name": ["ann"], "score": [10.0]}, message="main: ann")
    before = disk_state(lake)
    result = udr_cli.run("merge", "exp")
    assert result.exit_code == 1
    assert result.stderr == ("error: 1 conflict merging exp into main; nothing was written: make both sides agree, "
                             "or retry with --strategy ours or theirs\n")
    assert cells(result.stdout) == [["people", "id=1", "score", "1.0", "10.0", "11.0"]]
    assert disk_state(lake) == before
    assert people(lake) == {1: 10.0, 2: 20.0}

    assert "merge commit" in udr_cli.ok("merge", "exp", "--strategy", "theirs")
    assert people(lake) == {1: 11.0, 2: 20.0}


def test_a_merge_resolved_with_ours_records_the_merge(udr_cli: Udr, lake: Path) -> None:
    udr_cli.ok("branch", "exp")
    with udr.open(lake) as db:
        db.upsert("people", {"id": [1], "name": ["ann"], "score": [11.0]}, branch="exp", message="exp: ann")
        db.upsert("people", {"id": [1], "name": ["ann"], "score": [10.0]}, message="main: ann")
    udr_cli.ok("merge", "exp", "--strategy", "ours")
    assert len(head(lake).parents) == 2
    assert udr_cli.ok("branch", "-d", "exp").startswith("deleted branch exp")  # merged, so no --force needed


def test_diff_counts_per_table_or_the_rows_of_one(udr_cli: Udr, lake: Path) -> None:
    with udr.open(lake) as db:
        db.append("notes", {"n": [1, 2]}, message="notes")
    assert cells(udr_cli.ok("diff", "main~3", "main")) == [["notes", "2", "0", "0"], ["people", "0", "1", "1"]]
    assert udr_cli.json("diff", "main~3", "main") == [
        {"table": "notes", "inserted": 2, "updated": 0, "deleted": 0},
        {"table": "people", "inserted": 0, "updated": 1, "deleted": 1}]
    rows = udr_cli.json("diff", "main~3", "main", "--table", "people")
    assert sorted((r["id"], r["score"], r["_change"]) for r in rows) == [
        (2, 2.0, "update_before"), (2, 20.0, "update_after"), (3, 3.0, "delete")]
    assert {r["_commit_id"] for r in rows} == {head(lake).id}
    backwards = udr_cli.json("diff", "main", "main~3", "--table", "people")
    assert sorted((r["id"], r["_change"]) for r in backwards) == [(2, "update_after"), (2, "update_before"),
                                                                   (3, "insert")]
    assert udr_cli.ok("diff", "main", "main") == "no row differs between main and main\n"
    assert "nope" in udr_cli.fails("diff", "main", "nope")
    assert "nope" in udr_cli.fails("diff", "main~1", "main", "--table", "nope")


def test_reset_moves_a_branch_and_prints_how_to_undo(udr_cli: Udr, lake: Path) -> None:
    old = head(lake)
    out = udr_cli.ok("reset", "main", "main~2")
    assert out == f"moved main from {old.short_id} to {head(lake, 'main~0').short_id} (seed); " \
                  f"undo with: udr reset main {old.short_id}\n"
    assert people(lake) == {1: 1.0, 2: 2.0, 3: 3.0}
    udr_cli.ok("reset", "main", old.short_id)
    assert head(lake).id == old.id
    assert "nope" in udr_cli.fails("reset", "nope", "main")
    assert "nowhere" in udr_cli.fails("reset", "main", "nowhere")


def test_revert_commits_the_inverse_or_reports_conflicts(
    udr_cli: Udr, lake: Path, disk_state: Callable[[Path], dict[str, str]]
) -> None:
    rescore = head(lake, "main~1")
    out = udr_cli.ok("revert", rescore.short_id).splitlines()
    reverted = head(lake)
    assert out == [f"reverted {rescore.short_id} on main in commit {reverted.short_id}", "  people +0 ~1 -0"]
    assert reverted.message.startswith(f"revert {rescore.short_id}")
    assert people(lake) == {1: 1.0, 2: 2.0}

    with udr.open(lake) as db:
        db.upsert("people", {"id": [1], "name": ["ann"], "score": [5.0]}, message="ann once")
        db.upsert("people", {"id": [1], "name": ["ann"], "score": [6.0]}, message="ann twice")
    before = disk_state(lake)
    result = udr_cli.run("revert", "main~1")
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: 1 conflict reverting main~1 on main; nothing was written")
    # The later commit (5.0 -> 6.0) does not apply on the row as it was without the reverted one (1.0).
    assert cells(result.stdout) == [["people", "id=1", "score", "5.0", "1.0", "6.0"]]
    assert disk_state(lake) == before
    assert "nope" in udr_cli.fails("revert", "main", "--branch", "nope")
    assert "root commit" in udr_cli.fails("revert", head(lake, "main~7").id)


@pytest.mark.parametrize("args", [
    ("log", "--branch", "nope"), ("log", "--graph", "--branch", "nope"), ("merge", "nope"),
    ("history", "people", "--key", "id=1", "--branch", "nope"), ("compact", "people", "--branch", "nope"),
    ("branch", "x", "--from", "nope"), ("reset", "nope", "main"), ("diff", "nope", "main"),
])
def test_an_unknown_branch_is_one_line_and_exit_1(udr_cli: Udr, args: tuple[str, ...]) -> None:
    assert "'nope'" in udr_cli.fails(*args)


# -- log --graph --------------------------------------------------------------------------------------------


def test_log_graph_draws_a_merge_with_two_lanes(udr_cli: Udr, lake: Path) -> None:
    udr_cli.ok("branch", "exp")
    udr_cli.ok("tag", "v1", "main~1")
    with udr.open(lake) as db:
        db.upsert("people", {"id": [4], "name": ["dee"], "score": [4.0]}, branch="exp", message="exp: dee")
        db.upsert("people", {"id": [1], "name": ["ann"], "score": [5.0]}, message="main: ann")
        db.merge("exp")
        db.upsert("people", {"id": [5], "name": ["eve"], "score": [5.0]}, branch="exp", message="exp: eve")
        short = {c.message: c.short_id for branch in ("main", "exp") for c in db.log(branch)}
    lines = udr_cli.ok("log", "--graph").splitlines()
    # Each commit line ends with "[author, time]"; compare what comes before it.
    assert [line.partition(" [")[0] for line in lines] == [
        f"* {short['exp: eve']} (exp) exp: eve",
        f"| * {short['merge exp into main']} (main) merge exp into main",
        "|/|",
        f"| * {short['main: ann']} main: ann",
        f"* | {short['exp: dee']} exp: dee",
        "|/",
        f"* {short['drop cy']} drop cy",
        f"* {short['rescore']} (tag: v1) rescore",
        f"* {short['seed']} seed",
        f"* {short['create people']} create people",
        f"* {short['create lake']} create lake",
    ]
    assert re.search(r" \[udr, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\]$", lines[-1])


def test_log_graph_of_one_branch_with_a_limit_and_its_usage_errors(udr_cli: Udr, lake: Path) -> None:
    udr_cli.ok("branch", "exp")
    with udr.open(lake) as db:
        db.upsert("people", {"id": [4], "name": ["dee"], "score": [4.0]}, branch="exp", message="exp: dee")
        db.upsert("people", {"id": [1], "name": ["ann"], "score": [5.0]}, message="main: ann")
    everything = udr_cli.ok("log", "--graph")
    assert "exp: dee" in everything and "main: ann" in everything and "|/" in everything
    main_only = udr_cli.ok("log", "--graph", "--branch", "main")
    assert "exp: dee" not in main_only and "main: ann" in main_only and "|" not in main_only
    assert "(exp)" not in main_only  # exp's head is not among main's commits
    limited = udr_cli.ok("log", "--graph", "-n", "2").splitlines()
    assert [line.split()[0] for line in limited] == ["*", "|"]
    assert "(main) main: ann" in limited[0] and "(exp) exp: dee" in limited[1]
    assert "--table" in udr_cli.run("log", "--graph", "--table", "people").output
    assert udr_cli.run("log", "--graph", "--table", "people").exit_code == 2


# -- the lane-drawing function --------------------------------------------------------------------------------


def drawn(nodes: list[tuple[str, list[str]]]) -> list[str]:
    return [f"{graph} {node}" if node else graph for graph, node in graph_rows(nodes)]


def test_graph_rows_of_a_line_a_fork_and_a_merge() -> None:
    assert drawn([("c", ["b"]), ("b", ["a"]), ("a", [])]) == ["* c", "* b", "* a"]
    assert drawn([("m", ["c", "e"]), ("e", ["b"]), ("c", ["b"]), ("b", ["a"]), ("a", [])]) == [
        "* m",
        "|\\",
        "| * e",
        "* | c",
        "|/",
        "* b",
        "* a",
    ]
    # Two branch heads forking off one commit, the second one drawn in a lane of its own.
    assert drawn([("d", ["b"]), ("c", ["b"]), ("b", ["a"]), ("a", [])]) == ["* d", "| * c", "|/", "* b", "* a"]


def test_graph_rows_shift_lanes_over_a_merge_and_back() -> None:
    # x (a branch off a) keeps lane 0 while main merges e; the merged lanes then close one column at a time.
    assert drawn([("x", ["a"]), ("m", ["c", "e"]), ("e", ["b"]), ("c", ["b"]), ("b", ["a"]), ("a", [])]) == [
        "* x",
        "| * m",
        "| |\\",
        "| | * e",
        "| * | c",
        "| |/",
        "| * b",
        "|/",
        "* a",
    ]
    # A merge whose first parent already has a lane to its left: that edge moves left, the other stays.
    assert drawn([("y", ["a"]), ("m", ["a", "b"]), ("b", ["a"]), ("a", [])]) == [
        "* y", "| * m", "|/|", "| * b", "|/", "* a"]
    # A branch head drawn right of a merge's lanes: closing its lane crosses the merged lane, a column per row.
    assert drawn([("m", ["c", "e"]), ("z", ["c"]), ("e", ["c"]), ("c", [])]) == [
        "* m", "|\\", "| | * z", "| |/", "|/|", "| * e", "|/", "* c"]


def test_graph_rows_ignore_parents_outside_the_nodes_and_stop_a_lane_at_a_root() -> None:
    assert drawn([("b", ["a"])]) == ["* b"]
    assert graph_rows([]) == []
    assert drawn([("p", []), ("q", [])]) == ["* p", "* q"]


# -- the demo -------------------------------------------------------------------------------------------------


def test_demo_shows_zero_copy_branching_and_a_merge(tmp_path: Path) -> None:
    path = tmp_path / "demo"
    result = Udr(tmp_path / "unused").run("demo", str(path))
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert re.search(r"Step \d+/\d+: Zero-copy branches and a three-way merge", text)
    chunks = re.search(r"the lake holds (\d+) chunks before and (\d+) after", text)
    assert chunks is not None and chunks.group(1) == chunks.group(2)
    assert '"orders@experiment"' in text and "main is unchanged" in text
    with udr.open(path) as db:
        [merge] = [c for c in db.log() if c.message == "merge experiment into main"]
        assert merge.parents[1] == db.resolve("experiment")
        assert db.commit_info(merge.parents[0]).message == "day 3: shipped orders delivered"
        both = db.query('SELECT count(*) FROM orders o JOIN "orders@experiment~1" f USING (order_id) '
                        "WHERE o.amount <> f.amount AND o.status <> f.status").column(0)[0].as_py()
    assert both > 0
    assert f"merge commit {merge.id[:10]}" in text
    assert "|\\" in result.stdout and "|/" in result.stdout
