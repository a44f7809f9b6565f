"""Parquet lake write/read throughput for 1,000,000 messages vs pyarrow's own, one run.

For a local folder and for an S3 API server on loopback (moto), it writes and reads the same
one-day file with:
  - ours: `PolarsParquetLake` (the lake IO manager's writer and reader);
  - baseline: `pyarrow.parquet.write_table` / `read_table` of the same Arrow table, zstd,
    through `pyarrow.fs.S3FileSystem` for S3;
and prints MB/s, rows/s and the ratio (target >= 0.9). Then it sweeps the row-group size to
show the choice documented in docs/storage.md.

    .venv/bin/python benchmarks/bench_lake.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster_aws.s3 import S3Resource

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.defs.storage.lake import ParquetLakeIOManager
from analytics_assets.sources.generator import SampleSpec, generate_sample
from analytics_assets.transforms.raw import raw_frame_from_records
from analytics_assets.transforms.records import validate_messages
from analytics_assets_tests.nocodb_server import free_port

DAY = date(2026, 11, 1)


def messages(rows: int) -> pl.DataFrame:
    """Real typed messages from the sample generator, repeated with fresh ids to `rows`."""
    data = generate_sample(SampleSpec(days=1, conversations=3000))
    records = [m for m in data.messages if m["created_at"] and m["created_at"] < "2026-11-02"]
    seed = validate_messages(
        raw_frame_from_records(
            records, table="messages", day=DAY, page=0, fetched_at=None, source="bench"
        )
    ).valid
    copies = rows // seed.height + 1
    frame = pl.concat([seed] * copies).head(rows)
    return frame.with_columns(
        pl.format("msg-{}", pl.int_range(pl.len())).alias("message_id"),
        pl.format("conv-{}", pl.int_range(pl.len()) // 7).alias("conversation_id"),
    )


def best(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def report(label: str, rows: int, sizes: tuple[int, int], ours: float, baseline: float) -> None:
    """MB/s of each file's own bytes; the ratio compares rows/s (target >= 0.9)."""
    ours_size, baseline_size = sizes
    print(
        f"{label:<6} ours {ours_size / 1e6 / ours:6.1f} MB/s {rows / ours:11,.0f} rows/s | "
        f"pyarrow {baseline_size / 1e6 / baseline:6.1f} MB/s {rows / baseline:11,.0f} rows/s | "
        f"ratio ours/pyarrow {baseline / ours:.2f}"
    )


def measure(lake_settings: dict, frame: pl.DataFrame, fs, root: str, repeats: int) -> None:
    lake = ParquetLakeIOManager(**lake_settings).lake()
    path = lake.day_file("messages", DAY)
    table = frame.to_arrow()
    baseline_path = f"{root}/baseline/data.parquet"

    def ours_write() -> None:
        lake.write_path(path, frame)

    def ours_read() -> None:
        lake.read_path(path)

    def arrow_write() -> None:
        pq.write_table(
            table, baseline_path, filesystem=fs, compression="zstd", compression_level=3,
            row_group_size=lake.row_group_size,
        )  # fmt: skip

    def arrow_read() -> None:
        pq.read_table(baseline_path, filesystem=fs)

    if isinstance(fs, pafs.LocalFileSystem):
        Path(baseline_path).parent.mkdir(parents=True, exist_ok=True)
    write_ours, write_arrow = best(ours_write, repeats), best(arrow_write, repeats)
    read_ours, read_arrow = best(ours_read, repeats), best(arrow_read, repeats)
    size = fs.get_file_info(baseline_path).size
    ours_size = path.stat().st_size
    print(f"file: ours {ours_size / 1e6:.1f} MB, pyarrow {size / 1e6:.1f} MB")
    report("write", frame.height, (ours_size, size), write_ours, write_arrow)
    report("read", frame.height, (ours_size, size), read_ours, read_arrow)


def row_group_sweep(frame: pl.DataFrame, folder: Path) -> None:
    print("row-group size sweep (local): size, write, full read, one-conversation read")
    target = frame["conversation_id"][frame.height // 2]
    for row_group_size in (16_384, 131_072, 524_288, 1_048_576):
        lake = ParquetLakeIOManager(
            base_url=str(folder / f"rg{row_group_size}"), row_group_size=row_group_size
        ).lake()
        path = lake.day_file("messages", DAY)
        write_s = best(lambda lake=lake, path=path: lake.write_path(path, frame), 1)
        read_s = best(lambda path=path: pl.read_parquet(path.path), 3)
        point_s = best(
            lambda path=path: (
                pl.scan_parquet(path.path).filter(pl.col("conversation_id") == target).collect()
            ),
            3,
        )
        print(
            f"  {row_group_size:>9,} rows: {path.stat().st_size / 1e6:6.1f} MB, "
            f"write {write_s:5.2f}s, read {read_s:5.2f}s, filtered scan {point_s * 1000:6.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    frame = messages(args.rows)
    print(f"{frame.height:,} messages, {frame.estimated_size() / 1e6:.0f} MB in memory")

    with tempfile.TemporaryDirectory() as folder:
        print("-- local folder")
        measure({"base_url": folder}, frame, pafs.LocalFileSystem(), folder, args.repeats)
        row_group_sweep(frame, Path(folder))

    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3 = pafs.S3FileSystem(
            endpoint_override=endpoint,
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        s3.create_dir("lake")
        print("-- S3 API on loopback (moto)")
        measure(
            {
                "base_url": "s3://lake/bench",
                "s3": S3Resource(endpoint_url=endpoint, region_name="us-east-1"),
            },
            frame,
            s3,
            "lake/bench",
            args.repeats,
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
