"""The public surface: `udr.__all__` and the re-exports of `udr/__init__.py` never drift apart."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import udr

INIT = Path(udr.__file__)


def _top_level() -> list[ast.stmt]:
    """The statements of udr/__init__.py, with those of its `if TYPE_CHECKING:` block (the lazy names)."""
    tree = ast.parse(INIT.read_text(), filename=str(INIT))
    return [n for node in tree.body for n in (node.body if isinstance(node, ast.If) else [node])]


def _reexports() -> dict[str, tuple[str, str]]:
    """Public name -> (module, original name) of every `from udr.x import Name as Name` in udr/__init__.py."""
    out: dict[str, tuple[str, str]] = {}
    for node in _top_level():
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("udr"):
            for alias in node.names:
                public = alias.asname or alias.name
                assert public not in out, f"{public} is imported twice in udr/__init__.py"
                out[public] = (node.module, alias.name)
    return out


def _declared_all() -> list[str]:
    tree = ast.parse(INIT.read_text(), filename=str(INIT))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return [str(v) for v in value]
    raise AssertionError("udr/__init__.py has no literal __all__")


def test_lazy_names_resolve_to_their_modules_objects() -> None:
    lazy = {name: module for name, (module, _) in _reexports().items() if module != "udr.errors"}
    assert lazy == udr._LAZY


def test_all_is_a_literal_list_without_duplicates_matching_the_runtime_value() -> None:
    declared = _declared_all()
    assert len(declared) == len(set(declared))
    assert declared == list(udr.__all__)


@pytest.mark.parametrize("name", list(udr.__all__))
def test_every_name_in_all_exists(name: str) -> None:
    assert hasattr(udr, name), f"udr.__all__ lists {name!r} but udr has no such attribute"


def test_reexports_match_all_exactly() -> None:
    reexported = set(_reexports())
    promised = set(udr.__all__)
    assert reexported - promised == set(), "re-exported but missing from __all__"
    assert promised - reexported == set(), "in __all__ but not re-exported from a udr module"


def test_reexports_use_the_import_name_as_name_form() -> None:
    wrong = [
        alias.name
        for node in _top_level()
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("udr")
        for alias in node.names
        if alias.asname != alias.name
    ]
    assert wrong == []


@pytest.mark.parametrize("name", sorted(_reexports()))
def test_reexport_is_the_object_its_module_defines(name: str) -> None:
    module, original = _reexports()[name]
    assert getattr(udr, name) is getattr(importlib.import_module(module), original)


def test_every_public_exception_inherits_udr_error() -> None:
    objects = [getattr(udr, name) for name in udr.__all__]
    errors = [obj for obj in objects if inspect.isclass(obj) and issubclass(obj, BaseException)]
    assert len(errors) >= 8
    for error in errors:
        assert issubclass(error, udr.UdrError), error


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (udr.TableNotFound, LookupError),
        (udr.RefNotFound, LookupError),
        (udr.InvalidName, ValueError),
        (udr.SchemaError, ValueError),
    ],
)
def test_errors_also_inherit_the_builtin_that_fits(error: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(error, builtin)


def test_only_conflict_errors_are_marked_retryable() -> None:
    assert udr.ConflictError.retryable is True
    for error in (udr.InvalidName, udr.SchemaError, udr.TableNotFound, udr.CorruptionError, udr.FormatError):
        assert error.retryable is False, error
