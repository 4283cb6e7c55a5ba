"""Every Python block of docs/quickstart.md runs, in order, in an empty directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"


def test_the_quickstart_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", QUICKSTART.read_text(), re.S)
    assert len(blocks) == 6
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(QUICKSTART), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "['customers', 'orders']" in printed and "change rows" in printed
    assert (tmp_path / "iceberg" / "customers" / "metadata" / "version-hint.text").is_file()
