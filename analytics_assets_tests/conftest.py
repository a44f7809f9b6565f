"""Shared fixtures: a real NocoDB, a moto S3 server and a small seeded sample."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import boto3
import pytest

from analytics_assets.nocodb.client import NocoDBClient, RetryPolicy
from analytics_assets.sources.generator import SampleData, SampleSpec, generate_sample
from analytics_assets.sources.seed import SeededBase, seed_nocodb
from analytics_assets_tests.nocodb_server import NocoDBServer, free_port, start_nocodb


def import_benchmark(name: str):
    """A script under benchmarks/ as a module: its evaluation code is what the accuracy
    tests gate on, so the tests and the printed figures cannot drift apart."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def range_tags(first, last) -> dict[str, str]:
    """Run tags that make one run cover a range of daily partitions (a single-run backfill)."""
    from analytics_assets.defs.partitions import range_tags as tags

    return tags(first, last)


def days_requested(requests) -> list[str]:
    """Every day the run requests cover, in order: a request's partition, or each day of
    its range (the change sensor asks for consecutive days in one range run)."""
    from analytics_assets.defs.partitions import days_of_run

    return sorted(
        day.isoformat()
        for request in requests
        for day in days_of_run(request.partition_key, request.tags)
    )


def run_requested(job, instance, requests) -> None:
    """Runs each request as the daemon would: its partition, or its range (its tags)."""
    for request in requests:
        result = job.execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags
        )
        assert result.success


def stop_embedded_mongo(data_dir: Path) -> None:
    """Ends the embedded MongoDB whose files are in `data_dir`, if it runs (the demo and the
    local deployment leave it running for `make stop`)."""
    pid_file = data_dir / "nx-27017.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip())
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            os.kill(pid, 0)  # raises once the process is gone
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session", autouse=True)
def no_default_store_left_running() -> Iterator[None]:
    """A test that resolves the local deployment's default store starts the embedded MongoDB
    on its files in `.local/mongo`, as `make demo` does, and leaves it for `make stop`: one
    found still running after CI had started 9 minutes into the tests. The one this session
    started, it ends; one that ran before it (a developer's demo) it leaves."""
    from analytics_assets.settings import Settings

    data_dir = Path(Settings().embedded_mongo_dir)
    session_started = time.time()
    yield
    pid_file = data_dir / "nx-27017.pid"
    if pid_file.exists() and pid_file.stat().st_mtime >= session_started:
        stop_embedded_mongo(data_dir)


# A small sample for the live-server tests: 3 days, about 2,000 messages.
SEEDED_SPEC = SampleSpec(start=date(2026, 11, 1), days=3, conversations=300, users=60, seed=7)
FAST_RETRY = RetryPolicy(
    max_attempts=6, backoff_base_s=0.02, backoff_max_s=0.2, throttle_wait_s=0.2
)


@pytest.fixture(scope="session")
def nocodb() -> Iterator[NocoDBServer]:
    """The real NocoDB server: NOCODB_TEST_URL/NOCODB_TEST_TOKEN if given, else started here."""
    if os.environ.get("NOCODB_TEST_URL"):
        yield NocoDBServer(os.environ["NOCODB_TEST_URL"], os.environ["NOCODB_TEST_TOKEN"])
        return
    server = start_nocodb()
    try:
        yield server
    finally:
        server.stop()


def make_client(server: NocoDBServer, **options) -> NocoDBClient:
    return NocoDBClient(
        server.url, server.token, requests_per_second=0, retry=FAST_RETRY, **options
    )


@pytest.fixture()
def nocodb_client(nocodb: NocoDBServer) -> Iterator[NocoDBClient]:
    with make_client(nocodb) as client:
        yield client


@dataclass(frozen=True)
class SeededSample:
    data: SampleData
    base: SeededBase


@pytest.fixture(scope="session")
def seeded_sample(nocodb: NocoDBServer) -> SeededSample:
    data = generate_sample(SEEDED_SPEC)
    with make_client(nocodb) as client:
        base = seed_nocodb(client, data, base_title="seeded_sample")
    return SeededSample(data=data, base=base)


def start_mongo(data_dir, port: int, *, plain_nx: bool = False):
    """The embedded server the deployment runs (nx-27017 through `storage/embedded_server.py`)
    on loopback with its files in `data_dir`; returns the process once it answers. Starting
    it again on the same folder and port is a restart with the data kept. `plain_nx`: plain
    nx-27017 instead, on the same files (a benchmark's baseline)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from pymongo import MongoClient

    entry_point = (
        [str(Path(sys.executable).parent / "nx-27017")]
        if plain_nx
        else [sys.executable, "-m", "analytics_assets.storage.embedded_server"]
    )
    process = subprocess.Popen(
        [*entry_point,
         "--data-dir", str(data_dir), "--port", str(port),
         "--log-file", str(Path(data_dir) / "log"), "--pid-file", str(Path(data_dir) / "pid")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            with MongoClient(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=500) as probe:
                probe.admin.command("ping")
            return process
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.2)


def stop_mongo(process) -> None:
    """Down when this returns: SIGTERM, then SIGKILL if nx-27017 has not exited within 10 s
    (under load it sometimes lingers after SIGTERM; CI once saw it outlast the wait)."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory) -> Iterator[str]:
    """The embedded server (nx-27017, MongoDB's wire protocol on SQLite) on loopback; yields
    its URI."""
    port = free_port()
    process = start_mongo(tmp_path_factory.mktemp("mongo"), port)
    try:
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        stop_mongo(process)


@pytest.fixture()
def mongo(mongo_server, request):
    """A MongoResource on a database of this test's own."""
    from analytics_assets.defs.storage.resources import MongoResource

    name = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:50]
    return MongoResource(uri=mongo_server, database=name)


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def resource(self):
        """dagster-aws's S3Resource pointed at this server, as a deployment would set it."""
        from dagster_aws.s3 import S3Resource

        return S3Resource(
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 API server on loopback, spoken to over HTTP like a real S3."""
    from moto.server import ThreadedMotoServer

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = S3Server(endpoint_url=f"http://127.0.0.1:{port}", bucket="analytics-lake")
    s3.client().create_bucket(Bucket=s3.bucket)
    try:
        yield s3
    finally:
        server.stop()


def sample_definitions(root, mongo_uri: str, database: str, **resources):
    """The code location on the bundled sample export (generated into `root/export`), with
    its lake in `root/lake` and the MongoDB `database`; `resources` replace others.
    Returns (definitions, lake IO manager, MongoResource)."""
    from pathlib import Path

    from analytics_assets.definitions import build_definitions
    from analytics_assets.defs.ingestion.resources import ExportSourceResource
    from analytics_assets.defs.storage.lake import ParquetLakeIOManager
    from analytics_assets.defs.storage.resources import MongoResource
    from analytics_assets.deployments import storage_resources

    root = Path(root)
    lake = ParquetLakeIOManager(base_url=str(root / "lake"))
    mongo = MongoResource(uri=mongo_uri, database=database)
    defs = build_definitions(
        resources={
            "record_source": ExportSourceResource(
                export_dir=str(root / "export"), generate_sample_if_missing=True
            ),
            **storage_resources({"base_url": lake.base_url}, mongo),
            **resources,
        }
    )
    return defs, lake, mongo


def export_definitions(root, mongo_uri: str, database: str, **resources):
    """`sample_definitions` on the export a test wrote into `root/export` (never replaced by
    the default sample, whose spec differs)."""
    from pathlib import Path

    from analytics_assets.defs.ingestion.resources import ExportSourceResource

    source = ExportSourceResource(
        export_dir=str(Path(root) / "export"), generate_sample_if_missing=False
    )
    return sample_definitions(root, mongo_uri, database, record_source=source, **resources)
