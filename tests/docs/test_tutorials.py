"""Every Python block of docs/tutorials/audit-trail.md runs, in order, in an empty directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

AUDIT_TRAIL = Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "audit-trail.md"


def test_the_audit_trail_tutorial_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", AUDIT_TRAIL.read_text(), re.DOTALL)
    assert len(blocks) == 9
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("UDR_AUTHOR", raising=False)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(AUDIT_TRAIL), "exec"), namespace)  # running the docs is the test
    printed = capsys.readouterr().out
    assert "carol dave" in printed and "VERIFIED" in printed
    assert (tmp_path / "books" / "FORMAT").is_file()
