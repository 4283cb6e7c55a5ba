"""The documentation site: every public name in the API reference, and a strict build when mkdocs is here."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import udr

ROOT = Path(__file__).resolve().parents[2]


def test_every_public_name_is_in_the_api_reference_with_a_docstring() -> None:
    reference = (ROOT / "docs" / "api-reference.md").read_text()
    for name in udr.__all__:
        assert f"::: udr.{name}\n" in reference, f"udr.{name} is missing from docs/api-reference.md"
        if name != "TableData":  # a type alias: documented by the string literal after it, not __doc__
            assert (getattr(udr, name).__doc__ or "").strip(), f"udr.{name} has no docstring"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="needs the docs extra: pip install -e '.[docs]'")
def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
