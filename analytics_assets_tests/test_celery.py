"""The Celery executor end to end: a real Redis broker, two workers on separate queues (the
default one and `gpu`), a multi-day backfill through them; the lake and MongoDB end equal to
the same days run in a single process."""

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


def run_through_workers(
    env: dict[str, str], workers: dict[str, subprocess.Popen], log: Path
) -> None:
    """The ingestion run with `env`, failed as soon as a worker dies (the run would wait for
    its steps forever) and when the run itself fails."""
    with log.open("ab") as out:
        run = subprocess.Popen(
            ingestion_command(), env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        while run.poll() is None:
            for queue, worker in workers.items():
                assert worker.poll() is None, f"the {queue} worker exited: see its log"
            time.sleep(0.5)
        assert run.returncode == 0, log.read_text()[-3000:]
    finally:
        stop(run)


# A mean's last bit depends on the order its rows are summed in, which no executor promises
# (a language confidence came out 0.92955 in one run, 0.9295499999999999 in the other):
# floats are compared to 12 digits, everything else exactly.
FLOAT_DIGITS = 12
# What two runs of the same days differ in by design: when the source was read, when a
# MongoDB migration was applied, the run that wrote a document and MongoDB's own id.
WALL_CLOCK_COLUMNS = ["fetched_at", "applied_at"]
NOT_COMPARED = {"_id": 0, RUN_FIELD: 0, **dict.fromkeys(WALL_CLOCK_COLUMNS, 0)}


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


def the_run_and_its_workers(dagster_home: Path) -> tuple[str, dict[str, str]]:
    """The instance's one run (it succeeded): its id, and step key -> the name of the Celery
    worker that ran it, from the run's events."""
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.SUCCESS
        records = instance.get_event_records(
            EventRecordsFilter(event_type=DagsterEventType.ENGINE_EVENT)
        )
        workers = {}
        for record in records:
            entry = record.event_log_entry
            metadata = entry.dagster_event.event_specific_data.metadata
            if entry.run_id == run.run_id and "Celery worker" in metadata:
                workers[entry.step_key] = metadata["Celery worker"].value
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


def test_a_backfill_through_celery_workers_equals_a_single_process_run(
    redis_broker, mongo_server, tmp_path
):
    local = tmp_path / "local"
    # Generated once before anything starts, so no two processes write it at the same time.
    ensure_sample_export(local / "sample_export")
    shared = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        # The sample, the heads and the pseudonym key: one folder for every process.
        "ANALYTICS_LOCAL_DIR": str(local),
        "MONGODB_URI": mongo_server,
    }
    single = {
        **shared,
        "DAGSTER_HOME": str(tmp_path / "single_home"),
        "ANALYTICS_STEP_EXECUTOR": "in_process",
        "ANALYTICS_LAKE_URL": str(tmp_path / "single_lake"),
        "MONGODB_DATABASE": "single_process",
    }
    celery_home = tmp_path / "celery_home"
    celery = {
        **shared,
        "DAGSTER_HOME": str(celery_home),
        "ANALYTICS_STEP_EXECUTOR": "celery",
        "ANALYTICS_CELERY_BROKER": redis_broker,
        "ANALYTICS_LAKE_URL": str(tmp_path / "celery_lake"),
        "MONGODB_DATABASE": "celery",
    }
    for home in (single["DAGSTER_HOME"], celery_home):
        Path(home).mkdir()
    # First, so that it creates the pseudonym key the workers then read.
    subprocess.run(ingestion_command(), env=single, check=True, capture_output=True)
    # The instance's SQLite schema, created once: workers starting together would each try.
    with DagsterInstance.from_config(str(celery_home)) as instance:
        instance.get_runs()

    logs = tmp_path / "logs"
    logs.mkdir()
    workers = {queue: start_worker(queue, celery, logs / queue) for queue in QUEUES}
    try:
        run_through_workers(celery, workers, logs / "run")
    finally:
        for worker in workers.values():
            stop(worker)

    run_id, ran_on = the_run_and_its_workers(celery_home)
    assert ran_on.pop("conversation_categories").startswith(f"{GPU_QUEUE}-")
    assert ran_on  # every other step went to the default queue's worker
    assert all(worker.startswith(f"{DEFAULT_QUEUE}-") for worker in ran_on.values())

    expected_lake = lake_contents(tmp_path / "single_lake")
    assert expected_lake
    got_lake = lake_contents(tmp_path / "celery_lake")
    assert got_lake.keys() == expected_lake.keys()
    for path, frame in expected_lake.items():
        assert_frame_equal(got_lake[path], frame, rel_tol=10**-FLOAT_DIGITS, abs_tol=0.0)
    expected_mongo = mongo_contents(mongo_server, "single_process")
    assert expected_mongo
    assert mongo_contents(mongo_server, "celery") == expected_mongo
    assert writers(mongo_server, "celery") == {run_id}


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
