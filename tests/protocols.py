"""Conformance of an implementation to a seam's `Protocol`: the protocol's public methods, for parametrizing one
test per method, and the check that the implementation offers each with the protocol's parameters."""

from __future__ import annotations

import inspect


def public_methods(protocol: type) -> list[str]:
    """The names of `protocol`'s public methods, sorted."""
    return sorted(name for name, _ in inspect.getmembers(protocol, inspect.isfunction) if not name.startswith("_"))


def assert_offers(implementation: type, protocol: type, name: str, *, extra_optional: bool = False) -> None:
    """Assert `implementation.name` takes `protocol.name`'s parameters, and with `extra_optional` also any
    further ones that have defaults (otherwise the signatures must be equal)."""
    wanted = inspect.signature(getattr(protocol, name))
    given = inspect.signature(getattr(implementation, name))
    if not extra_optional:
        assert given == wanted
        return
    params = list(given.parameters.values())
    assert params[:len(wanted.parameters)] == list(wanted.parameters.values())
    assert all(p.default is not inspect.Parameter.empty for p in params[len(wanted.parameters):])
