"""Right to erasure as a Dagster job, the report rebuild it leads to, and the retention
schedule."""

from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from functools import partial

from dagster import (
    AssetSelection,
    Config,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    job,
    op,
    run_status_sensor,
    sensor,
)
from pydantic import Field

from analytics_assets import tables
from analytics_assets.defs.analytics.jobs import REPORT_JOBS, daily_report_job
from analytics_assets.defs.ingestion.resources import RecordSourceResource
from analytics_assets.defs.partitions import range_tags
from analytics_assets.defs.privacy.resources import PrivacyResource
from analytics_assets.defs.storage.lake import LakeResource
from analytics_assets.defs.storage.leases import PartitionLeaseResource
from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.privacy.erasure import (
    AUDIT_COLLECTION,
    REQUEST_ID_PATTERN,
    Eraser,
    close_request,
    load_request,
    submit_request,
)
from analytics_assets.storage.leases import LEASES_COLLECTION, LeaseConflictError, PartitionLeases

# On an erasure run whose caller rebuilds the reports itself (the CLI): the sensor skips it.
INLINE_REBUILD_TAG = "privacy/reports_rebuilt_inline"
# The lease scope of erasure requests (`erasure:<request id>`, key `request`): one attempt
# of a request at a time.
ERASURE_SCOPE = "erasure"
REQUEST_KEY = "request"


class ErasureConfig(Config):
    # Only the request's id: run configs stay in Dagster's run storage, out of an erasure's
    # reach, so the subject (even as a pseudonym) and the request's details are not here.
    request_id: str = Field(
        pattern=REQUEST_ID_PATTERN,
        description="An erasure request's id: `analytics-assets erase-user <user id> "
        "--requested-by … --request-only` records the request and prints it.",
    )


@op(
    description="Removes one user's rows and documents everywhere, tombstones their raw "
    "records and writes the audit record."
)
def erase_user_data(
    context: OpExecutionContext,
    config: ErasureConfig,
    privacy: PrivacyResource,
    mongo: MongoResource,
    record_source: RecordSourceResource,
    lake: LakeResource,
    partition_leases: PartitionLeaseResource,
) -> Output[dict]:
    started = datetime.now(UTC)
    db = mongo.db()
    request = load_request(db, config.request_id)
    if request is None:
        raise Failure(
            f"No pending erasure request {config.request_id}: it was carried out already "
            "(see privacy_audit), or never recorded."
        )
    eraser = Eraser(
        lake.lake(),
        db,
        pseudonym_of=privacy.pseudonymizer(),
        digest=privacy.digester(),
        schema=record_source.source_schema,
    )
    run_id = context.run_id
    # One attempt of a request at a time (a lease on the request, given back once it is
    # closed; a killed attempt's expires by itself): a failed one's request stays pending,
    # and a person relaunching it while the run-retry daemon's retry runs would rewrite the
    # same days twice. The scope carries the request id whole (a lease's key is cut to 10).
    request_lease = PartitionLeases(
        db[LEASES_COLLECTION],
        scope=f"{ERASURE_SCOPE}:{config.request_id}",
        ttl_s=partition_leases.ttl_s,
    )
    with ExitStack() as held:
        try:
            held.enter_context(request_lease.holding(run_id, [REQUEST_KEY]))
        except LeaseConflictError as conflict:
            raise Failure(
                f"Erasure request {config.request_id} is being carried out by run "
                f"{conflict.holder}; a killed run's hold expires by itself "
                f"({partition_leases.ttl_s:.0f} s after its last beat)."
            ) from None
        # The days it rewrites are held as the runs that write days hold them, and checked
        # still held before each is rewritten.
        result = eraser.erase(
            request.user_pseudonym,
            request_id=config.request_id,
            hold_days=partial(partition_leases.holding, run_id),
            confirm_days=partial(partition_leases.confirm, run_id),
        )
        audit = eraser.audit(
            run_id,
            request.user_pseudonym,
            result,
            requested_by=request.requested_by,
            reason=request.reason,
            started_at=started,
        )
        if context.run.tags.get(INLINE_REBUILD_TAG) == "true":
            # Written before the request is closed: if the caller dies before its rebuilds
            # are done, erasure_unfinished_rebuild_sensor (or its next erasure) finds them.
            db[AUDIT_COLLECTION].update_one(
                {"_id": run_id}, {"$set": {"reports_rebuilt": False, "rebuilt_at": None}}
            )
        # Done: the audit record is what remains of the request (the subject only as a
        # digest). Closed before the request's lease is given back: an attempt that starts
        # then finds no request.
        close_request(db, config.request_id)
    context.log.info(f"erasure {context.run_id}: {audit['outcome']}")
    return Output(
        audit,
        metadata={
            "outcome": audit["outcome"],
            "conversations": result.conversations,
            "lake_rows_removed": MetadataValue.json(result.lake_rows),
            "mongo_documents_removed": MetadataValue.json(result.mongo_documents),
            "raw_records_tombstoned": result.raw_records,
            "reports_to_rebuild": MetadataValue.json(result.reports_to_rebuild),
            "audit_record": f"{AUDIT_COLLECTION}/{context.run_id}",
        },
    )


@job(
    description="Right to erasure: one user's messages, conversations, categories, "
    "translations and analytics leave MongoDB and the lake; the reports they counted in are "
    "rebuilt by `erasure_report_rebuild_sensor`.",
    # Retried by the run-retry daemon (`run_retries` in prod) like any job: an attempt
    # after a failure resumes from what the first one wrote into the request before it
    # deleted anything (`Eraser.erase`).
    tags={"privacy": "erasure"},
)
def erase_user_job():
    erase_user_data()


# On each report rebuild an erasure asks for: the erasure's run id.
ERASURE_TAG = "privacy/erasure"
# Dagster's tag with the run key of a run a sensor requested.
RUN_KEY_TAG = "dagster/run_key"


def report_run_requests(
    erasure_id: str, reports: dict[str, list[str]], *, stage: str = "all"
) -> list[RunRequest]:
    """Days first, then weeks and months: the periods read the rebuilt days. Contiguous
    days go in one single-run backfill. `stage`: "days", "periods" or "all" (in order)."""
    requests = []
    rebuild_tags = {"privacy": "erasure-rebuild", ERASURE_TAG: erasure_id}
    days = [date.fromisoformat(day) for day in reports.get(tables.DAILY_REPORT, [])]
    ranges: list[list[date]] = []
    for day in days:
        if ranges and day - ranges[-1][-1] == timedelta(days=1):
            ranges[-1].append(day)
        else:
            ranges.append([day])
    for days_range in ranges if stage in ("days", "all") else []:
        first, last = days_range[0].isoformat(), days_range[-1].isoformat()
        requests.append(
            RunRequest(
                run_key=f"erasure:{erasure_id}:daily:{first}",
                job_name=daily_report_job.name,
                tags={**range_tags(first, last), **rebuild_tags},
            )
        )
    for asset in (tables.WEEKLY_REPORT, tables.MONTHLY_REPORT):
        for key in reports.get(asset, []) if stage in ("periods", "all") else []:
            requests.append(
                RunRequest(
                    run_key=f"erasure:{erasure_id}:{asset}:{key}",
                    job_name=REPORT_JOBS[asset].name,
                    partition_key=key,
                    tags=rebuild_tags,
                )
            )
    return requests


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[erase_user_job],
    request_jobs=list(REPORT_JOBS.values()),
    default_status=DefaultSensorStatus.RUNNING,
    description="After an erasure, rebuilds the report partitions the user counted in.",
)
def erasure_report_rebuild_sensor(context: RunStatusSensorContext, mongo: MongoResource):
    run_id = context.dagster_run.run_id
    if context.dagster_run.tags.get(INLINE_REBUILD_TAG) == "true":
        return SkipReason(f"erasure {run_id} rebuilt its reports itself")
    audit = mongo.db()[AUDIT_COLLECTION].find_one({"_id": run_id})
    reports = (audit or {}).get("reports_to_rebuild") or {}
    # The days only: requested together with them, a week's quick rebuild ran beside the
    # days' and read the old daily reports, which still held the erased pseudonym. The
    # weeks and months follow once every day is rebuilt (erasure_period_rebuild_sensor).
    requests = report_run_requests(run_id, reports, stage="days") or report_run_requests(
        run_id, reports, stage="periods"
    )
    return requests or SkipReason(f"erasure {run_id} changed no report")


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[daily_report_job],
    request_jobs=[REPORT_JOBS[tables.WEEKLY_REPORT], REPORT_JOBS[tables.MONTHLY_REPORT]],
    default_status=DefaultSensorStatus.RUNNING,
    description="After the daily reports an erasure asked for are all rebuilt, rebuilds its "
    "weeks and months.",
)
def erasure_period_rebuild_sensor(context: RunStatusSensorContext, mongo: MongoResource):
    erasure_id = context.dagster_run.tags.get(ERASURE_TAG)
    if not erasure_id:
        return SkipReason("not an erasure's rebuild")
    return period_rebuild_requests(context.instance, mongo.db(), erasure_id)


def period_rebuild_requests(
    instance: DagsterInstance, db, erasure_id: str
) -> list[RunRequest] | SkipReason:
    """The erasure's week and month rebuilds once every day rebuild it asked for has
    succeeded; a reason to wait otherwise."""
    audit = db[AUDIT_COLLECTION].find_one({"_id": erasure_id})
    reports = (audit or {}).get("reports_to_rebuild") or {}
    wanted = {r.run_key for r in report_run_requests(erasure_id, reports, stage="days")}
    done = {
        record.dagster_run.tags.get(RUN_KEY_TAG)
        for record in instance.get_run_records(
            filters=RunsFilter(
                job_name=daily_report_job.name,
                tags={ERASURE_TAG: erasure_id},
                statuses=[DagsterRunStatus.SUCCESS],
            )
        )
    }
    if not wanted <= done:
        return SkipReason(f"erasure {erasure_id}: {len(wanted - done)} day rebuild(s) to go")
    # Run keys make these once each, whichever day rebuild finished last.
    return report_run_requests(erasure_id, reports, stage="periods") or SkipReason(
        f"erasure {erasure_id} changed no week or month"
    )


# An inline rebuild with no progress for this long was abandoned (the CLI was stopped): the
# sensor requests it. The CLI writes `rebuilt_at` after each rebuild it finishes.
ABANDONED_REBUILD_S = 3600


def _as_datetime(value) -> datetime | None:
    if isinstance(value, str):  # the embedded server returns $set dates as text
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def abandoned_rebuild_requests(instance: DagsterInstance, db, now: datetime) -> list[RunRequest]:
    """The day rebuilds of erasures whose caller was to rebuild the reports and stopped
    (`reports_rebuilt` still false, nothing rebuilt for an hour): the weeks and months follow
    through erasure_period_rebuild_sensor. Their run keys keep each from running twice; an
    erasure whose rebuild runs exist is marked `requested` and not looked at again."""
    requests = []
    for audit in db[AUDIT_COLLECTION].find({"reports_rebuilt": False}):
        erasure_id = audit["_id"]
        last = max(
            (t for t in (_as_datetime(audit.get(f)) for f in ("finished_at", "rebuilt_at")) if t),
            default=None,
        )
        if last is None or now - last < timedelta(seconds=ABANDONED_REBUILD_S):
            continue
        reports = audit.get("reports_to_rebuild") or {}
        wanted = report_run_requests(erasure_id, reports, stage="days") or (
            report_run_requests(erasure_id, reports, stage="periods")
        )
        # Launched already (by an earlier tick: only a sensor's runs carry a run key).
        launched = bool(wanted) and bool(
            instance.get_run_records(
                filters=RunsFilter(tags={RUN_KEY_TAG: wanted[0].run_key}), limit=1
            )
        )
        if launched or not wanted:
            db[AUDIT_COLLECTION].update_one(
                {"_id": erasure_id},
                {"$set": {"reports_rebuilt": "requested" if launched else True}},
            )
            continue
        requests += wanted
    return requests


@sensor(
    minimum_interval_seconds=15 * 60,
    default_status=DefaultSensorStatus.RUNNING,
    jobs=list(REPORT_JOBS.values()),
    description="Rebuilds the reports of an erasure whose `erase-user` was stopped before "
    "it had rebuilt them (they still held the erased pseudonym).",
)
def erasure_unfinished_rebuild_sensor(context: SensorEvaluationContext, mongo: MongoResource):
    requests = abandoned_rebuild_requests(context.instance, mongo.db(), datetime.now(UTC))
    return requests or SkipReason("no erasure left its reports unrebuilt")


privacy_retention_job = define_asset_job(
    "privacy_retention_job",
    selection=AssetSelection.assets(tables.PRIVACY_RETENTION),
    description="Drop the days each table no longer keeps (PRIVACY_RETENTION_DAYS).",
)
privacy_retention_schedule = ScheduleDefinition(
    job=privacy_retention_job,
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    description="Applies retention every night, before the daily ingestion.",
)


def submit_erasure(
    defs: Definitions, user_pseudonym: str, *, requested_by: str, reason: str = ""
) -> str:
    """Records an erasure request in the code location's MongoDB; returns the id to launch
    `erase_user_job` with (`{"ops": {"erase_user_data": {"config": {"request_id": …}}}}`)."""
    mongo: MongoResource = defs.resources["mongo"]
    return submit_request(mongo.db(), user_pseudonym, requested_by=requested_by, reason=reason)


def run_erasure(
    defs: Definitions,
    instance: DagsterInstance,
    user_pseudonym: str,
    *,
    requested_by: str,
    reason: str = "",
    rebuild_reports: bool = True,
) -> dict:
    """The erasure job in this process, then (unless told not to) the report rebuilds it
    asks for, in order, so the reports are right when this returns; the sensor then leaves
    the run alone. The run is given a request id, never the pseudonym. Returns the audit
    record.

    A failed erasure leaves its request pending, with what it found: calling again for the
    same user resumes it (`submit_request` returns the pending request)."""
    request_id = submit_erasure(defs, user_pseudonym, requested_by=requested_by, reason=reason)
    result = defs.resolve_job_def(erase_user_job.name).execute_in_process(
        run_config={"ops": {"erase_user_data": {"config": {"request_id": request_id}}}},
        instance=instance,
        # A run in this process cannot be relaunched by the run-retry daemon: marked as to be
        # retried, its failure would never be alerted. The caller runs the command again.
        tags={
            "dagster/max_retries": "0",
            **({INLINE_REBUILD_TAG: "true"} if rebuild_reports else {}),
        },
    )
    audit = result.output_for_node("erase_user_data")
    if rebuild_reports:
        db = defs.resources["mongo"].db()
        audits = db[AUDIT_COLLECTION]
        # Earlier erasures of the same user whose rebuilds failed (their request is closed:
        # erasing again finds nothing, so only their audit records know which reports).
        unfinished = [
            document
            for document in audits.find(
                {"subject_digest": audit["subject_digest"], "reports_rebuilt": False}
            )
            if document["_id"] != result.run_id
        ]
        for erasure_id, reports in [
            *((d["_id"], d.get("reports_to_rebuild") or {}) for d in unfinished),
            (result.run_id, audit["reports_to_rebuild"]),
        ]:
            _rebuild_reports(defs, instance, erasure_id, reports, audits)
            audits.update_one({"_id": erasure_id}, {"$set": {"reports_rebuilt": True}})
    return audit


def _rebuild_reports(
    defs: Definitions,
    instance: DagsterInstance,
    erasure_id: str,
    reports: dict[str, list[str]],
    audits,
) -> None:
    for request in report_run_requests(erasure_id, reports):
        rebuilt = defs.resolve_job_def(request.job_name).execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags={**request.tags, "dagster/max_retries": "0"},
            raise_on_error=False,
        )
        if not rebuilt.success:
            raise RuntimeError(
                f"rebuilding {request.run_key} failed: erase the user again to finish the "
                "reports (the erasure itself is done)"
            )
        # Progress: erasure_unfinished_rebuild_sensor leaves a rebuild that moves alone.
        audits.update_one({"_id": erasure_id}, {"$set": {"rebuilt_at": datetime.now(UTC)}})
