"""The feedback loop: corrections -> a trained head, kept only when it beats what runs now."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from analytics_assets.categorization.model_tier import (
    Head,
    Scores,
    ZeroShot,
    score,
    split_held_out,
    train_head,
)
from analytics_assets.categorization.taxonomy import Taxonomy, canonical_label
from analytics_assets.storage.state import state_path, write_text_atomically

logger = logging.getLogger(__name__)

HEADS_INDEX = "current.json"
TRAINED_DIMENSIONS = ("topic", "intent")
# Fewer corrections than this per dimension and a held-out score means little.
MIN_CORRECTIONS = 30


def read_feedback(path: Path) -> pl.DataFrame:
    """Corrections from a JSON, JSONL or CSV file: conversation_id plus corrected labels."""
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False)
    text = path.read_text()
    if path.suffix == ".json":
        records = json.loads(text)
    else:
        # Lines end at "\n" only: `splitlines` also cuts at U+2028 and others, which JSON
        # strings may hold as they are.
        records = [json.loads(line) for line in text.split("\n") if line.strip()]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path.name}: expected one JSON object per correction")
    # Every value as text, as CSV reads it: a file written by hand mixes `"billing"`,
    # `["billing"]` and numbers in one column, which a typed reader rejects (JSON) or keeps
    # as the text `["billing"]`, a label nobody meant (JSON lines).
    columns = dict.fromkeys(name for record in records for name in record)
    rows = [{name: _value_text(record.get(name)) for name in columns} for record in records]
    return pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String), orient="row")


def _value_text(value) -> str | None:
    """One value of a correction file as text; a list is read as `_label_text` reads one."""
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    if value is None or isinstance(value, dict | list):
        return None
    return value if isinstance(value, str) else json.dumps(value)


# When a correction was made: the first of these that a row has a time in. A team's own
# column, then when NocoDB stored the row: a row added later is the later correction. Its
# `UpdatedAt` comes last, because any edit moves it (a "reviewed" box ticked on an old row
# would make that row the latest), and it is null until a row is edited.
CORRECTION_TIME_COLUMNS = ("corrected_at", "CreatedAt", "UpdatedAt")


def latest_corrections(feedback: pl.DataFrame) -> pl.DataFrame:
    """One row per conversation: for each label, its latest correction. A conversation
    corrected twice (a first guess, then a fix) must train a head on the fix only: both
    rows trained it, and the held-out score counted the superseded label as truth. A later
    row that corrects only the topic keeps an earlier row's intent. Latest by the row's
    first time (`CORRECTION_TIME_COLUMNS`; a row without one that parses counts as oldest),
    then by the order of the rows."""
    if "conversation_id" not in feedback.columns or not feedback.height:
        return feedback
    labels = [name for name in (*TRAINED_DIMENSIONS, "sentiment") if name in feedback.columns]
    frame = feedback.with_row_index("_row").with_columns(pl.col("conversation_id").cast(pl.String))
    order = ["_row"]
    times = [_parsed_time(pl.col(c)) for c in CORRECTION_TIME_COLUMNS if c in feedback.columns]
    if times:
        frame = frame.with_columns(_corrected=pl.coalesce(times))
        order = ["_corrected", "_row"]
    given = {name: _label_text(name, feedback.schema[name]) for name in labels}
    return (
        frame.with_columns(**given)
        .sort(order, nulls_last=False)
        .group_by("conversation_id", maintain_order=True)
        .agg(
            *(pl.col(name).drop_nulls().last() for name in labels),
            *(
                pl.col(name).last()
                for name in frame.columns
                if name not in {"conversation_id", "_row", "_corrected", *labels}
            ),
        )
    )


def _label_text(name: str, dtype: pl.DataType) -> pl.Expr:
    """A label as stripped text, blank as null. A JSON file or a multi-select column can hold
    a list: one label in it is that label; several (or none) say nothing about which one is
    right, so they correct nothing rather than failing the whole run on the cast."""
    column = pl.col(name)
    if isinstance(dtype, pl.Array):
        column, dtype = column.arr.to_list(), pl.List(dtype.inner)
    if isinstance(dtype, pl.List):
        column, dtype = pl.when(column.list.len() == 1).then(column.list.first()), dtype.inner
    if dtype.is_nested():
        return pl.lit(None, dtype=pl.String)
    return column.cast(pl.String).str.strip_chars().replace("", None)


def _parsed_time(column: pl.Expr) -> pl.Expr:
    """A correction's time from an ISO string (with or without seconds, with or without an
    offset; without one it is read as UTC, as NocoDB writes its times) or a datetime."""
    text = (
        column.cast(pl.String).str.strip_chars().str.replace(" ", "T").str.replace("Z$", "+00:00")
    )
    with_offset = [
        text.str.to_datetime(pattern, strict=False, time_zone="UTC")
        for pattern in ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z")
    ]
    naive = [
        text.str.to_datetime(pattern, strict=False).dt.replace_time_zone("UTC")
        for pattern in ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d")
    ]
    return pl.coalesce(*with_offset, *naive)


@dataclass
class HeadDecision:
    dimension: str
    version: str
    corrections: int
    head: Scores
    baseline: Scores
    baseline_name: str
    adopted: bool


def train_and_choose(
    openings: pl.DataFrame,
    feedback: pl.DataFrame,
    taxonomy: Taxonomy,
    embed,
    heads_dir: Path,
    shipped: dict[str, Head] | None = None,
) -> list[HeadDecision]:
    """For each dimension: train a head on the corrections, score it on a held-out split
    against what runs now (the adopted head, else the shipped one, else zero-shot), and
    adopt it only if better. `heads_dir` is the encoder's own folder: a head is only valid
    on the embeddings it was trained on."""
    heads_dir.mkdir(parents=True, exist_ok=True)
    index_path = heads_dir / HEADS_INDEX
    current = json.loads(index_path.read_text()) if index_path.exists() else {}
    joined = latest_corrections(feedback).join(openings, on="conversation_id", how="inner")
    decisions = []
    for dimension in TRAINED_DIMENSIONS:
        if dimension not in joined.columns:
            continue
        rows = joined.filter(pl.col(dimension).is_not_null() & pl.col("opening").is_not_null())
        if rows.height < MIN_CORRECTIONS:
            continue
        vectors = embed(rows["opening"].to_list())
        # A correction written `How to` trains the taxonomy's `how_to`.
        truth = [canonical_label(label) for label in rows[dimension].to_list()]
        train, test = split_held_out(rows.height)
        fallback = taxonomy.fallbacks[dimension]
        head = train_head(vectors[train], [truth[i] for i in train], fallback=fallback)
        expected = [truth[i] for i in test]
        head_scores = score(expected, head.predict(vectors[test], threshold=0.0).labels)
        if dimension in current:
            baseline = Head.load(heads_dir, current[dimension])
            baseline_name = current[dimension]
        elif shipped and dimension in shipped:
            baseline = shipped[dimension]
            baseline_name = shipped[dimension].version
        else:
            baseline = ZeroShot.from_taxonomy(taxonomy, dimension, embed)
            baseline_name = "zero-shot"
        baseline_scores = score(expected, baseline.predict(vectors[test], threshold=0.0).labels)
        adopted = head_scores.macro_f1 > baseline_scores.macro_f1
        head.version = f"{dimension}-{head.version}"
        head.metrics = {
            "accuracy": head_scores.accuracy,
            "macro_f1": head_scores.macro_f1,
            "per_label_f1": head_scores.per_label_f1,
            "held_out": len(test),
        }
        head.save(heads_dir)
        if adopted:
            current[dimension] = head.version
        decisions.append(
            HeadDecision(
                dimension,
                head.version,
                rows.height,
                head_scores,
                baseline_scores,
                baseline_name,
                adopted,
            )
        )
    # Last, and whole: a worker loading heads meanwhile sees the old choice or the new.
    write_text_atomically(index_path, json.dumps(current, indent=2))
    return decisions


def openings_from_messages(messages: pl.LazyFrame, conversation_ids: list[str]) -> pl.DataFrame:
    """The first user turn of each listed conversation, from the lake's messages."""
    return (
        messages.filter(
            pl.col("conversation_id").is_in(conversation_ids) & (pl.col("role") == "user")
        )
        .sort("created_at", "message_id")
        .group_by("conversation_id")
        .agg(pl.col("content").first().alias("opening"))
        .collect()
    )


def encoder_heads_dir(
    heads_dir: str | Path | None, encoder: str, storage_options: dict | None = None
) -> Path | None:
    """Where the heads trained on `encoder`'s embeddings live: under a folder or an s3://
    URL (ANALYTICS_STATE_URL/heads), so every worker loads the heads the training adopted."""
    return state_path(heads_dir, storage_options) / encoder if heads_dir else None


def current_heads(heads_dir: str | Path | None) -> dict[str, str]:
    """dimension -> head version chosen by the last training that beat its predecessor."""
    if not heads_dir:
        return {}
    index = state_path(heads_dir) / HEADS_INDEX
    return json.loads(index.read_text()) if index.exists() else {}


def load_model_tier(
    taxonomy: Taxonomy,
    *,
    device: str,
    batch_size: int,
    threshold: float,
    heads_dir: str | Path | None = None,
    encoder: str | None = None,
    heads_storage_options: dict | None = None,
):
    """The model tier on `device` ("auto" resolved here) with `encoder` (None: the default),
    the shipped heads that fit the taxonomy, and the adopted correction heads if any.
    torch and the model load only now: the rules tier never pays for them."""
    from analytics_assets.categorization.device import resolve_device
    from analytics_assets.categorization.embeddings import shared_embedder
    from analytics_assets.categorization.model_tier import Head, ModelTier, head_fits

    embedder = shared_embedder(resolve_device(device), batch_size, encoder)
    folder = encoder_heads_dir(heads_dir, embedder.name, heads_storage_options)
    adopted = {
        dimension: Head.load(folder, version)
        for dimension, version in current_heads(folder).items()
    }
    # Only heads whose labels the taxonomy has, as for the shipped ones: after a switch of
    # ANALYTICS_TAXONOMY (support to assistant), heads adopted from the support taxonomy's
    # corrections replaced the assistant's own, and their labels, unknown there, became
    # `other` for every text.
    heads = {d: head for d, head in adopted.items() if head_fits(d, head.names, taxonomy)}
    for dimension in sorted(set(adopted) - set(heads)):
        logger.warning(
            "adopted %s head %s left out: its labels are not the taxonomy's (version %s)",
            dimension, adopted[dimension].version, taxonomy.version,
        )  # fmt: skip
    return ModelTier.build(embedder, taxonomy, heads, threshold=threshold)
