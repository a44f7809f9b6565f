"""Command line: `analytics-assets demo | generate-sample | seed-nocodb | erase-user | ...`."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from analytics_assets import tables
from analytics_assets.settings import PROJECT_ROOT, get_settings
from analytics_assets.sources.generator import SampleSpec, ensure_sample_export, generate_sample
from analytics_assets.terminal import terminal_safe

# Commands import their heavy dependencies (dagster, torch, the defs) inside their handler,
# so that `--help` and the light commands stay fast.

Subcommands = argparse._SubParsersAction
Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A handler's complaint about its arguments; `main` reports it as argparse would."""


def _dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to .local/dagster_home with the repo's dagster.yaml in it."""
    default = get_settings().local_path("dagster_home")
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(default)))
    home.mkdir(parents=True, exist_ok=True)
    instance_config = home / "dagster.yaml"
    template = PROJECT_ROOT / "dagster.yaml"
    # The repo's dagster.yaml is the source of truth for the local instance, and only for
    # it: an operator's own home keeps its config (a cron `sensor-tick` with
    # DAGSTER_HOME=/srv/dagster turned a Postgres instance into SQLite). There it is
    # written only where none exists.
    local = home.resolve() == Path(default).resolve()
    if template.exists() and (
        not instance_config.exists()
        or (local and instance_config.read_text() != template.read_text())
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


# Step events are in the UI; the terminal gets warnings and the summary.
_QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _partition_range(first_day: date, last_day: date) -> tuple[date, date]:
    """A range of daily partitions, or a UsageError saying why not: a reversed range or one
    after the last partition planned no day, and the run sat in its retries for minutes
    before it failed on `min()` of nothing."""
    from datetime import UTC, datetime

    first_partition = date.fromisoformat(str(get_settings().partitions_start)[:10])
    last_partition = datetime.now(UTC).date() - timedelta(days=1)  # the last complete day
    if first_day > last_day:
        raise UsageError(f"the range ends ({last_day}) before it starts ({first_day})")
    if first_day < first_partition:
        raise UsageError(
            f"{first_day} is before the first partition, {first_partition} "
            "(ANALYTICS_PARTITIONS_START)"
        )
    if last_day > last_partition:
        raise UsageError(f"{last_day} is after the last complete day, {last_partition}")
    return first_day, last_day


def run_demo(args: argparse.Namespace) -> int:
    """Materializes the whole asset graph for a range of days as one run, then summarizes."""
    spec = SampleSpec()
    first_day, last_day = _partition_range(args.first_day or spec.start, args.last_day or spec.end)
    _dagster_home()
    # Loading Dagster and the definitions takes seconds: say so before it starts.
    print("Loading the definitions ...", flush=True)
    from dagster import DagsterInstance

    from analytics_assets.definitions import defs
    from analytics_assets.defs.partitions import range_tags
    from analytics_assets.defs.run_progress import StepProgress
    from analytics_assets.defs.storage.leases import release_after_run
    from analytics_assets.defs.storage.placement import mirrors_of
    from analytics_assets.summary import lake_summary

    job = defs.resolve_job_def("ingestion_job")
    weekly_job = defs.resolve_job_def("weekly_report_job")
    started = time.perf_counter()
    with DagsterInstance.get() as instance:
        # The model tier's steps share one GPU.
        instance.event_log_storage.set_concurrency_slots("gpu", 1)
        days = (last_day - first_day).days + 1
        print(
            f"Materializing the asset graph for {first_day} .. {last_day} ({days} days) as one "
            f"run of {len(job.graph.nodes)} steps:",
            flush=True,
        )
        # The run id is chosen here so that the progress lines can follow the run's events.
        run_id = str(uuid.uuid4())
        with StepProgress(instance, run_id, len(job.graph.nodes)):
            result = job.execute_in_process(
                instance=instance,
                run_id=run_id,
                tags=range_tags(first_day, last_day),
                raise_on_error=False,
                run_config=_QUIET_RUN_CONFIG,
            )
        # No daemon here to run the release sensors.
        release_after_run(defs, run_id)
        success = result.success
        # Each ISO week of the range that has closed gets its report, from its days.
        weeks = _closed_weeks(first_day, last_day)
        for week in weeks:
            print(f"Weekly report {week.isoformat()}:", flush=True)
            weekly_run_id = str(uuid.uuid4())
            with StepProgress(instance, weekly_run_id, len(weekly_job.graph.nodes)):
                weekly = weekly_job.execute_in_process(
                    instance=instance,
                    run_id=weekly_run_id,
                    partition_key=week.isoformat(),
                    raise_on_error=False,
                    run_config=_QUIET_RUN_CONFIG,
                )
            success = success and weekly.success
    seconds = time.perf_counter() - started
    if weeks:
        print(f"Weekly reports: {', '.join(week.isoformat() for week in weeks)}")
    lake, db = defs.resources["lake"].lake(), defs.resources["mongo"].db()
    collections = [mirror.collection for mirror in mirrors_of(defs).values()]
    summary = lake_summary(
        lake, first_day, last_day, run_id=result.run_id, seconds=seconds, db=db,
        collections=collections,
    )  # fmt: skip
    print(terminal_safe(summary))
    return 0 if success else 1


def _sample_spec(args: argparse.Namespace) -> SampleSpec:
    try:
        return SampleSpec(conversations=args.conversations, days=args.days)
    except ValueError as error:
        raise UsageError(str(error)) from None


def run_generate_sample(args: argparse.Namespace) -> int:
    spec = _sample_spec(args)
    folder = ensure_sample_export(args.out or get_settings().sample_export_dir, spec)
    print(f"sample export in {folder}")
    return 0


def run_seed_nocodb(args: argparse.Namespace) -> int:
    from analytics_assets.nocodb.client import NocoDBClient
    from analytics_assets.sources.seed import seed_nocodb

    secret = get_settings().nocodb_api_token
    token = secret.get_secret_value() if secret else ""
    if not args.url:
        raise UsageError("--url or NOCODB_URL is required")
    data = generate_sample(_sample_spec(args))
    with NocoDBClient(args.url, token, requests_per_second=0) as client:
        seeded = seed_nocodb(client, data, base_title=args.base_title)
    print(f"seeded base {seeded.base_id}: tables {seeded.table_ids}")
    return 0


def run_categorization(args: argparse.Namespace) -> int:
    """`categorize` and `evaluate`, which live with the categorization package."""
    from analytics_assets.categorization.cli import run_categorize, run_evaluate

    if not args.input.is_file():
        raise UsageError(f"{args.input} is not a file")

    if args.tier in ("model", "llm"):
        # The heads the pipeline runs: the adopted correction heads in the deployment's
        # heads folder (local or S3). Without them, `evaluate --tier model` scored another
        # model tier than the one that labels the conversations.
        from analytics_assets.deployments import categorization_for

        categorization = categorization_for(get_settings())
        args.heads_dir = categorization.heads_dir
        args.heads_storage_options = categorization.heads_storage_options()
    runner = run_categorize if args.command == "categorize" else run_evaluate
    return runner(args)


def run_promote_topic(args: argparse.Namespace) -> int:
    """Copy the taxonomy with a discovered cluster as a new topic (categorization/promote)."""
    import polars as pl

    from analytics_assets.categorization.promote import promote, taxonomy_document, write_taxonomy
    from analytics_assets.categorization.taxonomy import canonical_label
    from analytics_assets.storage.lake import lake_from_settings

    settings = get_settings()
    clusters, _ = lake_from_settings(settings).read_days(tables.TOPIC_DISCOVERY, [args.day])
    chosen = None if clusters is None else clusters.filter(pl.col("cluster") == args.cluster)
    if chosen is None or chosen.height == 0:
        print(f"No cluster {args.cluster} in topic_discovery on {args.day}.")
        return 1
    row = chosen.row(0, named=True)
    name = args.name or row.get("name") or f"cluster_{args.cluster}"
    try:
        document = promote(
            taxonomy_document(settings.taxonomy),
            name=name,
            terms=list(row["terms"]),
            examples=list(row["examples"]),
            day=args.day,
        )
    except ValueError as error:
        print(error)
        return 1
    output = args.output or settings.local_path("taxonomy.yaml")
    write_taxonomy(document, output)
    print(f"topic {name!r} ({row['size']} conversations on {args.day}) added: {output}")
    if not document["topics"][canonical_label(name)]["keywords"]:
        print("Its terms are all common words, so it has no keywords: the rules tier will not")
        print("label it (the model tier reads its examples). Add keywords to the file.")
    print(f"version {document['version']}. Next: ANALYTICS_TAXONOMY={output}, then backfill")
    print("conversation_categories over the days to re-label.")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    import polars as pl

    from analytics_assets.analytics.comparison import SIGNIFICANCE, compare
    from analytics_assets.storage.lake import lake_from_settings

    first_day, last_day = args.first_day, args.last_day
    if first_day > last_day:
        raise UsageError(f"--to ({last_day}) is before --from ({first_day})")
    lake = lake_from_settings(get_settings())
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    analytics = lake.scan_days(tables.CONVERSATION_ANALYTICS, days).collect()
    if analytics.height == 0:
        print(f"No conversation_analytics in the lake for {first_day}..{last_day}.")
        return 1
    result = compare(analytics, args.by, args.a, args.b)
    with pl.Config(tbl_rows=20, tbl_width_chars=140, float_precision=4):
        print(result)
    real = result.filter(pl.col("significant"))["metric"].to_list()
    print(
        f"Significant at p < {SIGNIFICANCE}, Holm-corrected over the {result.height} metrics: "
        f"{', '.join(real) if real else 'none'}"
    )
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    import dataclasses

    from analytics_assets.storage import migrations
    from analytics_assets.storage.connection import MongoConnection

    # Migrating is this command's whole job; it must not happen implicitly on connecting.
    latest = migrations.MIGRATIONS[-1].version
    if args.to is not None and not 1 <= args.to <= latest:
        raise UsageError(f"--to must be a version from 1 to {latest}, got {args.to}")
    connection = MongoConnection.from_settings(get_settings())
    db = dataclasses.replace(connection, auto_migrate=False).db()
    current = migrations.current_version(db)
    if args.to is not None and args.to < current and not args.status:
        # Migrations only go forward: "nothing (up to date)" hid that the version asked for
        # is behind the database's.
        raise UsageError(f"the database is at version {current}; migrations do not go back")
    if not args.status:
        applied = migrations.migrate(db, validation_action=args.validation_action, target=args.to)
        print(f"applied: {applied or 'nothing (up to date)'}")
    print(f"database {db.name!r} at version {migrations.current_version(db)}:")
    print("\n".join(migrations.status_lines(db)))
    return 0


def _backup_location(url: str):
    """A backup folder: local, or `s3://` with the deployment's S3 endpoint and region."""
    from upath import UPath

    from analytics_assets.storage.lake import s3_storage_options

    if not url.startswith("s3://"):
        return UPath(url)
    settings = get_settings()
    return UPath(
        url,
        **s3_storage_options(
            endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region
        ),
    )


def _stores_without_migrating():
    """The deployment's lake and database; connecting does not migrate, so a restore finds
    a new database empty (the backup brings its own migration state)."""
    import dataclasses

    from analytics_assets.storage.connection import MongoConnection
    from analytics_assets.storage.lake import lake_from_settings

    settings = get_settings()
    connection = MongoConnection.from_settings(settings)
    return lake_from_settings(settings), dataclasses.replace(connection, auto_migrate=False).db()


def run_backup(args: argparse.Namespace) -> int:
    """Backs up the lake and the database; prints the manifest's summary as JSON. Exits 1
    when the sources kept changing through the verification rounds."""
    import json

    from analytics_assets.storage.backup import BackupError, backup, summary

    lake, db = _stores_without_migrating()
    try:
        manifest = backup(lake, db, _backup_location(args.dest))
    except BackupError as error:
        raise UsageError(str(error)) from error
    print(json.dumps(summary(manifest), indent=2))
    return 0 if manifest["consistency"]["consistent"] else 1


def run_restore(args: argparse.Namespace) -> int:
    """Restores a backup into the deployment's (empty) stores and verifies them; prints the
    restored stores' summary as JSON, or each mismatch (exit 1)."""
    import json

    from analytics_assets.storage.backup import (
        RestoreRefusedError,
        RestoreVerificationError,
        restore,
        summary,
    )

    lake, db = _stores_without_migrating()
    try:
        restored = restore(_backup_location(args.src), lake, db, force=args.force)
    except RestoreRefusedError as error:
        print(f"analytics-assets: error: {error}", file=sys.stderr)
        return 1
    except RestoreVerificationError as error:
        print(f"analytics-assets: error: {error.stage}:", file=sys.stderr)
        for mismatch in error.mismatches:
            print(f"  {mismatch}", file=sys.stderr)
        return 1
    print(json.dumps(summary(restored), indent=2))
    return 0


def run_conversation(args: argparse.Namespace) -> int:
    import json

    from analytics_assets.storage.lake import lake_from_settings
    from analytics_assets.translation.retrieval import get_conversation

    lake = lake_from_settings(get_settings())
    view = get_conversation(lake, args.conversation_id, args.lang)
    if view is None:
        print(f"No conversation {args.conversation_id!r} in the lake.")
        return 1
    print(terminal_safe(json.dumps(view, ensure_ascii=False, indent=2)))
    return 0


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run("analytics_assets.api.main:app", host=args.host, port=args.port)
    return 0


def run_api_key(args: argparse.Namespace) -> int:
    from analytics_assets.api import keys
    from analytics_assets.storage.connection import MongoConnection

    db = MongoConnection.from_settings(get_settings()).db()
    if args.action == "create":
        # Without --scope, the read scopes: webhooks:manage makes the server post to any
        # host a caller names (docs/webhooks.md), so it is given only when asked for.
        try:
            key = keys.create_key(
                db, args.scopes or list(keys.READ_SCOPES), rate_per_minute=args.rate_per_minute
            )
        except ValueError as error:
            raise UsageError(str(error)) from None
        print(f"{key}\n(shown once: only its hash is stored)")
    elif args.action == "revoke":
        if not args.key_id or not keys.revoke(db, args.key_id):
            print(f"No key {args.key_id!r}.")
            return 1
        print(f"revoked {args.key_id}")
    else:
        for record in keys.list_keys(db):
            state = f"revoked {record['revoked_at']}" if record.get("revoked_at") else "active"
            scopes = ",".join(record["scopes"])
            rate = f"{record['rate_per_minute']}/min"
            print(f"{record['_id']}  {scopes}  {rate}  created {record['created_at']}  {state}")
    return 0


def _when(epoch: float | None) -> str:
    from datetime import UTC, datetime

    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _print_webhook_log(db, args: argparse.Namespace) -> None:
    from analytics_assets.webhooks import subscriptions

    if args.action == "deliveries":
        for delivery in subscriptions.deliveries(db, args.subscription_id, limit=args.limit):
            print(f"{delivery['event_id']}  {delivery['event_type']}  {delivery['status']}  "
                  f"next {_when(delivery.get('next_attempt_at'))}")  # fmt: skip
            for attempt in delivery["attempts"]:
                outcome = attempt["status_code"] or attempt["error"]
                print(f"  #{attempt['number']}  {_when(attempt['at'])}  {outcome}  "
                      f"{attempt['duration_ms']} ms")  # fmt: skip
        return
    for dead in subscriptions.dead_letters(db, args.subscription_id, limit=args.limit):
        outcome = dead["last_status_code"] or dead["last_error"]
        print(f"{dead['subscription_id']}  {dead['event_id']}  {dead['event_type']}  "
              f"{dead['attempts']} attempts, last {outcome}  "
              f"dead {_when(dead['dead_at'])}")  # fmt: skip


def run_webhooks(args: argparse.Namespace) -> int:
    """Webhook subscriptions: add (prints the secret once), list, remove, their deliveries
    and the dead letters; see docs/webhooks.md."""
    from analytics_assets.storage.connection import MongoConnection
    from analytics_assets.webhooks import subscriptions

    db = MongoConnection.from_settings(get_settings()).db()
    if args.action == "add":
        events = [event.strip() for event in args.events.split(",") if event.strip()]
        try:
            created = subscriptions.create(db, args.url, events, description=args.description)
        except subscriptions.InvalidSubscription as error:
            raise UsageError(str(error)) from None
        subscription = created.subscription
        print(f"{subscription['_id']}  {args.url}  {','.join(subscription['events'])}")
        print(f"secret: {created.secret}\n(shown once: give it to the receiver to verify "
              "signatures)")  # fmt: skip
    elif args.action == "list":
        from analytics_assets.settings import url_origin

        for sub in subscriptions.list_subscriptions(db):
            # Where it points: a receiver's URL may carry a token in its path or query.
            print(f"{sub['_id']}  {url_origin(sub['url'])}  {','.join(sub['events'])}  "
                  f"created {_when(sub['created_at'])}")  # fmt: skip
    elif args.action == "remove":
        if not subscriptions.remove(db, args.subscription_id):
            print(f"No webhook subscription {args.subscription_id!r}.")
            return 1
        print(f"removed {args.subscription_id}")
    else:
        _print_webhook_log(db, args)
    return 0


def write_api_spec(path: Path) -> None:
    import json

    from analytics_assets.api.app import create_app

    spec = create_app(lambda: None).openapi()
    path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")


def run_api_spec(args: argparse.Namespace) -> int:
    write_api_spec(args.out)
    print(f"wrote {args.out}")
    return 0


def run_graphql_schema(args: argparse.Namespace) -> int:
    from analytics_assets.api.graphql_api import write_schema

    write_schema(args.out)
    print(f"wrote {args.out}")
    return 0


def _user_id(typed: str) -> str:
    """The user id as ingestion stores it (stripped, control characters removed); a blank
    one is refused: `erase-user ""` erased every conversation whose id was blank, the
    conversations of different people."""
    from analytics_assets.transforms.records import cleaned_field

    user_id = cleaned_field(typed)
    if user_id is None:
        raise UsageError("the user id is blank")
    return user_id


def run_pseudonym(args: argparse.Namespace) -> int:
    from analytics_assets.privacy.keys import pseudonymizer

    print(pseudonymizer(get_settings())(_user_id(args.user_id)))
    return 0


def run_settings(args: argparse.Namespace) -> int:
    """The deployment's resolved settings; secrets only as <set>."""
    print(get_settings().public_json())
    return 0


def run_erase_user(args: argparse.Namespace) -> int:
    """Erases one user on the current deployment; prints the audit record (no user data)."""
    _dagster_home()
    import json

    from dagster import DagsterInstance

    from analytics_assets.definitions import defs
    from analytics_assets.defs.privacy.jobs import run_erasure, submit_erasure
    from analytics_assets.privacy.keys import pseudonymizer

    pseudonym = pseudonymizer(get_settings())(_user_id(args.user_id))
    if not args.requested_by.strip():
        raise UsageError("--requested-by is blank: the audit record names who asked")
    if args.request_only:
        request_id = submit_erasure(
            defs, pseudonym, requested_by=args.requested_by, reason=args.reason
        )
        print(f"erasure request {request_id}: launch erase_user_job with the run config")
        print(f'ops: {{erase_user_data: {{config: {{request_id: "{request_id}"}}}}}}')
        return 0
    with DagsterInstance.get() as instance:
        audit = run_erasure(
            defs,
            instance,
            pseudonym,
            requested_by=args.requested_by,
            reason=args.reason,
            rebuild_reports=not args.no_rebuild,
        )
    print(json.dumps(audit, indent=2, default=str))
    return 0


def run_sensor_tick(args: argparse.Namespace) -> int:
    """One tick of a sensor without the daemon (cron): see defs/sensor_ticks.py."""
    import json

    from dagster import DagsterInstance

    from analytics_assets.definitions import defs
    from analytics_assets.defs.sensor_ticks import cursor_path, tick

    home = _dagster_home()
    cursor_file = args.cursor_file or cursor_path(home, args.sensor)
    with DagsterInstance.get() as instance:
        outcome = tick(
            defs,
            instance,
            args.sensor,
            cursor_file,
            dry_run=args.dry_run,
            report=lambda line: print(json.dumps(line), flush=True),
        )
    return 1 if outcome.failed else 0


def run_predict_duration(args: argparse.Namespace) -> int:
    """The predicted duration of a run over --days days, from the instance's history."""
    from dagster import DagsterInstance

    from analytics_assets.defs.operations.history import predict_from_instance

    if args.days < 1:
        raise UsageError("--days must be at least 1")
    _dagster_home()
    with DagsterInstance.get() as instance:
        prediction, history = predict_from_instance(instance, args.job, args.days)
    print(f"{args.job}: {prediction.describe()}")
    if history:
        days = sorted({run.days for run in history})
        print(f"basis: {len(history)} successful run(s) of {args.job} over {days} day(s)")
    return 0 if prediction.seconds is not None else 1


def _at_least_one(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _add_command(
    commands: Subcommands, name: str, handler: Handler, help: str
) -> argparse.ArgumentParser:
    command = commands.add_parser(name, help=help)
    command.set_defaults(handler=handler)
    return command


def _add_sample_commands(commands: Subcommands) -> None:
    demo = _add_command(
        commands,
        "demo",
        run_demo,
        "Materialize every asset for the sample's days on the embedded default.",
    )
    demo.add_argument("--first-day", type=date.fromisoformat)
    demo.add_argument("--last-day", type=date.fromisoformat)

    sample = _add_command(
        commands, "generate-sample", run_generate_sample, "Write the sample NocoDB export."
    )
    sample.add_argument("--out", type=Path, default=None)
    sample.add_argument("--conversations", type=_at_least_one, default=SampleSpec.conversations)
    sample.add_argument("--days", type=_at_least_one, default=SampleSpec.days)

    seed = _add_command(
        commands,
        "seed-nocodb",
        run_seed_nocodb,
        "Create the tables in a NocoDB base and load the sample into them.",
    )
    seed.add_argument("--url", default=get_settings().nocodb_url)
    seed.add_argument("--base-title", default="analytics_sample")
    seed.add_argument("--conversations", type=_at_least_one, default=SampleSpec.conversations)
    seed.add_argument("--days", type=_at_least_one, default=SampleSpec.days)


def _add_categorization_commands(commands: Subcommands) -> None:
    for name, description in (
        ("categorize", "Label every text of a JSONL or CSV file (`id, text`)."),
        (
            "evaluate",
            "Score the categorization on a labelled JSONL or CSV file (`id, text` plus any of "
            "topic, intent, sentiment, language).",
        ),
    ):
        command = _add_command(commands, name, run_categorization, description)
        command.add_argument("input", type=Path)
        command.add_argument(
            "--tier",
            choices=["rules", "model", "llm"],
            default="rules",
            help="llm: the model tier, then the LLM tier (ANALYTICS_LLM_URL) on what is left",
        )
        command.add_argument(
            "--encoder",
            choices=["use-m3", "e5-small", "minilm"],
            help="The model tier's encoder (default: ANALYTICS_ENCODER, else use-m3).",
        )
        command.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
        command.add_argument(
            "--threshold",
            type=float,
            help="Below this confidence a label is the fallback "
            "(default: ANALYTICS_CATEGORIZATION_THRESHOLD, as the pipeline).",
        )
        command.add_argument(
            "--taxonomy",
            help="A shipped taxonomy (support, assistant) or a YAML file "
            "(default: ANALYTICS_TAXONOMY, else support).",
        )
        if name == "categorize":
            command.add_argument("--output", type=Path, help="JSONL out (default: stdout)")

    promote = _add_command(
        commands,
        "promote-topic",
        run_promote_topic,
        "Copy the taxonomy with a topic_discovery cluster as a new topic.",
    )
    promote.add_argument("day", type=date.fromisoformat)
    promote.add_argument("cluster", type=int)
    promote.add_argument("--name", help="The topic's name (default: the cluster's name).")
    promote.add_argument(
        "--output", type=Path, help="The new taxonomy YAML (default: .local/taxonomy.yaml)."
    )


def _add_lake_and_database_commands(commands: Subcommands) -> None:
    compare = _add_command(
        commands,
        "compare",
        run_compare,
        "A/B: two models or channels over a window of days, with significance.",
    )
    compare.add_argument("--by", choices=["model", "channel"], default="model")
    compare.add_argument("a")
    compare.add_argument("b")
    compare.add_argument("--from", dest="first_day", type=date.fromisoformat, required=True)
    compare.add_argument("--to", dest="last_day", type=date.fromisoformat, required=True)

    migrate = _add_command(
        commands,
        "migrate",
        run_migrate,
        "Apply the MongoDB schema migrations, or show where the database stands.",
    )
    migrate.add_argument("--status", action="store_true", help="Show, change nothing.")
    migrate.add_argument("--to", type=int, default=None, help="Stop at this version.")
    migrate.add_argument("--validation-action", choices=["error", "warn"], default="error")

    backup = _add_command(
        commands,
        "backup",
        run_backup,
        "Copy the lake and export MongoDB into DEST (a new folder or s3:// prefix) with a "
        "manifest of counts and checksums; see docs/disaster-recovery.md.",
    )
    backup.add_argument("dest")

    restore = _add_command(
        commands,
        "restore",
        run_restore,
        "Restore a backup into the deployment's empty lake and MongoDB, then verify both "
        "against its manifest (exit 1 on any mismatch).",
    )
    restore.add_argument("src")
    restore.add_argument(
        "--force",
        action="store_true",
        help="Restore into stores that hold data: the backup's collections are replaced, "
        "its lake files overwritten, everything else kept.",
    )

    conversation = _add_command(
        commands,
        "conversation",
        run_conversation,
        "Print a conversation, each message in --lang where a translation exists.",
    )
    conversation.add_argument("conversation_id")
    conversation.add_argument("--lang", default=None, help="e.g. en")


def _add_api_commands(commands: Subcommands) -> None:
    api = _add_command(commands, "api", run_api, "Serve the read API (uvicorn).")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)

    key = _add_command(commands, "api-key", run_api_key, "Create, list or revoke API keys.")
    key.add_argument("action", choices=["create", "list", "revoke"])
    key.add_argument("key_id", nargs="?", help="The key id to revoke.")
    key.add_argument(
        "--scope",
        action="append",
        default=[],
        dest="scopes",
        help="conversations:read, analytics:read, users:read, webhooks:manage "
        "(repeat; default the three read scopes, not webhooks:manage)",
    )
    key.add_argument("--rate-per-minute", type=int, default=600)

    spec = _add_command(commands, "api-spec", run_api_spec, "Write the API's OpenAPI spec.")
    spec.add_argument("--out", type=Path, default=Path("docs/openapi.json"))
    sdl = _add_command(
        commands, "graphql-schema", run_graphql_schema, "Write the GraphQL schema (SDL)."
    )
    sdl.add_argument("--out", type=Path, default=Path("docs/schema.graphql"))

    webhooks = _add_command(
        commands,
        "webhooks",
        run_webhooks,
        "Webhook subscriptions: add, list, remove, their delivery log and dead letters.",
    )
    actions = webhooks.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="Subscribe a URL; prints its signing secret once.")
    add.add_argument("url")
    add.add_argument(
        "--events",
        required=True,
        help="Comma-separated: report.ready, check.failed, erasure.done, sync.completed",
    )
    add.add_argument("--description", default="")
    actions.add_parser("list", help="The active subscriptions (never their secrets).")
    remove = actions.add_parser("remove", help="Remove a subscription; cancels its pending.")
    remove.add_argument("subscription_id")
    deliveries = actions.add_parser("deliveries", help="A subscription's delivery log.")
    deliveries.add_argument("subscription_id")
    deliveries.add_argument("--limit", type=int, default=50)
    dead = actions.add_parser("dead-letters", help="Deliveries that failed every attempt.")
    dead.add_argument("subscription_id", nargs="?", default=None)
    dead.add_argument("--limit", type=int, default=100)


def _add_deployment_commands(commands: Subcommands) -> None:
    _add_command(
        commands,
        "settings",
        run_settings,
        "Print the deployment's resolved settings (from the environment; secrets as <set>).",
    )
    sensor_tick = _add_command(
        commands,
        "sensor-tick",
        run_sensor_tick,
        "Evaluate a sensor once without the daemon (for cron) and run what it requests in "
        "this process; exits 1 if a run failed (the cursor then stays where it was).",
    )
    sensor_tick.add_argument(
        "sensor",
        choices=[
            "nocodb_changes_sensor",
            "nocodb_reconciliation_sensor",
            "conversations_across_midnight_sensor",
            "reports_after_a_day_changed_sensor",
        ],
    )
    sensor_tick.add_argument(
        "--cursor-file",
        type=Path,
        default=None,
        help="Default: $DAGSTER_HOME/sensor_cursors/<sensor>.json",
    )
    sensor_tick.add_argument(
        "--dry-run", action="store_true", help="Print what it would request; run nothing."
    )
    predict = _add_command(
        commands,
        "predict-duration",
        run_predict_duration,
        "Predict how long a run over a range of days takes, from the instance's past runs "
        "(exits 1 when there is no history to predict from).",
    )
    predict.add_argument("--days", type=int, required=True, help="Days in the range.")
    predict.add_argument("--job", default="ingestion_job", help="The job to predict for.")


def _add_privacy_commands(commands: Subcommands) -> None:
    pseudonym = _add_command(
        commands,
        "pseudonym",
        run_pseudonym,
        "Print the pseudonym a user id has in the analytics tables.",
    )
    pseudonym.add_argument("user_id")

    erase = _add_command(
        commands,
        "erase-user",
        run_erase_user,
        "Right to erasure: remove a user's data everywhere, rebuild the reports they "
        "counted in, and write an audit record.",
    )
    erase.add_argument("user_id", help="The source's user id (never stored).")
    erase.add_argument("--requested-by", required=True)
    erase.add_argument("--reason", default="", help="e.g. the ticket number")
    erase.add_argument(
        "--no-rebuild",
        action="store_true",
        help="Leave the report rebuild to erasure_report_rebuild_sensor (the daemon).",
    )
    erase.add_argument(
        "--request-only",
        action="store_true",
        help="Record the request and print its id, to launch erase_user_job from the UI "
        "(the run is given the id, never the user).",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="analytics-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    # Registration order is the order `--help` lists the commands in.
    _add_sample_commands(commands)
    _add_categorization_commands(commands)
    _add_lake_and_database_commands(commands)
    _add_api_commands(commands)
    _add_privacy_commands(commands)
    _add_deployment_commands(commands)
    return parser


def _settings_error(error: Exception) -> str | None:
    """What is wrong with the settings, by field, without the values (pydantic quotes the
    value it refused: a URL with its password); None for any other error."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(error, ValidationError):
        problems = error.errors(include_input=False, include_url=False)
        return "invalid settings: " + "; ".join(
            f"{'.'.join(map(str, problem['loc'])) or 'settings'}: {problem['msg']}"
            for problem in problems
        )
    if isinstance(error, SettingsError):
        return f"invalid settings: {error}"
    return None


def _operational_error(error: Exception) -> str | None:
    """One line for a failure the operator can act on (a store that cannot be reached, a
    file that is not there, named by its path, a day another run holds), without a
    traceback; None for any other error, whose traceback is what a bug report needs. No
    message here holds a secret: pymongo's and the client's name hosts, never the URI or
    the token."""
    # Imported here, not at the top: `--help` and the light commands load no pymongo.
    from pymongo.errors import ConnectionFailure

    from analytics_assets.nocodb.errors import NocoDBError
    from analytics_assets.storage.connection import MongoAuthenticationError
    from analytics_assets.storage.leases import LeaseConflictError

    if isinstance(error, ConnectionFailure):
        # pymongo's message goes on with every timeout setting and the topology.
        reason = str(error).split(" (configured timeouts")[0].split(", Timeout:")[0]
        return f"cannot reach MongoDB: {reason}"
    if isinstance(error, FileNotFoundError):
        return str(error) if not error.filename else f"{error.strerror}: {error.filename}"
    if isinstance(error, MongoAuthenticationError | NocoDBError | LeaseConflictError):
        return str(error)
    return None


def main(argv: list[str] | None = None) -> int:
    # A command reads the environment once, when it starts (also when called in-process).
    get_settings.cache_clear()
    try:
        parser = build_parser()
    except Exception as error:
        if (message := _settings_error(error)) is None:
            raise
        print(f"analytics-assets: error: {message}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as error:
        parser.error(str(error))
    except Exception as error:
        if (message := _settings_error(error)) is not None:
            print(f"analytics-assets: error: {message}", file=sys.stderr)
            return 2
        if (message := _operational_error(error)) is None:
            raise
        print(f"analytics-assets: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
