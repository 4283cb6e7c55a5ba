"""Every demo in examples/ runs as a user would run it and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Lines each demo must print: its own check, and the facts it shows.
EXPECTED = {
    "audit_trail_demo.py": ["1 commit:", "300 ledger amounts blown up >= 50x by carol's", "set by carol",
                            "diff main..investigation: {'ledger': (0, 300, 0)}",
                            "fix has the same tables as the replay: True", "memo='reclassified'",
                            "branch investigation replay", "files holding their e-mail address: 1 before, 0 after gc",
                            "at day 1 by time travel: 0", "verdict: VERIFIED", "OK", "Try this with Delta Lake"],
    "changelog_demo.py": ["OK"],
    "cross_table_transaction_demo.py": ["main still at", ": True", "accounts off their ledger: 0", "OK",
                                        "Try this with Delta Lake"],
    "feature_store_demo.py": ["each with the features of its own day", "would have seen the future",
                              "equals the table: True", "OK", "Try this with Delta Lake"],
    "iot_timeseries_demo.py": ["processes committed 240 batches", "exactly once each",
                               "GROUP BY over 6,000 raw readings: True", "OK", "Try this with Delta Lake"],
    "unified_stack_demo.py": ["trips, zone_revenue, zones changed at once", "hash chain verified: True",
                              "published as Iceberg", "OK", "Try this with Delta Lake"],
    "zero_copy_branching_demo.py": ["bytes written: 0", "merge refused: 1 conflict", "sku 7 = 555", "OK",
                                    "Try this with Delta Lake"],
}


def test_every_demo_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*_demo.py")) == sorted(EXPECTED)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("demo", sorted(EXPECTED))
def test_demo_runs_and_prints_its_checks(demo: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / demo), str(tmp_path / "lake")],
                          check=False, capture_output=True, text=True, timeout=80)
    assert done.returncode == 0, done.stderr[-2000:]
    for expected in EXPECTED[demo]:
        assert expected in done.stdout, f"{demo} did not print {expected!r}"


@pytest.mark.timeout(90)
def test_nightly_refresh_publishes_checked_nights_and_refuses_a_broken_feed(tmp_path: Path) -> None:
    script = EXAMPLES / "nightly_refresh" / "nightly.py"
    done = subprocess.run([sys.executable, str(script), "--parcels", "50000", "--lake", str(tmp_path / "lake")],
                          check=False, capture_output=True, text=True, timeout=80)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "night 0 (first load): published" in out and "78 tables, 50,000 master rows" in out
    assert "night 2 (truncated parcels feed): NOT published, main untouched: master would lose" in out
    assert "main still at the previous night's commit: True" in out and "branches: ['main']" in out
    for night in (1, 2, 3):
        assert f"night {night}: published" in out
    assert "diff_summary(last night, main) agrees with the report: True" in out
    growth = re.search(r"after 3 nights: [0-9.]+ MB, ([0-9.]+)x the first load", out)
    assert growth is not None
    grown = float(growth.group(1))
    assert 1.0 < grown < 4.0  # only changed rows are stored: far below a copy per night
    assert "OK" in out and "Try this with Delta Lake" in out
