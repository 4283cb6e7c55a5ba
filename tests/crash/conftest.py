"""Fixtures of the crash tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from crash_checks import Workers


@pytest.fixture
def workers() -> Iterator[Workers]:
    """Start worker processes; any still running when the test ends is killed."""
    pool = Workers()
    yield pool
    pool.close()
