"""The `udr` group itself: `--version` and `--help` load no command module (nor pyarrow), and every usage
error is one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import Udr

import udr

# Runs `udr ARGS` in a fresh interpreter, then reports what it imported.
_PROBE = """
import json, sys
from udr.cli import main
try:
    main()
except SystemExit:
    pass
loaded = sorted(m for m in sys.modules
                if m.startswith(("udr.cli.commands.", "duckdb", "rich.progress", "pyarrow", "lmdb")))
print(json.dumps(loaded))
"""


def imported_by(*args: str) -> tuple[str, list[str]]:
    """Run `udr ARGS` in a new process; return its output before the probe's line and what it imported."""
    done = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, check=True,
                          timeout=60)
    *printed, loaded = done.stdout.splitlines()
    return "\n".join(printed), json.loads(loaded)


def test_version_loads_no_command_module() -> None:
    printed, loaded = imported_by("--version")
    assert printed == f"udr, version {udr.__version__}"
    assert [name for name in loaded if name.startswith("udr.cli.commands.")] == []


def test_version_imports_no_duckdb_pyarrow_or_lmdb() -> None:
    _, loaded = imported_by("--version")
    assert not {"duckdb", "pyarrow", "lmdb"} & set(loaded)


def test_help_lists_every_command_without_starting_a_progress_bar() -> None:
    printed, loaded = imported_by("--help")
    listed = {line.split()[0] for line in printed.split("Commands:")[1].splitlines() if line.strip()}
    assert {"import", "sql", "changes", "merge", "tail", "verify", "demo"} <= listed and len(listed) == 38
    assert "rich.progress" not in loaded
    assert not [name for name in loaded if name.startswith(("udr.cli.commands.", "pyarrow", "duckdb"))]


def test_help_lists_each_command_with_the_summary_click_makes_of_it() -> None:
    """`--help` reads the summaries from the modules' source; the commands themselves must agree."""
    import click

    from udr.cli import cli

    listed, _ = imported_by("--help")
    with click.Context(cli, info_name="udr") as ctx:
        formatter = ctx.make_formatter()
        click.Group.format_commands(cli, ctx, formatter)  # click's own listing: imports every command
    assert formatter.getvalue().strip() in listed


@pytest.mark.parametrize("args", [("--bogus",), ("nosuch",), ("sql",), ("sql", ""), ("sql", "  "),
                                  ("changes", "t", "--format", "xml"), ("log", "-n", "0")])
def test_a_usage_error_is_one_line_and_exit_2(lake_path: Path, args: tuple[str, ...]) -> None:
    assert "--help" in Udr(lake_path).fails(*args, code=2)


def test_a_mistyped_lake_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    line = Udr(missing).fails("tables")
    assert line == f"error: no lake at {missing}; run `udr init {missing}`"
    assert not missing.exists()
