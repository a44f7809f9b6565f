"""Reports built before a day they read changed, built again.

A day is often built again after the reports that read it: late records pulled by the sync
sensors, the across-midnight sensor (a Sunday's conversations that went on into Monday are
final only once Monday is in), a fix, a one-day backfill. The week and the month the day is
in kept the old numbers, still said `complete`, and the API kept serving them; so did the
next week and month (their change compares with it) and the next days' daily reports (their
change since the day before). Dagster marks such partitions stale, and nothing built them.

This sensor reads each new `daily_report` materialization (day D) and requests again:
- the daily reports of the days after D that read D's inputs (D+1 reads D's conversations,
  D+2 D's messages: the partition mappings say which), where built before those inputs;
- where D's active users changed (a digest in the report's metadata), the user analytics
  and daily reports of the 30 days after D, whose new and returning users look back at D,
  where built before D's conversations;
- each closed week and month that reads D's report (its own, and the next one), where built
  before it, once the daily reports requested for it are in (or their runs have ended);
- the newest day's return predictions, where built before D's user analytics (the current
  forecast reads them; an older day's forecast stays as it was made).

A period never built is left to its schedule, a period in progress to whoever builds it on
demand. What another run is still writing waits for it (a backfill's days come one run at a
time: a week is built once after them, not after each). A daily report built again here
changes nothing its next day reads, so the chain stops there.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    TimeWindowPartitionMapping,
    TimeWindowPartitionsDefinition,
    sensor,
)

from analytics_assets import tables
from analytics_assets.defs.analytics.assets import (
    USERS_DIGEST,
    daily_report,
    user_analytics,
    users_digest,
)
from analytics_assets.defs.analytics.jobs import (
    REPORT_REBUILD_JOBS,
    daily_report_job,
    monthly_report_job,
    predictions_job,
    users_and_report_job,
    weekly_report_job,
)
from analytics_assets.defs.builds import days_being_built, latest_storage_id, materialization
from analytics_assets.defs.partitions import (
    FIRST_DAY,
    TRIGGER_TAG,
    days_in,
    monthly_partitions,
    weekly_partitions,
)
from analytics_assets.defs.sensor_ticks import RUN_KEY_TAG

SENSOR_NAME = "reports_after_a_day_changed_sensor"
DAILY_REPORT = AssetKey(tables.DAILY_REPORT)
CONVERSATION_ANALYTICS = AssetKey(tables.CONVERSATION_ANALYTICS)
USER_ANALYTICS = AssetKey(tables.USER_ANALYTICS)
PREDICTIONS = AssetKey(tables.USER_RETURN_PREDICTIONS)
# The jobs that build a day's report again (its change reaches its week and month).
_REBUILD_DAILY_REPORT = (daily_report_job.name, users_and_report_job.name)
# Materializations read per tick; the rest wait for the next tick (the cursor says where).
_EVENTS_PER_TICK = 200
# How far back the first tick looks: days built before the sensor was turned on are not
# looked at all at once.
_FIRST_LOOK_BACK = timedelta(days=2)


@dataclasses.dataclass(frozen=True)
class _Period:
    asset: AssetKey
    job_name: str
    partitions_def: TimeWindowPartitionsDefinition


PERIODS = (
    _Period(AssetKey(tables.WEEKLY_REPORT), weekly_report_job.name, weekly_partitions),
    _Period(AssetKey(tables.MONTHLY_REPORT), monthly_report_job.name, monthly_partitions),
)


@dataclasses.dataclass(frozen=True)
class Rebuild:
    """One report partition to build again, and the days whose runs it must not overlap."""

    job_name: str
    partition: str
    days: tuple[date, ...]
    # The newest materialization it follows (its run key: a later change asks again).
    after: int
    # The changed day that asked for it.
    for_day: date
    # A second request after a run under the first key failed.
    again: bool = False

    @property
    def run_key(self) -> str:
        key = f"{SENSOR_NAME}:{self.job_name}:{self.partition}:{self.after}"
        return f"{key}:again" if self.again else key


def inputs_read_days_later(definition: AssetsDefinition) -> dict[AssetKey, int]:
    """The inputs of a daily asset that a later day's build reads too, with how many days
    later at most (the daily report: `conversation_analytics` 1, `conversation_messages` 2;
    user analytics: `conversation_analytics` 30)."""
    later: dict[AssetKey, int] = {}
    for dep in definition.asset_deps[definition.key]:
        mapping = definition.get_partition_mapping(dep)
        if isinstance(mapping, TimeWindowPartitionMapping) and mapping.start_offset < 0:
            later[dep] = -mapping.start_offset
    return later


def _users_digest_of(record) -> str | None:
    materialization = record.asset_materialization if record else None
    if materialization is None:
        return None
    return getattr(materialization.metadata.get(USERS_DIGEST), "value", None)


def _stale_users(instance, day: date, look_back: int, today: date) -> list[Rebuild]:
    """The later days whose user analytics were built before the day's conversations, where
    the day's active users are others now than in the build those user analytics read (or,
    the day not built then, where it has any). The day's report of that build holds its
    users' digest. Compared with what a later day read, not with the build before the
    newest: a day built twice before the sensor's tick (late conversations, then an
    unrelated rebuild) compared those two and saw no change. Reports from before the digest
    say nothing."""
    read = latest_storage_id(instance, CONVERSATION_ANALYTICS, day.isoformat())
    digest = _users_digest_of(materialization(instance, DAILY_REPORT, day.isoformat()))
    if read is None or digest is None:
        return []

    def changed_since(built: int) -> bool:
        conversations_read = materialization(
            instance, CONVERSATION_ANALYTICS, day.isoformat(), before=built
        )
        if conversations_read is None:
            return digest != users_digest(())
        # The report of that build: the day's first after the conversations it was built
        # from (a run builds the day's conversations, then its report).
        report = materialization(
            instance, DAILY_REPORT, day.isoformat(), after=conversations_read.storage_id
        )
        earlier = _users_digest_of(report)
        return earlier is not None and earlier != digest

    rebuilds = []
    for days_later in range(1, look_back + 1):
        later = day + timedelta(days=days_later)
        if later > today:
            break
        built = latest_storage_id(instance, USER_ANALYTICS, later.isoformat())
        if built is not None and built < read and changed_since(built):
            rebuilds.append(
                Rebuild(users_and_report_job.name, later.isoformat(), (later,), read, day)
            )
    return rebuilds


def _midnight(day: date) -> float:
    return datetime.combine(day, time(), tzinfo=UTC).timestamp()


def _days_of(partitions_def: TimeWindowPartitionsDefinition, key: str) -> tuple[date, ...]:
    return tuple(days_in(partitions_def.time_window_for_partition_key(key)))


def _periods_reading(period: _Period, day: date) -> list[str]:
    """The period holding `day`, and the next one (its change compares with `day`'s)."""
    partitions_def = period.partitions_def
    first = partitions_def.get_first_partition_key()
    if first is None or _days_of(partitions_def, first)[0] > day:
        return []
    key = partitions_def.get_partition_key_for_timestamp(_midnight(day))
    following = partitions_def.get_next_partition_key(key)
    return [key] if following is None else [key, following]


def stale_reports(
    instance, day: date, later_inputs: dict[AssetKey, int], today: date, users_look_back: int = 0
) -> list[Rebuild]:
    """What reads `day` and was built before what it reads of it."""
    built = latest_storage_id(instance, DAILY_REPORT, day.isoformat())
    if built is None:
        return []
    rebuilds = _stale_users(instance, day, users_look_back, today) if users_look_back else []
    for days_later in range(1, max(later_inputs.values(), default=0) + 1):
        later = day + timedelta(days=days_later)
        if later > today:
            break
        later_report = latest_storage_id(instance, DAILY_REPORT, later.isoformat())
        if later_report is None:
            continue  # never built: its first build reads the day as it is now
        read = [
            latest_storage_id(instance, key, day.isoformat())
            for key, reach in later_inputs.items()
            if reach >= days_later
        ]
        newer = [storage for storage in read if storage is not None and storage > later_report]
        if newer:
            rebuilds.append(
                Rebuild(daily_report_job.name, later.isoformat(), (later,), max(newer), day)
            )
    for period in PERIODS:
        for key in _periods_reading(period, day):
            days = _days_of(period.partitions_def, key)
            if days[-1] >= today:
                continue  # in progress
            period_built = latest_storage_id(instance, period.asset, key)
            if period_built is not None and period_built < built:
                rebuilds.append(Rebuild(period.job_name, key, days, built, day))
    return rebuilds + _stale_forecast(instance, day)


def _stale_forecast(instance, day: date) -> list[Rebuild]:
    """The newest day's return predictions, where built before the day's user analytics."""
    read = latest_storage_id(instance, USER_ANALYTICS, day.isoformat())
    forecast_days = instance.get_materialized_partitions(PREDICTIONS)
    if read is None or not forecast_days:
        return []
    newest = max(forecast_days)
    built = latest_storage_id(instance, PREDICTIONS, newest)
    if newest < day.isoformat() or built is None or built > read:
        return []
    return [Rebuild(predictions_job.name, newest, (date.fromisoformat(newest),), read, day)]


def _ended_run(instance, run_key: str):
    """The run launched under this key, if any (one still running made its day busy, so it
    has ended): Dagster would skip a request under the key again."""
    runs = instance.get_runs(filters=RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
    return runs[0] if runs else None


def _to_request(instance, rebuild: Rebuild) -> Rebuild | None:
    """The daily report rebuild to request: itself where its key is unused; asked once more
    where its run failed (a storage outage); None once that failed too."""
    run = _ended_run(instance, rebuild.run_key)
    if run is None:
        return rebuild
    if rebuild.again or run.status != DagsterRunStatus.FAILURE:
        return None
    return _to_request(instance, dataclasses.replace(rebuild, again=True))


def _after_the_days(instance, rebuilds: list[Rebuild]) -> tuple[list[Rebuild], set[date]]:
    """The rebuilds to request now, and the changed days to look at again next tick.

    A week or month that reads a daily report requested on this tick waits: built beside
    it, it would read it old and be built again once it is in. Its changed day is looked at
    again, and the week asked for once the report is in. A daily report whose run has
    already ended is not asked for again; if that run failed (it is alerted), the week no
    longer waits for it, so a failed rebuild does not leave the week stale for good. A failed
    one is asked for once more first."""
    daily = [r for r in rebuilds if r.job_name in _REBUILD_DAILY_REPORT]
    requested = [r for r in (_to_request(instance, r) for r in daily) if r is not None]
    waiting = {
        (period.job_name, key) for r in requested for period in PERIODS
        for key in _periods_reading(period, r.days[0])
    }  # fmt: skip
    # The newest forecast reads every day's user analytics: it waits for those requested.
    if any(r.job_name == users_and_report_job.name for r in requested):
        waiting |= {
            (r.job_name, r.partition) for r in rebuilds if r.job_name == predictions_job.name
        }
    kept, held = list(requested), set()
    for rebuild in rebuilds:
        if rebuild.job_name in _REBUILD_DAILY_REPORT:
            continue
        if (rebuild.job_name, rebuild.partition) in waiting:
            held.add(rebuild.for_day)
            continue
        kept.append(rebuild)
    return kept, held


def _new_days(instance, after: int | None, since: float | None) -> tuple[set[date], int | None]:
    """The days of the daily reports materialized after `after` (and since `since`), and
    where the next tick starts."""
    page = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=DAILY_REPORT, after_storage_id=after, after_timestamp=since),
        limit=_EVENTS_PER_TICK,
        ascending=True,
    )
    days = set()
    for record in page.records:
        try:
            days.add(date.fromisoformat(record.partition_key or ""))
        except ValueError:
            continue
    return days, page.records[-1].storage_id if page.records else after


def _requests(rebuilds: Iterable[Rebuild]) -> list[RunRequest]:
    """One request per partition, however many changed days asked for it on this tick; the
    run key names the newest materialization it follows, so a later change asks again and
    the same one never twice."""
    newest: dict[tuple[str, str], Rebuild] = {}
    for rebuild in rebuilds:
        key = (rebuild.job_name, rebuild.partition)
        if key not in newest or rebuild.after > newest[key].after:
            newest[key] = rebuild
    # A day whose users and report are built again needs no report-only run too.
    for job_name, partition in list(newest):
        if job_name == users_and_report_job.name:
            newest.pop((daily_report_job.name, partition), None)
    return [
        RunRequest(
            run_key=rebuild.run_key,
            job_name=job_name,
            partition_key=partition,
            tags={TRIGGER_TAG: SENSOR_NAME},
        )
        for (job_name, partition), rebuild in sorted(newest.items())
    ]


@sensor(
    name=SENSOR_NAME,
    jobs=list(REPORT_REBUILD_JOBS),
    minimum_interval_seconds=300,
    # On by default: it requests nothing unless a report was built before a day it reads
    # changed, and without it such a report stays wrong for good.
    default_status=DefaultSensorStatus.RUNNING,
    description="Builds a closed week's or month's report again, the next days' daily "
    "reports, and the next 30 days' new and returning users where a day's users changed, when "
    "a day they read was built again after them (late records, a conversation that went on "
    "past midnight, an edit or a deletion at the source, a fix).",
)
def reports_after_a_day_changed(context: SensorEvaluationContext) -> SensorResult:
    first_look = (datetime.now(UTC) - _FIRST_LOOK_BACK).timestamp()
    state = json.loads(context.cursor) if context.cursor else {"since": first_look}
    after, since = state.get("after_storage_id"), state.get("since")
    days, cursor = _new_days(context.instance, after, since if after is None else None)
    days |= {date.fromisoformat(day) for day in state.get("deferred", [])}
    today = datetime.now(UTC).date()
    later_inputs = inputs_read_days_later(daily_report)
    users_look_back = inputs_read_days_later(user_analytics).get(CONVERSATION_ANALYTICS, 0)
    rebuilds: list[Rebuild] = []
    deferred: list[date] = []
    busy = days_being_built(context.instance) if days else set()
    for day in sorted(day for day in days if day >= FIRST_DAY):
        stale = stale_reports(context.instance, day, later_inputs, today, users_look_back)
        # A run still writing the day, or a day a rebuild reads: wait for it, so a backfill
        # over a closed week builds the week once after its days, not after each.
        if busy & {day, *(read for rebuild in stale for read in rebuild.days)}:
            deferred.append(day)
        else:
            rebuilds += stale
    kept, held = _after_the_days(context.instance, rebuilds)
    deferred = sorted(set(deferred) | held)
    requests = _requests(kept)
    if requests or deferred:
        context.log.info(
            json.dumps(
                {
                    "event": "reports_after_a_day_changed",
                    "requested": [f"{r.job_name} {r.partition_key}" for r in requests],
                    "deferred": [day.isoformat() for day in deferred],
                }
            )
        )
    next_state: dict = {"after_storage_id": cursor} if cursor is not None else {"since": since}
    if deferred:
        next_state["deferred"] = [day.isoformat() for day in deferred]
    return SensorResult(
        run_requests=requests,
        cursor=json.dumps(next_state),
        skip_reason=None
        if requests
        else (
            f"Waiting for the runs writing {[day.isoformat() for day in deferred]}"
            if deferred
            else "No report was built before a day it reads changed"
        ),
    )
