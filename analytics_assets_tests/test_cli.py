"""The command line against an operator's mistakes: wrong settings, ranges, keys and homes
are refused with a one-line reason, and nothing they hold is printed."""

from __future__ import annotations

import argparse
import json
from datetime import date

import pytest

from analytics_assets import cli
from analytics_assets.settings import Settings


def test_an_operators_own_dagster_home_keeps_its_instance_config(tmp_path, monkeypatch):
    """Every command that loads Dagster wrote the repository's dagster.yaml over the one in
    DAGSTER_HOME: a cron `sensor-tick` turned a Postgres instance into SQLite."""
    home = tmp_path / "srv-dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("storage:\n  postgres: {}\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    cli._dagster_home()
    assert (home / "dagster.yaml").read_text() == "storage:\n  postgres: {}\n"
    empty = tmp_path / "new-home"
    monkeypatch.setenv("DAGSTER_HOME", str(empty))
    cli._dagster_home()
    assert (empty / "dagster.yaml").read_text() == (cli.PROJECT_ROOT / "dagster.yaml").read_text()


@pytest.mark.parametrize(
    ("first", "last", "says"),
    [
        (date(2026, 11, 3), date(2026, 11, 1), r"ends \(2026-11-01\) before it starts"),
        (date(1900, 1, 1), date(2026, 11, 1), "before the first partition"),
        (date(2026, 11, 1), date(9999, 12, 31), "after the last complete day"),
    ],
)
def test_a_demo_range_that_plans_no_day_is_refused_at_once(first, last, says):
    """A reversed or future range planned no partition, and the run sat in its retries for
    minutes before failing on `min()` of nothing; 9999-12-31 overflowed."""
    with pytest.raises(cli.UsageError, match=says):
        cli.run_demo(argparse.Namespace(first_day=first, last_day=last))


def test_wrong_settings_are_named_by_field_without_their_values(monkeypatch, capsys):
    """Each passed `settings` and failed later (an infinite lease TTL, a negative budget, a
    policy `KEEP`, a misspelled table kept forever); pydantic's message quoted the value, a
    URL with its password."""
    wrong = {
        "ANALYTICS_LEASE_TTL_S": "inf",
        "ANALYTICS_LLM_BUDGET": "-1",
        "ANALYTICS_CATEGORIZATION_THRESHOLD": "5",
        "ANALYTICS_SYNC_OVERLAP_MINUTES": "-3",
        "PRIVACY_POLICIES": json.dumps({"conversation_messages": "KEEP"}),
        "PRIVACY_RETENTION_DAYS": json.dumps({"conversation_mesages": 30}),
        "ANALYTICS_UI_URL": "ftp://admin:hunter2@ui.example",
    }
    for name, value in wrong.items():
        monkeypatch.setenv(name, value)
        assert cli.main(["settings"]) == 2, name
        error = capsys.readouterr().err
        assert name in error and "hunter2" not in error, error
        monkeypatch.delenv(name)
    monkeypatch.setenv("PRIVACY_RETENTION_DAYS", json.dumps({"conversation_messages": 0}))
    assert cli.main(["settings"]) == 2
    assert "1 to 36,500" in capsys.readouterr().err


def test_settings_show_no_credentials_of_urls_without_a_scheme_or_in_folder_settings():
    settings = Settings(
        NOCODB_URL="admin:hunter2@nocodb.internal:8080",
        ANALYTICS_FEEDBACK_FILE="s3://AKIA:hunter2@bucket/feedback.jsonl?sig=hunter2",
        ANALYTICS_ALERT_SMTP_FROM="alerts@example.org",
    )
    shown = settings.public_json()
    assert "hunter2" not in shown and "AKIA" not in shown
    view = settings.public_view()
    assert view["nocodb_url"] == "nocodb.internal:8080"
    assert view["feedback_file"] == "s3://bucket/feedback.jsonl"
    assert view["alert_smtp_from"] == "alerts@example.org"
