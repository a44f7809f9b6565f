"""A sensor that sends failed runs and failed asset checks to the configured sinks, once each.

Each sink is delivered to on its own: a sink that fails (an SMTP server refusing the login)
neither holds back the others nor makes them send their alerts again. Its alerts are kept in
the cursor and retried on the next ticks, up to `MAX_TRIES`, then dropped with a warning.
The cursor's position is the update time of the last finished run handled; the runs handled
recently are remembered too, because tagging a run (the run-retry daemon does, when it
retries it) moves its update time and would bring it back. A failure that Dagster will retry
is not sent: its retry's outcome is; its failed checks are, as the retry does not run them
again. Each alert carries an `id`, the same on every delivery of it, for a receiver to drop a
copy by. Without a cursor (the first tick) the finished runs already in the instance are read
too, 50 a tick.

A sensor or schedule whose ticks fail starts no run, so no run fails: a NocoDB sync sensor
with a revoked token would stop the pipeline without a word. Each tick also reads the latest
tick of every running sensor and schedule, and alerts once when one starts failing (again
after it has had a good tick, at most once an hour). Only the error's type is sent: its
message may quote a URL with a token.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable

from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from analytics_assets.alerts.core import Alert, DeliveryError, run_link, severity_passes
from analytics_assets.defs.finished_runs import cursor_after, finished_runs_after, late_runs
from analytics_assets.defs.metadata import numeric_metadata
from analytics_assets.defs.partitions import PARTITION_TAG

# A sink delivers one alert or raises `DeliveryError`; what it returns, if anything, is a
# note on a partial delivery (recipients the mail server refused), logged as a warning.
Sink = Callable[[Alert], str | None]
# An alert kept in the cursor is read back with the fields `Alert` has now.
ALERT_FIELDS = {item.name for item in dataclasses.fields(Alert)}
# How many ticks a sink's undelivered alerts are retried on before they are dropped.
MAX_TRIES = 10
# How many handled run ids the cursor remembers (a run comes back when it is tagged).
REMEMBERED_RUNS = 500
# How many days whose stale report was alerted the cursor remembers.
REMEMBERED_STALE_DAYS = 60
# A tick stops taking new runs after this long, so it ends well within the sensor's limit.
TICK_BUDGET_S = 30.0
# Dagster's tag on a failed run that its run-retry daemon will retry.
WILL_RETRY_TAG = "dagster/will_retry"
ALERT_SENSOR_NAME = "asset_check_alert_sensor"
# A failed tick older than this is not alerted: the state of a sensor removed from the code
# stays in the instance with its last tick. The monthly schedule ticks once a month.
FAILING_TICK_WINDOW_S = 32 * 86400
# A sensor or schedule alerted as failing is not alerted again within this time.
FAILING_ALERT_COOLDOWN_S = 3600
# What a tick fails with while its code server is down or restarting (a deploy).
UNREACHABLE_ERROR = "DagsterUserCodeUnreachableError"
UNREACHABLE_FAILURES = 3


def named_sink(name: str, deliver: Sink) -> Sink:
    """`deliver`, named in the sensor's logs and cursor (never its URL or its secret)."""

    def named(alert: Alert) -> str | None:
        return deliver(alert)

    named.sink_name = name  # type: ignore[attr-defined]
    return named


def _sink_name(sink: Sink, position: int) -> str:
    return getattr(sink, "sink_name", None) or f"sink {position + 1}"


# The daily report's freshness check (defs/analytics/checks.py): a failure is a stale report.
FRESHNESS_CHECK = "freshness_check"


def _alerts_for_run(instance, run, min_severity: str, ui_url: str | None) -> list[Alert]:
    """The run's failure, if it failed and Dagster will not retry it (its retry's outcome
    is sent instead), and its failed checks at or over `min_severity`: those of a run that
    will be retried too, because the retry runs only the failed steps, and a check that
    failed without failing its step is not among them."""
    alerts = []
    if run.status == DagsterRunStatus.FAILURE and run.tags.get(WILL_RETRY_TAG) != "true":
        alerts.append(
            Alert(
                kind="run_failed",
                title=f"Run failed: {run.job_name}",
                job=run.job_name,
                partition=run.tags.get(PARTITION_TAG),
                run_id=run.run_id,
                link=run_link(ui_url, run.run_id),
            )
        )
    # A run over many days records a daily check once per day: its failed days make one
    # alert, not one each.
    failed_days: dict[tuple, list] = {}
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        # A failed freshness check is a stale report: always sent, whatever its severity.
        stale = evaluation.check_name == FRESHNESS_CHECK
        if evaluation.passed or not (
            stale or severity_passes(evaluation.severity.value, min_severity)
        ):
            continue
        failed_days.setdefault((evaluation.asset_key, evaluation.check_name), []).append(evaluation)
    for evaluations in failed_days.values():
        evaluation = evaluations[0]
        stale = evaluation.check_name == FRESHNESS_CHECK
        asset = evaluation.asset_key.to_user_string()
        what = "Report is stale" if stale else "Asset check failed"
        # A stale report names the day whose report is missing, not the run's day: the
        # check is not partitioned, and it runs in every run of the report's job.
        due = evaluation.metadata.get("expected_partition") if stale else None
        alerts.append(
            Alert(
                kind="stale_report" if stale else "asset_check_failed",
                title=f"{what}: {asset} / {evaluation.check_name}",
                asset=asset,
                partition=(due.value if due is not None else None)
                or _days_named(evaluations)
                or run.tags.get(PARTITION_TAG),
                check=evaluation.check_name,
                severity=evaluation.severity.value,
                run_id=run.run_id,
                job=run.job_name,
                numbers=numeric_metadata(evaluation.metadata),
                link=run_link(ui_url, run.run_id),
            )
        )

    return alerts


def _days_named(evaluations: list) -> str | None:
    days = sorted(e.partition for e in evaluations if e.partition)
    if len(days) <= 3:
        return ", ".join(days) or None
    return f"{days[0]} .. {days[-1]} ({len(days)} days)"


# Dagster's wrappers around what a sensor or schedule raised, and around a code server it
# could not reach (whose cause is the gRPC error).
_WRAPPERS = {
    "SensorExecutionError",
    "ScheduleExecutionError",
    "DagsterUserCodeUnreachableError",
    "DagsterUserCodeProcessError",
}


def _error_types(error) -> list[str]:
    """The types along a tick error's chain of causes, outermost first."""
    types = []
    while error is not None:
        types.append(error.cls_name)
        error = error.cause
    return types


def _raised_type(types: list[str]) -> str | None:
    """The type of what the sensor raised: the first past Dagster's wrappers (not the
    innermost: a sensor's own error may have a cause of its own)."""
    for name in types:
        if name not in _WRAPPERS:
            return name
    return types[-1] if types else None


def _failing_alert(state, tick, error: str | None, ui_url: str | None) -> Alert:
    kind = state.instigator_type.value.lower()
    return Alert(
        kind=f"{kind}_failing",
        title=f"{kind.capitalize()} failing: {state.instigator_name}"
        + (f" ({error})" if error else ""),
        numbers={"consecutive_failures": tick.consecutive_failure_count or 1},
        link=f"{ui_url.rstrip('/')}/automation" if ui_url else None,
        # Failing again another day, with the same error, is another event.
        occurrence=f"{state.selector_id}@{tick.timestamp}",
    )


def _after_tick(entry: dict | None, tick, now: float) -> tuple[dict | None, bool]:
    """What to remember of a sensor or schedule after its latest tick, and whether to alert.

    A run of failures ends with a good tick (success or skip; a tick still in progress
    changes nothing). A new run of failures within `FAILING_ALERT_COOLDOWN_S` of the last
    alert (a sensor that fails every other tick) waits, and is sent once the cooldown is over
    if it is still failing. While a code server restarts (a deploy) every tick fails with
    `UNREACHABLE_ERROR`: that counts from `UNREACHABLE_FAILURES` in a row."""
    recent = entry is not None and now - entry["alerted_at"] < FAILING_ALERT_COOLDOWN_S
    status = tick.status.value  # dagster's TickStatus
    if status == "STARTED":
        return entry, False
    if status != "FAILURE":
        # Kept for the cooldown, its run of failures over.
        return ({**entry, "failing": False, "suppressed": False} if recent else None), False
    restarting = UNREACHABLE_ERROR in _error_types(tick.error)
    if restarting and (tick.consecutive_failure_count or 1) < UNREACHABLE_FAILURES:
        return entry, False
    if entry is not None and entry["failing"] and not entry.get("suppressed"):
        return entry, False  # alerted for this run of failures
    if recent:
        return {**entry, "failing": True, "suppressed": True}, False
    return {"alerted_at": now, "failing": True, "suppressed": False}, True


def failing_instigator_alerts(
    instance,
    alerted: dict[str, dict],
    ui_url: str | None,
    *,
    names: set[str] | None = None,
    now: float | None = None,
) -> tuple[list[Alert], dict[str, dict]]:
    """Alerts for the running sensors and schedules (this sensor aside; only those named in
    `names` when given: the code location's) whose latest tick failed, once per run of
    failures (`_after_tick`); and what to remember, {selector id: {"alerted_at", "failing",
    "suppressed"}}."""
    now = time.time() if now is None else now
    alerts, remembered = [], {}
    for state in instance.all_instigator_state():
        if (
            not state.is_running
            or state.instigator_name == ALERT_SENSOR_NAME
            or (names is not None and state.instigator_name not in names)
        ):
            continue
        # One indexed query each (by selector and time): a batched query ranks every tick
        # ever kept, and Dagster keeps successful and failed ticks forever by default.
        ticks = instance.get_ticks(
            state.instigator_origin_id,
            state.selector_id,
            after=now - FAILING_TICK_WINDOW_S,
            limit=1,
        )
        if not ticks:
            continue
        entry, alert = _after_tick(alerted.get(state.selector_id), ticks[0], now)
        if entry is not None:
            remembered[state.selector_id] = entry
        if alert:
            types = _error_types(ticks[0].error)
            raised = UNREACHABLE_ERROR if UNREACHABLE_ERROR in types else _raised_type(types)
            alerts.append(_failing_alert(state, ticks[0], raised, ui_url))
    return alerts, remembered


def _read_cursor(cursor: str | None) -> dict:
    """{"after": position, "handled": [run ids], "pending": [{alerts, sinks, tries}],
    "failing": {selector id: {alerted_at, failing}}, "stale_days": [days alerted stale]}; a
    cursor of an earlier version is the position alone, and its pending entries may name a
    run or hold one alert."""
    if not cursor:
        return {"after": None, "handled": [], "pending": [], "failing": {}, "stale_days": []}
    if not cursor.startswith("{"):
        return {"after": cursor, "handled": [], "pending": [], "failing": {}, "stale_days": []}
    state = json.loads(cursor)
    failing = {
        selector: entry
        for selector, entry in (state.get("failing") or {}).items()
        if isinstance(entry, dict) and "alerted_at" in entry
    }
    return {"after": state.get("after"), "handled": state.get("handled", []),
            "pending": state.get("pending", []), "failing": failing,
            "stale_days": state.get("stale_days", [])}  # fmt: skip


class _Delivery:
    """One tick's deliveries: each alert to each sink on its own, what failed kept for the
    next ticks (`pending`), and the runs handled."""

    def __init__(self, context, sinks: dict[str, Sink], min_severity: str, ui_url: str | None):
        self.context, self.sinks = context, sinks
        self.min_severity, self.ui_url = min_severity, ui_url
        self.sent = 0
        self.pending: list[dict] = []
        # The days whose missing report was alerted: the freshness check runs in every run
        # of the report's job, and 30 rebuilds of old days sent 30 alerts for one late
        # report.
        self.stale_days: list[str] = []
        # Sinks that failed on this tick are not called again on it: a mail server that
        # times out after 10 s would otherwise cost 10 s per alert and starve the others.
        self.down: set[str] = set()

    def alerts(self, run) -> list[Alert]:
        return _alerts_for_run(self.context.instance, run, self.min_severity, self.ui_url)

    def deliver(self, alerts: list[Alert], names: list[str]) -> dict[str, list[Alert]]:
        """Each alert to each sink of `names`, in order; for each sink that failed, the
        alerts it has not taken (the one it failed on and those after it). Those it took
        are not sent to it again: a retry of the whole list repeated them."""
        undelivered = {}
        for name in names:
            for position, alert in enumerate(alerts):
                try:
                    note = self.sinks[name](alert)
                except DeliveryError as error:
                    self.context.log.warning(f"alert delivery to {name} failed: {error}")
                except Exception as error:
                    # A sink's bug must not stop the others. Only the kind of error is
                    # logged: its message could quote a URL holding a token.
                    self.context.log.warning(
                        f"alert delivery to {name} failed ({type(error).__name__})"
                    )
                else:
                    self.sent += 1
                    if note:
                        self.context.log.warning(f"alert delivery to {name}: {note}")
                    continue
                undelivered[name] = alerts[position:]
                self.down.add(name)
                break
        return undelivered

    def _keep(self, alerts: list[Alert], names: list[str], tries: int) -> None:
        if alerts and names:
            self.pending.append(
                {"alerts": [alert.to_dict() for alert in alerts], "sinks": names, "tries": tries}
            )

    def _deliver_and_keep(self, alerts: list[Alert], names: list[str], tries: int) -> None:
        """Deliver to the sinks not down on this tick; keep what a sink did not take, with
        one more try spent, and all of it for the sinks that were not tried (none spent)."""
        waiting = [name for name in names if name in self.down]
        undelivered = self.deliver(alerts, [name for name in names if name not in self.down])
        for name, left in undelivered.items():
            if tries + 1 < MAX_TRIES:
                self._keep(left, [name], tries + 1)
            else:
                self.context.log.warning(
                    f"{len(left)} alert(s) dropped for {name} after {MAX_TRIES} tries: "
                    + "; ".join(alert.title for alert in left)
                )
        self._keep(alerts, waiting, tries)

    def retry(self, entry: dict) -> None:
        """What some sinks did not take on an earlier tick, to those sinks only. An entry of
        an earlier version names a run, whose alerts are read again, or holds one alert."""
        names = [name for name in entry["sinks"] if name in self.sinks]
        if "alerts" in entry or "alert" in entry:
            kept = entry.get("alerts") or [entry["alert"]]
            alerts = [
                Alert(**{name: value for name, value in alert.items() if name in ALERT_FIELDS})
                for alert in kept
            ]
        else:
            run = self.context.instance.get_run_by_id(entry["run_id"])
            alerts = self.alerts(run) if run is not None else []
        self._deliver_and_keep(alerts, names, entry["tries"])

    def send(self, run) -> None:
        alerts = []
        for alert in self.alerts(run):
            if alert.kind == "stale_report" and alert.partition:
                if alert.partition in self.stale_days:
                    continue
                self.stale_days.append(alert.partition)
            alerts.append(alert)
        self._deliver_and_keep(alerts, list(self.sinks), 0)

    def send_alert(self, alert: Alert) -> None:
        self._deliver_and_keep([alert], list(self.sinks), 0)


def build_check_alert_sensor(
    sinks: list[Sink], *, min_severity: str = "ERROR", ui_url: str | None = None
):
    named = {_sink_name(sink, position): sink for position, sink in enumerate(sinks)}

    @sensor(
        name=ALERT_SENSOR_NAME,
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING if sinks else DefaultSensorStatus.STOPPED,
    )
    def asset_check_alert_sensor(context: SensorEvaluationContext):
        if not sinks:
            return SkipReason("no alert sink is configured")
        started = time.monotonic()
        state = _read_cursor(context.cursor)
        delivery = _Delivery(context, named, min_severity, ui_url)
        delivery.stale_days = list(state["stale_days"])
        for position, entry in enumerate(state["pending"]):
            if time.monotonic() - started > TICK_BUDGET_S:
                # Under the same budget as new runs: a slow failing sink's retries must not
                # take the whole tick. What was not tried waits as it was.
                delivery.pending += state["pending"][position:]
                break
            delivery.retry(entry)
        handled, after = list(state["handled"]), state["after"]
        for run_record in [*late_runs(context.instance, after),
                           *finished_runs_after(context.instance, after, limit=50)]:  # fmt: skip
            if time.monotonic() - started > TICK_BUDGET_S:
                break
            run = run_record.dagster_run
            # A late run is behind the cursor: the cursor never moves back.
            after = max(after, cursor_after(run_record)) if after else cursor_after(run_record)
            if run.run_id not in handled:
                delivery.send(run)
                handled.append(run.run_id)
        repository = context.repository_def
        failing_alerts, failing = failing_instigator_alerts(
            context.instance,
            state["failing"],
            ui_url,
            # Only this code location's: a sensor since removed keeps its state and last tick.
            names=None
            if repository is None
            else {d.name for d in (*repository.sensor_defs, *repository.schedule_defs)},
        )
        for alert in failing_alerts:
            delivery.send_alert(alert)
        context.update_cursor(
            json.dumps(
                {
                    "after": after,
                    "handled": handled[-REMEMBERED_RUNS:],
                    "pending": delivery.pending,
                    "failing": failing,
                    "stale_days": delivery.stale_days[-REMEMBERED_STALE_DAYS:],
                }
            )
        )
        if delivery.pending:
            return SkipReason(f"sent {delivery.sent} alert(s); {len(delivery.pending)} to retry")
        return SkipReason(f"sent {delivery.sent} alert(s)" if delivery.sent else "no new failures")

    return asset_check_alert_sensor
