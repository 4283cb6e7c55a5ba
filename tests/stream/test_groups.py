"""Group records in the log (`udr.log.groups`): leases, positions and their compare-and-swap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import udr
from udr.log.groups import Ack, GroupStore, ack_hook, lease_alive, process_start
from udr.log.positions import Cursor, Position
from udr.log.store import LogStore


def _position(seq: int, table: str | None = None) -> Position:
    return Position(Cursor(seq, table), 1_000, "main", ("orders",))


def _dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    return int(child.stdout)


def test_a_new_group_has_no_position_and_acquire_takes_the_lease(log: LogStore) -> None:
    groups = GroupStore(log.env)
    assert groups.acquire("billing", "t1") is None
    lease = groups.leases()["billing"]
    assert lease.pid == os.getpid() and lease.token == "t1" and lease_alive(lease)
    assert groups.positions() == {}


def test_a_live_holder_even_this_process_makes_the_group_busy(log: LogStore) -> None:
    groups = GroupStore(log.env)
    groups.acquire("billing", "t1")
    with pytest.raises(udr.GroupBusy, match="this process"):
        groups.acquire("billing", "t2")
    groups.release("billing", "t1")
    assert groups.acquire("billing", "t2") is None


def test_release_with_a_stale_token_leaves_the_new_holder_alone(log: LogStore) -> None:
    groups = GroupStore(log.env)
    groups.acquire("billing", "t1")
    groups.release("billing", "other")
    assert groups.leases()["billing"].token == "t1"


def test_the_lease_of_a_dead_process_is_free(log: LogStore) -> None:
    groups = GroupStore(log.env)
    groups.acquire("billing", "t1")
    dead = _dead_pid()
    with log.env.write() as txn:
        txn.put(b"lease:billing", b'{"pid":%d,"started":null,"token":"x","time_us":1}' % dead,
                db=log.env.db(b"groups"))
    assert not lease_alive(groups.leases()["billing"])
    assert groups.acquire("billing", "t2") is None


def test_a_recycled_pid_with_another_start_time_is_not_the_holder(log: LogStore) -> None:
    groups = GroupStore(log.env)
    started = process_start(os.getpid())
    assert started is not None
    with log.env.write() as txn:
        txn.put(b"lease:billing", b'{"pid":%d,"started":%d,"token":"x","time_us":1}' % (os.getpid(), started - 1),
                db=log.env.db(b"groups"))
    assert groups.acquire("billing", "t2") is None


def test_ack_creates_then_compare_and_swaps_the_position(log: LogStore) -> None:
    groups = GroupStore(log.env)
    groups.acquire("billing", "t1")
    groups.ack(Ack("billing", "t1", None, _position(3, "orders")))
    groups.ack(Ack("billing", "t1", Cursor(3, "orders"), _position(5, "orders")))
    assert groups.position("billing") == _position(5, "orders")
    assert groups.positions() == {"billing": _position(5, "orders")}


def test_acking_the_same_move_twice_is_an_ack_error_and_changes_nothing(log: LogStore) -> None:
    groups = GroupStore(log.env)
    groups.acquire("billing", "t1")
    groups.ack(Ack("billing", "t1", None, _position(3, "orders")))
    with pytest.raises(udr.AckError, match="already acknowledged"):
        groups.ack(Ack("billing", "t1", None, _position(3, "orders")))
    assert groups.position("billing") == _position(3, "orders")


def test_a_position_moved_by_someone_else_is_a_conflict(log: LogStore) -> None:
    groups = GroupStore(log.env)
    groups.reset("billing", _position(9))
    groups.acquire("billing", "t1")
    with pytest.raises(udr.ConflictError, match="moved from seq 3"):
        groups.ack(Ack("billing", "t1", Cursor(3), _position(10, "orders")))
    assert groups.position("billing") == _position(9)


def test_an_ack_without_the_lease_is_refused(log: LogStore) -> None:
    groups = GroupStore(log.env)
    groups.acquire("billing", "t1")
    with pytest.raises(udr.GroupBusy, match="no longer holds"):
        groups.ack(Ack("billing", "stolen", None, _position(1, "orders")))
    assert groups.position("billing") is None


def test_reset_is_refused_while_a_live_subscriber_holds_the_group(log: LogStore) -> None:
    groups = GroupStore(log.env)
    groups.acquire("billing", "t1")
    with pytest.raises(udr.GroupBusy, match="close it before resetting"):
        groups.reset("billing", _position(1))
    groups.release("billing", "t1")
    groups.reset("billing", _position(1))
    assert groups.position("billing") == _position(1)


def test_the_ack_hook_moves_the_position_inside_the_commit_or_not_at_all(log: LogStore) -> None:
    groups = GroupStore(log.env)
    groups.acquire("billing", "t1")
    good = ack_hook([Ack("billing", "t1", None, _position(1, "a")),
                     Ack("billing", "t1", Cursor(1, "a"), _position(1, "b"))])
    with log.env.write() as txn:
        good(txn, log.env)
    assert groups.position("billing") == _position(1, "b")
    bad = ack_hook([Ack("billing", "t1", Cursor(1, "b"), _position(2, "a")),
                    Ack("billing", "t1", Cursor(7), _position(8))])
    with pytest.raises(udr.ConflictError), log.env.write() as txn:
        bad(txn, log.env)
    # The first ack of the failed hook rolled back with its transaction.
    assert groups.position("billing") == _position(1, "b")


def test_cursor_order_puts_a_whole_commit_after_its_tables() -> None:
    assert Cursor(3, "a").sort_key() < Cursor(3, "b").sort_key() < Cursor(3).sort_key() < Cursor(4, "a").sort_key()


def test_a_damaged_record_is_a_corruption_error_naming_the_group(log: LogStore) -> None:
    with log.env.write() as txn:
        txn.put(b"position:billing", b"{not json", db=log.env.db(b"groups"))
    with pytest.raises(udr.CorruptionError, match="billing"):
        GroupStore(log.env).position("billing")


def test_delete_forgets_a_single_member_group_unless_it_is_consumed(log: LogStore) -> None:
    groups = GroupStore(log.env)
    groups.acquire("billing", "t1")
    groups.ack(Ack("billing", "t1", None, _position(3, "orders")))
    with pytest.raises(udr.GroupBusy, match="before deleting the group"):
        groups.delete("billing")
    groups.release("billing", "t1")
    assert groups.delete("billing") and groups.position("billing") is None and groups.leases() == {}
    assert not groups.delete("billing")
