"""`udr retention`, `expire`, `hold`, `release`, `holds` and `verify` after expiry, as a user types them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from cli_helpers import Udr

import udr


def test_hold_expire_gc_release(lake_path: Path, make_big: Callable[..., pa.Table]) -> None:
    with udr.open(lake_path) as db:
        commits = [db.overwrite("t", make_big(seed)).id for seed in range(4)]
    cli = Udr(lake_path)
    assert "no retention policy" in cli.ok("retention")
    assert "no holds" in cli.ok("holds")
    assert f"keeps {commits[0][:10]}: legal case 7" in cli.ok("hold", "case7", commits[0], "--reason", "legal case 7")
    assert "case7" in cli.ok("holds") and "legal case 7" in cli.ok("holds")
    assert "keep_commits=1 (lake)" in cli.ok("retention", "--keep-commits", "1")
    assert "expired 2 versions" in cli.ok("expire")
    assert "freed 0 bytes" not in cli.ok("gc")
    assert "2 expired or erased (not damage)" in cli.ok("verify")
    held = cli.ok("sql", f'SELECT count(*) AS n FROM "t@{commits[0]}"')
    assert "20,000" in held or "20000" in held
    assert "expired under the retention policy keep_commits=1 (lake)" in cli.fails(
        "sql", f'SELECT count(*) FROM "t@{commits[1]}"')
    assert "released hold case7" in cli.ok("release", "case7")
    assert "no hold 'case7'" in cli.fails("release", "case7")
    assert "expired 1 versions" in cli.ok("expire")
    assert "no retention policy" in cli.ok("retention", "--clear")
    assert "--reason" in cli.fails("hold", "x", "main", code=2)


def test_erase_from_the_command_line(lake_path: Path) -> None:
    with udr.open(lake_path) as db:
        db.create_table("people", pa.schema([("id", pa.int64()), ("name", pa.string())]), primary_key=["id"])
        db.append("people", {"id": [41, 42], "name": ["keep", "erase-me"]})
    cli = Udr(lake_path)
    out = cli.ok("erase", "people", "--key", "id=42", "--reason", "GDPR 17")
    assert "erased people id=42 from every version" in out
    assert "erase 1 key(s) from people: GDPR 17" in cli.ok("log")
    assert "erase-me" not in cli.ok("sql", 'SELECT * FROM "people@main~1"')
    assert "keyed by (id)" in cli.fails("erase", "people", "--key", "name=x", "--reason", "r")
    assert "--reason" in cli.fails("erase", "people", "--key", "id=1", code=2)
