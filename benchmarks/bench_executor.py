"""Step start-up: one run of the daily ingestion job over a range of days, executed as
`dagster job execute` would (the job's own executor), once with every step in one process
(the local default) and once with a process per step (the baseline: Dagster's default), on
the sample export, each in a fresh local deployment folder. Prints the wall time of each and
the ratio.

    .venv/bin/python benchmarks/bench_executor.py [--days 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.defs.partitions import range_tags
from analytics_assets.sources.generator import SampleSpec

ROOT = Path(__file__).resolve().parents[1]


def run(executor: str, days: int, folder: Path) -> float:
    spec = SampleSpec()
    first, last = spec.start, spec.start + timedelta(days=days - 1)
    home = folder / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "ANALYTICS_LOCAL_DIR": str(folder / "local"),
        "ANALYTICS_STEP_EXECUTOR": executor,
        "ANALYTICS_EMBEDDED_MONGO_PORT": str(27100 + (executor == "multiprocess")),
    }
    command = [
        str(Path(sys.executable).parent / "dagster"), "job", "execute",
        "-m", "analytics_assets.definitions", "-j", "ingestion_job",
        "--tags", json.dumps(range_tags(first, last)),
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:])
        raise SystemExit(f"{executor} run failed")
    return seconds


def stop_embedded_servers(folder: Path) -> None:
    """The runs started an embedded MongoDB server each (it outlives the command that started
    it, as a database should): stopped here, with their folder."""
    for pid_file in folder.glob("*/local/mongo/nx-27017.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            # The first run also writes the sample export; both runs get their own folder.
            timings = {
                executor: run(executor, args.days, Path(tmp) / executor)
                for executor in ("in_process", "multiprocess")
            }
        finally:
            stop_embedded_servers(Path(tmp))
    for executor, seconds in timings.items():
        print(f"{executor:<13} {args.days}-day ingestion_job run: {seconds:.1f} s")
    ratio = timings["multiprocess"] / timings["in_process"]
    print(f"a process per step takes {ratio:.2f}x as long as one process")


if __name__ == "__main__":
    main()
