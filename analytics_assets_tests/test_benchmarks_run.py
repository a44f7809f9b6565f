"""Every script under `benchmarks/` still runs, at a size that takes seconds.

The closing notes quote their figures, and they are measured again from outside with the
same commands, so a script that no longer runs is a figure nobody can check. Two had
stopped without anyone noticing: `bench_messages.py` hung forever (its Dagster child
failed on a pseudonym key the privacy settings began refusing, and the parent waited on a
queue nothing would fill), and `bench_api.py` asked for an API key rate the keys began
refusing. This runs each as a person would, from the repository root, without the test
session's settings, and checks that it exits cleanly and prints the figure it is for.
No figure is compared with anything: a timing assertion here would fail on a busy machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

# script -> (arguments for a run of seconds, a text its output must hold)
SMALL_RUNS: dict[str, tuple[list[str], str]] = {
    "bench_api.py": (["--seconds", "1", "--days", "1"], "of the ceiling"),
    "bench_backfill.py": (["--conversations", "150", "--days", "2"], "time per message"),
    "bench_catch_up.py": (
        ["--conversations", "120", "--days", "4", "--changed", "2"],
        "ratio baseline/ours",
    ),
    "bench_hostile_text.py": (["--small", "300"], "dots_before_an_address"),
    "bench_lake.py": (["--rows", "5000", "--repeats", "1"], "ratio ours/pyarrow"),
    "bench_lake_bytes.py": (["--levels", "1"], "bytes per message"),
    "bench_language.py": (
        ["--messages", "500", "--baseline", "100", "--real", "100"],
        "ratio ours/baseline",
    ),
    "bench_messages.py": (["--conversations", "200"], "ratio polars / row-by-row"),
    "bench_model_tier.py": (["--messages", "60", "--naive-messages", "20"], "ratio"),
    "bench_mongo.py": (["--messages", "600", "--days", "2"], "ratio"),
    "bench_nocodb_client.py": (["--conversations", "100", "--repeats", "1"], "ratio to bare"),
    "bench_pii.py": (["--messages", "5000", "--baseline", "1000"], "ratio ours/baseline"),
    "bench_reports.py": (["--sizes", "5000"], "ratio eager/lazy"),
    "bench_return_prediction.py": (
        [
            "--against",
            str(ROOT / "analytics_assets" / "analytics" / "return_prediction.py"),
            "--users",
            "200",
            "--days",
            "20",
        ],
        "ratio other/this",
    ),
    "bench_rules.py": (
        ["--messages", "5000", "--baseline-messages", "500", "--heads", "500"],
        "messages/s",
    ),
    "bench_signals.py": (["--messages", "300"], "real turns"),
    "bench_sync.py": (["--messages", "3000", "--backfill-conversations", "60"], "reconciliation"),
    "eval_categorization.py": ([], "accuracy"),
    "eval_language.py": ([], "confusions"),
    "eval_multilingual.py": ([], "macro-F1"),
    "eval_open_domain.py": ([], "other"),
    "eval_pii_precision.py": ([], "PHONE"),
    "eval_user_predictions.py": ([], "mean over"),
}

# What is left out, and why; each still has to parse its arguments (`--help`).
NOT_RUN_HERE = {
    # A minute and a half even for one day: it times a process per step, which is the point.
    "bench_executor.py": "times a process per step for a whole run",
    # Its faults include stalls of 40 s, which are what it measures.
    "bench_faults.py": "waits out 40-second stalls on purpose",
    # Needs a CUDA device; on the CPU it has nothing to measure.
    "bench_gpu_encoder.py": "measures a CUDA device",
}


def _as_a_person_runs_it(tmp_path: Path) -> dict[str, str]:
    """The environment of a shell: none of the session's servers or settings (a benchmark
    that found the session's MongoDB would measure, and write into, that one), and its
    scratch files in `tmp_path`."""
    session_only = ("MONGODB_", "DAGSTER_HOME", "ANALYTICS_", "NOCODB_", "PRIVACY_", "AWS_")
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith(session_only)
    }
    return environment | {"TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}


def _run(script: str, arguments: list[str], tmp_path: Path, timeout_s: int):
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments],
        cwd=ROOT,
        env=_as_a_person_runs_it(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_every_benchmark_is_run_here_or_says_why_not():
    scripts = {path.name for path in BENCHMARKS.glob("*.py")}
    assert scripts == set(SMALL_RUNS) | set(NOT_RUN_HERE)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("script", sorted(SMALL_RUNS))
def test_the_benchmark_runs_and_prints_its_figure(script, tmp_path):
    arguments, expected = SMALL_RUNS[script]
    result = _run(script, arguments, tmp_path, timeout_s=360)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert expected in result.stdout, result.stdout[-4000:]


@pytest.mark.parametrize("script", sorted(NOT_RUN_HERE))
def test_a_benchmark_not_run_here_still_parses_its_arguments(script, tmp_path):
    result = _run(script, ["--help"], tmp_path, timeout_s=120)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "usage:" in result.stdout
