"""`analytics-assets categorize` and `evaluate`: measure the taxonomy on a team's own data."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import polars as pl

from analytics_assets.categorization.conversations import categorize_texts
from analytics_assets.categorization.feedback import load_model_tier
from analytics_assets.categorization.model_tier import score
from analytics_assets.categorization.taxonomy import canonical_label, load_taxonomy
from analytics_assets.settings import get_settings

LABELLED = ("topic", "intent", "sentiment", "language")


def read_texts(path: Path) -> pl.DataFrame:
    if path.suffix == ".csv":
        frame = pl.read_csv(path, infer_schema=False)
    else:
        frame = pl.read_ndjson(path, infer_schema_length=None)
    missing = {"id", "text"} - set(frame.columns)
    if missing:
        raise SystemExit(f"{path} needs the columns id and text; missing {sorted(missing)}")
    return frame.with_columns(pl.col("id").cast(pl.String), pl.col("text").cast(pl.String))


def _llm_labeler():
    """The deployment's LLM tier (ANALYTICS_LLM_*), for `--tier llm`."""
    from analytics_assets.categorization.llm import LlmLabeler

    settings = get_settings()
    if not settings.llm_url:
        raise SystemExit("--tier llm needs ANALYTICS_LLM_URL (an OpenAI-compatible /v1 base)")
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return LlmLabeler(settings.llm_url, settings.llm_model, api_key=key,
                      budget=settings.llm_budget,
                      price_per_1k_tokens=settings.llm_price_per_1k_tokens,
                      cache_path=settings.local_path("llm_cache.sqlite"))  # fmt: skip


def _categorize(args: argparse.Namespace, frame: pl.DataFrame) -> pl.DataFrame:
    settings = get_settings()
    taxonomy = load_taxonomy(args.taxonomy or settings.taxonomy)
    # The pipeline's threshold unless asked otherwise: with 0.5 written here, `evaluate`
    # measured another cut than the one the conversations are labelled with.
    threshold = settings.categorization_threshold if args.threshold is None else args.threshold
    model = llm = None
    if args.tier in ("model", "llm"):
        model = load_model_tier(
            taxonomy,
            device=args.device,
            batch_size=128,
            threshold=threshold,
            heads_dir=getattr(args, "heads_dir", None),
            encoder=args.encoder or settings.encoder,
            heads_storage_options=getattr(args, "heads_storage_options", None),
        )
    if args.tier == "llm":
        llm = _llm_labeler()
    texts = frame.select("id", "text")
    result = categorize_texts(texts, taxonomy, threshold=threshold, model=model, llm=llm)
    if llm is not None and llm.last_run is not None:
        print(f"LLM tier: {llm.last_run.metadata()}", file=sys.stderr)
    return result


def run_categorize(args: argparse.Namespace) -> int:
    result = _categorize(args, read_texts(args.input)).drop("text")
    if args.output:
        result.write_ndjson(args.output)
        print(f"{result.height} texts labelled into {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(result.write_ndjson())
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    frame = read_texts(args.input)
    labelled = [name for name in LABELLED if name in frame.columns]
    if not labelled:
        raise SystemExit(f"{args.input} has no label column ({', '.join(LABELLED)})")
    predicted = _categorize(args, frame)
    truths = {name: _truth(frame[name], name) for name in labelled}
    for name in labelled:
        # A row whose label is blank was not labelled on that dimension: it is left out.
        rows = [i for i, label in enumerate(truths[name]) if label is not None]
        if not rows:
            print(f"{name}: no labelled rows")
            continue
        truth = [truths[name][i] for i in rows]
        scores = _scores(truth, predicted, name, rows)
        print(
            f"{name}: accuracy {scores.accuracy:.3f}  macro-F1 {scores.macro_f1:.3f}  "
            f"abstention {scores.abstention:.3f}  (n={len(truth)})"
        )
        columns = sorted({p for row in scores.confusion.values() for p in row})
        width = max(len(label) for label in [*columns, *scores.confusion]) + 1
        print("  confusion (rows: truth, columns: predicted)")
        print("  " + " " * width + "".join(f"{label[:9]:>10}" for label in columns))
        for truth_label, row in scores.confusion.items():
            cells = "".join(f"{row.get(label, 0):>10}" for label in columns)
            print(f"  {truth_label:<{width}}{cells}")
    if "language" in frame.columns:
        print_per_language(truths, predicted, labelled)
    return 0


def _abstained(predicted: pl.DataFrame, name: str) -> list[bool]:
    """Where the tiers abstained: method `fallback` (language: `unknown`). Read from the
    label, a sure `other` (a topic the support taxonomy has, found by its keywords) counted
    as an abstention."""
    if name == "language":
        return (predicted["language"] == "unknown").to_list()
    return (predicted[f"{name}_method"] == "fallback").to_list()


def _scores(truth, predicted: pl.DataFrame, name: str, rows: list[int]):
    """Accuracy and macro-F1 of the labels (an abstention is the fallback label: right
    where the truth is that none fits), abstention from the method."""
    labels = predicted[name].to_list()
    abstained = _abstained(predicted, name)
    scores = score(truth, [labels[i] for i in rows])
    share = sum(abstained[i] for i in rows) / len(rows) if rows else 0.0
    return dataclasses.replace(scores, abstention=share)


def _truth(column: pl.Series, name: str) -> list[str | None]:
    """A labelled column as the predictions spell it, None where it is blank. Labels may be
    spelled their own way (`How to`, `how-to`); languages as tags (`EN`, `pt-BR`: `pt`)."""
    labels = []
    for value in column.cast(pl.String).to_list():
        value = (value or "").strip()
        if not value:
            labels.append(None)
        elif name == "language":
            labels.append(value.replace("_", "-").split("-")[0].lower())
        else:
            labels.append(canonical_label(value))
    return labels


def print_per_language(
    truths: dict[str, list[str | None]], predicted: pl.DataFrame, labelled: list[str]
) -> None:
    """Accuracy, macro-F1 and abstention per dimension for each labelled language: a
    label that only works in English shows here, not in the overall figure."""
    dimensions = [name for name in labelled if name != "language"] + ["language"]
    print("per language (accuracy / macro-F1 / abstention):")
    print(f"  {'language':<9}{'n':>5}" + "".join(f"{d:>22}" for d in dimensions))
    languages = truths["language"]
    for language in sorted({value for value in languages if value is not None}):
        rows = [i for i, value in enumerate(languages) if value == language]
        cells = []
        for name in dimensions:
            labelled_rows = [i for i in rows if truths[name][i] is not None]
            if not labelled_rows:
                cells.append("—")
                continue
            scores = _scores(
                [truths[name][i] for i in labelled_rows], predicted, name, labelled_rows
            )
            cells.append(f"{scores.accuracy:.2f} / {scores.macro_f1:.2f} / {scores.abstention:.2f}")
        print(f"  {language:<9}{len(rows):>5}" + "".join(f"{c:>22}" for c in cells))
