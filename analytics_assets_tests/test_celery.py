"""The Celery executor end to end: a real Redis broker, two workers on separate queues (the
default one and `gpu`), a multi-day backfill through them; the lake and MongoDB end equal to
the same days run in a single process, also when a worker is killed mid-step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, EventRecordsFilter
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG
from polars.testing import assert_frame_equal
from pymongo import MongoClient

from analytics_assets.defs.queues import DEFAULT_QUEUE, GPU_QUEUE
from analytics_assets.sources.generator import SAMPLE_START, ensure_sample_export
from analytics_assets.storage.collections import RUN_FIELD
from analytics_assets.storage.day_index import LABELS_RUN_FIELD
from analytics_assets_tests.conftest import range_tags
from analytics_assets_tests.nocodb_server import free_port

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QUEUES = (DEFAULT_QUEUE, GPU_QUEUE)
DAYS = [SAMPLE_START + timedelta(days=n) for n in range(3)]


def start_redis(folder: Path, port: int) -> subprocess.Popen:
    """redis-server on loopback, nothing saved to disk; returns it once it answers."""
    import redis

    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            redis.Redis(port=port, socket_timeout=1).ping()
            return process
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    """Down when this returns, with everything it started (its process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def start_worker(queue: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """scripts/celery/worker.sh for `queue`, one step at a time (two cores)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            ["bash", str(PROJECT / "scripts/celery/worker.sh"), queue, "--concurrency", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def ingestion_command() -> list[str]:
    """The ingestion job over DAYS as one run (a single-run backfill), from the command line
    as a deployment launches it: the code location and settings come from the environment."""
    return [str(BIN / "dagster"), "job", "execute", "-m", "analytics_assets.definitions",
            "-j", "ingestion_job", "--tags", json.dumps(range_tags(DAYS[0], DAYS[-1]))]  # fmt: skip


def start_run(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            ingestion_command(), env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def wait_for(run: subprocess.Popen, workers: dict[str, subprocess.Popen], log: Path) -> None:
    """Until the run ends, failed as soon as a worker dies (the run would wait for its steps
    forever) and when the run itself fails."""
    while run.poll() is None:
        for name, worker in workers.items():
            assert worker.poll() is None, f"the {name} worker exited: see its log"
        time.sleep(0.5)
    assert run.returncode == 0, log.read_text()[-3000:]


# A mean's last bit depends on the order its rows are summed in, which no executor promises
# (a language confidence came out 0.92955 in one run, 0.9295499999999999 in the other):
# floats are compared to 12 digits, everything else exactly.
FLOAT_DIGITS = 12
# What two runs of the same days differ in by design: when the source was read, when a
# MongoDB migration was applied, the run that wrote a document (or a day list's labels) and
# MongoDB's own id.
WALL_CLOCK_COLUMNS = ["fetched_at", "applied_at"]
NOT_COMPARED = {
    "_id": 0, RUN_FIELD: 0, LABELS_RUN_FIELD: 0, **dict.fromkeys(WALL_CLOCK_COLUMNS, 0)
}  # fmt: skip


def lake_contents(root: Path) -> dict[str, pl.DataFrame]:
    return {
        str(path.relative_to(root)): pl.read_parquet(path).drop(WALL_CLOCK_COLUMNS, strict=False)
        for path in root.rglob("*.parquet")
    }


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, FLOAT_DIGITS)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def mongo_contents(uri: str, database: str) -> dict[str, list[str]]:
    """Each collection's documents, in a stable order."""
    with MongoClient(uri) as client:
        db = client[database]
        return {
            name: sorted(
                json.dumps(rounded(document), sort_keys=True, default=str)
                for document in db[name].find({}, NOT_COMPARED)
            )
            for name in sorted(db.list_collection_names())
        }


def writers(uri: str, database: str) -> set[str]:
    """The runs that wrote the database's documents."""
    with MongoClient(uri) as client:
        db = client[database]
        return {
            run
            for name in db.list_collection_names()
            for run in db[name].distinct(RUN_FIELD)
            if run is not None
        }


def the_run_and_its_workers(dagster_home: Path) -> tuple[str, dict[str, list[str]]]:
    """The instance's one run (it succeeded): its id, and step key -> the names of the Celery
    workers that ran it (more than one where a step was handed out again), from its events."""
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.SUCCESS
        records = instance.get_event_records(
            EventRecordsFilter(event_type=DagsterEventType.ENGINE_EVENT)
        )
        workers: dict[str, list[str]] = {}
        for record in records:
            entry = record.event_log_entry
            metadata = entry.dagster_event.event_specific_data.metadata
            if entry.run_id == run.run_id and "Celery worker" in metadata:
                workers.setdefault(entry.step_key, []).append(metadata["Celery worker"].value)
        return run.run_id, workers


@pytest.fixture()
def redis_broker(tmp_path) -> Iterator[str]:
    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    process = start_redis(folder, port)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=20)


def environments(tmp_path: Path, broker: str, mongo_uri: str) -> tuple[dict, dict]:
    """The environments of the single-process run and of the Celery run (and its workers):
    the same sample and local folder, each its own lake, MongoDB database and instance."""
    local = tmp_path / "local"
    # Generated once before anything starts, so no two processes write it at the same time.
    ensure_sample_export(local / "sample_export")
    shared = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        # The sample, the heads and the pseudonym key: one folder for every process.
        "ANALYTICS_LOCAL_DIR": str(local),
        "MONGODB_URI": mongo_uri,
    }
    single = {
        **shared,
        "DAGSTER_HOME": str(tmp_path / "single_home"),
        "ANALYTICS_STEP_EXECUTOR": "in_process",
        "ANALYTICS_LAKE_URL": str(tmp_path / "single_lake"),
        "MONGODB_DATABASE": "single_process",
    }
    celery = {
        **shared,
        "DAGSTER_HOME": str(tmp_path / "celery_home"),
        "ANALYTICS_STEP_EXECUTOR": "celery",
        "ANALYTICS_CELERY_BROKER": broker,
        "ANALYTICS_LAKE_URL": str(tmp_path / "celery_lake"),
        "MONGODB_DATABASE": "celery",
    }
    for env in (single, celery):
        Path(env["DAGSTER_HOME"]).mkdir()
    (tmp_path / "logs").mkdir()
    # First, so that it creates the pseudonym key the workers then read.
    subprocess.run(ingestion_command(), env=single, check=True, capture_output=True)
    # The instance's SQLite schema, created once: workers starting together would each try.
    with DagsterInstance.from_config(celery["DAGSTER_HOME"]) as instance:
        instance.get_runs()
    return single, celery


def release_like_the_daemon(mongo_uri: str, run_id: str) -> int:
    """What the run-status sensor does when a run ends (there is no daemon here): gives its
    day leases back. The single-process run gives its own back as it ends."""
    from analytics_assets.storage.leases import LEASES_COLLECTION, PartitionLeases

    with MongoClient(mongo_uri) as client:
        return PartitionLeases(client["celery"][LEASES_COLLECTION]).release(run_id)


def assert_equal_to_the_single_process_run(tmp_path: Path, mongo_uri: str, run_id: str):
    expected_lake = lake_contents(tmp_path / "single_lake")
    assert expected_lake
    got_lake = lake_contents(tmp_path / "celery_lake")
    assert got_lake.keys() == expected_lake.keys()
    for path, frame in expected_lake.items():
        assert_frame_equal(got_lake[path], frame, rel_tol=10**-FLOAT_DIGITS, abs_tol=0.0)
    expected_mongo = mongo_contents(mongo_uri, "single_process")
    assert expected_mongo
    # Equal lists of documents: none lost, none twice.
    assert mongo_contents(mongo_uri, "celery") == expected_mongo
    assert writers(mongo_uri, "celery") == {run_id}


def test_a_backfill_through_celery_workers_equals_a_single_process_run(
    redis_broker, mongo_server, tmp_path
):
    _, celery = environments(tmp_path, redis_broker, mongo_server)
    logs = tmp_path / "logs"
    workers = {queue: start_worker(queue, celery, logs / queue) for queue in QUEUES}
    run = start_run(celery, logs / "run")
    try:
        wait_for(run, workers, logs / "run")
    finally:
        for process in (run, *workers.values()):
            stop(process)

    run_id, ran_on = the_run_and_its_workers(Path(celery["DAGSTER_HOME"]))
    # The run's first step leased its three days; they outlived that step's worker process.
    assert release_like_the_daemon(mongo_server, run_id) == len(DAYS)
    (categories_worker,) = ran_on.pop("conversation_categories")
    assert categories_worker.startswith(f"{GPU_QUEUE}-")
    assert ran_on  # every other step went to the default queue's worker, once
    assert all(len(names) == 1 for names in ran_on.values())
    assert all(names[0].startswith(f"{DEFAULT_QUEUE}-") for names in ran_on.values())
    assert_equal_to_the_single_process_run(tmp_path, mongo_server, run_id)


def test_a_worker_killed_mid_step_loses_and_duplicates_no_day(redis_broker, mongo_server, tmp_path):
    _, celery = environments(tmp_path, redis_broker, mongo_server)
    # The lost step goes back to the queue 30 s after the killed worker took it (longer than
    # any step of these three days takes here, so none still running is handed out again).
    celery["ANALYTICS_CELERY_VISIBILITY_TIMEOUT_S"] = "30"
    logs = tmp_path / "logs"
    workers = {queue: start_worker(queue, celery, logs / queue) for queue in QUEUES}
    run = start_run(celery, logs / "run")
    try:
        # Killed once the last day's messages are in the lake: mid-run, mid-step (the
        # messages' step is writing MongoDB, or the next one is running).
        halfway = Path(celery["ANALYTICS_LAKE_URL"], "conversation_messages")
        halfway = halfway / f"day={DAYS[-1].isoformat()}" / "data.parquet"
        while not halfway.exists():
            assert run.poll() is None, "the run ended before a worker could be killed"
            time.sleep(0.05)
        killed = workers.pop(DEFAULT_QUEUE)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        workers["replacement"] = start_worker(DEFAULT_QUEUE, celery, logs / "replacement")
        wait_for(run, workers, logs / "run")
    finally:
        for process in (run, *workers.values()):
            stop(process)

    run_id, ran_on = the_run_and_its_workers(Path(celery["DAGSTER_HOME"]))
    # The run's first step leased its three days; they outlived that step's worker process.
    assert release_like_the_daemon(mongo_server, run_id) == len(DAYS)
    # The step the killed worker was running was run again, by the replacement.
    killed_name = f"{DEFAULT_QUEUE}-{killed.pid}@"
    replacement_name = f"{DEFAULT_QUEUE}-{workers['replacement'].pid}@"
    interrupted = [
        step
        for step, names in ran_on.items()
        if any(name.startswith(killed_name) for name in names)
        and any(name.startswith(replacement_name) for name in names)
    ]
    assert interrupted
    assert_equal_to_the_single_process_run(tmp_path, mongo_server, run_id)


def test_model_tier_steps_go_to_the_gpu_queue_and_the_rest_to_the_default():
    from analytics_assets.definitions import build_definitions
    from analytics_assets.settings import Settings

    settings = Settings(step_executor="celery", celery_broker="redis://broker:6379/0")
    defs = build_definitions(settings)
    for name in ("ingestion_job", "discovery_job", "train_heads_job"):
        job = defs.resolve_job_def(name)
        assert job.executor_def.name == "celery"
        for node in job.nodes:
            queue = node.definition.tags.get(DAGSTER_CELERY_QUEUE_TAG, DEFAULT_QUEUE)
            assert queue == (GPU_QUEUE if node.definition.pool == "gpu" else DEFAULT_QUEUE)


def test_celery_without_a_broker_is_refused_naming_the_setting():
    from analytics_assets.deployments import executor_for
    from analytics_assets.settings import Settings

    with pytest.raises(ValueError, match="ANALYTICS_CELERY_BROKER"):
        executor_for(Settings(step_executor="celery", celery_broker=None))
