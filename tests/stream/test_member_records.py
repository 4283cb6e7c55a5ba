"""Records of groups with several members (`udr.log.members`): joining, claims, acks and their checks."""

from __future__ import annotations

import subprocess
import sys

import pytest

import udr
from udr.log.groups import Ack, GroupStore, lease_alive
from udr.log.members import MemberStore, PartitionAck
from udr.log.positions import Cursor, Position
from udr.log.store import LogStore


def _position(seq: int, table: str | None = None) -> Position:
    return Position(Cursor(seq, table), 1_000, "main", ("orders",))


def _kill_lease(log: LogStore, group: str, member: str) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    with log.env.write() as txn:
        txn.put(b"member:%s\0%s" % (group.encode(), member.encode()),
                b'{"pid":%d,"started":null,"token":"dead","time_us":1}' % int(child.stdout),
                db=log.env.db(b"groups"))


def test_join_makes_the_partitions_once_and_a_live_name_is_busy(log: LogStore) -> None:
    store = MemberStore(log.env)
    state = store.join("g", "a", "ta", partitions=3, start=_position(4))
    assert [p.position.cursor for p in state.partitions] == [Cursor(4)] * 3
    assert all(p.owner is None for p in state.partitions) and state.live(lease_alive) == ["a"]
    with pytest.raises(udr.GroupBusy, match="member 'a' of group 'g' is live"):
        store.join("g", "a", "tx", partitions=None, start=_position(0))
    state = store.join("g", "b", "tb", partitions=None, start=_position(9, None))
    assert len(state.partitions) == 3 and state.live(lease_alive) == ["a", "b"]
    assert [p.position.cursor for p in state.partitions] == [Cursor(4)] * 3  # the group's, not b's start
    with pytest.raises(udr.UsageError, match="partitions must be between"):
        store.join("h", "a", "t", partitions=0, start=_position(0))


def test_claims_take_free_and_dead_partitions_but_not_live_ones(log: LogStore) -> None:
    store = MemberStore(log.env)
    store.join("g", "a", "ta", partitions=2, start=_position(1))
    store.join("g", "b", "tb", partitions=None, start=_position(1))
    state = store.claim("g", "a", "ta", take=[0, 1], give=[])
    assert [p.member for p in state.partitions] == ["a", "a"]
    state = store.claim("g", "b", "tb", take=[1], give=[])
    assert [p.member for p in state.partitions] == ["a", "a"]  # a is live: b waits for it
    state = store.claim("g", "a", "ta", take=[], give=[1])
    state = store.claim("g", "b", "tb", take=[1], give=[])
    assert [p.member for p in state.partitions] == ["a", "b"]
    _kill_lease(log, "g", "b")
    state = store.claim("g", "a", "ta", take=[1], give=[])
    assert [p.member for p in state.partitions] == ["a", "a"]


def test_an_ack_is_a_compare_and_swap_by_the_owner_only(log: LogStore) -> None:
    store = MemberStore(log.env)
    store.join("g", "a", "ta", partitions=2, start=_position(1))
    store.claim("g", "a", "ta", take=[0, 1], give=[])
    store.ack(PartitionAck("g", "a", "ta", 0, Cursor(1), _position(3, "orders"),
                           idle=((1, Cursor(1), _position(3, "orders")),)))
    state = store.state("g")
    assert state is not None and [p.position.cursor for p in state.partitions] == [Cursor(3, "orders")] * 2
    with pytest.raises(udr.AckError, match="already acknowledged"):
        store.ack(PartitionAck("g", "a", "ta", 0, Cursor(1), _position(3, "orders")))
    with pytest.raises(udr.ConflictError, match="moved from seq 2"):
        store.ack(PartitionAck("g", "a", "ta", 0, Cursor(2), _position(5, "orders")))
    # An idle move that no longer matches is skipped; the ack itself still lands.
    store.ack(PartitionAck("g", "a", "ta", 0, Cursor(3, "orders"), _position(6, "orders"),
                           idle=((1, Cursor(2), _position(6, "orders")),)))
    state = store.state("g")
    assert state is not None and [p.position.cursor.seq for p in state.partitions] == [6, 3]


def test_an_ack_with_a_stale_lease_is_refused(log: LogStore) -> None:
    store = MemberStore(log.env)
    store.join("g", "a", "ta", partitions=1, start=_position(1))
    store.claim("g", "a", "ta", take=[0], give=[])
    _kill_lease(log, "g", "a")
    store.join("g", "b", "tb", partitions=None, start=_position(1))
    store.claim("g", "b", "tb", take=[0], give=[])
    with pytest.raises(udr.GroupBusy, match="no longer holds its lease"):
        store.ack(PartitionAck("g", "a", "ta", 0, Cursor(1), _position(2, "orders")))
    store.join("g", "c", "tc", partitions=None, start=_position(1))
    with pytest.raises(udr.GroupBusy, match="no longer owns partition 0"):
        store.ack(PartitionAck("g", "c", "tc", 0, Cursor(1), _position(2, "orders")))  # b owns it
    state = store.state("g")
    assert state is not None and state.partitions[0].position.cursor == Cursor(1)


def test_leave_frees_the_members_partitions_and_delete_waits_for_live_members(log: LogStore) -> None:
    store = MemberStore(log.env)
    store.join("g", "a", "ta", partitions=2, start=_position(1))
    store.claim("g", "a", "ta", take=[0, 1], give=[])
    with pytest.raises(udr.GroupBusy, match="live members"):
        store.delete("g")
    store.leave("g", "a", "ta")
    state = store.state("g")
    assert state is not None and state.members == {} and all(p.owner is None for p in state.partitions)
    assert store.delete("g") and store.state("g") is None and not store.delete("g")


def test_a_single_member_group_is_taken_over_at_its_position_unless_consumed(log: LogStore) -> None:
    groups = GroupStore(log.env)
    groups.acquire("g", "t1")
    groups.ack(Ack("g", "t1", None, _position(7, "orders")))
    store = MemberStore(log.env)
    with pytest.raises(udr.GroupBusy, match="before it gets members"):
        store.join("g", "a", "ta", partitions=2, start=_position(0))
    groups.release("g", "t1")
    state = store.join("g", "a", "ta", partitions=2, start=_position(0))
    assert [p.position for p in state.partitions] == [_position(7, "orders")] * 2
    assert groups.position("g") is None
    with pytest.raises(udr.UsageError, match="several members"):
        groups.acquire("g", "t2")
