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
    # Kept shorter than later days read back: a returning user counted new, no warning.
    monkeypatch.setenv("PRIVACY_RETENTION_DAYS", json.dumps({"conversation_analytics": 30}))
    assert cli.main(["settings"]) == 2
    assert "conversation_analytics needs at least 31 days" in capsys.readouterr().err
    monkeypatch.delenv("PRIVACY_RETENTION_DAYS")
    # The table whose policy is wrong, not the policy it was given (the error quoted it).
    monkeypatch.setenv("PRIVACY_POLICIES", json.dumps({"conversation_messages": "hunter2"}))
    assert cli.main(["settings"]) == 2
    error = capsys.readouterr().err
    assert "conversation_messages" in error and "hunter2" not in error, error


def test_settings_show_no_credentials_of_urls_without_a_scheme_or_in_folder_settings():
    settings = Settings(
        ANALYTICS_LAKE_URL="admin:hunter2@lake.internal:9000/lake",
        ANALYTICS_FEEDBACK_FILE="s3://AKIA:hunter2@bucket/feedback.jsonl?sig=hunter2",
        ANALYTICS_ALERT_SMTP_FROM="alerts@example.org",
    )
    shown = settings.public_json()
    assert "hunter2" not in shown and "AKIA" not in shown
    view = settings.public_view()
    assert view["lake_url"] == "lake.internal:9000/lake"
    assert view["feedback_file"] == "s3://bucket/feedback.jsonl"
    assert view["alert_smtp_from"] == "alerts@example.org"


def test_urls_without_a_scheme_are_refused_when_the_settings_are_read(monkeypatch, capsys):
    """`NOCODB_URL=nocodb:8080` passed, and every request of the run failed as a transport
    error, retried eight times before the run failed."""
    for name in ("NOCODB_URL", "ANALYTICS_LLM_URL", "ANALYTICS_ALERT_WEBHOOK_URL"):
        monkeypatch.setenv(name, "admin:hunter2@service.internal:8080")
        assert cli.main(["settings"]) == 2, name
        error = capsys.readouterr().err
        assert name in error and "http://" in error and "hunter2" not in error, error
        monkeypatch.delenv(name)
    monkeypatch.setenv("NOCODB_URL", "")  # unset: the local sample, as before
    assert cli.main(["settings"]) == 0


def test_a_relative_local_folder_is_made_absolute_once(tmp_path, monkeypatch):
    """A relative ANALYTICS_LOCAL_DIR named another folder in every process that started
    somewhere else (a code server, a run worker)."""
    monkeypatch.chdir(tmp_path)
    assert Settings(ANALYTICS_LOCAL_DIR="state/here").local_dir == tmp_path / "state" / "here"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["generate-sample", "--days", "0"], "--days: must be at least 1"),
        (["generate-sample", "--conversations", "-5"], "--conversations: must be at least 1"),
        (["seed-nocodb", "--url", "http://x", "--days", "0"], "--days: must be at least 1"),
        (["generate-sample", "--conversations", "2"], "needs at least 5 conversations"),
        (["generate-sample", "--days", "abc"], "--days: must be a whole number, got 'abc'"),
        (["categorize", "no-such-file.jsonl"], "no-such-file.jsonl is not a file"),
        (["migrate", "--to", "-3"], "--to must be a version from 1 to"),
    ],
)
def test_impossible_arguments_are_refused_in_one_line(argv, says, tmp_path, monkeypatch, capsys):
    """Each printed a traceback (`randrange` of an empty range for a sample of 0 days); a
    migration to version -3 said "up to date"."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert says in error and "Traceback" not in error, error


def test_a_missing_backup_and_an_unreachable_database_are_one_line(
    tmp_path, monkeypatch, capsys, mongo_server
):
    """Both printed pymongo's or the backup's traceback; the unreachable server's message
    names the host and not the URI's password."""
    monkeypatch.setenv("ANALYTICS_LOCAL_DIR", str(tmp_path / "local"))
    # The session's server: without a MONGODB_URI the command started an embedded one of
    # its own, which outlived the test.
    monkeypatch.setenv("MONGODB_URI", mongo_server)
    monkeypatch.setenv("MONGODB_DATABASE", "t_missing_backup")
    assert cli.main(["restore", str(tmp_path / "no-backup")]) == 1
    assert "holds no backup" in capsys.readouterr().err
    unreachable = "mongodb://admin:hunter2@127.0.0.1:1/x?serverSelectionTimeoutMS=300"
    monkeypatch.setenv("MONGODB_URI", unreachable)
    assert cli.main(["migrate", "--status"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("analytics-assets: error: cannot reach MongoDB: 127.0.0.1:1"), error
    assert "hunter2" not in error and "\n" not in error.strip()


def test_a_migration_does_not_go_back(mongo_server, monkeypatch, capsys):
    monkeypatch.setenv("MONGODB_URI", mongo_server)
    monkeypatch.setenv("MONGODB_DATABASE", "t_migration_does_not_go_back")
    assert cli.main(["migrate"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["migrate", "--to", "1"])
    assert "migrations do not go back" in capsys.readouterr().err


def test_a_sample_needs_a_day_a_conversation_and_a_user():
    from analytics_assets.sources.generator import SampleSpec

    for wrong in ({"days": 0}, {"conversations": -1}, {"users": 0}, {"conversations": 4}):
        with pytest.raises(ValueError, match="at least"):
            SampleSpec(**wrong)
    assert SampleSpec(conversations=1, with_bad_records=False).conversations == 1
