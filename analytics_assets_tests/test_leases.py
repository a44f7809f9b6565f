"""Partition leases: at most one run writes a day at a time, across machines.

The core against the real nx-27017 (taking, conflicts, expiry, renewal, release, racing
threads), the Dagster wiring (the raw step takes its run's days, the run-status sensors give
them back), and two overlapping range runs launched together on the sample: they never hold
a day at the same time and end with the lake and MongoDB of one run over all their days."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from analytics_assets.defs.storage.leases import PartitionLeaseResource
from analytics_assets.storage.leases import (
    LEASES_COLLECTION,
    LeaseConflictError,
    LeaseLostError,
    PartitionLeases,
)

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]


class Clock:
    """Time that moves only when told, for the expiry tests."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def collection(mongo_server, request):
    name = "leases_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:40]
    with MongoClient(mongo_server) as client:
        client.drop_database(name)
        yield client[name][LEASES_COLLECTION]


def test_the_server_refuses_a_second_document_with_the_same_id(collection):
    """What taking a free day rests on: nx-27017 raises DuplicateKeyError like MongoDB."""
    collection.insert_one({"_id": "daily:2026-11-01", "owner": "a"})
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"_id": "daily:2026-11-01", "owner": "b"})
    assert collection.find_one({"_id": "daily:2026-11-01"})["owner"] == "a"


def test_a_run_takes_its_days_and_another_run_is_refused_naming_it(collection):
    leases = PartitionLeases(collection, ttl_s=60)
    assert leases.try_acquire("run-a", DAYS[:3]) is None
    conflict = leases.try_acquire("run-b", DAYS[2:])
    assert isinstance(conflict, LeaseConflictError)
    assert (conflict.day, conflict.holder) == ("2026-11-03", "run-a")
    assert "run-a" in str(conflict)
    # All or nothing: nothing of run-b's stays behind.
    assert leases.holders() == dict.fromkeys(DAYS[:3], "run-a")
    # Taking them again is a renewal for the owner.
    assert leases.try_acquire("run-a", DAYS[:3]) is None


def test_a_partial_acquisition_gives_back_what_it_took(collection):
    leases = PartitionLeases(collection, ttl_s=60)
    assert leases.try_acquire("run-a", [DAYS[3]]) is None
    conflict = leases.try_acquire("run-b", DAYS)
    assert conflict.day == DAYS[3]
    assert leases.holders() == {DAYS[3]: "run-a"}


def test_an_expired_lease_is_taken_over_and_its_old_owner_learns_it_lost_it(collection):
    clock = Clock()
    leases = PartitionLeases(collection, ttl_s=60, clock=clock)
    assert leases.try_acquire("killed-run", DAYS[:2]) is None
    clock.now += 30
    assert leases.try_acquire("run-b", DAYS[:2]).holder == "killed-run"
    clock.now += 31  # past the TTL with no renewal
    assert leases.try_acquire("run-b", DAYS[:2]) is None
    assert leases.holders() == dict.fromkeys(DAYS[:2], "run-b")
    with pytest.raises(LeaseLostError, match="2026-11-01, 2026-11-02"):
        leases.renew("killed-run", DAYS[:2])
    # Its late release cannot drop the new owner's leases.
    assert leases.release("killed-run") == 0
    assert leases.holders() == dict.fromkeys(DAYS[:2], "run-b")


def test_a_renewed_lease_outlives_its_first_ttl(collection):
    clock = Clock()
    leases = PartitionLeases(collection, ttl_s=60, clock=clock)
    leases.try_acquire("run-a", DAYS[:2])
    for _ in range(3):
        clock.now += 50
        assert leases.renew("run-a", DAYS[:2]) == 2
    assert leases.try_acquire("run-b", DAYS[1:2]).holder == "run-a"


def test_release_gives_back_only_the_owners_leases(collection):
    leases = PartitionLeases(collection, ttl_s=60)
    leases.try_acquire("run-a", DAYS[:2])
    leases.try_acquire("run-b", DAYS[2:])
    assert leases.release("run-a") == 2
    assert leases.holders() == dict.fromkeys(DAYS[2:], "run-b")
    assert leases.try_acquire("run-c", DAYS[:2]) is None


def test_hold_waits_for_the_holder_then_fails_naming_it(collection):
    leases = PartitionLeases(collection, ttl_s=60)
    leases.try_acquire("run-a", DAYS[:1])
    threading.Timer(0.5, leases.release, args=("run-a",)).start()
    holding = leases.hold("run-b", DAYS[:2], wait_s=10, poll_s=0.1)
    assert holding.waited_s >= 0.4 and holding.days == tuple(DAYS[:2])
    with pytest.raises(LeaseConflictError, match="run run-b after waiting"):
        leases.hold("run-c", DAYS[1:3], wait_s=0.3, poll_s=0.1)


def test_days_held_for_a_block_are_given_back_however_it_ends(collection):
    """`holding`: what the erasure's request and days use (hold, heartbeat, release)."""
    leases = PartitionLeases(collection, ttl_s=60)
    with leases.holding("run-a", DAYS[:2]) as holding:
        assert holding.days == tuple(DAYS[:2])
        assert leases.holders() == dict.fromkeys(DAYS[:2], "run-a")
        with pytest.raises(LeaseConflictError), leases.holding("run-b", DAYS[1:3]):
            pass
        assert leases.holders() == dict.fromkeys(DAYS[:2], "run-a")  # b took nothing
    assert leases.holders() == {}
    with pytest.raises(RuntimeError), leases.holding("run-b", DAYS[:1]):
        raise RuntimeError("the block failed")
    assert leases.holders() == {}


def test_racing_threads_over_overlapping_days_get_each_day_once(collection):
    """Eight threads, each wanting three consecutive days of a week, all at once: whoever
    wins a day holds it alone, and each thread holds all of its days or none."""
    leases = PartitionLeases(collection, ttl_s=60)
    week = [f"2026-11-0{n}" for n in range(1, 8)]
    wants = {f"run-{n}": week[n % 5 : n % 5 + 3] for n in range(8)}
    start = threading.Barrier(len(wants))
    won: dict[str, bool] = {}

    def race(owner: str) -> None:
        start.wait()
        won[owner] = leases.try_acquire(owner, wants[owner]) is None

    threads = [threading.Thread(target=race, args=(owner,)) for owner in wants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    holders = leases.holders()
    winners = [owner for owner, ok in won.items() if ok]
    assert winners
    for owner in winners:
        assert all(holders[day] == owner for day in wants[owner])
    for owner in set(wants) - set(winners):
        assert owner not in holders.values()
    # No two winners share a day.
    claimed = [day for owner in winners for day in wants[owner]]
    assert len(claimed) == len(set(claimed))


def test_the_heartbeat_keeps_a_lease_alive_and_reports_it_lost(collection):
    leases = PartitionLeases(collection, ttl_s=0.6)
    leases.try_acquire("run-a", DAYS[:1])
    with leases.heartbeat("run-a", DAYS[:1], interval_s=0.15):
        time.sleep(1.5)  # more than twice the TTL
        assert leases.try_acquire("run-b", DAYS[:1]).holder == "run-a"
    with pytest.raises(LeaseLostError), leases.heartbeat("run-a", DAYS[:1], interval_s=0.1):
        leases.release("run-a")
        time.sleep(0.4)


# -- why: the run queue's tag limit does not see range runs ----------------------------------


def test_the_queues_partition_limit_serializes_day_runs_but_not_range_runs():
    """The prod instance's tag limit, applied by Dagster's own counter (what the queue daemon
    uses): a second run of the same day waits, but a range run overlapping a running range
    run, or a day run inside it, is let through. Hence the leases."""
    from pathlib import Path

    import yaml
    from dagster import DagsterRun

    # Private, but it is the queue daemon's own check; no public API applies the limits.
    from dagster._utils.tags import TagConcurrencyLimitsCounter

    from analytics_assets_tests.conftest import range_tags

    config = Path(__file__).resolve().parents[1] / "deployments/prod/dagster.yaml"
    limits = yaml.safe_load(config.read_text())["concurrency"]["runs"]["tag_concurrency_limits"]

    def run(tags: dict[str, str]) -> DagsterRun:
        return DagsterRun(job_name="ingestion_job", tags=tags)

    day = run({"dagster/partition": "2026-11-02"})
    assert TagConcurrencyLimitsCounter(limits, [day]).is_blocked(
        run({"dagster/partition": "2026-11-02"})
    )
    running_range = run(range_tags("2026-11-01", "2026-11-03"))
    counter = TagConcurrencyLimitsCounter(limits, [running_range])
    assert not counter.is_blocked(run(range_tags("2026-11-02", "2026-11-04")))
    assert not counter.is_blocked(run({"dagster/partition": "2026-11-02"}))


# -- the resource in runs ------------------------------------------------------------------


def test_an_in_process_run_gives_its_days_back_at_its_end_a_step_process_does_not(mongo):
    """With every step in one process (release_when_process_ends) the day is free when the
    run returns, so the next run of it does not wait; with a process per step the lease
    outlives the step (the later steps and the run-status sensor take it from there)."""
    from dagster import asset, materialize

    from analytics_assets.defs.partitions import daily_partitions, days_in

    waits: list[float] = []

    @asset(partitions_def=daily_partitions)
    def writes_its_days(context, partition_leases: PartitionLeaseResource):
        holding = partition_leases.hold(context.run_id, days_in(context.partition_time_window))
        waits.append(holding.waited_s)

    def run(release: bool):
        resource = PartitionLeaseResource(
            mongo=mongo, release_when_process_ends=release, wait_s=5, poll_s=1.0
        )
        return materialize(
            [writes_its_days], partition_key="2026-11-02", resources={"partition_leases": resource}
        )

    first, second = run(True), run(True)
    # Neither waited (a retry comes at least half a poll, 0.5 s, later).
    assert first.success and second.success and max(waits) < 0.5
    leases = PartitionLeaseResource(mongo=mongo).leases()
    assert leases.holders() == {}
    kept = run(False)
    assert leases.holders() == {"2026-11-02": kept.run_id}
    # The next run waits its half second, then fails naming the holder.
    refused = materialize(
        [writes_its_days],
        partition_key="2026-11-02",
        resources={"partition_leases": PartitionLeaseResource(mongo=mongo, wait_s=0.5, poll_s=0.1)},
        raise_on_error=False,
    )
    assert not refused.success
    failure = refused.get_step_failure_events()[0].step_failure_data.error
    assert failure.cause.cls_name == "LeaseConflictError"
    assert kept.run_id in failure.cause.message


# -- two overlapping range runs launched together --------------------------------------------


def _release_through_the_sensor(defs, instance, result, partition_leases) -> int:
    """What the daemon does when a run ends: the run-status sensor gives its leases back.
    Returns how many of this run's leases it gave back: counted by owner, since the other
    run, waiting for these days, may take them the moment they are free."""
    from dagster import DagsterEventType, build_run_status_sensor_context

    record = instance.get_records_for_run(
        result.run_id, of_type=DagsterEventType.RUN_SUCCESS
    ).records[0]
    with build_run_status_sensor_context(
        sensor_name="release_partition_leases_on_success",
        dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"partition_leases": partition_leases},
    ) as context:
        before = _held_by(partition_leases, result.run_id)
        skip = defs.get_sensor_def("release_partition_leases_on_success")(context)
    assert result.run_id in skip.skip_message
    return before - _held_by(partition_leases, result.run_id)


def _held_by(partition_leases, run_id: str) -> int:
    return sum(owner == run_id for owner in partition_leases.leases().holders().values())


def run_range(root: str, mongo_uri: str, database: str, first: str, last: str, go_at: float):
    """One range run of the ingestion job in this process, as a worker machine runs it,
    started at `go_at` (epoch seconds) so that two processes start together; returns its
    lease timeline."""
    from pathlib import Path

    from dagster import DagsterEventType, DagsterInstance

    from analytics_assets.defs.ingestion.resources import ExportSourceResource
    from analytics_assets.defs.storage.leases import PartitionLeaseResource
    from analytics_assets.defs.storage.resources import MongoResource
    from analytics_assets_tests.conftest import range_tags, sample_definitions

    partition_leases = PartitionLeaseResource(
        mongo=MongoResource(uri=mongo_uri, database=database), poll_s=0.2, wait_s=600
    )
    # One export for every run compared (its path is in each record's `source`).
    export = ExportSourceResource(export_dir=str(Path(root).parent / "export"))
    defs, _, _ = sample_definitions(
        root, mongo_uri, database, partition_leases=partition_leases, record_source=export
    )
    job = defs.resolve_job_def("ingestion_job")
    instance = DagsterInstance.ephemeral()
    time.sleep(max(0.0, go_at - time.time()))
    launched = time.time()
    result = job.execute_in_process(instance=instance, tags=range_tags(first, last))
    assert result.success
    ended = time.time()
    raw = result.asset_materializations_for_node("nocodb_raw_pages")[0].metadata
    materialized = DagsterEventType.ASSET_MATERIALIZATION
    writes = [entry.timestamp for entry in instance.all_logs(result.run_id, of_type=materialized)]
    released = _release_through_the_sensor(defs, instance, result, partition_leases)
    return {
        "run_id": result.run_id,
        "days": [str(first), str(last)],
        "launched": launched,
        "acquired": raw["lease_acquired_at"].value,
        "waited": raw["lease_wait_s"].value,
        "ended": ended,
        "writes": writes,
        "leases_released": released,
    }


def _launch(tmp_path, root, mongo_uri: str, database: str, first, last, go_at: float):
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / f"{database}-{first}-{last}.json"
    log_path = tmp_path / f"{database}-{first}-{last}.log"
    log = log_path.open("wb")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [str(root), mongo_uri, database, str(first), str(last), str(go_at), str(out)]
    process = subprocess.Popen(
        [sys.executable, "-m", "analytics_assets_tests.test_leases", *args],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return process, out, log_path


def _finish(launched) -> dict:
    process, out, log = launched
    assert process.wait(timeout=900) == 0, log.read_text()[-3000:]
    return json.loads(out.read_text())


def test_two_overlapping_range_runs_never_hold_a_day_at_once(mongo_server, tmp_path):
    """Days 1-3 and 2-4 of the sample, two processes launched at the same instant against
    one lake and one MongoDB: the second to reach the shared days waits until the first has
    ended, every write of each run falls inside its own hold, and the end state equals the
    two runs made one after the other."""
    from datetime import timedelta

    from polars.testing import assert_frame_equal

    from analytics_assets.sources.generator import SAMPLE_START, ensure_sample_export
    from analytics_assets_tests.test_celery import FLOAT_DIGITS, lake_contents, mongo_contents

    days = [SAMPLE_START + timedelta(days=n) for n in range(4)]
    pair, single = tmp_path / "pair", tmp_path / "single"
    ensure_sample_export(tmp_path / "export")
    # Far enough ahead for both processes to have loaded the code location.
    go_at = time.time() + 45
    runs = [
        _launch(tmp_path, pair, mongo_server, "leases_pair", days[0], days[2], go_at),
        _launch(tmp_path, pair, mongo_server, "leases_pair", days[1], days[3], go_at),
    ]
    try:
        timeline = [_finish(run) for run in runs]
    finally:  # a failed run leaves the other waiting for its days: stop it
        for process, _, _ in runs:
            if process.poll() is None:
                process.kill()
                process.wait()
    for run in timeline:
        assert run["launched"] - go_at < 5, "the two runs did not start together"
    earlier, later = sorted(timeline, key=lambda run: run["acquired"])
    # Each run wrote only while it held its days; the later one took them only once the
    # earlier had ended and released them, after waiting for them.
    for run in (earlier, later):
        assert run["acquired"] <= min(run["writes"]) <= max(run["writes"]) <= run["ended"]
        assert run["leases_released"] == 3
    assert earlier["ended"] <= later["acquired"]
    assert later["waited"] > 0
    assert max(earlier["writes"]) < min(later["writes"])
    with MongoClient(mongo_server) as client:
        assert client["leases_pair"][LEASES_COLLECTION].count_documents({}) == 0

    # The end state is that of the same two runs one after the other, in the order the
    # leases let them write. (Not always that of one run over days 1-4: a day's report
    # counts new users against the days before it, so when days 2-4 go first, day 4's
    # report is built without day 1, as it would be by those two runs launched in sequence.)
    for run in (earlier, later):
        _finish(_launch(tmp_path, single, mongo_server, "leases_single", *run["days"], 0))
    expected_lake, got_lake = lake_contents(single / "lake"), lake_contents(pair / "lake")
    assert expected_lake and got_lake.keys() == expected_lake.keys()
    for path, frame in expected_lake.items():
        assert_frame_equal(got_lake[path], frame, rel_tol=10**-FLOAT_DIGITS, abs_tol=0.0)
    assert mongo_contents(mongo_server, "leases_pair") == mongo_contents(
        mongo_server, "leases_single"
    )
    print(
        json.dumps(
            {
                "earlier": {k: earlier[k] for k in ("days", "acquired", "waited", "ended")},
                "later": {k: later[k] for k in ("days", "acquired", "waited", "ended")},
            }
        )
    )


# -- state in S3: resume checkpoints and trained heads ----------------------------------------


def _state_s3(s3_server):
    from dagster_aws.s3 import S3Resource

    return S3Resource(
        endpoint_url=s3_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_production_settings_put_checkpoints_and_heads_under_the_state_url():
    from analytics_assets.deployments import categorization_for, record_source_for
    from analytics_assets.settings import Settings

    settings = Settings(
        deployment="prod", state_url="s3://team-state/analytics/", s3_endpoint_url="http://s3"
    )
    source = record_source_for(settings)
    assert source.checkpoint_dir == "s3://team-state/analytics/nocodb_pages"
    assert source.checkpoint_s3.endpoint_url == "http://s3"
    assert categorization_for(settings).heads_dir == "s3://team-state/analytics/heads"
    # Without it, the local disk as before; ANALYTICS_HEADS_DIR still wins.
    local = Settings(deployment="prod", heads_dir="/srv/heads")
    assert record_source_for(local).checkpoint_dir is None
    assert categorization_for(local).heads_dir == "/srv/heads"


def test_a_retried_pull_on_another_worker_resumes_from_checkpoints_in_s3(s3_server):
    """Pages one worker spooled to S3 are what a second worker (a new spool object, no local
    files) loads; a finished pull removes them from the bucket."""
    import polars as pl

    from analytics_assets.defs.storage.lake import s3fs_options
    from analytics_assets.sources.checkpoints import PageSpool

    url = f"s3://{s3_server.bucket}/state/nocodb_pages"
    options = s3fs_options(url, _state_s3(s3_server))
    first_worker = PageSpool(url, "messages|2026-11-01", 3600, options)
    pages = [pl.DataFrame({"Id": [1, 2]}), pl.DataFrame({"Id": [3]})]
    for index, page in enumerate(pages):
        first_worker.save(index, page, str(page["Id"][-1]))
    keys = [
        item["Key"]
        for item in s3_server.client().list_objects_v2(
            Bucket=s3_server.bucket, Prefix="state/nocodb_pages/"
        )["Contents"]
    ]
    assert len(keys) == 3 and any(key.endswith("state.json") for key in keys)

    second_worker = PageSpool(url, "messages|2026-11-01", 3600, options)
    frames, last_id = second_worker.load()
    assert last_id == "3"
    assert pl.concat(frames)["Id"].to_list() == [1, 2, 3]
    # Another query's spool is not this one's.
    assert PageSpool(url, "messages|2026-11-02", 3600, options).load() == ([], None)
    second_worker.clear()
    listed = s3_server.client().list_objects_v2(
        Bucket=s3_server.bucket, Prefix="state/nocodb_pages/"
    )
    assert listed["KeyCount"] == 0


def test_trained_heads_are_stored_and_loaded_through_s3(s3_server):
    """The training writes a head and the index that adopts it under the state URL; a worker
    with the same settings (and an empty disk) reads the index and loads that head."""
    import numpy as np

    from analytics_assets.categorization.feedback import HEADS_INDEX
    from analytics_assets.categorization.model_tier import Head
    from analytics_assets.defs.categorization.resources import CategorizationResource
    from analytics_assets.storage.state import write_text_atomically

    def resource() -> CategorizationResource:
        return CategorizationResource(
            heads_dir=f"s3://{s3_server.bucket}/state/heads", heads_s3=_state_s3(s3_server)
        )

    folder = resource().encoder_heads_dir()
    assert str(folder).startswith(f"s3://{s3_server.bucket}/state/heads/")
    head = Head(
        ["billing", "other"], np.eye(2, 3), np.array([0.1, -0.1]), "other", "topic-v1", {"f1": 1}
    )
    head.save(folder)
    write_text_atomically(folder / HEADS_INDEX, json.dumps({"topic": "topic-v1"}))

    trainer_elsewhere = resource()
    assert trainer_elsewhere.current_heads() == {"topic": "topic-v1"}
    loaded = Head.load(trainer_elsewhere.encoder_heads_dir(), "topic-v1")
    assert loaded.names == head.names and loaded.metrics == {"f1": 1}
    assert np.array_equal(loaded.weights, head.weights)
    assert np.array_equal(loaded.bias, head.bias)


if __name__ == "__main__":
    import sys

    root, uri, database, first, last, go_at, out = sys.argv[1:]
    timeline = run_range(root, uri, database, first, last, float(go_at))
    with open(out, "w") as file:
        json.dump(timeline, file)


def test_a_step_renews_only_when_its_process_has_not_lately(mongo_server):
    """The success hook's renewal is skipped within a quarter TTL of the process's last one:
    in a run whose steps share one process it waited behind the MongoDB mirror's writes."""
    from datetime import date

    from analytics_assets.defs.storage.resources import MongoResource

    mongo = MongoResource(uri=mongo_server, database="leases_recent")
    resource = PartitionLeaseResource(mongo=mongo, ttl_s=0.8)
    leases = resource.leases()
    leases.hold("run-a", [date(2026, 11, 3)], wait_s=0, poll_s=0.1)
    lease_id = leases._id("2026-11-03")
    expiry = leases.collection.find_one({"_id": lease_id})["expires"]
    assert resource.renew_unless_recent("run-a")  # never renewed here: renews
    assert not resource.renew_unless_recent("run-a")  # just did
    time.sleep(0.25)  # past a quarter TTL (0.2 s)
    assert resource.renew_unless_recent("run-a")
    assert leases.collection.find_one({"_id": lease_id})["expires"] > expiry
    leases.release("run-a")
