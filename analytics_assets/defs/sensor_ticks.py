"""One tick of a sensor without the Dagster daemon, for deployments that schedule with cron
(`analytics-assets sensor-tick nocodb_changes_sensor`): evaluate the sensor with its cursor,
record its observations, run what it requests in this process, then keep the new cursor.

The cursor lives in a file (by default `$DAGSTER_HOME/sensor_cursors/<sensor>.json`), not in
the daemon's sensor state: run a sensor either from cron or from the daemon, not both. It is
written only once every requested run has succeeded, so a failed tick is evaluated again from
the same cursor; the run keys it requests then are the same, and the runs that already
succeeded are not repeated.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    RunsFilter,
    build_sensor_context,
)

from analytics_assets.defs.partitions import requested_days
from analytics_assets.defs.storage.leases import release_after_run

RUN_KEY_TAG = "dagster/run_key"


@dataclass
class TickOutcome:
    requested: list[str] = field(default_factory=list)  # days or first..last ranges, in order
    ran: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skip_reason: str | None = None


def cursor_path(dagster_home: Path, sensor_name: str) -> Path:
    return Path(dagster_home) / "sensor_cursors" / f"{sensor_name}.json"


def _read_cursor(path: Path) -> str | None:
    return json.loads(path.read_text())["cursor"] if path.exists() else None


def _write_cursor(path: Path, cursor: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"cursor": cursor}))
    os.replace(partial, path)  # atomic: a crash leaves the old cursor or the new one


def _succeeded_before(instance: DagsterInstance, run_key: str | None) -> bool:
    if not run_key:
        return False
    runs = instance.get_runs(
        filters=RunsFilter(tags={RUN_KEY_TAG: run_key}, statuses=[DagsterRunStatus.SUCCESS]),
        limit=1,
    )
    return bool(runs)


def evaluate(defs: Definitions, instance: DagsterInstance, sensor_name: str, cursor: str | None):
    """One evaluation of a sensor of `defs` with `cursor`, its resources bound, nothing run."""
    with build_sensor_context(
        instance=instance, cursor=cursor, resources=defs.resources, definitions=defs
    ) as context:
        return defs.resolve_sensor_def(sensor_name).evaluate_tick(context)


def tick(
    defs: Definitions,
    instance: DagsterInstance,
    sensor_name: str,
    cursor_file: Path,
    *,
    dry_run: bool = False,
    report: Callable[[dict], None] = lambda line: None,
) -> TickOutcome:
    """Evaluates `sensor_name` once and carries out what it asks (see the module docstring)."""
    cursor = _read_cursor(cursor_file)
    result = evaluate(defs, instance, sensor_name, cursor)
    outcome = TickOutcome(
        requested=[
            requested_days(request.partition_key, request.tags)
            for request in result.run_requests or []
        ],
        skip_reason=result.skip_message,
    )
    report({"event": "sensor_evaluated", "sensor": sensor_name, "requested": outcome.requested,
            "skip_reason": outcome.skip_reason})  # fmt: skip
    if dry_run:
        return outcome
    for event in result.asset_events or []:
        instance.report_runless_asset_event(event)
    # Only a sensor that asked for runs has a job: the webhook and alert sensors target none
    # and act within their evaluation.
    requests = result.run_requests or []
    sensor = defs.resolve_sensor_def(sensor_name)
    for request in requests:
        # A sensor of several jobs names the job in each request.
        job = defs.resolve_job_def(request.job_name or sensor.job_name)
        days = requested_days(request.partition_key, request.tags)
        if _succeeded_before(instance, request.run_key):
            outcome.already_done.append(days)
            continue
        started = time.perf_counter()
        tags = {**request.tags, **({RUN_KEY_TAG: request.run_key} if request.run_key else {})}
        run = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=tags,
            raise_on_error=False,
            # A request for part of the job (the day's per-conversation assets) runs that part.
            asset_selection=request.asset_selection,
        )
        # No daemon here to run the release sensors.
        release_after_run(defs, run.run_id)
        (outcome.ran if run.success else outcome.failed).append(days)
        report({"event": "run_finished", "partition": days,
                "run_id": run.run_id, "success": run.success,
                "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
    if not outcome.failed:
        _write_cursor(cursor_file, result.cursor if result.cursor is not None else cursor)
    return outcome
