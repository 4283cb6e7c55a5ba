"""Imports point one way: udr.log <- udr.materialize <- udr.query / udr.stream <- udr.api (the facade)
<- udr (the public package) <- udr.cli.

Every module under udr/ is parsed with `ast` (no import executed), every import is resolved to an absolute
module name (relative ones too, imports inside functions and `if TYPE_CHECKING:` blocks too) and checked
against the rules of STYLE.md section 1.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import udr

PACKAGE = Path(udr.__file__).parent

# What each layer may import from udr (besides itself).
ALLOWED = {
    "errors": set(),
    "values": {"errors"},
    "log": {"errors", "values"},
    "materialize": {"errors", "values", "log"},
    "query": {"errors", "values", "log", "materialize"},
    "stream": {"errors", "values", "log", "materialize"},
    "publish": {"errors", "values", "log", "materialize"},
    # A lake in object storage: a remote log and chunks, replayed into a local lake's LMDB log.
    "remote": {"errors", "values", "log"},
    "api": {"errors", "values", "log", "materialize", "query", "stream", "publish", "remote"},
    # udr/__init__.py: re-exports the public API.
    "package": {"errors", "values", "log", "materialize", "query", "stream", "publish", "remote", "api"},
    # The CLI sees only what `udr` exports (`udr.Lake`, `udr.open`, ...), plus its own modules.
    "cli": {"package"},
}

# Third-party libraries with one home: the layers allowed to import them. The CLI drives the public async
# API (`Lake.subscribe`) with `anyio.run`.
DEPENDENCY_HOMES = {
    "lmdb": {"log"},
    "blake3": {"log"},
    "zstandard": {"log"},
    "duckdb": {"query"},
    "anyio": {"stream", "api", "cli"},
    "fastavro": {"publish"},
    "obstore": {"remote"},
    "pyiceberg": {"api"},  # reading Iceberg tables as an import source; publishing writes them without it
    "deltalake": {"api"},
}


def module_name(path: Path) -> str:
    """`udr/log/store.py` -> `udr.log.store`; `udr/log/__init__.py` -> `udr.log`."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    """The layer a udr module belongs to: errors, values, log, materialize, query, stream, publish, api, cli,
    or package (`udr` itself and the names it exports, such as `udr.Lake`)."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ALLOWED and parts[1] != "package":
        return parts[1]
    return "package"


def imports_of(source: str, module: str, *, is_package: bool) -> list[str]:
    """Absolute names of everything `source` imports (module names; `from a import b` gives `a.b` too)."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != "udr":
                out.append(target)
            # `from udr import log` imports udr.log; `from udr import Lake` imports the facade's udr.Lake.
            out.extend(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return out


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Every import of `module` (with source `source`) that breaks the layering or dependency rules."""
    layer = layer_of(module)
    found: list[str] = []
    for target in imports_of(source, module, is_package=is_package):
        root = target.split(".")[0]
        if root == "udr":
            target_layer = layer_of(target)
            if target_layer != layer and target_layer not in ALLOWED[layer]:
                found.append(f"{module} ({layer}) imports {target} ({target_layer})")
        elif root in DEPENDENCY_HOMES and layer not in DEPENDENCY_HOMES[root]:
            found.append(f"{module} ({layer}) imports {root}, which belongs in {sorted(DEPENDENCY_HOMES[root])}")
    return sorted(set(found))


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_checker_sees_the_whole_package() -> None:
    names = {module_name(p) for p in _modules()}
    assert {"udr", "udr.errors", "udr.values", "udr.log.store", "udr.materialize.snapshot", "udr.query.engine"} <= names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_module_imports_respect_the_layers(path: Path) -> None:
    module = module_name(path)
    assert violations(path.read_text(), module, is_package=path.name == "__init__.py") == []


# -- the checker itself must be able to fail ---------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("udr.log.store", "from udr.materialize.snapshot import fold"),
        ("udr.log.store", "import udr.query.engine"),
        ("udr.log.store", "from udr import Lake"),
        ("udr.log.store", "from udr.api.lake import Lake"),
        ("udr.query.engine", "from udr.api import history"),
        ("udr.stream.feed", "from udr.api.lake import Lake"),
        ("udr.api.lake", "from udr.cli import main"),
        ("udr.api.lake", "import udr.cli.common"),
        ("udr.cli.common", "from udr.api.lake import Lake"),
        ("udr.cli.common", "from udr.log.store import LogStore"),
        ("udr.cli.common", "import udr.query.engine"),
        ("udr.cli.common", "import duckdb"),
        ("udr.api.lake", "import lmdb"),
        ("udr.api.lake", "import duckdb"),
        ("udr.log.store", "from ..materialize import snapshot"),
        ("udr.materialize.data", "from udr.query.engine import quote_ident"),
        ("udr.materialize.data", "from udr import stream"),
        ("udr.query.engine", "from udr.stream.x import y"),
        ("udr.stream.x", "from udr.query import engine"),
        ("udr.stream.x", "from ..query.engine import quote_ident"),
        ("udr.errors", "from udr.values import Commit"),
        ("udr.errors", "from udr.log.format import CommitId"),
        ("udr.values", "from udr.log.format import CommitId"),
        ("udr.materialize.data", "import lmdb"),
        ("udr.query.engine", "import blake3"),
        ("udr.materialize.data", "import zstandard"),
        ("udr.materialize.data", "import duckdb"),
        ("udr.log.store", "def f():\n    import duckdb\n"),
        ("udr.query.engine", "import anyio"),
        ("udr.log.store", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from udr.api.lake import Lake\n"),
    ],
)
def test_checker_flags_a_bad_import(module: str, source: str) -> None:
    assert violations(source, module) != []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("udr.log.store", "from udr.log.format import CommitId\nfrom .commits import encode_commit"),
        ("udr.log.store", "from udr.errors import CorruptionError\nimport lmdb, blake3, zstandard"),
        ("udr.materialize.data", "from udr.log.store import LogStore\nfrom udr.values import Commit"),
        ("udr.query.engine", "import duckdb\nfrom udr.materialize.data import RowReader"),
        ("udr.stream.x", "import anyio\nfrom udr.materialize import snapshot"),
        ("udr.values", "from udr.errors import UdrError"),
        ("udr.materialize.data", "from udr import log\nfrom .. import errors"),
        ("udr.api.lake", "import anyio\nfrom udr.query.engine import SnapshotServer"),
        ("udr.api.branches", "from udr.api.transaction import Transaction\nfrom udr.stream.feed import lag"),
        ("udr", "from udr.api.lake import Lake as Lake"),
        ("udr.cli.common", "import udr\nfrom udr import Lake\nfrom udr.cli.output import render\nimport anyio"),
    ],
)
def test_checker_accepts_a_good_import(module: str, source: str) -> None:
    assert violations(source, module) == []


# -- no LMDB environment, handle or transaction leaves udr/log ---------------------------------------

# The log's environments and transactions: the layers above reach the log through its typed stores
# (`GroupStore.of(log)`, `udr.log.activity`, `udr.log.snapcache`, ...), never through these.
ENVIRONMENT_ATTRIBUTES = {"env", "cache", "begin"}
ENVIRONMENT_NAMES = {"Environment", "LmdbEnvironment", "MemoryEnvironment", "IndexTxn", "LogEnvironments",
                     "open_log_env", "open_cache_env", "WriteWatcher"}


def environment_reach(source: str, module: str) -> list[str]:
    """Where `module` (outside udr.log) touches a log environment: an attribute named `env`, `cache` or
    `begin`, or a name of `udr.log.index`'s environments and transactions imported."""
    if module == "udr.log" or module.startswith("udr.log."):
        return []
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_ATTRIBUTES:
            found.append(f"{module}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("udr.log"):
            found.extend(f"{module}:{node.lineno} imports {alias.name}" for alias in node.names
                         if alias.name in ENVIRONMENT_NAMES)
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_log_environment_outside_udr_log(path: Path) -> None:
    assert environment_reach(path.read_text(), module_name(path)) == []


@pytest.mark.parametrize(
    ("module", "source", "bad"),
    [
        ("udr.stream.member", "n = log.env.last_txnid()", True),
        ("udr.materialize.snapshot", "with self._log.cache.read() as txn: pass", True),
        ("udr.remote.mirror", "def begin(self, txn): pass\nwatcher.begin(txn)", True),
        ("udr.api.retention", "from udr.log.index import IndexTxn", True),
        ("udr.remote.mirror", "from udr.log.index import open_log_env", True),
        ("udr.log.groups", "n = log.env.last_txnid()", False),
        ("udr.stream.member", "from udr.log.activity import last_write\nn = last_write(log)", False),
    ],
)
def test_environment_checker_can_fail(module: str, source: str, bad: bool) -> None:
    assert bool(environment_reach(source, module)) is bad
