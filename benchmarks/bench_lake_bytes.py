"""Lake bytes per message: a day of validated messages (the rows of the `conversation_messages`
day file) as the lake encodes it, per zstd level.

`docs/cost.md` prices storage per million messages, which needs bytes per message. The size
depends on the chat text, so two texts are measured on the same typed rows (no row repeated,
since repeats compress far better than a real day does):
  - sample: the sample generator's templated support chat (compresses unrealistically well);
  - sharegpt: the same rows with `content` replaced by real ShareGPT turns, one per row.
Each is encoded in memory by `Lake.encode` (zstd, 128k-row groups) at several levels; nothing
is written to disk. About 30 s on 2 cores.

    .venv/bin/python benchmarks/bench_lake_bytes.py [--levels 1 3 9 19]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.sources.generator import SampleSpec, generate_sample
from analytics_assets.storage.lake import Lake
from analytics_assets.transforms.raw import raw_frame_from_records
from analytics_assets.transforms.records import validate_messages
from analytics_assets_tests.sharegpt import iter_records
from benchmarks.bench_lake import DAY


def sample_messages() -> pl.DataFrame:
    """One day of the sample's typed messages, each row once."""
    data = generate_sample(SampleSpec(days=1, conversations=3000))
    records = [m for m in data.messages if m["created_at"] and m["created_at"] < "2026-11-02"]
    return validate_messages(
        raw_frame_from_records(
            records, table="messages", day=DAY, page=0, fetched_at=None, source="bench"
        )
    ).valid


def with_sharegpt_text(frame: pl.DataFrame) -> pl.DataFrame:
    """The same rows with real ShareGPT turns as their text, one distinct turn per row."""
    turns = (turn["value"] for record in iter_records() for turn in record["conversations"])
    texts = list(itertools.islice(turns, frame.height))
    return frame.head(len(texts)).with_columns(pl.Series("content", texts, dtype=pl.String))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 3, 9, 19])
    args = parser.parse_args()
    sample = sample_messages()
    for label, frame in (("sample", sample), ("sharegpt", with_sharegpt_text(sample))):
        text_bytes = frame["content"].str.len_bytes().mean()
        print(f"{label}: {frame.height:,} messages, text {text_bytes:,.0f} bytes on average")
        for level in args.levels:
            lake = Lake(Path("."), compression_level=level)  # encode only; the path is unused
            started = time.perf_counter()
            size = len(lake.encode(frame))
            seconds = time.perf_counter() - started
            print(
                f"  zstd {level:>2}: {size / frame.height:7.1f} bytes per message "
                f"({size / 1e6:5.2f} MB), encode {frame.height / seconds:11,.0f} msg/s"
            )


if __name__ == "__main__":
    main()
