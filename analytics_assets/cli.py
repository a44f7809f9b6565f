"""Command line: `analytics-assets demo | generate-sample | seed-nocodb | erase-user | ...`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from analytics_assets.deployments import PROJECT_ROOT, local_dir
from analytics_assets.sources.generator import SampleSpec, ensure_sample_export, generate_sample
from analytics_assets.storage.placement import LAKE_AND_MONGO_IO_MANAGER, LAKE_IO_MANAGER


def _dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to .local/dagster_home with the repo's dagster.yaml in it."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(local_dir() / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    instance_config = home / "dagster.yaml"
    template = PROJECT_ROOT / "dagster.yaml"
    # The repo's dagster.yaml is the source of truth for the local instance.
    if template.exists() and (
        not instance_config.exists() or instance_config.read_text() != template.read_text()
    ):
        instance_config.write_text(template.read_text())
    return home


def _closed_weeks(first_day: date, last_day: date) -> list[date]:
    """Mondays of the ISO weeks that lie wholly inside the range."""
    monday = first_day + timedelta(days=(7 - first_day.weekday()) % 7)
    weeks = []
    while monday + timedelta(days=6) <= last_day:
        weeks.append(monday)
        monday += timedelta(days=7)
    return weeks


def run_demo(first_day: date, last_day: date) -> int:
    """Materializes the whole asset graph for a range of days as one run, then summarizes."""
    _dagster_home()
    from dagster import DagsterInstance
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from analytics_assets.definitions import defs
    from analytics_assets.summary import lake_summary

    job = defs.resolve_job_def("ingestion_job")
    started = time.perf_counter()
    with DagsterInstance.get() as instance:
        # The model tier's steps share one GPU.
        instance.event_log_storage.set_concurrency_slots("gpu", 1)
        result = job.execute_in_process(
            instance=instance,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: first_day.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: last_day.isoformat(),
            },
            raise_on_error=False,
            # Step events are in the UI; the terminal gets warnings and the summary.
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        success = result.success
        # Each ISO week of the range that has closed gets its report, from its days.
        weeks = _closed_weeks(first_day, last_day)
        for week in weeks:
            weekly = defs.resolve_job_def("weekly_report_job").execute_in_process(
                instance=instance,
                partition_key=week.isoformat(),
                raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
            success = success and weekly.success
    seconds = time.perf_counter() - started
    if weeks:
        print(f"Weekly reports: {', '.join(week.isoformat() for week in weeks)}")
    lake = defs.resources[LAKE_IO_MANAGER].lake()
    db = defs.resources[LAKE_AND_MONGO_IO_MANAGER].mongo.db()
    print(lake_summary(lake, first_day, last_day, run_id=result.run_id, seconds=seconds, db=db))
    return 0 if success else 1


def run_compare(by: str, a: str, b: str, first_day: date, last_day: date) -> int:
    import polars as pl

    from analytics_assets.analytics.comparison import SIGNIFICANCE, compare
    from analytics_assets.defs.lake.io_manager import ParquetLakeIOManager
    from analytics_assets.deployments import current_deployment, lake_settings_for

    lake = ParquetLakeIOManager(**lake_settings_for(current_deployment())).lake()
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    analytics = lake.scan_days("conversation_analytics", days).collect()
    if analytics.height == 0:
        print(f"No conversation_analytics in the lake for {first_day}..{last_day}.")
        return 1
    result = compare(analytics, by, a, b)
    with pl.Config(tbl_rows=20, tbl_width_chars=140, float_precision=4):
        print(result)
    real = result.filter(pl.col("significant"))["metric"].to_list()
    print(f"Significant at p < {SIGNIFICANCE}: {', '.join(real) if real else 'none'}")
    return 0


def run_conversation(conversation_id: str, lang: str | None) -> int:
    import json

    from analytics_assets.defs.lake.io_manager import ParquetLakeIOManager
    from analytics_assets.deployments import current_deployment, lake_settings_for
    from analytics_assets.translation.retrieval import get_conversation

    lake = ParquetLakeIOManager(**lake_settings_for(current_deployment())).lake()
    view = get_conversation(lake, conversation_id, lang)
    if view is None:
        print(f"No conversation {conversation_id!r} in the lake.")
        return 1
    print(json.dumps(view, ensure_ascii=False, indent=2))
    return 0


def run_api_key(action: str, scopes: list[str], rate: int, key_id: str | None) -> int:
    from analytics_assets.api import keys
    from analytics_assets.deployments import current_deployment, mongo_for

    db = mongo_for(current_deployment()).db()
    if action == "create":
        key = keys.create_key(db, scopes or list(keys.SCOPES), rate_per_minute=rate)
        print(f"{key}\n(shown once: only its hash is stored)")
    elif action == "revoke":
        if not key_id or not keys.revoke(db, key_id):
            print(f"No key {key_id!r}.")
            return 1
        print(f"revoked {key_id}")
    else:
        for record in keys.list_keys(db):
            state = f"revoked {record['revoked_at']}" if record.get("revoked_at") else "active"
            scopes = ",".join(record["scopes"])
            rate = f"{record['rate_per_minute']}/min"
            print(f"{record['_id']}  {scopes}  {rate}  created {record['created_at']}  {state}")
    return 0


def write_api_spec(path: Path) -> None:
    import json

    from analytics_assets.api.app import create_app

    spec = create_app(lambda: None).openapi()
    path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")


def run_migrate(status_only: bool, target: int | None, validation_action: str) -> int:
    from analytics_assets.deployments import current_deployment, mongo_for
    from analytics_assets.storage import migrations

    resource = mongo_for(current_deployment()).model_copy(update={"auto_migrate": False})
    db = resource.db()
    if not status_only:
        applied = migrations.migrate(db, validation_action=validation_action, target=target)
        print(f"applied: {applied or 'nothing (up to date)'}")
    print(f"database {db.name!r} at version {migrations.current_version(db)}:")
    print("\n".join(migrations.status_lines(db)))
    return 0


def run_erase_user(user_id: str, requested_by: str, reason: str, rebuild: bool) -> int:
    """Erases one user on the current deployment; prints the audit record (no user data)."""
    _dagster_home()
    import json

    from dagster import DagsterInstance

    from analytics_assets.definitions import defs
    from analytics_assets.defs.privacy.jobs import run_erasure
    from analytics_assets.deployments import current_deployment, privacy_for

    pseudonym = privacy_for(current_deployment()).pseudonym(user_id)
    with DagsterInstance.get() as instance:
        audit = run_erasure(
            defs,
            instance,
            pseudonym,
            requested_by=requested_by,
            reason=reason,
            rebuild_reports=rebuild,
        )
    print(json.dumps(audit, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="analytics-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="Materialize every asset for the sample's days on the embedded default."
    )
    demo.add_argument("--first-day", type=date.fromisoformat)
    demo.add_argument("--last-day", type=date.fromisoformat)

    sample = commands.add_parser("generate-sample", help="Write the sample NocoDB export.")
    sample.add_argument("--out", type=Path, default=None)
    sample.add_argument("--conversations", type=int, default=SampleSpec.conversations)
    sample.add_argument("--days", type=int, default=SampleSpec.days)

    seed = commands.add_parser(
        "seed-nocodb", help="Create the tables in a NocoDB base and load the sample into them."
    )
    seed.add_argument("--url", default=os.environ.get("NOCODB_URL"))
    seed.add_argument("--base-title", default="analytics_sample")
    seed.add_argument("--conversations", type=int, default=SampleSpec.conversations)
    seed.add_argument("--days", type=int, default=SampleSpec.days)

    for name, description in (
        ("categorize", "Label every text of a JSONL or CSV file (`id, text`)."),
        (
            "evaluate",
            "Score the categorization on a labelled JSONL or CSV file (`id, text` plus any of "
            "topic, intent, sentiment, language).",
        ),
    ):
        command = commands.add_parser(name, help=description)
        command.add_argument("input", type=Path)
        command.add_argument("--tier", choices=["rules", "model"], default="rules")
        command.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
        command.add_argument("--threshold", type=float, default=0.5)
        if name == "categorize":
            command.add_argument("--output", type=Path, help="JSONL out (default: stdout)")

    compare_command = commands.add_parser(
        "compare",
        help="A/B: two models or channels over a window of days, with significance.",
    )
    compare_command.add_argument("--by", choices=["model", "channel"], default="model")
    compare_command.add_argument("a")
    compare_command.add_argument("b")
    compare_command.add_argument("--from", dest="first_day", type=date.fromisoformat, required=True)
    compare_command.add_argument("--to", dest="last_day", type=date.fromisoformat, required=True)

    migrate_command = commands.add_parser(
        "migrate", help="Apply the MongoDB schema migrations, or show where the database stands."
    )
    migrate_command.add_argument("--status", action="store_true", help="Show, change nothing.")
    migrate_command.add_argument("--to", type=int, default=None, help="Stop at this version.")
    migrate_command.add_argument("--validation-action", choices=["error", "warn"], default="error")

    conversation_command = commands.add_parser(
        "conversation",
        help="Print a conversation, each message in --lang where a translation exists.",
    )
    conversation_command.add_argument("conversation_id")
    conversation_command.add_argument("--lang", default=None, help="e.g. en")

    api_command = commands.add_parser("api", help="Serve the read API (uvicorn).")
    api_command.add_argument("--host", default="127.0.0.1")
    api_command.add_argument("--port", type=int, default=8000)
    key_command = commands.add_parser("api-key", help="Create, list or revoke API keys.")
    key_command.add_argument("action", choices=["create", "list", "revoke"])
    key_command.add_argument("key_id", nargs="?", help="The key id to revoke.")
    key_command.add_argument(
        "--scope",
        action="append",
        default=[],
        dest="scopes",
        help="conversations:read, analytics:read, users:read (repeat; default all)",
    )
    key_command.add_argument("--rate-per-minute", type=int, default=600)
    spec_command = commands.add_parser("api-spec", help="Write the API's OpenAPI spec.")
    spec_command.add_argument("--out", type=Path, default=Path("docs/openapi.json"))

    pseudonym_command = commands.add_parser(
        "pseudonym", help="Print the pseudonym a user id has in the analytics tables."
    )
    pseudonym_command.add_argument("user_id")
    erase_command = commands.add_parser(
        "erase-user",
        help="Right to erasure: remove a user's data everywhere, rebuild the reports they "
        "counted in, and write an audit record.",
    )
    erase_command.add_argument("user_id", help="The source's user id (never stored).")
    erase_command.add_argument("--requested-by", required=True)
    erase_command.add_argument("--reason", default="", help="e.g. the ticket number")
    erase_command.add_argument(
        "--no-rebuild",
        action="store_true",
        help="Leave the report rebuild to erasure_report_rebuild_sensor (the daemon).",
    )

    args = parser.parse_args(argv)
    if args.command == "demo":
        spec = SampleSpec()
        return run_demo(args.first_day or spec.start, args.last_day or spec.end)
    if args.command == "generate-sample":
        spec = SampleSpec(conversations=args.conversations, days=args.days)
        folder = ensure_sample_export(args.out or local_dir() / "sample_export", spec)
        print(f"sample export in {folder}")
        return 0
    if args.command in ("categorize", "evaluate"):
        from analytics_assets.categorization.cli import run_categorize, run_evaluate

        runner = run_categorize if args.command == "categorize" else run_evaluate
        return runner(args)
    if args.command == "compare":
        return run_compare(args.by, args.a, args.b, args.first_day, args.last_day)
    if args.command == "api":
        import uvicorn

        uvicorn.run("analytics_assets.api.main:app", host=args.host, port=args.port)
        return 0
    if args.command == "api-key":
        return run_api_key(args.action, args.scopes, args.rate_per_minute, args.key_id)
    if args.command == "api-spec":
        write_api_spec(args.out)
        print(f"wrote {args.out}")
        return 0
    if args.command == "conversation":
        return run_conversation(args.conversation_id, args.lang)
    if args.command == "pseudonym":
        from analytics_assets.deployments import current_deployment, privacy_for

        print(privacy_for(current_deployment()).pseudonym(args.user_id))
        return 0
    if args.command == "erase-user":
        return run_erase_user(args.user_id, args.requested_by, args.reason, not args.no_rebuild)
    if args.command == "migrate":
        return run_migrate(args.status, args.to, args.validation_action)
    if args.command == "seed-nocodb":
        from analytics_assets.nocodb.client import NocoDBClient
        from analytics_assets.sources.seed import seed_nocodb

        token = os.environ.get("NOCODB_API_TOKEN", "")
        if not args.url:
            parser.error("--url or NOCODB_URL is required")
        data = generate_sample(SampleSpec(conversations=args.conversations, days=args.days))
        with NocoDBClient(args.url, token, requests_per_second=0) as client:
            seeded = seed_nocodb(client, data, base_title=args.base_title)
        print(f"seeded base {seeded.base_id}: tables {seeded.table_ids}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
