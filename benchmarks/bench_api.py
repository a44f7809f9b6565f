"""Read-API throughput and latency at 16 concurrent clients, against a bare FastAPI endpoint
that returns a constant (the ceiling), in one run on loopback.

It starts nx-27017, fills it by materializing the sample (14 days), serves the API with
uvicorn (one worker, as deployed) in a second process, and loads it from a third: `wrk` when
it is installed (Debian's `wrk`), else an async httpx client.

    .venv/bin/python benchmarks/bench_api.py [--seconds 10] [--connections 16] [--days 14]
        [--against CHECKOUT] [--plain-server]

`--days` sizes the sample (the default's 14 days and ~230 conversations a day, kept per
day, ending on the default's last day): the query's label pages slow down as the history
grows, the key lists' do not.

`--plain-server` measures each API endpoint again, right beside, with plain nx-27017 serving
the same files instead of the deployment's embedded server (`storage/embedded_server.py`):
a change to the embedded server compared with the server before it, in one run.

`--against` serves a second API from another checkout of this repository (`git worktree add
/tmp/before <commit>`) on the same database, measures each of its endpoints right beside
this one's (alternating which goes first) and prints the ratios: a change to the API
process compared with the code before it, in one run. Besides requests/s (which the
embedded server's share of the 2 cores bounds as much as the API does, and which varies
±15 % between runs here), each line gives the API process's own CPU time per request,
read from /proc: the steadier measure of a change to the API process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagster import DagsterInstance

from analytics_assets.api import keys
from analytics_assets.api.queries import DAY_LISTS
from analytics_assets.definitions import build_definitions
from analytics_assets.defs.ingestion.resources import ExportSourceResource
from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.deployments import storage_resources
from analytics_assets.sources.generator import SampleSpec, ensure_sample_export
from analytics_assets_tests.conftest import range_tags, start_mongo, stop_mongo
from analytics_assets_tests.nocodb_server import free_port

DAY_LISTS_TTL_S = DAY_LISTS.ttl_s

BARE_APP = """
from fastapi import FastAPI
app = FastAPI()
@app.get("/constant")
def constant():
    return {"status": "ok"}
"""


def serve(module: str, port: int, env: dict, cwd: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", module, "--port", str(port), "--log-level", "warning",
         "--no-access-log"],
        env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{module} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_wrk(url: str, headers: dict, seconds: int, connections: int) -> tuple[float, float, float]:
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency", url]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def millis(label: str) -> float:
        value, unit = re.search(rf"\s{label}\s+([\d.]+)(us|ms|s)", output).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    if "Non-2xx" in output:
        raise RuntimeError(f"errors under load:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    return rate, millis("50%"), millis("99%")


def load_httpx(url: str, headers: dict, seconds: int, connections: int):
    async def run():
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(headers=headers, limits=limits) as client:

            async def worker():
                while time.perf_counter() < deadline:
                    started = time.perf_counter()
                    response = await client.get(url)
                    response.raise_for_status()
                    latencies.append((time.perf_counter() - started) * 1000)

            await asyncio.gather(*(worker() for _ in range(connections)))
        return latencies

    latencies = asyncio.run(run())
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / seconds, cuts[49], cuts[98]


def materialize_sample(root: Path, mongo: MongoResource, days: int) -> SampleSpec:
    """The sample of `days` days (the default's conversations a day, ending on its last
    day: days must be past) materialized into `mongo` through the ingestion job."""
    default = SampleSpec()
    spec = SampleSpec(
        start=default.end - timedelta(days=days - 1),
        days=days,
        conversations=default.conversations * days // default.days,
        users=default.users * days // default.days,
    )
    ensure_sample_export(root / "export", spec)
    defs = build_definitions(
        resources={
            "record_source": ExportSourceResource(export_dir=str(root / "export")),
            **storage_resources({"base_url": str(root / "lake")}, mongo),
        }
    )
    started = time.perf_counter()
    defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(spec.start, spec.end)
    )
    print(f"sample ({spec.days} days, {spec.conversations:,} conversations) materialized "
          f"into nx-27017 in {time.perf_counter() - started:.0f} s")  # fmt: skip
    return spec


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--days", type=int, default=SampleSpec().days)
    parser.add_argument("--against", help="another checkout's root, served beside this one")
    parser.add_argument(
        "--plain-server", action="store_true", help="each API endpoint again on plain nx-27017"
    )
    args = parser.parse_args()
    if args.against and args.plain_server:
        parser.error("--against and --plain-server: one comparison at a time")
    return args


def main() -> None:
    args = arguments()
    load = load_wrk if shutil.which("wrk") else load_httpx
    print(f"load generator: {'wrk' if load is load_wrk else 'httpx (async)'}, "
          f"{args.connections} connections, {args.seconds} s per endpoint")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "mongo").mkdir()
        mongo_port = free_port()
        mongo_process = start_mongo(root / "mongo", mongo_port)
        servers = []
        try:
            uri = f"mongodb://127.0.0.1:{mongo_port}"
            mongo = MongoResource(uri=uri, database="api_bench")
            spec = materialize_sample(root, mongo, args.days)
            db = mongo.db()
            key = keys.create_key(db, list(keys.SCOPES), rate_per_minute=keys.MAX_RATE_PER_MINUTE)
            conversation = db["conversation_analytics"].find_one({})["conversation_id"]
            day = spec.start.isoformat()
            # The rarest topic: a label page the query answers only by reading far.
            counts = db["conversation_analytics"].aggregate(
                [{"$group": {"_id": "$topic", "n": {"$sum": 1}}}]
            )
            rare = min((c for c in counts if c["_id"]), key=lambda c: (c["n"], c["_id"]))["_id"]
            week_end = (spec.start + timedelta(days=6)).isoformat()

            env = {**os.environ, "MONGODB_URI": uri, "MONGODB_DATABASE": "api_bench"}
            (root / "bare_app.py").write_text(BARE_APP)
            api_port, bare_port = free_port(), free_port()
            servers.append(serve("analytics_assets.api.main:app", api_port, env,
                                 str(Path(__file__).resolve().parents[1])))  # fmt: skip
            servers.append(serve("bare_app:app", bare_port, env, folder))
            ports = [api_port, bare_port]
            other_port = None
            if args.against:
                other_port = free_port()
                servers.append(serve("analytics_assets.api.main:app", other_port, env,
                                     str(Path(args.against).resolve())))  # fmt: skip
                ports.append(other_port)
            headers = {"X-API-Key": key}
            targets = [
                ("bare FastAPI constant (ceiling)", f"http://127.0.0.1:{bare_port}/constant", {}),
                ("GET /conversations/{id}",
                 f"http://127.0.0.1:{api_port}/conversations/{conversation}", headers),
                ("GET /analytics/reports/daily/{day}",
                 f"http://127.0.0.1:{api_port}/analytics/reports/daily/{day}", headers),
                ("GET /conversations (first page)",
                 f"http://127.0.0.1:{api_port}/conversations?limit=50", headers),
                ("GET /conversations?from=day&to=day",
                 f"http://127.0.0.1:{api_port}/conversations?from={day}&to={day}&limit=50",
                 headers),
                ("GET /conversations?from=day&to=day+6",
                 f"http://127.0.0.1:{api_port}/conversations?from={day}&to={week_end}&limit=50",
                 headers),
                ("GET /conversations?topic=billing",
                 f"http://127.0.0.1:{api_port}/conversations?topic=billing&limit=50", headers),
                (f"GET /conversations?topic={rare} (rarest)",
                 f"http://127.0.0.1:{api_port}/conversations?topic={rare}&limit=50", headers),
            ]  # fmt: skip
            processes = {port: server.pid for port, server in zip(ports, servers, strict=True)}

            def switch_server(plain: bool) -> None:
                """The same files served by plain nx-27017 or the deployment's server."""
                nonlocal mongo_process
                stop_mongo(mongo_process)
                mongo_process = start_mongo(root / "mongo", mongo_port, plain_nx=plain)
                # The API's client reconnects on its next request.
                for _ in range(50):
                    with contextlib.suppress(httpx.TransportError):
                        if httpx.get(targets[1][1], headers=headers, timeout=5).status_code < 500:
                            return
                    time.sleep(0.2)
                raise RuntimeError("the API did not reconnect")

            report(targets, db, args, load, api_port, other_port, processes,
                   switch_server if args.plain_server else None)  # fmt: skip
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
            stop_mongo(mongo_process)


def report(
    targets: list[tuple[str, str, dict]],
    db,
    args: argparse.Namespace,
    load,
    api_port: int,
    other_port: int | None,
    processes: dict[int, int],
    switch_server=None,
) -> None:
    """Each target's rate, latency and API process CPU per request (`processes`: port ->
    pid), with `other_port` the other checkout's beside it, with `switch_server` the same on
    plain nx-27017 beside it; then the date and label pages again by query (their baseline,
    in the same run: what the API falls back to without the per-day key lists of
    storage/day_index.py, which was all it did before them; that the lists are missing is
    remembered for as long as a list would be, so the fallback costs a lookup in memory more
    than the old code), and the ratios."""
    results, cpu_per_request = {}, {}

    def measure(label: str, url: str, request_headers: dict) -> None:
        load(url, request_headers, 2, args.connections)  # warm-up
        pid = processes[int(re.search(r":(\d+)/", url).group(1))]
        started = cpu_seconds(pid)
        results[label] = load(url, request_headers, args.seconds, args.connections)
        rate, p50, p99 = results[label]
        cpu_per_request[label] = (cpu_seconds(pid) - started) / (rate * args.seconds) * 1000
        print(f"{label:<52} {rate:8,.0f} req/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   "
              f"API CPU {cpu_per_request[label]:5.2f} ms/request")  # fmt: skip

    for number, (label, url, request_headers) in enumerate(targets):
        if f":{api_port}/" not in url:
            measure(label, url, request_headers)
        elif switch_server:
            measure_beside_plain_server(number, label, url, request_headers, measure, switch_server)
        elif other_port is not None:
            other_url = url.replace(f":{api_port}/", f":{other_port}/")
            measure_beside_other_checkout(number, label, url, other_url, request_headers, measure)
        else:
            measure(label, url, request_headers)
    db["day_index"].drop()
    time.sleep(DAY_LISTS_TTL_S)  # the lists the API process keeps expire
    for label, url, request_headers in targets:
        if "from=" in url or "topic=" in url:
            measure(f"{label} by query", url, request_headers)
    print_ratios(results, cpu_per_request)


def measure_beside_other_checkout(number, label, url, other_url, request_headers, measure):
    """The endpoint on this checkout's API and on the other's, alternating which goes first."""
    pair = [(label, url), (f"{label} [against]", other_url)]
    for paired_label, paired_url in pair[:: 1 if number % 2 else -1]:
        measure(paired_label, paired_url, request_headers)


def measure_beside_plain_server(number, label, url, request_headers, measure, switch_server):
    """The endpoint on the deployment's server and on plain nx-27017 over the same files,
    alternating which goes first, each started afresh just before (the same cold start for
    both); the deployment's server is left running."""
    order = (False, True) if number % 2 else (True, False)
    for plain in order:
        switch_server(plain)
        measure(f"{label} [plain nx-27017]" if plain else label, url, request_headers)
    if order[-1]:
        switch_server(False)


def print_ratios(results: dict, cpu_per_request: dict) -> None:
    for label in [label for label in results if label.endswith(" [against]")]:
        mine = label.removesuffix(" [against]")
        print(f"{mine:<52} {results[mine][0] / results[label][0]:.2f}x the other checkout's "
              f"requests/s, {cpu_per_request[mine] / cpu_per_request[label]:.2f}x its CPU per "
              "request")  # fmt: skip
    for label in [label for label in results if label.endswith(" [plain nx-27017]")]:
        mine = label.removesuffix(" [plain nx-27017]")
        print(f"{mine:<52} {results[mine][0] / results[label][0]:.2f}x the requests/s on plain "
              "nx-27017")  # fmt: skip
    ceiling = results["bare FastAPI constant (ceiling)"][0]
    for label, (rate, _, _) in list(results.items())[1:]:
        print(f"{label:<52} {rate / ceiling:.2f} of the ceiling")
    for label in [label for label in results if label.endswith(" by query")]:
        listed = label.removesuffix(" by query")
        print(f"{listed:<52} {results[listed][0] / results[label][0]:.1f}x the query")


if __name__ == "__main__":
    main()
