"""Stream tests run every async test on both anyio backends, asyncio and trio (anyio's pytest plugin)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The backend anyio's pytest plugin runs each `@pytest.mark.anyio` test on."""
    return str(request.param)
