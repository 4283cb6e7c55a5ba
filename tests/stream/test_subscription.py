"""Subscriptions in one process: what is delivered in which order, acks, groups, leases and bad input."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pyarrow as pa
import pytest

import udr

pytestmark = pytest.mark.anyio

ORDERS = pa.schema([("id", pa.int64()), ("customer", pa.string()), ("amount", pa.int64())])
PAYMENTS = pa.schema([("id", pa.int64()), ("amount", pa.int64())])
CHANGE_COLUMNS = ["_change", "_commit_id", "_commit_seq", "_commit_time"]


@pytest.fixture
def db(tmp_path: Path, lake_kind: str) -> Iterator[udr.Lake]:
    lake = udr.open(tmp_path / "lake" if lake_kind == "disk" else ":memory:")
    lake.create_table("orders", ORDERS, primary_key=["id"])
    lake.create_table("payments", PAYMENTS)
    try:
        yield lake
    finally:
        lake.close()


def _order(db: udr.Lake, oid: int, customer: str = "ann", amount: int = 10) -> udr.Commit:
    return db.upsert("orders", {"id": [oid], "customer": [customer], "amount": [amount]})


def _both(db: udr.Lake, oid: int, amount: int = 10) -> udr.Commit:
    with db.transaction(message=f"order {oid} paid") as tx:
        tx.upsert("orders", {"id": [oid], "customer": ["ann"], "amount": [amount]})
        tx.append("payments", {"id": [oid], "amount": [amount]})
    assert tx.committed is not None
    return tx.committed


async def _take(sub: udr.Subscription, n: int, timeout: float = 10) -> list[udr.ChangeBatch]:
    out: list[udr.ChangeBatch] = []
    if n == 0:
        return out
    with anyio.fail_after(timeout):
        async for batch in sub:
            out.append(batch)
            if len(out) == n:
                break
    return out


async def _nothing_within(sub: udr.Subscription, seconds: float = 0.2) -> bool:
    with anyio.move_on_after(seconds):
        await sub.__anext__()
        return False
    return True


def _keys(batches: list[udr.ChangeBatch]) -> list[tuple[int, str]]:
    return [(b.commit.seq, b.table) for b in batches]


# -- what is delivered -------------------------------------------------------------------------------


async def test_batches_come_in_commit_order_then_sorted_table_order(db: udr.Lake) -> None:
    first = _order(db, 1)
    both = _both(db, 2)
    _order(db, 1, amount=99)
    async with db.subscribe() as sub:
        batches = await _take(sub, 4)
    assert _keys(batches) == [(first.seq, "orders"), (both.seq, "orders"), (both.seq, "payments"),
                              (both.seq + 1, "orders")]
    assert batches[1].commit == both
    assert batches[1].changes.column_names == ORDERS.names + CHANGE_COLUMNS
    assert batches[2].changes.to_pylist()[0]["_commit_id"] == both.id
    assert batches[3].changes.column("_change").to_pylist() == ["update_before", "update_after"]
    assert batches[3].changes.column("amount").to_pylist() == [10, 99]


async def test_a_table_list_filters_and_empty_changes_are_skipped(db: udr.Lake) -> None:
    _both(db, 1)
    db.upsert("orders", {"id": [1], "customer": ["ann"], "amount": [10]})  # identical row: no change
    _both(db, 2)
    async with db.subscribe("payments") as sub:
        batches = await _take(sub, 2)
        assert await _nothing_within(sub)
    assert [b.table for b in batches] == ["payments", "payments"]
    assert [b.changes.column("id").to_pylist() for b in batches] == [[1], [2]]


async def test_start_latest_and_start_ref_skip_what_came_before(db: udr.Lake) -> None:
    one = _order(db, 1)
    _order(db, 2)
    latest = db.subscribe(start="latest")
    from_ref = db.subscribe(start=one.id[:12])
    async with latest, from_ref:
        three = _order(db, 3)
        assert _keys(await _take(latest, 1)) == [(three.seq, "orders")]
        assert [b.changes.column("id").to_pylist() for b in await _take(from_ref, 2)] == [[2], [3]]


async def test_inline_file_and_keyed_commits_interleave_in_order(db: udr.Lake) -> None:
    # Inline appends are read on the event loop, Parquet chunks and keyed rewrites in a worker thread.
    big = 40_000  # over the inline limit: a Parquet chunk
    async with db.subscribe(["orders", "payments"], start="latest") as sub:
        db.append("payments", {"id": [1], "amount": [5]})
        db.append("payments", {"id": list(range(2, 2 + big)), "amount": [7] * big})
        _order(db, 1)
        _order(db, 1, amount=11)
        db.append("payments", {"id": [0], "amount": [9]})
        batches = await _take(sub, 5)
    assert [(b.table, b.changes.num_rows) for b in batches] == [
        ("payments", 1), ("payments", big), ("orders", 1), ("orders", 2), ("payments", 1)]
    assert [b.commit.seq for b in batches] == sorted(b.commit.seq for b in batches)
    assert batches[3].changes.column("_change").to_pylist() == ["update_before", "update_after"]


async def test_a_commit_made_while_waiting_is_delivered_promptly(db: udr.Lake) -> None:
    async def commit_later() -> None:
        await anyio.sleep(0.1)
        await anyio.to_thread.run_sync(_order, db, 7)

    async with db.subscribe("orders", start="latest") as sub, anyio.create_task_group() as tg:
        tg.start_soon(commit_later)
        batch = (await _take(sub, 1, timeout=5))[0]
    assert batch.changes.column("id").to_pylist() == [7]


async def test_the_first_parent_chain_brings_fast_forwarded_commits(db: udr.Lake) -> None:
    _order(db, 1)
    async with db.subscribe("orders", start="latest") as sub:
        db.create_branch("feature")
        with db.transaction("feature") as tx:
            tx.upsert("orders", {"id": [2], "customer": ["bo"], "amount": [5]})
        with db.transaction("feature") as tx:
            tx.upsert("orders", {"id": [3], "customer": ["cy"], "amount": [6]})
        db.merge("feature")  # fast-forward: main had no commits of its own
        ids = [b.changes.column("id").to_pylist() for b in await _take(sub, 2)]
    assert ids == [[2], [3]]


async def test_a_merge_commit_delivers_its_net_effect_on_the_first_parent(db: udr.Lake) -> None:
    _order(db, 1)
    db.create_branch("feature")
    with db.transaction("feature") as tx:
        tx.upsert("orders", {"id": [2], "customer": ["bo"], "amount": [5]})
    with db.transaction("feature") as tx:
        tx.upsert("orders", {"id": [3], "customer": ["cy"], "amount": [6]})
    async with db.subscribe("orders", start="latest") as sub:
        ours = _order(db, 4)
        merge = db.merge("feature")
        batches = await _take(sub, 2)
    assert _keys(batches) == [(ours.seq, "orders"), (merge.seq, "orders")]
    assert sorted(batches[1].changes.column("id").to_pylist()) == [2, 3]
    assert set(batches[1].changes.column("_change").to_pylist()) == {"insert"}


async def test_a_dropped_table_comes_as_a_final_batch_of_deletes(db: udr.Lake) -> None:
    _order(db, 1)
    _order(db, 2)
    dropped = db.drop_table("orders")
    async with db.subscribe("orders", start="earliest") as sub:
        batches = [b async for b in sub]  # the iteration ends: the only table it follows is gone
    assert batches[-1].commit == dropped
    assert batches[-1].changes.column("_change").to_pylist() == ["delete", "delete"]
    assert sorted(batches[-1].changes.column("id").to_pylist()) == [1, 2]


async def test_a_table_dropped_empty_still_comes_as_a_final_batch_without_rows(db: udr.Lake) -> None:
    db.create_table("empty", pa.schema([("id", pa.int64())]))
    dropped = db.drop_table("empty")
    async with db.subscribe("empty", start="earliest") as sub:
        batches = [b async for b in sub]
    assert [(b.commit, b.changes.num_rows) for b in batches] == [(dropped, 0)]
    assert batches[0].changes.column_names == ["id", "_change", "_commit_id", "_commit_seq", "_commit_time"]


async def test_a_group_restarted_after_a_drop_does_not_follow_a_table_re_created_under_that_name(
        db: udr.Lake) -> None:
    schema = pa.schema([("id", pa.int64())])
    start = db.commit_info("main").id
    db.create_table("c", schema)
    db.append("c", {"id": [1]})
    db.drop_table("c")
    dropped = db.commit_info("main").id
    db.create_table("c", schema)
    db.append("c", {"id": [2]})
    _order(db, 10)

    def seen(batches: list[udr.ChangeBatch]) -> list[tuple[str, str, int]]:
        return [(b.table, b.changes.column("_change")[0].as_py(), b.changes.column("id")[0].as_py())
                for b in batches]

    async with db.subscribe(["orders", "c"], group="continuous", start=start) as sub:
        continuous = await _take(sub, 3)
        assert await _nothing_within(sub)
    async with db.subscribe(["orders", "c"], group="restarted", start=start) as sub:
        first = await _take(sub, 2)
        for batch in first:
            await sub.ack(batch)
    async with db.subscribe(["orders", "c"], group="restarted", start=start) as sub:
        rest = await _take(sub, 1)
        assert await _nothing_within(sub)
    assert seen(first + rest) == seen(continuous) == [("c", "insert", 1), ("c", "delete", 1), ("orders", "insert", 10)]
    assert {g.name: g.lag_commits for g in db.groups()}["restarted"] == 1
    db.reset_group("restarted", to=dropped)  # a fresh start: it follows every table named again
    async with db.subscribe(["orders", "c"], group="restarted") as sub:
        assert seen(await _take(sub, 2)) == [("c", "insert", 2), ("orders", "insert", 10)]


async def test_following_every_table_survives_a_drop(db: udr.Lake) -> None:
    _order(db, 1)
    async with db.subscribe() as sub:
        db.drop_table("orders")
        db.append("payments", {"id": [1], "amount": [3]})
        batches = await _take(sub, 3)
    assert [(b.table, b.changes.column("_change").to_pylist()) for b in batches] == [
        ("orders", ["insert"]), ("orders", ["delete"]), ("payments", ["insert"])]


async def test_aclose_from_another_task_ends_the_iteration(db: udr.Lake) -> None:
    sub = db.subscribe(start="latest", group="g")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            async def close_soon() -> None:
                await anyio.sleep(0.1)
                await sub.aclose()

            tg.start_soon(close_soon)
            assert [b async for b in sub] == []
    async with db.subscribe(group="g"):  # the lease was given back
        pass


# -- acks and groups ---------------------------------------------------------------------------------


async def test_closing_the_lake_ends_its_subscriptions_and_frees_their_groups(tmp_path: Path) -> None:
    lake = udr.open(tmp_path / "lake")
    lake.append("t", {"a": [1]})
    sub = lake.subscribe("t", group="g", start="earliest")
    ended = anyio.Event()

    async def consume() -> None:
        async for _ in sub:
            pass
        ended.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.sleep(0.1)  # the consumer took the batch and waits for the next commit
        lake.close()
        with anyio.fail_after(5):
            await ended.wait()
    await sub.aclose()
    with udr.open(tmp_path / "lake") as again:
        async with again.subscribe("t", group="g") as other:  # the lease was given back
            assert other.group == "g"


async def test_a_group_resumes_after_its_last_ack_and_redelivers_the_rest(db: udr.Lake) -> None:
    _order(db, 1)
    both = _both(db, 2)
    async with db.subscribe(group="billing") as sub:
        first, second, third = await _take(sub, 3)
        await sub.ack(first)
        await sub.ack(second)  # orders of the two-table commit, not its payments
    async with db.subscribe(group="billing", start="latest") as sub:  # start is ignored: the group has a position
        again = await _take(sub, 1)
        assert _keys(again) == [(both.seq, "payments")] == _keys([third])
        await sub.ack(again[0])
        assert await _nothing_within(sub)
    [info] = db.groups()
    assert (info.name, info.position, info.lag_commits, info.lag_rows, info.active) == ("billing", both.id, 0, 0, False)


async def test_acking_twice_out_of_order_or_a_stranger_is_an_ack_error(db: udr.Lake) -> None:
    _order(db, 1)
    _order(db, 2)
    async with db.subscribe(group="billing") as sub, db.subscribe() as other:
        one, two = await _take(sub, 2)
        with pytest.raises(udr.AckError, match="out of order"):
            await sub.ack(two)
        await sub.ack(one)
        with pytest.raises(udr.AckError, match="already acknowledged"):
            await sub.ack(one)
        [foreign] = await _take(other, 1)
        with pytest.raises(udr.AckError, match="already acknowledged"):
            await sub.ack(foreign)
        _order(db, 3)
        with pytest.raises(udr.AckError, match="not delivered"):
            await sub.ack(udr.ChangeBatch(db.commit_info("main"), "orders", two.changes))
        await sub.ack(two)
    assert issubclass(udr.AckError, udr.UsageError)


async def test_groups_report_lag_and_reset_group_rewinds(db: udr.Lake) -> None:
    one = _order(db, 1)
    async with db.subscribe(group="g") as sub:
        await sub.ack((await _take(sub, 1))[0])
        with pytest.raises(udr.GroupBusy, match="close it before resetting"):
            db.reset_group("g", to=one.parents[0])
    _both(db, 2)
    _order(db, 3)
    [info] = db.groups()
    assert (info.position, info.lag_commits, info.lag_rows) == (one.id, 2, 3)
    db.reset_group("g", to=one.parents[0])
    async with db.subscribe(group="g") as sub:
        assert [b.changes.column("id").to_pylist() for b in await _take(sub, 4)] == [[1], [2], [2], [3]]
    db.reset_group("g", to="main")
    assert db.groups()[0].lag_commits == 0


async def test_one_live_subscriber_per_group(db: udr.Lake) -> None:
    sub = db.subscribe(group="billing")
    with pytest.raises(udr.GroupBusy, match="billing"):
        db.subscribe(group="billing")
    other = db.subscribe(group="other")  # another group is independent
    await sub.aclose()
    await other.aclose()
    async with db.subscribe(group="billing"):
        pass


async def test_transaction_ack_commits_outputs_and_position_together(db: udr.Lake) -> None:
    db.create_table("totals", pa.schema([("customer", pa.string()), ("total", pa.int64())]), primary_key=["customer"])
    _order(db, 1, amount=5)
    _order(db, 2, amount=7)
    async with db.subscribe("orders", group="totals") as sub:
        one, two = await _take(sub, 2)
        with pytest.raises(RuntimeError), db.transaction() as tx:
            tx.upsert("totals", {"customer": ["ann"], "total": [5]})
            tx.ack(sub, one)
            raise RuntimeError("consumer failed before commit")
        assert db.read("totals").num_rows == 0 and db.groups() == []
        with db.transaction() as tx:
            tx.upsert("totals", {"customer": ["ann"], "total": [5]})
            tx.ack(sub, one)
        with pytest.raises(udr.AckError, match="already acknowledged"):
            await sub.ack(one)
        stale = db.transaction()
        stale.upsert("totals", {"customer": ["ann"], "total": [12]})
        stale.ack(sub, two)
        await sub.ack(two)  # the group moves on without the stale transaction
        with pytest.raises(udr.AckError, match="already acknowledged"):
            stale.commit()
    assert db.read("totals").to_pylist() == [{"customer": "ann", "total": 5}]
    assert db.groups()[0].position == db.log(table="orders", limit=1)[0].id


async def test_transaction_ack_of_several_batches_follows_delivery_order(db: udr.Lake) -> None:
    _both(db, 1)
    async with db.subscribe(group="g") as sub:
        orders, payments = await _take(sub, 2)
        with db.transaction() as tx:
            with pytest.raises(udr.AckError, match="out of order"):
                tx.ack(sub, payments)
            tx.ack(sub, orders)
            with pytest.raises(udr.AckError, match="already acknowledged in this transaction"):
                tx.ack(sub, orders)
            tx.ack(sub, payments)
        assert await _nothing_within(sub)
    async with db.subscribe(group="g") as sub:
        assert await _nothing_within(sub)


async def test_a_transaction_that_only_acks_moves_the_group_without_a_commit(db: udr.Lake) -> None:
    _order(db, 1)
    _order(db, 2)
    head = db.commit_info("main")
    async with db.subscribe("orders", group="g", start="earliest") as sub:
        first, _ = await _take(sub, 2)
        with db.transaction() as tx:
            tx.ack(sub, first)
        assert tx.committed == head
        assert db.commit_info("main") == head
        [info] = db.groups()
        assert info.position == first.commit.id
    async with db.subscribe("orders", group="g") as sub:
        [again] = await _take(sub, 1)
        assert again.changes.column("id").to_pylist() == [2]


async def test_transaction_ack_needs_a_group(db: udr.Lake) -> None:
    _order(db, 1)
    async with db.subscribe() as sub:
        [batch] = await _take(sub, 1)
        with db.transaction() as tx, pytest.raises(udr.AckError, match="group="):
            tx.ack(sub, batch)
        await sub.ack(batch)  # an ephemeral ack only checks the order


# -- bad input ---------------------------------------------------------------------------------------


def test_unknown_tables_refs_and_names_are_rejected_before_anything_is_written(db: udr.Lake) -> None:
    with pytest.raises(udr.TableNotFound, match="did you mean 'orders'"):
        db.subscribe(["orders", "order"])
    with pytest.raises(udr.RefNotFound):
        db.subscribe(start="nope")
    with pytest.raises(udr.RefNotFound):
        db.subscribe(branch="nope")
    with pytest.raises(udr.InvalidName):
        db.subscribe(group="bad/name")
    with pytest.raises(udr.RefNotFound):
        db.reset_group("g", to="nope")
    assert db.groups() == []


def test_a_group_stays_on_its_branch_and_an_empty_table_list_is_refused(db: udr.Lake) -> None:
    _order(db, 1)
    db.create_branch("dev")
    db.reset_group("g", to="main")
    with pytest.raises(udr.UsageError, match="consumes branch 'main'"):
        db.subscribe(group="g", branch="dev")
    with pytest.raises(udr.UsageError, match="at least one table"):
        db.subscribe([])
    db.reset_group("g", to="main", branch="dev")
    anyio.run(db.subscribe(group="g", branch="dev").aclose)


def test_the_first_subscription_of_a_process_exempts_its_long_lived_objects_from_full_collections(
        tmp_path: Path) -> None:
    # In a fresh process: the test process may have subscribed already.
    script = """
import gc, sys, anyio, udr
async def main():
    with udr.open(sys.argv[1]) as db:
        db.append("t", {"x": [1]})
        before = gc.get_freeze_count()
        async with db.subscribe("t"):
            first = gc.get_freeze_count()
        kept = [[i] for i in range(50_000)]  # a second freeze would take these too
        async with db.subscribe("t"):
            second = gc.get_freeze_count()
    print(before, first, second, len(kept))
anyio.run(main)
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "lake")], capture_output=True, text=True,
                          timeout=120, check=True)
    before, first, second, _ = map(int, done.stdout.split())
    assert before == 0
    assert first > 10_000  # the imported modules' objects, at least
    assert abs(second - first) < 1_000  # once per process (frozen objects that die leave the count)
