"""The README's Python example runs top to bottom as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_python_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    section = README.read_text().split("## In Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    monkeypatch.chdir(tmp_path)
    exec(compile(code.group(1), str(README), "exec"), {})
    assert (tmp_path / "lake" / "FORMAT").is_file()
    assert (tmp_path / "iceberg" / "accounts" / "metadata" / "version-hint.text").is_file()
