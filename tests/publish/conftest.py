"""Polars plans Iceberg scans with pyiceberg in these tests (without the optional planner it warns)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _polars_plans_with_pyiceberg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")
