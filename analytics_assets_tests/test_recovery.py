"""Recovery end to end: a backfill through every NocoDB fault while MongoDB is killed mid-run
and comes back, and a run killed halfway then run again, both end with the lake and MongoDB equal to
the source: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from dagster import DagsterInstance

from analytics_assets.definitions import build_definitions
from analytics_assets.defs.ingestion.resources import NocoDBSourceResource
from analytics_assets.defs.storage.lake import ParquetLakeIOManager
from analytics_assets.deployments import storage_resources
from analytics_assets.sources.generator import SampleSpec, generate_sample
from analytics_assets.sources.seed import seed_nocodb
from analytics_assets_tests.conftest import make_client, range_tags, start_mongo, stop_mongo
from analytics_assets_tests.fault_proxy import FAULTS, FaultProxy, every_fault_between_successes
from analytics_assets_tests.nocodb_server import free_port
from analytics_assets_tests.test_assets import read_asset

SPEC = SampleSpec(
    start=date(2026, 11, 1), days=3, conversations=60, users=15, seed=5, with_bad_records=False
)
DAYS = [SPEC.start + timedelta(days=n) for n in range(SPEC.days)]


@pytest.fixture(scope="module")
def source(nocodb):
    data = generate_sample(SPEC)
    with make_client(nocodb) as client:
        base = seed_nocodb(client, data, base_title="recovery_test")
        messages = list(
            client.iter_records(base.table_ids["messages"], fields=["message_id", "content"])
        )
    return base, pl.DataFrame(messages).sort("message_id")


def nocodb_definitions(url: str, token: str, base, lake, mongo, **source_options):
    """The code location reading the seeded base at `url` (NocoDB itself, or a proxy in
    front of it), writing to `lake` and `mongo`."""
    return build_definitions(
        resources={
            "record_source": NocoDBSourceResource(
                url=url, api_token=token, base_id=base.base_id, requests_per_second=0,
                **source_options,
            ),
            **storage_resources({"base_url": lake.base_url, "s3": lake.s3}, mongo),
        }
    )  # fmt: skip


def assert_equal_to_source(lake: ParquetLakeIOManager, mongo_db, expected: pl.DataFrame):
    stored = read_asset(lake, "conversation_messages").select("message_id", "content")
    assert stored.sort("message_id").equals(expected)
    documents = list(mongo_db["conversation_messages"].find({}, {"message_id": 1}))
    assert len(documents) == expected.height  # no duplicates
    assert {d["message_id"] for d in documents} == set(expected["message_id"])
    categories = read_asset(lake, "conversation_categories")
    conversations = read_asset(lake, "conversations")
    assert categories.height == conversations.height == conversations["conversation_id"].n_unique()


def test_every_fault_and_a_mongodb_restart_mid_run_lose_and_duplicate_nothing(
    nocodb, source, tmp_path
):
    from analytics_assets.defs.storage.resources import MongoResource

    base, expected = source
    port = free_port()
    mongo_dir = tmp_path / "mongo"
    mongo_dir.mkdir()
    # Up when the run begins (the run holds its days' leases in MongoDB from its first
    # step), killed once the run writes, and back a moment later.
    running = {"process": start_mongo(mongo_dir, port)}
    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    mongo = MongoResource(uri=f"mongodb://127.0.0.1:{port}", database="recovery")
    restarted: dict[str, float] = {}
    first_lake_file = lake.lake().day_file("conversation_messages", DAYS[0])

    def kill_mongo_mid_run_and_restart_it() -> None:
        # The lake is written before MongoDB: once this file exists the run is writing, or
        # about to write, the day's messages to MongoDB. Killed (no clean shutdown) there,
        # the run finds it down, waits for it (server selection, 10 s) or retries the write.
        deadline = time.monotonic() + 120
        while not Path(first_lake_file.path).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        running["process"].kill()
        running["process"].wait(timeout=10)
        restarted["killed_with_lake_file"] = Path(first_lake_file.path).exists()
        time.sleep(1.0)
        restarted["at"] = time.monotonic()
        running["process"] = start_mongo(mongo_dir, port)

    with FaultProxy(nocodb.url, every_fault_between_successes(rounds=1)) as proxy:
        defs = nocodb_definitions(
            proxy.url, nocodb.token, base, lake, mongo, timeout_s=0.5, throttle_wait_s=0.2
        )
        watcher = threading.Thread(target=kill_mongo_mid_run_and_restart_it)
        watcher.start()
        try:
            result = defs.resolve_job_def("ingestion_job").execute_in_process(
                instance=DagsterInstance.ephemeral(), tags=range_tags(DAYS[0], DAYS[-1])
            )
            finished_at = time.monotonic()
        finally:
            watcher.join()
    try:
        assert result.success
        assert set(proxy.injected) == set(FAULTS)
        # The run says what it went through.
        fetched = result.asset_materializations_for_node("nocodb_raw_pages")[0].metadata
        # Each faulted request was sent again: retried, or hedged around when it was a
        # slow read's copy (a stall beaten by its twin is no retry). Counting retries alone
        # failed CI once: the stall had been hedged around, 7 retries for 8 faults.
        assert fetched["retries"].value + fetched["hedged"].value >= len(FAULTS)
        # The two 429s are the plan's first and third requests: no read is hedged before
        # five answers are known (and the 0.5 s timeout is under the cold hedging delay), so
        # neither can lose a race to a twin.
        assert fetched["throttled"].value >= 2
        # Killed mid-run: after the run began writing, and back before it ended.
        assert restarted["killed_with_lake_file"] and restarted["at"] < finished_at
        assert_equal_to_source(lake, mongo.db(), expected)
    finally:
        stop_mongo(running["process"])


def test_a_run_killed_halfway_and_run_again_converges(nocodb, source, mongo_server, tmp_path):
    from analytics_assets.defs.storage.resources import MongoResource

    base, expected = source
    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    mongo = MongoResource(uri=mongo_server, database="killed_run")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "NOCODB_URL": nocodb.url,
        "NOCODB_API_TOKEN": nocodb.token,
        "NOCODB_BASE_ID": base.base_id,
        "NOCODB_REQUESTS_PER_SECOND": "0",
        "ANALYTICS_LAKE_URL": lake.base_url,
        "MONGODB_URI": mongo_server,
        "MONGODB_DATABASE": "killed_run",
        "ANALYTICS_HEADS_DIR": str(tmp_path / "heads"),
        # The killed run's day leases expire this long after its last heartbeat; the run
        # again waits for that (no daemon sees the kill to release them sooner).
        "ANALYTICS_LEASE_TTL_S": "20",
    }
    Path(env["DAGSTER_HOME"]).mkdir()
    tags = json.dumps(range_tags(DAYS[0], DAYS[-1]))
    run = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m",
         "analytics_assets.definitions", "-j", "ingestion_job", "--tags", tags],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    # Killed once the messages are in the lake and MongoDB is being written: mid-partition.
    halfway = Path(lake.lake().day_file("conversation_messages", DAYS[-1]).path)
    deadline = time.monotonic() + 180
    while not halfway.exists():
        assert run.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not Path(lake.lake().day_file("daily_report", DAYS[0]).path).exists()

    defs = nocodb_definitions(nocodb.url, nocodb.token, base, lake, mongo)
    again = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(DAYS[0], DAYS[-1])
    )
    assert again.success
    assert_equal_to_source(lake, mongo.db(), expected)
    reports = read_asset(lake, "daily_report")
    assert reports["conversations"].sum() == read_asset(lake, "conversations").height


def test_a_failed_pull_resumes_after_its_last_completed_page(nocodb, source, tmp_path):
    from analytics_assets.nocodb.errors import NocoDBRetriesExhaustedError
    from analytics_assets.sources.nocodb import NocoDBSource

    base, _ = source
    day = DAYS[1]

    def pull(fail_at_page: int | None = None, run: str = "run-1"):
        with make_client(nocodb, page_size=20) as client:
            pages = 0
            send = client.request

            def request(method, path, **kwargs):
                nonlocal pages
                if path.endswith("/records"):
                    pages += 1
                    if fail_at_page is not None and pages == fail_at_page:
                        raise NocoDBRetriesExhaustedError("NocoDB went away (injected)")
                return send(method, path, **kwargs)

            client.request = request
            source = NocoDBSource(
                client, base_id=base.base_id, checkpoint_dir=tmp_path / "spool",
                checkpoint_scope=run,
            )  # fmt: skip
            return source.fetch_day("messages", day), pages

    with make_client(nocodb) as client:
        clean = NocoDBSource(client, base_id=base.base_id).fetch_day("messages", day)
    total_pages = clean.frame.height // 20 + 1
    assert total_pages >= 5

    with pytest.raises(NocoDBRetriesExhaustedError):
        pull(fail_at_page=4)  # three pages done, the fourth fails
    # Another run (the change sensor's, after an edit) reads every page again: the failed
    # run's pages may predate the edit. They stay for that run's re-execution.
    other, _ = pull(run="run-2")
    assert other.stats["resumed_pages"] == 0
    resumed, requests = pull()
    assert resumed.stats["resumed_pages"] == 3
    # Only what was left was asked for: the remaining pages plus the blank-time and the
    # out-of-range queries (records filed under the day NocoDB stored them).
    assert requests == total_pages - 3 + 2
    assert resumed.frame["record_id"].to_list() == clean.frame["record_id"].to_list()
    assert resumed.frame["record"].to_list() == clean.frame["record"].to_list()
    # A finished pull leaves no checkpoint behind; the next one starts from zero.
    assert not any((tmp_path / "spool").iterdir())


def test_the_spools_of_runs_that_never_came_back_are_swept(tmp_path):
    from analytics_assets.sources.checkpoints import PageSpool, sweep_stale
    from analytics_assets.transforms.raw import empty_raw_frame

    for run in ("failed-run-a", "failed-run-b"):
        PageSpool(tmp_path, f"messages|2026-11-01|{run}", 3600).save(0, empty_raw_frame(), "7")
    (tmp_path / "not-a-spool").mkdir()
    assert sweep_stale(tmp_path, 3600) == 0
    time.sleep(0.05)
    assert sweep_stale(tmp_path, 0.01) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-spool"]


def test_an_s3_restart_mid_run_loses_and_duplicates_nothing(nocodb, source, mongo_server):
    import boto3
    from dagster_aws.s3 import S3Resource
    from moto.server import ThreadedMotoServer

    from analytics_assets.defs.storage.resources import MongoResource

    base, expected = source
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        os.environ.setdefault(name, value)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    servers = [ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)]
    servers[0].start()
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="restart-lake")
    lake = ParquetLakeIOManager(
        base_url="s3://restart-lake/lake", s3=S3Resource(endpoint_url=endpoint)
    )
    mongo = MongoResource(uri=mongo_server, database="s3_restart")
    outage: dict[str, float] = {}
    halfway = f"lake/conversation_messages/day={DAYS[-1].isoformat()}/data.parquet"

    def restart_s3_mid_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            listed = s3.list_objects_v2(Bucket="restart-lake", Prefix=halfway)
            if listed.get("KeyCount"):
                break
            time.sleep(0.05)
        servers[0].stop()  # every write and read of the next 1.5 s finds nobody there
        outage["from"] = time.monotonic()
        time.sleep(1.5)
        servers.append(ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False))
        servers[-1].start()
        outage["to"] = time.monotonic()

    defs = nocodb_definitions(nocodb.url, nocodb.token, base, lake, mongo)
    watcher = threading.Thread(target=restart_s3_mid_run)
    watcher.start()
    try:
        result = defs.resolve_job_def("ingestion_job").execute_in_process(
            instance=DagsterInstance.ephemeral(), tags=range_tags(DAYS[0], DAYS[-1])
        )
        finished = time.monotonic()
        watcher.join()
        assert result.success
        # The run was going before the outage and still going after it.
        assert outage["to"] < finished
        assert_equal_to_source(lake, mongo.db(), expected)
    finally:
        watcher.join()
        servers[-1].stop()
