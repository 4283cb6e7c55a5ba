"""A consumer group of three member processes, SIGKILLed and restarted at random moments while a producer
commits: the table they derive equals a batch recomputation (exactly once, nothing lost, commit order
within each key), and the group rebalances as members die and come back."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from member_workers import derived, expected, setup_lake

import udr

WORKERS = Path(__file__).with_name("member_workers.py")
MEMBERS = ("m0", "m1", "m2")


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKERS), *args], stdout=subprocess.PIPE, text=True)


def _wait_ready(child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    assert line == "ready", f"member did not start: {line!r}"


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def _settled(lake: Path, timeout: float) -> tuple[object, object]:
    deadline = time.monotonic() + timeout
    while True:
        with udr.open(lake) as db:
            want, got = expected(db), derived(db)
        if want == got or time.monotonic() > deadline:
            return want, got
        time.sleep(0.3)


@pytest.mark.slow  # each member process alone takes 1-2 s to start on a loaded machine
@pytest.mark.parametrize(("commits", "kills", "seed"), [(20, 1, 3), (160, 6, 11)])
def test_members_killed_and_restarted_at_random_derive_exactly_once(
        tmp_path: Path, children: list[subprocess.Popen[str]], commits: int, kills: int, seed: int) -> None:
    lake = tmp_path / "lake"
    setup_lake(lake)
    rng = random.Random(seed)
    members: dict[str, subprocess.Popen[str]] = {}
    for name in MEMBERS:
        members[name] = _spawn("member", str(lake), name)
        children.append(members[name])
    for name in MEMBERS:
        _wait_ready(members[name])
    producer = _spawn("produce", str(lake), str(commits), str(seed))
    children.append(producer)
    killed = 0
    while producer.poll() is None or killed < kills:
        time.sleep(rng.uniform(0.1, 0.6))
        name = rng.choice(MEMBERS)
        members[name].send_signal(signal.SIGKILL)
        members[name].wait()  # reaped: its lease is free at once
        killed += 1
        time.sleep(rng.uniform(0.0, 0.3))
        members[name] = _spawn("member", str(lake), name)
        children.append(members[name])
        _wait_ready(members[name])
    assert producer.wait() == 0
    want, got = _settled(lake, timeout=90)
    assert got == want
    assert [name for name, child in members.items() if child.poll() is not None] == []  # none failed
    with udr.open(lake) as db:
        info = {g.name: g for g in db.groups()}["derive"]
        owners = {p.member for p in info.partitions}
        assert owners == set(MEMBERS)  # every live member owns a share after the rebalances
        assert len(info.partitions) == 6
        assert db.verify().ok
