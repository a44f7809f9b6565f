"""Partition leases in Dagster: a run that writes days holds them in the shared MongoDB from
its first step until it ends (`analytics_assets/storage/leases.py` has the why).

- The first step of the daily job (`nocodb_raw_pages`) calls `hold` for the run's days (one
  day, or a range run's all), waiting up to `wait_s` for another run to give them back, and
  renews them from a heartbeat thread for as long as that step's process lives: the whole
  run with the in-process executor, the step with multiprocess/Celery/Kubernetes.
- Every process that executes one of the run's steps renews them every quarter TTL while it
  lives (`setup_for_execution`), and every step once more when it succeeds
  (`lease_heartbeat_hook`, unless its process renewed them in the last quarter TTL), on
  whichever machine it runs, so the leases outlive the first step whatever the executor.
- The run-status sensors give them back when the run succeeds, fails or is cancelled; a run
  whose worker was killed (no sensor event, no heartbeat) loses them one `ttl_s`
  (ANALYTICS_LEASE_TTL_S, 2 min by default) after its last beat. Where a
  run's steps all execute in one process (`release_when_process_ends`: the local deployment,
  `execute_in_process`, tests) they are given back when that process's resources are torn
  down, at the run's end, so runs without a daemon (the CLI, a cron tick) free them too.

Wait, not fail: a sync tick's day run and an operator's backfill over the same days are
normal and would otherwise fail each other; the wait is bounded (then the step fails naming
the other run) and recorded as the step's `lease_wait_s`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date

from dagster import (
    ConfigurableResource,
    DagsterRunStatus,
    DefaultSensorStatus,
    HookContext,
    InitResourceContext,
    RunStatusSensorContext,
    SkipReason,
    run_status_sensor,
    success_hook,
)
from pydantic import Field, PrivateAttr

from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.storage.deferred import finish_run
from analytics_assets.storage.leases import (
    LEASES_COLLECTION,
    Holding,
    LeaseLostError,
    PartitionLeases,
    log_failed_renewal,
)

PARTITION_LEASES = "partition_leases"


class PartitionLeaseResource(ConfigurableResource):
    """Day leases in the deployment's MongoDB (the one every worker already reaches)."""

    mongo: MongoResource
    enabled: bool = Field(default=True, description="Off: runs take no leases (one writer).")
    ttl_s: float = Field(
        default=120.0,
        description="A lease not renewed for this long is free to take (a killed worker's); "
        "ANALYTICS_LEASE_TTL_S.",
    )
    wait_s: float = Field(
        default=3600.0,
        description="How long a run waits for another run's lease on one of its days before "
        "failing with that run's id.",
    )
    poll_s: float = Field(default=5.0, description="How often a waiting run tries again.")
    release_when_process_ends: bool = Field(
        default=False,
        description="Give the leases back when this process's resources are torn down: right "
        "where every step of a run executes in the process that took them (the in-process "
        "executor, execute_in_process, materialize), so a run needs no daemon to free its "
        "days; wrong with a process per step, where that is the first step's end.",
    )
    _heartbeats: ExitStack | None = PrivateAttr(default=None)
    _process_beat: threading.Event | None = PrivateAttr(default=None)
    # When this process last renewed its run's leases (monotonic seconds).
    _renewed_at: float | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """In every process that executes a step of a run (one for the whole run in process,
        one per step otherwise, on any machine), renews that run's leases every quarter TTL
        while the process lives: a long step keeps its days, and a killed one lets them go
        one TTL after its last beat."""
        if not self.enabled or not context.run_id:
            return  # sensors and schedules hold no days
        stop, run_id = threading.Event(), context.run_id

        def beat() -> None:
            while not stop.wait(self.ttl_s / 4):
                try:
                    # Connected here, not at setup: a step must not fail because MongoDB is
                    # down when its process starts (the writes retry; so does this).
                    self.renew(run_id)  # all of the run's days; none yet is fine
                except Exception as error:  # a MongoDB blip: the next beat tries again
                    log_failed_renewal(run_id, error)
                    continue

        threading.Thread(target=beat, name=f"run-leases-{run_id[:8]}", daemon=True).start()
        self._process_beat = stop

    def leases(self) -> PartitionLeases:
        return PartitionLeases(self.mongo.db()[LEASES_COLLECTION], ttl_s=self.ttl_s)

    def renew(self, run_id: str) -> None:
        self.leases().renew(run_id)
        self._renewed_at = time.monotonic()

    def renew_unless_recent(self, run_id: str) -> bool:
        """Renews unless this process did less than a quarter TTL ago (its heartbeat does
        every quarter TTL): in a run whose steps share one process, a renewal after every
        step waited behind the MongoDB mirror's writes, 3 s a step. Whether it renewed."""
        if self._renewed_at is not None and time.monotonic() - self._renewed_at < self.ttl_s / 4:
            return False
        self.renew(run_id)
        return True

    def hold(self, run_id: str, days: list[date]) -> Holding | None:
        """Takes `days` for `run_id` (waiting for their holder, bounded) and keeps them
        renewed while this process's resources live."""
        if not self.enabled:
            return None
        leases = self.leases()
        holding = leases.hold(run_id, days, wait_s=self.wait_s, poll_s=self.poll_s)
        self._renewed_at = time.monotonic()
        if self._heartbeats is None:
            self._heartbeats = ExitStack()
        self._heartbeats.enter_context(leases.heartbeat(run_id, days, self.ttl_s / 4))
        return holding

    @contextmanager
    def holding(self, run_id: str, days: list[date]) -> Iterator[None]:
        """`days` for `run_id` while the block runs (waiting for their holder, bounded, all
        at once), renewed meanwhile and given back at its end: for work inside a run that
        rewrites days it does not own for the run's whole length (an erasure)."""
        if not self.enabled:
            yield
            return
        with self.leases().holding(run_id, days, wait_s=self.wait_s, poll_s=self.poll_s):
            yield

    def confirm(self, run_id: str, days: list[date]) -> None:
        """Raises LeaseLostError unless `run_id` still holds every one of `days` (checked
        before writing them)."""
        if self.enabled:
            self.leases().renew(run_id, days)

    def release(self, run_id: str) -> int:
        return self.leases().release(run_id) if self.enabled else 0

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if context.run_id:
            # The run's MongoDB writes still queued land before its days stop being renewed
            # and are given back (whichever resource is torn down first finishes them;
            # storage/deferred.py). None are queued where each step has its own process.
            for failed in finish_run(context.run_id, context.log.warning):
                context.log.error(f"MongoDB copy not written: {failed}")
        if self._process_beat is not None:
            self._process_beat.set()
            self._process_beat = None
        if self._heartbeats is None:
            return
        try:
            self._heartbeats.close()
        except LeaseLostError as error:  # the step that wrote has confirmed already
            context.log.warning(str(error))
        self._heartbeats = None
        if self.release_when_process_ends and context.run_id:
            self.release(context.run_id)


@success_hook(required_resource_keys={PARTITION_LEASES})
def lease_heartbeat_hook(context: HookContext) -> None:
    """Each step renews its run's leases when it succeeds, on whichever worker it ran."""
    try:
        getattr(context.resources, PARTITION_LEASES).renew_unless_recent(context.run_id)
    except Exception as error:  # a heartbeat that fails must not fail the step
        context.log.warning(f"Could not renew the run's partition leases: {error}")


def _release_sensor(status: DagsterRunStatus):
    @run_status_sensor(
        name=f"release_partition_leases_on_{status.value.lower()}",
        run_status=status,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=15,
        description="Gives back the days a run leased (a killed worker's expire by themselves).",
    )
    def release_leases(
        context: RunStatusSensorContext, partition_leases: PartitionLeaseResource
    ) -> SkipReason:
        released = partition_leases.release(context.dagster_run.run_id)
        return SkipReason(f"released {released} day lease(s) of run {context.dagster_run.run_id}")

    return release_leases


def release_after_run(defs, run_id: str) -> int:
    """Gives back a run's leases right after `execute_in_process` returns, for callers that
    run jobs without a daemon (the CLI, a cron tick) whatever the step executor setting."""
    partition_leases = (defs.resources or {}).get(PARTITION_LEASES)
    return partition_leases.release(run_id) if partition_leases is not None else 0


lease_release_sensors = [
    _release_sensor(status)
    for status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
]
