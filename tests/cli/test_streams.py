"""`udr tail` and `udr groups` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
from click.testing import CliRunner

import udr
from udr.cli import cli


def _lake(path: Path) -> Path:
    with udr.open(path) as db:
        db.append("orders", {"id": [1, 2], "amount": [3, 4]})
        db.append("payments", {"id": [1], "amount": [3]})
    return path


def test_tail_prints_changes_as_json_lines_acks_them_and_exits_0_on_ctrl_c(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    child = subprocess.Popen(
        [sys.executable, "-m", "udr.cli", "--lake", str(lake), "tail", "orders", "--from", "earliest",
         "--group", "audit", "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert child.stdout is not None
    lines = [json.loads(child.stdout.readline()) for _ in range(2)]
    with udr.open(lake) as db:
        db.append("orders", {"id": [3], "amount": [5]})
        lines.append(json.loads(child.stdout.readline()))
        deadline = time.monotonic() + 30
        while not db.groups() or db.groups()[0].lag_commits:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
        assert child.returncode == 0, err
        assert [(r["table"], r["id"], r["_change"]) for r in lines] == [
            ("orders", 1, "insert"), ("orders", 2, "insert"), ("orders", 3, "insert")]
        [group] = db.groups()
        assert (group.name, group.active, group.position) == ("audit", False, db.resolve("main"))


def test_groups_lists_position_and_lag_and_tail_rejects_unknown_tables(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    runner = CliRunner()
    assert "no consumer groups" in runner.invoke(cli, ["--lake", str(lake), "groups"]).output
    with udr.open(lake) as db:
        db.reset_group("audit", to="main~1")
    result = runner.invoke(cli, ["--lake", str(lake), "groups"])
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if "audit" in line)
    assert "main" in row and "1" in row.split("│")[4]  # one commit (the payments append) behind
    bad = runner.invoke(cli, ["--lake", str(lake), "tail", "ordres"])
    assert bad.exit_code == 1 and "did you mean 'orders'" in bad.output


def test_groups_shows_members_and_partitions_and_resets_and_deletes_a_group(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    runner = CliRunner()

    async def join() -> None:
        with udr.open(lake) as db:
            async with db.subscribe("orders", group="billing", member="w1", partitions=2) as sub:
                batch = await sub.__anext__()
                await sub.ack(batch)
                result = runner.invoke(cli, ["--lake", str(lake), "groups"])
                assert result.exit_code == 0
                assert any("billing" in line and "w1" in line and "yes" in line for line in result.output.splitlines())
                busy = runner.invoke(cli, ["--lake", str(lake), "groups", "delete", "billing"])
                assert busy.exit_code == 1 and "live members (w1)" in busy.output

    anyio.run(join)
    listed = runner.invoke(cli, ["--lake", str(lake), "groups"]).output
    assert "partition" in listed and listed.count("billing") == 3  # the group row and its two partitions
    reset = runner.invoke(cli, ["--lake", str(lake), "groups", "reset", "billing", "main~1"])
    assert reset.exit_code == 0, reset.output
    with udr.open(lake) as db:
        assert {p.seq for p in db.groups()[0].partitions} == {db.log(limit=2)[1].seq}
    assert runner.invoke(cli, ["--lake", str(lake), "groups", "delete", "billing"]).exit_code == 0
    assert "no consumer groups" in runner.invoke(cli, ["--lake", str(lake), "groups"]).output
    gone = runner.invoke(cli, ["--lake", str(lake), "groups", "delete", "billing"])
    assert gone.exit_code == 1 and "no consumer group 'billing'" in gone.output


def test_tail_member_needs_a_group(tmp_path: Path) -> None:
    lake = _lake(tmp_path / "lake")
    result = CliRunner().invoke(cli, ["--lake", str(lake), "tail", "orders", "--member", "w1"])
    assert result.exit_code == 1 and "belongs to a group" in result.output
