"""The CLI's shape, read from its source with `ast`: it uses only the public `udr` API, and stays small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import udr
import udr.cli

CLI = Path(udr.cli.__file__).parent
MODULES = sorted(CLI.rglob("*.py"))


def udr_imports(source: str) -> list[str]:
    """Every `udr` name a module imports: `udr`, `udr.cli.x`, or `udr.Name` for `from udr import Name`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "udr"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "udr":
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def private_reach(name: str) -> bool:
    """Whether an imported udr name is outside the public API and the CLI's own package."""
    if name == "udr" or name.startswith("udr.cli.") or name == "udr.cli":
        return False
    parts = name.split(".")
    return len(parts) != 2 or parts[1] not in udr.__all__


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CLI)))
def test_cli_modules_import_only_the_public_api_and_each_other(path: Path) -> None:
    assert [name for name in udr_imports(path.read_text()) if private_reach(name)] == []


@pytest.mark.parametrize("source", ["from udr.log.store import read_format", "import udr.query.engine",
                                    "from udr._lake import Lake", "from udr import log"])
def test_the_import_check_flags_a_private_import(source: str) -> None:
    assert any(private_reach(name) for name in udr_imports(source))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CLI)))
def test_cli_modules_and_functions_stay_small(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= 400
    long = [node.name for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and (node.end_lineno or node.lineno) - node.lineno + 1 > 60]
    assert long == []
