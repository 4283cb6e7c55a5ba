"""`udr.query.changefeed.pair_changes`: removed and added rows of a table become `insert`, `update_before`,
`update_after` and `delete` change rows (keyed tables pair by key; unkeyed ones cancel identical rows)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from udr.query.changefeed import pair_changes

SCHEMA = pa.schema([("id", pa.int64()), ("s", pa.string()), ("f", pa.float64())])
NAN = ("NaN",)


def rows(*items: tuple[object, ...], schema: pa.Schema = SCHEMA) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(schema.names, item)) for item in items], schema=schema)


def listed(changes: pa.Table) -> list[tuple[object, ...]]:
    return [tuple(NAN if isinstance(v, float) and math.isnan(v) else v for v in r.values())
            for r in changes.to_pylist()]


def test_no_rows_give_an_empty_table_with_the_change_column() -> None:
    out = pair_changes(SCHEMA, rows(), rows(), ["id"])
    assert out.num_rows == 0
    assert out.schema == SCHEMA.append(pa.field("_change", pa.string()))


def test_added_rows_only_are_inserts_and_removed_rows_only_are_deletes() -> None:
    assert listed(pair_changes(SCHEMA, rows(), rows((1, "a", 1.0)), ["id"])) == [(1, "a", 1.0, "insert")]
    assert listed(pair_changes(SCHEMA, rows((1, "a", 1.0)), rows(), None)) == [(1, "a", 1.0, "delete")]


def test_a_key_removed_and_added_with_other_values_is_an_update_pair_before_first() -> None:
    out = pair_changes(SCHEMA, rows((1, "old", 1.0)), rows((1, "new", 1.0)), ["id"])
    assert listed(out) == [(1, "old", 1.0, "update_before"), (1, "new", 1.0, "update_after")]


def test_identical_rows_are_no_change_with_null_equal_to_null_and_nan_equal_to_nan() -> None:
    same = rows((1, None, math.nan), (2, "x", None))
    assert pair_changes(SCHEMA, same, same, ["id"]).num_rows == 0
    assert pair_changes(SCHEMA, same, same, None).num_rows == 0


def test_null_or_nan_against_a_value_is_a_change() -> None:
    out = pair_changes(SCHEMA, rows((1, None, 1.0), (2, "x", math.nan)), rows((1, "v", 1.0), (2, "x", 2.0)), ["id"])
    assert [c for *_, c in listed(out)] == ["update_before", "update_after"] * 2


def test_order_is_deletes_then_update_pairs_then_inserts_each_by_key() -> None:
    removed = rows((5, "a", 1.0), (3, "gone", 1.0), (1, "b", 1.0), (9, "gone", 1.0))
    added = rows((8, "new", 1.0), (1, "B", 1.0), (5, "A", 1.0), (0, "new", 1.0))
    out = listed(pair_changes(SCHEMA, removed, added, ["id"]))
    assert [(r[0], r[-1]) for r in out] == [
        (3, "delete"), (9, "delete"),
        (1, "update_before"), (1, "update_after"), (5, "update_before"), (5, "update_after"),
        (0, "insert"), (8, "insert"),
    ]


def test_a_composite_key_pairs_on_every_key_column() -> None:
    schema = pa.schema([("a", pa.string()), ("b", pa.int64()), ("v", pa.int64())])
    removed = rows(("k", 1, 0), ("k", 2, 0), schema=schema)
    added = rows(("k", 1, 5), ("j", 2, 0), schema=schema)
    out = listed(pair_changes(schema, removed, added, ["a", "b"]))
    assert out == [("k", 2, 0, "delete"), ("k", 1, 0, "update_before"), ("k", 1, 5, "update_after"),
                   ("j", 2, 0, "insert")]


def test_unkeyed_tables_cancel_identical_rows_as_multisets_and_never_pair_updates() -> None:
    removed = rows((1, "a", 1.0), (1, "a", 1.0), (2, "b", 2.0))
    added = rows((1, "a", 1.0), (2, "b", 2.0), (2, "b", 2.0), (1, "changed", 1.0))
    out = listed(pair_changes(SCHEMA, removed, added, None))
    assert sorted(out, key=repr) == sorted([(1, "a", 1.0, "delete"), (2, "b", 2.0, "insert"),
                                            (1, "changed", 1.0, "insert")], key=repr)


def test_unkeyed_changes_come_in_one_order_deletes_then_inserts_each_by_value() -> None:
    n = 50_000  # enough rows for DuckDB to run EXCEPT ALL on several threads
    removed = pa.table({"id": pa.array(range(n), pa.int64())})
    added = pa.table({"id": pa.array(range(n // 2, n + n // 2), pa.int64())})
    schema = removed.schema
    reads = [pair_changes(schema, removed, added, None) for _ in range(3)]
    assert reads[0].column("id").to_pylist() == [*range(n // 2), *range(n, n + n // 2)]
    assert reads[0].column("_change").to_pylist() == ["delete"] * (n // 2) + ["insert"] * (n // 2)
    assert all(r.equals(reads[0]) for r in reads[1:])


def test_columns_keep_their_types_and_awkward_names_work() -> None:
    schema = pa.schema([("select", pa.int32()), ("a b", pa.timestamp("us")), ('q"uote', pa.decimal128(10, 2))])
    removed = pa.Table.from_pylist([{"select": 1, "a b": 0, 'q"uote': 1}], schema=schema)
    added = pa.Table.from_pylist([{"select": 1, "a b": 0, 'q"uote': 2}], schema=schema)
    out = pair_changes(schema, removed, added, ["select"])
    assert out.schema == schema.append(pa.field("_change", pa.string()))
    assert out.column("_change").to_pylist() == ["update_before", "update_after"]


# -- against a model ---------------------------------------------------------------------------------------

Value = tuple[str | None, object]  # (s, f): f is a float, None or NAN
values = st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from([None, NAN, 0.0, 1.5]))
states = st.dictionaries(st.integers(0, 8), values, max_size=8)


def to_table(state: Mapping[int, tuple[object, object]]) -> pa.Table:
    return rows(*[(k, s, math.nan if f == NAN else f) for k, (s, f) in state.items()])


def differs(a: tuple[object, object], b: tuple[object, object]) -> bool:
    return a != b


@settings(max_examples=40)
@given(old=states, new=states)
def test_keyed_changes_take_the_old_rows_to_the_new_ones(old: dict[int, Value], new: dict[int, Value]) -> None:
    # What a state delta hands over: rows present on one side only (a changed row is on both lists).
    removed = {k: v for k, v in old.items() if k not in new or differs(new[k], v)}
    added = {k: v for k, v in new.items() if k not in old or differs(old[k], v)}
    out = listed(pair_changes(SCHEMA, to_table(removed), to_table(added), ["id"]))
    state: dict[object, tuple[object, object]] = dict(old.items())
    for n, (key, s, f, change) in enumerate(out):
        if change == "insert":
            assert key not in state
            state[key] = (s, f)
        elif change == "update_before":
            assert state[key] == (s, f) and out[n + 1][0] == key and out[n + 1][3] == "update_after"
        elif change == "update_after":
            state[key] = (s, f)
        else:
            assert state.pop(key) == (s, f)
    assert state == new
    assert sum(1 for r in out if r[3] == "update_after") == len(set(removed) & set(added))


@settings(max_examples=40)
@given(old=st.lists(st.tuples(st.integers(0, 3), values), max_size=8),
       new=st.lists(st.tuples(st.integers(0, 3), values), max_size=8))
def test_unkeyed_changes_are_the_multiset_difference(old: list[tuple[int, Value]],
                                                     new: list[tuple[int, Value]]) -> None:
    flat_old = Counter((k, s, f) for k, (s, f) in old)
    flat_new = Counter((k, s, f) for k, (s, f) in new)
    out = listed(pair_changes(SCHEMA, to_table_list(old), to_table_list(new), None))
    assert Counter(r[:3] for r in out if r[3] == "delete") == flat_old - flat_new
    assert Counter(r[:3] for r in out if r[3] == "insert") == flat_new - flat_old
    assert {r[3] for r in out} <= {"insert", "delete"}


def to_table_list(items: Sequence[tuple[int, tuple[object, object]]]) -> pa.Table:
    return rows(*[(k, s, math.nan if f == NAN else f) for k, (s, f) in items])


KEYED = pa.schema([("k", pa.string()), ("n", pa.int64()), ("v", pa.float64()), ("t", pa.string())])
_VALUES = st.one_of(st.none(), st.sampled_from([0.0, -0.0, 1.5, math.nan, math.inf]))


@st.composite
def _keyed_sides(draw: st.DrawFn) -> tuple[pa.Table, pa.Table]:
    """Removed and added rows of a keyed table (a string key with NULL-free values, unique on each side)."""
    keys = st.lists(st.sampled_from(["a", "b", "B", "é", "", "zz", "a b"]), unique=True, max_size=7)
    sides = []
    for chosen in (draw(keys), draw(keys)):
        sides.append(pa.Table.from_pylist(
            [{"k": k, "n": draw(st.one_of(st.none(), st.integers(-3, 3))), "v": draw(_VALUES),
              "t": draw(st.one_of(st.none(), st.sampled_from(["x", "y"])))} for k in chosen], schema=KEYED))
    return sides[0], sides[1]


@settings(max_examples=150)
@given(_keyed_sides())
def test_small_keyed_pairings_in_memory_equal_duckdbs(sides: tuple[pa.Table, pa.Table]) -> None:
    """Differential: the in-memory pairing of small keyed changes gives DuckDB's rows in DuckDB's order."""
    import duckdb

    from udr.query import changefeed

    removed, added = sides
    if not (removed.num_rows and added.num_rows):
        return
    out_schema = KEYED.append(pa.field("_change", pa.string()))
    ours = changefeed._paired_in_memory(KEYED, out_schema, removed, added, ["k"])
    theirs = changefeed._paired(KEYED, out_schema, removed, added, ["k"], duckdb.connect(), True)
    assert listed(ours) == listed(theirs)
    assert ours.schema == theirs.schema
