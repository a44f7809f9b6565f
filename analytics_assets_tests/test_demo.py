"""`analytics-assets demo` on a fresh instance: progress per step, no warning, a fresh report;
and the freshness rule behind it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime

import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from analytics_assets.analytics.freshness import fresh_until, report_day_due
from analytics_assets.defs.run_progress import progress_line
from analytics_assets_tests.conftest import stop_embedded_mongo
from analytics_assets_tests.nocodb_server import free_port

SAMPLE_END = date(2026, 11, 14)


@pytest.mark.parametrize(
    ("now", "data_end", "due"),
    [
        # A live source: yesterday's report from 06:00 UTC on, the day before's until then.
        (datetime(2026, 12, 4, 10, 0, tzinfo=UTC), None, date(2026, 12, 3)),
        (datetime(2026, 12, 4, 5, 59, tzinfo=UTC), None, date(2026, 12, 2)),
        # An export ends: no report is due after its last day...
        (datetime(2026, 12, 4, 10, 0, tzinfo=UTC), SAMPLE_END, SAMPLE_END),
        # ...and an export that reaches today owes yesterday's, as a live source does.
        (datetime(2026, 12, 4, 10, 0, tzinfo=UTC), date(2026, 12, 4), date(2026, 12, 3)),
    ],
)
def test_the_report_due_is_yesterdays_or_the_last_day_of_data_that_ends(now, data_end, due):
    assert report_day_due(now, data_end) == due


def test_a_passed_freshness_check_holds_until_the_next_deadline():
    assert fresh_until(datetime(2026, 12, 4, 10, 0, tzinfo=UTC)) == datetime(
        2026, 12, 5, 6, 0, tzinfo=UTC
    )
    assert fresh_until(datetime(2026, 12, 4, 5, 0, tzinfo=UTC)) == datetime(
        2026, 12, 4, 6, 0, tzinfo=UTC
    )


def test_a_progress_line_shows_the_step_its_time_and_what_is_left():
    line = progress_line(5, 23, "conversations", "done", 0.4, 10.0)
    assert line.startswith("[ 5/23]   10.0s  conversations")
    assert "done in 0.4s" in line and line.endswith("ETA ~36s")
    assert progress_line(23, 23, "daily_report", "done", None, 30.0).endswith("last step")


def test_the_demo_shows_progress_logs_no_warning_and_its_report_is_fresh(tmp_path, monkeypatch):
    local, home, port = tmp_path / "local", tmp_path / "dagster_home", free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ANALYTICS_LOCAL_DIR": str(local),
        "ANALYTICS_EMBEDDED_MONGO_PORT": str(port),
    }
    try:
        demo = subprocess.run(
            [sys.executable, "-m", "analytics_assets.cli", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        stop_embedded_mongo(local / "mongo")
    assert demo.returncode == 0, demo.stderr[-3000:]
    lines = demo.stdout.splitlines()
    assert lines[0] == "Loading the definitions ..."
    steps = [line for line in lines if line.startswith("[")]
    # One line per step of the 14-day run (then the weekly report's), the last one closing.
    closing = [line for line in steps if "last step" in line]
    assert closing and all(re.match(r"\[\s*(\d+)/\1\]", line) for line in closing)
    assert any("daily_report " in line and "done in" in line for line in steps)
    assert all("FAILED" not in line and "skipped" not in line for line in steps)
    assert "WARNING" not in demo.stderr and "Couldn't load partition" not in demo.stderr
    assert "WARNING" not in demo.stdout

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        [latest] = instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(AssetKey("daily_report"), "freshness_check"), limit=1
        )
        evaluation = latest.event.dagster_event.event_specific_data
    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["expected_partition"].value == SAMPLE_END.isoformat()
