"""The code location loads for each deployment and keeps secrets out of its config."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, build_schedule_context

from analytics_assets.definitions import build_definitions
from analytics_assets.defs.ingestion.resources import ExportSourceResource, NocoDBSourceResource
from analytics_assets.deployments import resources_for
from analytics_assets.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_local_definitions_hold_the_whole_graph():
    defs = build_definitions(Settings(deployment="local"))
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert keys == {
        AssetKey(name)
        for name in (
            "nocodb_raw_pages",
            "conversation_messages",
            "conversation_headers",
            "conversations",
            "processing_errors",
            "conversation_categories",
            "category_heads",
            "message_signals",
            "topic_discovery",
            "conversation_translations",
            "translation_errors",
            "conversation_languages",
            "conversation_analytics",
            "daily_report",
            "weekly_report",
            "monthly_report",
            "user_analytics",
            "user_return_predictions",
            "user_pseudonyms",
            "privacy_retention",
            "processing_stats",
            "mongo_mirror",
        )
    }
    assert defs.resolve_job_def("ingestion_job").partitions_def is not None
    assert isinstance(defs.resources["record_source"], ExportSourceResource)


def test_setting_nocodb_url_points_the_local_deployment_at_nocodb(monkeypatch):
    monkeypatch.setenv("NOCODB_URL", "http://nocodb.example:8080")
    monkeypatch.setenv("NOCODB_API_TOKEN", "token-value")
    monkeypatch.setenv("NOCODB_MESSAGES_TABLE", "chat_messages")
    monkeypatch.setenv("NOCODB_FIELD_MAP", '{"messages": {"content": "text"}}')
    monkeypatch.setenv("NOCODB_ROLE_NAMES", '{"Bot": "assistant"}')
    source = resources_for(Settings())["record_source"]
    assert isinstance(source, NocoDBSourceResource)
    assert source.source_schema.table("messages") == "chat_messages"
    assert source.source_schema.source_field("messages", "content") == "text"
    roles = source.source_schema.role_map()
    assert (roles["bot"], roles["human"], roles["function"]) == ("assistant", "user", "tool")


def test_prod_reads_secrets_from_env_vars_at_run_time(monkeypatch):
    monkeypatch.delenv("NOCODB_URL", raising=False)
    resources = resources_for(Settings(deployment="prod"))
    source = resources["record_source"]
    # EnvVars stay unresolved until a run starts, so no secret is stored in the definitions.
    assert "NOCODB_API_TOKEN" in repr(source.api_token)
    assert "ANALYTICS_LAKE_URL" in repr(resources["lake_io_manager"].base_url)


def test_prod_trains_heads_on_the_feedback_it_is_given_never_the_sample(monkeypatch):
    """In production the sample's feedback file was the default, a path inside the image
    that does not exist: train_heads_job failed with a missing file, not the setting."""
    from analytics_assets.deployments import categorization_for

    monkeypatch.delenv("NOCODB_FEEDBACK_TABLE", raising=False)
    monkeypatch.delenv("ANALYTICS_FEEDBACK_FILE", raising=False)
    assert categorization_for(Settings(deployment="prod")).feedback_file is None
    assert categorization_for(Settings()).feedback_file.endswith("category_feedback.json")
    helm = yaml.safe_load((ROOT / "deployments" / "k8s" / "values.yaml").read_text())
    env = helm["dagster-user-deployments"]["deployments"][0]["env"]
    assert env["NOCODB_FEEDBACK_TABLE"] == "category_feedback"


def test_unknown_deployment_is_refused(monkeypatch):
    monkeypatch.setenv("ANALYTICS_DEPLOYMENT", "staging")
    with pytest.raises(ValueError, match="ANALYTICS_DEPLOYMENT"):
        Settings()


def _tick(schedule_name: str, at: datetime):
    """The schedule's evaluation at `at`, on the project's definitions."""
    defs = build_definitions()
    schedule = defs.resolve_schedule_def(schedule_name)
    with DagsterInstance.ephemeral() as instance:
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
        )
        return schedule.evaluate_tick(context)


@pytest.mark.parametrize(
    ("schedule_name", "tick", "partition_key"),
    [
        # Tuesday 04:00: the week that closed on Sunday night, once Sunday is final (its
        # conversations past midnight are complete when Monday is built), not this week.
        ("weekly_report_job_schedule", datetime(2026, 12, 1, 4, tzinfo=UTC), "2026-11-23"),
        # The 2nd at 05:00: last month.
        ("monthly_report_job_schedule", datetime(2026, 12, 2, 5, tzinfo=UTC), "2026-11-01"),
        ("monthly_report_job_schedule", datetime(2027, 1, 2, 5, tzinfo=UTC), "2026-12-01"),
    ],
)
def test_period_schedules_build_the_period_that_just_closed(schedule_name, tick, partition_key):
    request = _tick(schedule_name, tick).run_requests[0]
    assert request.partition_key == partition_key


def test_the_first_week_and_month_hold_the_first_day():
    """The partitions start at 2026-01-01, a Thursday. The first week partition was
    2026-01-05 and January 1-4 were in no weekly report; with a start on the 15th, the first
    half of its month was in no monthly report."""
    from analytics_assets.defs.partitions import monthly_partitions, weekly_partitions

    assert weekly_partitions.get_first_partition_key() == "2025-12-29"
    assert monthly_partitions.get_first_partition_key() == "2026-01-01"
    request = _tick("weekly_report_job_schedule", datetime(2026, 1, 6, 4, tzinfo=UTC))
    assert request.run_requests[0].partition_key == "2025-12-29"


def test_a_period_that_began_before_the_first_partition_is_skipped_not_a_failed_tick():
    """The tick after the week of 2025-12-22, which holds no day of the deployment, asked
    for a partition that does not exist."""
    result = _tick("weekly_report_job_schedule", datetime(2025, 12, 30, 4, tzinfo=UTC))
    assert not result.run_requests
    assert "2025-12-22 is before the first weekly_report_job partition" in result.skip_message


def test_the_daily_schedule_builds_yesterday():
    request = _tick("ingestion_job_schedule", datetime(2026, 11, 30, 2, tzinfo=UTC)).run_requests[0]
    assert request.partition_key == "2026-11-29"


@pytest.mark.parametrize(
    ("deployment", "setting", "executor"),
    [
        # Locally a process per step costs seconds of imports for each of ~20 steps.
        ("local", "auto", "in_process"),
        # In production each step keeps its own process (isolation, memory per step).
        ("prod", "auto", "multiprocess"),
        ("local", "multiprocess", "multiprocess"),
        ("prod", "in_process", "in_process"),
        # Each step its own Kubernetes Job (deployments/k8s, test_k8s.py).
        ("prod", "k8s", "k8s"),
    ],
)
def test_each_deployment_chooses_how_a_run_executes_its_steps(deployment, setting, executor):
    settings = Settings(deployment=deployment, step_executor=setting)
    resources = {"record_source": ExportSourceResource(export_dir="unused")}
    if deployment == "prod":
        resources |= resources_for(Settings(deployment="local"))
    defs = build_definitions(settings, resources)
    assert defs.resolve_job_def("ingestion_job").executor_def.name == executor


def test_a_range_before_the_first_partition_is_refused_naming_the_setting():
    import pytest

    from analytics_assets.defs.partitions import PARTITIONS_START, range_tags

    with pytest.raises(ValueError, match="ANALYTICS_PARTITIONS_START"):
        range_tags("2020-03-01", "2020-03-05")
    assert range_tags(PARTITIONS_START[:10], "2026-11-05")


@pytest.mark.parametrize(
    "setting",
    [
        {"lease_ttl_s": -5},  # the heartbeat loop spun and leases expired at once
        {"lease_ttl_s": 0},
        {"nocodb_requests_per_second": -1},  # 0 is no pacing; below is nothing
        {"partitions_start": "2026-13-45"},  # failed later, at import, without the name
        {"partitions_start": "2026-01-01T00:00"},
        {"ui_url": "dagster.example.com"},  # links without a scheme
    ],
)
def test_a_setting_that_cannot_work_is_refused_when_read(setting):
    from pydantic import ValidationError

    from analytics_assets.settings import Settings

    with pytest.raises(ValidationError, match=next(iter(setting))):
        Settings(**setting)
