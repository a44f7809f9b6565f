"""Time on hostile texts, each at two sizes ten times apart: a step's cost should grow about
ten times (linear), not a hundred (quadratic), however a message is written.

The texts are the shapes a read-only audit (2026-12-06) found quadratic: a run of dots before
an address, URLs without spaces (one after another, or a comma-separated list), text full
of placeholders or addresses (already anonymized text, pasted contact lists), a pasted
base64 image (language cleaning), and Chinese without punctuation under the assistant
taxonomy's code patterns. Each case runs in a fresh process per checkout, this one, then
`--against` (best of 2 each, or 1 past 5 s), and prints both times, the growth from the
small size to the large one, and this checkout's time over the other's at the large size.

    .venv/bin/python benchmarks/bench_hostile_text.py [--against PATH] [--small 10000]

PATH: another checkout's root, e.g. `git worktree add /tmp/base <commit>` (the version before
the fixes: 5234287). Its large sizes may take minutes: that is what this measures.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def text_of(case: str, size: int) -> str:
    """The hostile text of `case`, about `size` characters."""
    if case == "dots_before_an_address":
        return "." * size + " mail me: john@example.com"
    if case == "urls_without_spaces":
        return "http://x?" * (size // 9) + " https://a.example/cb?token=abc123"
    if case == "urls_in_a_list":
        return "http://a.example/p?x=1," * (size // 23) + " https://a.example/cb?token=abc123"
    if case == "placeholders":
        return "<EMAIL> " * (size // 8) + " order 12345678"
    if case == "addresses":
        return "a1@example.com " * (size // 15)
    if case == "pasted_image":
        payload = base64.b64encode(bytes(range(256)) * (size // 340 + 1)).decode()[:size]
        return "What is in this image? data:image/png;base64," + payload
    if case == "chinese_without_punctuation":
        return "请帮我写代码" * (size // 6)
    raise ValueError(case)


CASES = (
    "dots_before_an_address",
    "urls_without_spaces",
    "urls_in_a_list",
    "placeholders",
    "addresses",
    "pasted_image",
    "chinese_without_punctuation",
)


def measure(root: str, case: str, size: int) -> float:
    """Seconds (best of 2, or 1 past 5 s) for the step function `case` goes through, in this
    process, with `root`'s `analytics_assets` first on the path."""
    sys.path.insert(0, root)
    import polars as pl

    from analytics_assets.categorization import conversations, rules, taxonomy
    from analytics_assets.privacy import pii

    if case == "pasted_image":
        support = taxonomy.load_taxonomy()

        def run(text: str) -> None:
            frame = pl.DataFrame(
                {"message_id": ["m"], "conversation_id": ["c"], "role": ["user"],
                 "content": [text]}
            ).with_columns(pl.date(2026, 11, 1).alias("day"))  # fmt: skip
            conversations.message_signals(frame, support)
    elif case == "chinese_without_punctuation":
        assistant = taxonomy.load_taxonomy(
            str(Path(taxonomy.__file__).with_name("taxonomy_assistant.yaml"))
        )

        def run(text: str) -> None:
            rules.classify(pl.DataFrame({"text": [text]}), "text", "topic", assistant)
    else:
        regions = pii.language_regions(None)

        def run(text: str) -> None:
            pii.anonymize(pl.Series([text]), regions=regions)

    run(text_of(case, 100))  # warm-up: models, lexicons, compiled patterns
    best = float("inf")
    for attempt in "ab":
        # Another text each time: a text found clean is remembered, and read again for free.
        text = text_of(case, size) + f" {attempt}"
        started = time.perf_counter()
        run(text)
        best = min(best, time.perf_counter() - started)
        if best > 5:  # the version before the fixes: minutes, once is enough
            break
    return best


def in_fresh_process(root: str, case: str, size: int) -> float:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
        f"from bench_hostile_text import measure; "
        f"print(measure({root!r}, {case!r}, {size}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="another checkout's root, measured the same way")
    parser.add_argument("--small", type=int, default=10_000, help="characters (large: 10x)")
    args = parser.parse_args()
    roots = {"this": str(ROOT)} | ({"other": args.against} if args.against else {})
    small, large = args.small, args.small * 10
    rows = []
    for case in CASES:
        row = {"case": case}
        for name, root in roots.items():
            row[name] = [in_fresh_process(root, case, size) for size in (small, large)]
        rows.append(row)
        line = f"{case:30}"
        for name in roots:
            seconds_small, seconds_large = row[name]
            growth = seconds_large / max(seconds_small, 1e-6)
            line += (
                f"  {name}: {seconds_small:7.3f} s at {small:,}, {seconds_large:8.3f} s at "
                f"{large:,} (x{growth:,.0f})"
            )
        if "other" in roots:
            line += f"  this/other at {large:,}: {row['this'][1] / row['other'][1]:.3f}"
        print(line, flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
