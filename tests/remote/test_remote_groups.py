"""Consumer groups of a lake in object storage, shared by machines with separate caches: the members split
the partitions and derive every change exactly once, a killed member's partitions go to the others once its
lease lapses, and listing, resetting and deleting a group see every cache's members."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pyarrow as pa
import pytest
from click.testing import CliRunner
from processes import Start, worker_processes
from remote_helpers import S3, CuttingProxy

import udr
from udr.cli import cli
from udr.remote.log import Entry, decode_entry, encode_entry

sys.path.insert(0, str(Path(__file__).parents[1] / "stream"))
from member_workers import derived, expected, produce, setup_lake

WORKERS = Path(__file__).with_name("group_workers.py")
LEASE = 4.0


@pytest.fixture
def start() -> Iterator[Start]:
    with worker_processes(WORKERS) as start:
        yield start


def _settled(db: udr.Lake, timeout: float) -> tuple[object, object]:
    deadline = time.monotonic() + timeout
    while True:
        db.refresh()
        want, got = expected(db), derived(db)
        if want == got or time.monotonic() > deadline:
            return want, got
        time.sleep(0.3)


def _owners(db: udr.Lake) -> dict[str, tuple[bool, tuple[int, ...]]]:
    (info,) = [g for g in db.groups() if g.name == "derive"]
    return {m.name: (m.active, m.partitions) for m in info.members}


@pytest.mark.slow  # two member processes, a producer and a lease to lapse: about 30 s
def test_members_on_two_caches_split_partitions_derive_exactly_once_and_take_over_a_dead_one(
        url: str, caches: Path, start: Start) -> None:
    setup_lake(url, caches / "setup")
    members = {name: start("member", url, caches / name, name, LEASE) for name in ("m0", "m1")}
    for proc in members.values():
        _ready(proc)
    produce(url, 30, seed=5, cache=caches / "producer")
    with udr.open(url, cache=caches / "check") as db:
        want, got = _settled(db, 90)
        assert got == want
        owners = _owners(db)
        # Each machine owns half the partitions: neither got every batch.
        assert owners == {"m0": (True, (0, 2)), "m1": (True, (1, 3))}

        members["m1"].send_signal(signal.SIGKILL)
        members["m1"].wait()
        killed = time.monotonic()
        # A machine cannot see another's process die: m1 stays live until its lease lapses.
        assert _owners(db)["m1"] == (True, (1, 3))
        produce(url, 20, seed=6, cache=caches / "producer")
        want, got = _settled(db, 90)
        assert got == want
        assert time.monotonic() - killed >= LEASE - 1
        assert _owners(db) == {"m0": (True, (0, 1, 2, 3)), "m1": (False, ())}


@pytest.mark.slow  # members restart after each kill and wait out the dead one's lease: about a minute
def test_members_on_three_caches_killed_and_restarted_at_random_derive_exactly_once(
        url: str, caches: Path, start: Start) -> None:
    setup_lake(url, caches / "setup")
    rng = random.Random(9)
    members = {name: start("member", url, caches / name, name, 2.0) for name in ("m0", "m1", "m2")}
    for proc in members.values():
        _ready(proc)
    for round_ in range(3):
        produce(url, 12, seed=round_, cache=caches / "producer")
        victim = rng.choice(sorted(members))
        time.sleep(rng.uniform(0.0, 1.0))
        members[victim].send_signal(signal.SIGKILL)
        members[victim].wait()
        members[victim] = start("member", url, caches / victim, victim, 2.0)  # its cache survived the kill
        _ready(members[victim])
    with udr.open(url, cache=caches / "check") as db:
        want, got = _settled(db, 120)
        assert got == want


def _ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"


def test_groups_reset_and_delete_see_every_cache(url: str, caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(caches / "cli"))

    async def check() -> None:
        with udr.open(url, cache=caches / "a") as a, udr.open(url, cache=caches / "b") as b:
            a.create_table("t", pa.schema([("k", pa.int64())]), primary_key=["k"])
            a.upsert("t", {"k": [1, 2, 3]})
            b.refresh()
            first = b.log(limit=1)[0].id
            async with a.subscribe("t", group="g", member="a", partitions=2), \
                    b.subscribe("t", group="g", member="b"):
                (info,) = b.groups()
                assert [(m.name, m.active) for m in info.members] == [("a", True), ("b", True)]
                shown = CliRunner().invoke(cli, ["--lake", url, "groups"], catch_exceptions=False)
                assert shown.exit_code == 0, shown.output
                assert "a, b" in shown.output  # a third cache sees both machines' members
                with pytest.raises(udr.GroupBusy):
                    b.reset_group("g", first)
                with pytest.raises(udr.GroupBusy):  # a member name is live on another machine
                    b.subscribe("t", group="g", member="a")
            async with a.subscribe("t", group="solo") as solo:
                with pytest.raises(udr.GroupBusy):  # one subscriber per single-member group, across machines
                    b.subscribe("t", group="solo")
                await solo.ack(await solo.__anext__())
            (acked,) = [g for g in b.groups() if g.name == "solo"]  # its position is every cache's
            assert acked.position == first and acked.lag_commits == 0
            b.reset_group("g", first)
            (info,) = [g for g in a.groups() if g.name == "g"]
            assert info.position == first and not info.active
            a.delete_group("g")
            assert [g.name for g in b.groups()] == ["solo"]

    anyio.run(check)


def test_a_member_whose_lease_lapsed_cannot_ack_what_the_new_owner_got_again(url: str, caches: Path) -> None:
    async def check() -> None:
        with udr.open(url, cache=caches / "a", group_lease=1.0) as a, \
                udr.open(url, cache=caches / "b", group_lease=1.0) as b:
            a.create_table("t", pa.schema([("k", pa.int64())]), primary_key=["k"])
            a.create_table("out", pa.schema([("who", pa.string())]))
            a.upsert("t", {"k": [1, 2, 3]})
            async with a.subscribe("t", group="g", member="a", partitions=1) as sa:
                mine = await sa.__anext__()
                assert a._handle.remote is not None
                a._handle.remote.leases.close()  # machine a hangs: it stops renewing
                await anyio.sleep(1.5)
                b.refresh()
                async with b.subscribe("t", group="g", member="b") as sb:
                    again = await sb.__anext__()  # b took the partition over: the batch comes again
                    assert (again.commit.seq, again.partition) == (mine.commit.seq, mine.partition)
                    with pytest.raises(udr.GroupBusy), a.transaction() as tx:
                        tx.append("out", {"who": ["a"]})
                        tx.ack(sa, mine)
                    with b.transaction() as tx:
                        tx.append("out", {"who": ["b"]})
                        tx.ack(sb, again)
            a.refresh()
            assert a.read("out").column("who").to_pylist() == ["b"]
            (info,) = a.groups()
            assert [p.seq for p in info.partitions] == [mine.commit.seq]

    anyio.run(check)


def test_entries_carry_group_records_as_version_2_and_others_stay_version_1() -> None:
    plain = Entry(3, 4, moves=({"ref": "tag:x"},))
    grouped = Entry(4, 4, groups={b"partition:g\x000000": b'{"seq":1}', b"member:g\x00a": None})
    assert json.loads(encode_entry(plain))["v"] == 1
    assert json.loads(encode_entry(grouped))["v"] == 2
    assert decode_entry(4, encode_entry(grouped)).groups == grouped.groups
    newer = json.loads(encode_entry(grouped)) | {"v": 3}
    with pytest.raises(udr.FormatError, match="upgrade udr"):
        decode_entry(4, json.dumps(newer).encode())


def test_a_member_closed_while_the_log_is_out_of_reach_closes_and_its_lease_lapses(
        url: str, caches: Path, s3_server: S3) -> None:
    proxy = CuttingProxy(s3_server.endpoint)

    async def check() -> None:
        with udr.open(url, cache=caches / "b", group_lease=1.0) as b:
            b.create_table("t", pa.schema([("k", pa.int64())]), primary_key=["k"])
            b.upsert("t", {"k": [1, 2, 3, 4]})
            with udr.open(url, cache=caches / "a", storage_options={"endpoint": proxy.endpoint},
                          group_lease=1.0) as a:
                sa = a.subscribe("t", group="g", member="a", partitions=2)
                proxy.cut.set()  # giving the lease back in the log fails: closing must not
                await sa.aclose()
            assert proxy.dropped >= 1
            await anyio.sleep(1.2)
            b.refresh()
            (info,) = b.groups()
            assert [(m.name, m.active) for m in info.members] == [("a", False)]
            async with b.subscribe("t", group="g", member="b") as sb:
                batch = await sb.__anext__()  # b claims the partitions a never gave back
                assert batch.table == "t"
                assert [m.partitions for m in b.groups()[0].members] == [(), (0, 1)]

    try:
        anyio.run(check)
    finally:
        proxy.close()
