"""`udr log` filters, `udr reflog` and `udr audit` (md, json, html; -o FILE; exit 1 on a failed verdict)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lmdb
import pyarrow as pa
import pytest
from cli_helpers import Udr, cells

import udr
from udr.log.format import DB_COMMITS, LOG_DIR, MAX_DBS, BlobKind
from udr.log.index import frame_blob, unframe_blob


@pytest.fixture
def lake(tmp_path: Path) -> tuple[Udr, dict[str, str]]:
    path = tmp_path / "lake"
    ids: dict[str, str] = {}
    with udr.open(path) as db:
        ids["load"] = db.append("t", pa.table({"x": [1]}), author="ann", message="load").id
        time.sleep(0.01)
        with db.transaction(author="bob", message="import | batch", metadata={"ticket": "T-9"}) as tx:
            tx.append("t", pa.table({"x": [2]}))
        assert tx.committed is not None
        ids["import"] = tx.committed.id
        db.create_branch("dev")
        db.reset("main", ids["load"])
        db.tag("v1", ids["import"])
    return Udr(path), ids


def test_log_filters_on_the_command_line(lake: tuple[Udr, dict[str, str]]) -> None:
    cli, ids = lake
    rows = cells(cli.ok("log", "--branch", "dev", "--author", "bob", "--meta", "ticket=T-9", "--grep", "batch"))
    assert [r[0] for r in rows] == [ids["import"][:10]]
    assert [r[0] for r in cells(cli.ok("log", "--branch", "dev", "--since", ids["load"]))] == [ids["import"][:10]]
    assert "no commit on dev matches author 'zed'" in cli.ok("log", "--branch", "dev", "--author", "zed")
    assert "KEY=VALUE" in cli.fails("log", "--meta", "nokey", code=2)
    assert "does not combine" in cli.fails("log", "--graph", "--author", "ann", code=2)


def test_reflog_lists_moves_newest_first(lake: tuple[Udr, dict[str, str]]) -> None:
    cli, ids = lake
    rows = cells(cli.ok("reflog", "main"))
    assert [r[2] for r in rows] == ["reset", "commit", "commit", "create"]
    assert rows[0][3:5] == [ids["import"][:10], ids["load"][:10]]
    assert "hiding commits" in rows[0][6]
    assert [r[1] for r in cells(cli.ok("reflog", "-n", "2"))] == ["tag v1", "branch main"]
    assert "ever moved" in cli.fails("reflog", "nope")


def test_audit_markdown_json_and_html(lake: tuple[Udr, dict[str, str]], tmp_path: Path) -> None:
    cli, ids = lake
    text = cli.ok("audit", "--since", ids["load"])
    assert text.startswith(f"# Audit report: from {ids['load']}")
    assert "import \\| batch" in text and "ticket=T-9" in text and "| reset |" in text
    assert text.rstrip().splitlines()[-1].startswith("**VERIFIED")
    doc = json.loads(cli.ok("audit", "--format", "json", "--table", "t"))
    assert [c["id"] for c in doc["commits"]] == [ids["load"], ids["import"]]
    assert doc["commits"][1]["metadata"] == {"ticket": "T-9"}
    assert doc["commits"][1]["tables"] == {"t": {"inserted": 1, "updated": 0, "deleted": 0}}
    assert [m["action"] for m in doc["ref_moves"]] == ["create", "commit", "commit", "create", "reset", "create"]
    assert doc["verification"]["ok"] and doc["verdict"].startswith("VERIFIED")
    page = tmp_path / "audit.html"
    said = cli.ok("audit", "--format", "html", "-o", str(page))
    assert said.startswith("VERIFIED")
    content = page.read_text()
    assert content.startswith("<!DOCTYPE html>") and "import | batch" in content and 'id="verdict"' in content


def test_audit_exits_1_when_a_commit_was_altered(lake: tuple[Udr, dict[str, str]], tmp_path: Path) -> None:
    cli, ids = lake
    env = lmdb.open(str(cli.lake / LOG_DIR), max_dbs=MAX_DBS)
    try:
        commits = env.open_db(DB_COMMITS)
        with env.begin(write=True) as txn:
            cid = ids["import"]
            stored = txn.get(cid.encode(), db=commits)
            assert stored is not None
            canonical = unframe_blob(cid, stored, expect=BlobKind.COMMIT)
            txn.put(cid.encode(), frame_blob(BlobKind.COMMIT, canonical.replace(b'"bob"', b'"eve"'))[1], db=commits)
    finally:
        env.close()
    out = tmp_path / "report.json"
    assert "audit found" in cli.fails("audit", "--format", "json", "-o", str(out))
    doc = json.loads(out.read_text())
    assert not doc["verification"]["ok"] and doc["verdict"].startswith("FAILED")
    assert any(ids["import"] in p for p in doc["verification"]["problems"])
