"""Structure targets of udr/, read with `ast` (nothing imported): no import cycle (imports inside functions and
`if TYPE_CHECKING:` blocks count), import depth at most 8 floors, modules at most 500 lines, functions at most
60 lines, and no module using an underscore name another udr module defines.

What issue 10 has not removed yet is listed in `REMAINING_*`: a ratchet. A new breach fails; so does a listed
one that got worse. Shrink the lists as the facade is taken apart, never grow them.
"""

from __future__ import annotations

import ast
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

import udr

PACKAGE = Path(udr.__file__).parent
MAX_DEPTH = 8
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

# Issue 10 burn-down: what is left of the facade's tangle. Every list is empty and the depth is at its target.
REMAINING_CYCLES: list[set[str]] = []
REMAINING_DEPTH = 8
REMAINING_BIG_MODULES: dict[str, int] = {}
REMAINING_LONG_FUNCTIONS: dict[str, int] = {}
REMAINING_REACH_INS: dict[str, int] = {}


def _name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


@cache
def modules() -> dict[str, tuple[Path, ast.Module, bool]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name, is_package = _name(path)
        out[name] = (path, ast.parse(path.read_text()), is_package)
    return out


def import_edges(mods: dict[str, tuple[Path, ast.Module, bool]]) -> dict[str, set[str]]:
    """module -> the udr modules it imports (a package's imports of its own submodules left out)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, (_, tree, is_package) in mods.items():
        package = m if is_package else m.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
                # `from pkg import a, b` imports each submodule it names; other names come from `pkg` itself.
                targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods] or [base]
            for named in targets:
                target = named
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != m and not target.startswith(m + "."):
                    edges[m].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []
    for root, imported in edges.items():
        if root in index:
            continue
        work = [(root, iter(sorted(imported)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = set()
                while True:
                    w = stack.pop()
                    component.add(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def depth(edges: dict[str, set[str]]) -> int:
    """The longest chain of imports, in modules (a cycle is cut where it closes)."""
    memo: dict[str, int] = {}

    def floors(m: str, seen: frozenset[str]) -> int:
        if m in memo:
            return memo[m]
        result = 1 + max((floors(w, seen | {m}) for w in edges[m] if w not in seen), default=0)
        memo[m] = result
        return result

    return max(floors(m, frozenset()) for m in edges)


def long_functions(mods: dict[str, tuple[Path, ast.Module, bool]]) -> dict[str, int]:
    out = {}
    for m, (_, tree, _) in mods.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                length = (node.end_lineno or node.lineno) - start + 1
                if length > MAX_FUNCTION_LINES:
                    out[f"{m}:{node.name}"] = length
    return out


def _defined_here(tree: ast.Module) -> set[str]:
    names = {"_replace", "_fields", "_asdict", "_make", "_field_defaults"}  # namedtuple's public API
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_"):
            names.add(node.value)  # __slots__ entries
    return names


def reach_ins(m: str, tree: ast.Module, mods: dict[str, tuple[Path, ast.Module, bool]]) -> list[str]:
    """Underscore names `tree` uses that it does not define: another module's privates."""
    foreign = set()  # names bound to third-party modules or their members
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            foreign |= {(a.asname or a.name).split(".")[0] for a in node.names if not a.name.startswith("udr")}
        elif isinstance(node, ast.ImportFrom) and not node.level and not (node.module or "").startswith("udr"):
            foreign |= {a.asname or a.name for a in node.names}
    defined = _defined_here(tree)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id in foreign) and node.attr not in defined:
                hits.append(f"{m}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("udr"):
            hits += [f"{m}:{node.lineno} {a.name}" for a in node.names
                     if a.name.startswith("_") and not a.name.startswith("__")
                     and f"{node.module}.{a.name}" not in mods]
    return hits


def test_no_new_import_cycle() -> None:
    assert [c for c in cycles(import_edges(modules())) if c not in REMAINING_CYCLES] == []


def test_import_depth() -> None:
    assert depth(import_edges(modules())) <= max(MAX_DEPTH, REMAINING_DEPTH)


def test_module_sizes() -> None:
    big = {m: len(p.read_text().splitlines()) for m, (p, _, _) in modules().items()}
    over = {m: n for m, n in big.items() if n > REMAINING_BIG_MODULES.get(m, MAX_MODULE_LINES)}
    assert over == {}


def test_function_sizes() -> None:
    long = long_functions(modules())
    assert {f: n for f, n in long.items() if n > REMAINING_LONG_FUNCTIONS.get(f, MAX_FUNCTION_LINES)} == {}


def test_no_new_private_reach_in() -> None:
    mods = modules()
    counts = Counter(hit.split(":")[0] for m, (_, tree, _) in mods.items() for hit in reach_ins(m, tree, mods))
    assert {m: n for m, n in counts.items() if n > REMAINING_REACH_INS.get(m, 0)} == {}


# -- the checks themselves must be able to fail --------------------------------------------------------


def _parsed(sources: dict[str, str]) -> dict[str, tuple[Path, ast.Module, bool]]:
    return {m: (Path(m), ast.parse(s), False) for m, s in sources.items()}


def test_a_type_checking_cycle_is_found() -> None:
    mods = _parsed({"udr.a": "from udr.b import x",
                    "udr.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from udr.a import y"})
    assert cycles(import_edges(mods)) == [{"udr.a", "udr.b"}]


def test_depth_counts_floors() -> None:
    mods = _parsed({"udr.a": "import udr.b", "udr.b": "from udr import c", "udr.c": ""})
    assert depth(import_edges(mods)) == 3


@pytest.mark.parametrize("source", ["def f(lake):\n    return lake._log", "from udr.x import _helper"])
def test_a_reach_in_is_found(source: str) -> None:
    mods = _parsed({"udr.a": source, "udr.x": ""})
    assert reach_ins("udr.a", mods["udr.a"][1], mods) != []


def test_own_privates_and_third_party_ones_are_not_reach_ins() -> None:
    source = "import sys\nclass A:\n    def __init__(self):\n        self._x = 1\n    def f(self):\n" \
             "        return self._x, sys._getframe"
    mods = _parsed({"udr.a": source})
    assert reach_ins("udr.a", mods["udr.a"][1], mods) == []


def test_a_long_function_is_found() -> None:
    mods = _parsed({"udr.a": "def f():\n" + "    x = 1\n" * 61})
    assert long_functions(mods) == {"udr.a:f": 62}
