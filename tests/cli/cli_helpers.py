"""Driving the `udr` command in tests: a runner bound to one lake, and reading rich tables back."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from udr.cli import cli


class Udr:
    """The `udr` command bound to one lake: `ok(...)` must succeed, `fails(...)` must fail cleanly."""

    def __init__(self, lake: Path) -> None:
        self.lake = lake

    def run(self, *args: str) -> Result:
        # Wide enough that rich never wraps a cell, so each table row is one line.
        result = CliRunner(env={"COLUMNS": "250"}).invoke(cli, ["--lake", str(self.lake), *args])
        # Any exception but SystemExit would be a traceback in the user's face.
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.stdout

    def fails(self, *args: str, code: int = 1) -> str:
        """Run a command that must exit `code` with one `error: ` line on stderr; return that line."""
        result = self.run(*args)
        assert result.exit_code == code, result.output
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("error: ")
        assert "Traceback" not in result.output
        return result.stderr.strip()

    def json(self, *args: str) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = json.loads(self.ok(*args, "--format", "json"))
        return rows


def cells(rendered: str) -> list[list[str]]:
    """The body rows of a rich table (one line per row), cell texts stripped."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in rendered.splitlines() if line.startswith("│")]
