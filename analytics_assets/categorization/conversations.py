"""Per-conversation categories from its messages: the rules tier end to end (pure polars)."""

from __future__ import annotations

import polars as pl

from analytics_assets.categorization.language import detect_languages, quick_languages
from analytics_assets.categorization.model_tier import ModelTier
from analytics_assets.categorization.ngram_heads import METHOD as NGRAM_METHOD
from analytics_assets.categorization.ngram_heads import NgramHead, ngram_heads
from analytics_assets.categorization.rules import DEFAULT_THRESHOLD, classify, sentiment
from analytics_assets.categorization.taxonomy import Taxonomy

# 2: VADER's lexicon decides English sentiment only where it is clear (rules.LEXICON_POLAR_BOUND).
RULES_MODEL_VERSION = "rules-2"
# Enough of a conversation to tell its language; lingua slows with length.
LANGUAGE_SAMPLE_CHARS = 300


def model_version(model: ModelTier | None, heads: dict[str, NgramHead] | None = None) -> str:
    """Which rules and models labelled a conversation, e.g.
    rules-2+ngram-3fa9…+use-m3-…+topic:head-2026…"""
    rules = RULES_MODEL_VERSION
    if heads:
        rules += "".join(
            f"+{version}" for version in dict.fromkeys(h.version for h in heads.values())
        )
    if model is None:
        return rules
    companions = model.companion_versions()
    parts = [
        f"{dimension}:{getattr(p, 'version', None) or f'zero-shot-T{p.temperature:.3f}'}"
        + (f"&{companions[dimension]}" if dimension in companions else "")
        for dimension, p in model.predictors.items()
    ]
    return "+".join([rules, model.embedder.version, *parts])


CATEGORY_SCHEMA: dict[str, pl.DataType] = {
    "conversation_id": pl.String(),
    "language": pl.String(),
    "language_confidence": pl.Float64(),
    "topic": pl.String(),
    "topic_confidence": pl.Float64(),
    "topic_method": pl.String(),
    "intent": pl.String(),
    "intent_confidence": pl.Float64(),
    "intent_method": pl.String(),
    "sentiment_opening": pl.String(),
    "sentiment_opening_confidence": pl.Float64(),
    "sentiment_opening_method": pl.String(),
    "sentiment": pl.String(),
    "sentiment_confidence": pl.Float64(),
    "sentiment_method": pl.String(),
    "categorized_via_translation": pl.Boolean(),
    "taxonomy_version": pl.String(),
    "model_version": pl.String(),
    "day": pl.Date(),
}
TRANSLATION_LANGUAGE = "en"


def _replaced_where(
    use: pl.Expr, prefix: str, label: pl.Expr, confidence: pl.Expr, method: pl.Expr
) -> list[pl.Expr]:
    """A dimension's label, confidence and method (`prefix`, `prefix_confidence`,
    `prefix_method`) taken from a later tier where `use` holds, kept elsewhere."""
    return [
        pl.when(use).then(new).otherwise(pl.col(name)).alias(name)
        for name, new in (
            (prefix, label),
            (f"{prefix}_confidence", confidence),
            (f"{prefix}_method", method),
        )
    ]


def apply_ngram_heads(
    frame: pl.DataFrame,
    text: str,
    heads: dict[str, NgramHead],
    dimensions: tuple[str, ...],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    prefixes: dict[str, str] | None = None,
) -> pl.DataFrame:
    """The character n-gram heads' labels where the keyword rules and the lexicon left a
    dimension undecided (method `fallback`) and the head is sure (at least `threshold`, and
    at least the head's own floor, `NgramHead.floor`), and its label is one of the
    taxonomy's (`NgramHead.decisive`: a sure fallback stays an abstention)."""
    prefixes = prefixes or {}
    for dimension in dimensions:
        head = heads.get(dimension)
        prefix = prefixes.get(dimension, dimension)
        if head is None or frame.height == 0:
            continue
        undecided = frame.with_row_index("_row").filter(pl.col(f"{prefix}_method") == "fallback")
        if undecided.height == 0:
            continue
        labels, probabilities = head.predict(undecided[text].to_list())
        updates = pl.DataFrame(
            {"_row": undecided["_row"], "_label": labels, "_confidence": probabilities},
            schema={"_row": pl.UInt32, "_label": pl.String, "_confidence": pl.Float64},
        )
        frame = (
            frame.with_row_index("_row")
            .join(updates, on="_row", how="left")
            .with_columns(
                _replaced_where(
                    pl.col("_confidence").ge(max(threshold, head.floor)).fill_null(False)
                    & pl.col("_label").is_in(head.decisive),
                    prefix,
                    pl.col("_label"),
                    pl.col("_confidence").round(4),
                    pl.lit(NGRAM_METHOD),
                )
            )
            .drop("_row", "_label", "_confidence")
        )
    return frame


def apply_model_tier(frame: pl.DataFrame, text: str, model: ModelTier | None) -> pl.DataFrame:
    """The model tier's topic and intent where the rules found nothing sure enough; where
    the model's predictor is a head trained on labelled text and sure itself, over the rules
    too (measured more precise than the keywords on real text: docs/categorization.md).
    Zero-shot only fills in where the rules abstained."""
    if model is None or frame.height == 0:
        return frame
    heads_win = {d: model.head_overrides_rules(d) for d in ("topic", "intent")}
    undecided = pl.col("topic_method").eq("fallback") | pl.col("intent_method").eq("fallback")
    if any(heads_win.values()):
        undecided = pl.lit(True)
    rows = frame.with_row_index("_row").filter(undecided)
    if rows.height == 0:
        return frame
    predictions = model.predict(rows[text].fill_null("").to_list(), ("topic", "intent"))
    updates = pl.DataFrame({"_row": rows["_row"]})
    for dimension, prediction in predictions.items():
        updates = updates.with_columns(
            pl.Series(f"_{dimension}", prediction.labels, pl.String),
            pl.Series(f"_{dimension}_confidence", prediction.confidence.astype(float)),
            pl.lit(prediction.method).alias(f"_{dimension}_method"),
        )
    merged = frame.with_row_index("_row").join(updates, on="_row", how="left")
    for dimension in predictions:
        # Sure: at or above the model's threshold, and one of the taxonomy's labels (a sure
        # `other` is a label where the taxonomy has that topic, as support does; where it is
        # only the fallback, as in the assistant taxonomy, it is an abstention).
        model_sure = pl.col(f"_{dimension}_confidence").ge(model.threshold).fill_null(False)
        if dimension in model.decisive:
            model_sure = model_sure & pl.col(f"_{dimension}").is_in(model.decisive[dimension])
        rules_abstained = pl.col(f"{dimension}_method").eq("fallback")
        # A head overrides only labels it knows: a topic the taxonomy has and the head was
        # never trained on (one promoted from discovery) is found by its own keywords, and a
        # sure head cannot name it.
        head_knows_it = pl.col(dimension).is_in(list(model.predictors[dimension].names))
        use_model = model_sure & ((pl.lit(heads_win[dimension]) & head_knows_it) | rules_abstained)
        merged = merged.with_columns(
            _replaced_where(
                use_model,
                dimension,
                pl.col(f"_{dimension}"),
                pl.col(f"_{dimension}_confidence"),
                pl.col(f"_{dimension}_method"),
            )
        )
    return merged.drop([c for c in merged.columns if c.startswith("_")])


def apply_model_sentiment(
    frame: pl.DataFrame,
    text: str,
    model: ModelTier | None,
    *,
    prefix: str = "sentiment",
) -> pl.DataFrame:
    """The trained sentiment head wherever no taxonomy rule was sure: VADER's English
    lexicon was less precise than the head on English too (0.61 vs 0.83 on the dev split of
    the independent multilingual set), so in the model tier the lexicon only fills in where
    the head abstains."""
    if model is None or "sentiment" not in model.predictors or frame.height == 0:
        return frame
    prediction = model.predict(frame[text].fill_null("").to_list(), ("sentiment",))["sentiment"]
    labels = pl.Series("_label", prediction.labels, pl.String)
    confidence = pl.Series("_confidence", prediction.confidence.astype(float))
    method = pl.col(f"{prefix}_method")
    use_model = (method != "rules") & (pl.col("_label") != model.predictors["sentiment"].fallback)
    return (
        frame.with_columns(labels, confidence)
        .with_columns(
            _replaced_where(
                use_model, prefix, pl.col("_label"), pl.col("_confidence"), pl.lit("head")
            )
        )
        .drop("_label", "_confidence")
    )


def apply_llm_tier(frame: pl.DataFrame, text: str, labeler, taxonomy: Taxonomy):
    """Where topic or intent is still the fallback after the rules and the model tier, the
    LLM's answer (method `llm`); where it abstains, the fallback stays. Returns the frame and
    the run's figures (requests, cache hits, over budget, abstentions by reason, cost)."""
    from analytics_assets.categorization.llm import LLM_CONFIDENCE, LlmRun

    undecided = pl.col("topic_method").eq("fallback") | pl.col("intent_method").eq("fallback")
    # A blank text has nothing to label: the endpoint would have to pick one of the enum's
    # labels anyway, and that guess would be cached for every blank text after it.
    has_text = pl.col(text).fill_null("").str.strip_chars() != ""
    rows = frame.with_row_index("_row").filter(undecided & has_text)
    if labeler is None or rows.height == 0:
        return frame, LlmRun()
    answers, run = labeler.label(rows[text].fill_null("").to_list(), taxonomy)
    updates = pl.DataFrame(
        {
            "_row": rows["_row"],
            **{
                f"_{d}": [a.labels[d] if a.labels else None for a in answers]
                for d in ("topic", "intent")
            },
        },
        schema_overrides={"_topic": pl.String, "_intent": pl.String},
    )
    merged = frame.with_row_index("_row").join(updates, on="_row", how="left")
    for d in ("topic", "intent"):
        # The endpoint answering the fallback (`other`: none fits) is an abstention too.
        answered = pl.col(f"_{d}").is_not_null() & pl.col(f"_{d}").ne(taxonomy.fallbacks[d])
        use = pl.col(f"{d}_method").eq("fallback") & answered
        merged = merged.with_columns(
            _replaced_where(use, d, pl.col(f"_{d}"), pl.lit(LLM_CONFIDENCE), pl.lit("llm"))
        )
    return merged.drop("_row", "_topic", "_intent"), run


def categorize_texts(
    texts: pl.DataFrame,
    taxonomy: Taxonomy,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    model: ModelTier | None = None,
    llm=None,
) -> pl.DataFrame:
    """`id, text` -> language, topic, intent and sentiment, each with confidence and method.
    `llm`: an `LlmLabeler` for what the rules and the model leave undecided."""
    heads = ngram_heads(taxonomy)
    frame = texts.with_columns(detect_languages(texts["text"]))
    frame = classify(frame, "text", "topic", taxonomy, threshold=threshold)
    frame = classify(frame, "text", "intent", taxonomy, threshold=threshold)
    frame = apply_ngram_heads(frame, "text", heads, ("topic", "intent"), threshold=threshold)
    frame = apply_model_tier(frame, "text", model)
    frame, _ = apply_llm_tier(frame, "text", llm, taxonomy)
    frame = sentiment(frame, "text", taxonomy, language="language", threshold=threshold)
    frame = apply_ngram_heads(frame, "text", heads, ("sentiment",), threshold=threshold)
    frame = apply_model_sentiment(frame, "text", model)
    # As categorize_conversations does: `evaluate` and `categorize` measured and labelled
    # blank texts with the heads' confident labels.
    return _abstain_without_user_text(frame, taxonomy, _TEXT_LABEL_COLUMNS)


def categorize_conversations(
    headers: pl.DataFrame,
    messages: pl.DataFrame,
    taxonomy: Taxonomy,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    model: ModelTier | None = None,
    translations: pl.DataFrame | None = None,
    llm=None,
) -> pl.DataFrame:
    """One row per conversation header: why they came (topic, intent of the opening user
    turn), how they felt at the start and at the end, and the language they wrote in.

    When the taxonomy's rules do not cover the conversation's language and `translations`
    (current rows of conversation_translations) hold an English translation of the opening,
    topic and intent are read from that translation."""
    user_turns = (
        messages.join(headers.select("conversation_id"), on="conversation_id", how="semi")
        .filter(pl.col("role") == "user")
        .sort("created_at", "message_id")
        .group_by("conversation_id", maintain_order=True)
        .agg(
            pl.col("content").first().alias("opening"),
            pl.col("message_id").first().alias("opening_id"),
            pl.col("content").last().alias("last"),
            pl.col("message_id").last().alias("last_id"),
            pl.col("content").str.join(" ").str.slice(0, LANGUAGE_SAMPLE_CHARS).alias("all_text"),
        )
    )
    frame = headers.select("conversation_id", "day").join(
        user_turns, on="conversation_id", how="left"
    )
    frame = frame.with_columns(detect_languages(frame["all_text"]))
    frame = _with_last_turn_language(frame)
    frame = _through_translation(frame, taxonomy, translations)
    heads = ngram_heads(taxonomy)
    frame = classify(frame, "category_text", "topic", taxonomy, threshold=threshold)
    frame = classify(frame, "category_text", "intent", taxonomy, threshold=threshold)
    frame = apply_ngram_heads(
        frame, "category_text", heads, ("topic", "intent"), threshold=threshold
    )
    frame = apply_model_tier(frame, "category_text", model)
    frame, _ = apply_llm_tier(frame, "category_text", llm, taxonomy)
    frame = sentiment(
        frame, "opening", taxonomy, prefix="sentiment_opening", language="language",
        threshold=threshold,
    )  # fmt: skip
    frame = sentiment(frame, "last", taxonomy, language="last_language", threshold=threshold)
    frame = apply_ngram_heads(
        frame, "opening", heads, ("sentiment",), threshold=threshold,
        prefixes={"sentiment": "sentiment_opening"},
    )  # fmt: skip
    frame = apply_ngram_heads(frame, "last", heads, ("sentiment",), threshold=threshold)
    frame = apply_model_sentiment(frame, "opening", model, prefix="sentiment_opening")
    frame = apply_model_sentiment(frame, "last", model)
    frame = _abstain_without_user_text(frame, taxonomy)
    return (
        frame.with_columns(
            pl.lit(taxonomy.version).alias("taxonomy_version"),
            pl.lit(model_version(model, heads)).alias("model_version"),
        )
        .select(list(CATEGORY_SCHEMA))
        .cast(CATEGORY_SCHEMA)
        .sort("conversation_id")
    )


def _with_last_turn_language(frame: pl.DataFrame) -> pl.DataFrame:
    """`last_language`: the language of the last user turn, which the English lexicon is
    gated on. It is the conversation's language, except where that is English and the last
    turn is another message: an English opening followed by "Esto es una basura, quiero
    cancelar" read the complaint with the English lexicon, found no word it knows, and
    called the user calm. Only those last turns are detected again; a lexicon gated out
    leaves the sentiment to the language-independent heads."""
    again = (
        (pl.col("language") == "en")
        & pl.col("last").is_not_null()
        & (pl.col("last_id") != pl.col("opening_id"))
    )
    rows = frame.select(again.fill_null(False)).to_series().arg_true()
    last_language = frame.get_column("language").clone().alias("last_language")
    if rows.len():
        # fastText, not the full detector: this only asks whether the turn is English, and
        # the full detector on every English conversation's last turn cost the 60-day
        # backfill about 2 s. Only where it is sure: one English word ("wow", "horrible")
        # gets a low probability or another language, and keeps English; a sentence in
        # another language comes out at 0.83-1.0.
        found = quick_languages(
            frame.get_column("last").gather(rows), LAST_TURN_LANGUAGE_CONFIDENCE
        )
        sure = pl.Series([code or "en" for code in found], dtype=pl.String)
        last_language = last_language.scatter(rows, sure)
    return frame.with_columns(last_language)


# How sure fastText must be of a last turn's language to gate the English lexicon out.
LAST_TURN_LANGUAGE_CONFIDENCE = 0.75


# Each label's columns: a conversation with no user text (only the bot's greeting, or its
# user's messages not in yet) says nothing of why its user came or how they felt.
_LABEL_COLUMNS = (
    ("topic", "opening", "topic"),
    ("intent", "opening", "intent"),
    ("sentiment_opening", "opening", "sentiment"),
    ("sentiment", "last", "sentiment"),
)
_TEXT_LABEL_COLUMNS = (("topic", "text", "topic"), ("intent", "text", "intent"),
                       ("sentiment", "text", "sentiment"))  # fmt: skip


def _abstain_without_user_text(
    frame: pl.DataFrame, taxonomy: Taxonomy, label_columns=_LABEL_COLUMNS
) -> pl.DataFrame:
    """The fallback (confidence 0, method `fallback`) wherever the text a label is read from
    is missing or blank (white space and invisible format characters only, such as a zero
    width space or a byte order mark): the model tier's heads and the LLM gave such rows a
    confident label (an assistant-only conversation was `chit_chat` at 0.95)."""
    columns = []
    for prefix, text, dimension in label_columns:
        blank = pl.col(text).fill_null("").str.replace_all(r"[\s\p{Cf}]+", "") == ""
        columns += [
            pl.when(blank).then(pl.lit(taxonomy.fallbacks[dimension]))
            .otherwise(pl.col(prefix)).alias(prefix),
            pl.when(blank).then(0.0).otherwise(pl.col(f"{prefix}_confidence"))
            .alias(f"{prefix}_confidence"),
            pl.when(blank).then(pl.lit("fallback")).otherwise(pl.col(f"{prefix}_method"))
            .alias(f"{prefix}_method"),
        ]  # fmt: skip
    return frame.with_columns(columns)


def _through_translation(
    frame: pl.DataFrame, taxonomy: Taxonomy, translations: pl.DataFrame | None
) -> pl.DataFrame:
    """`category_text`: the opening, or its English translation where the rules do not
    speak the conversation's language."""
    uncovered = (
        ~pl.col("language").is_in(list(taxonomy.rule_languages))
        if taxonomy.rule_languages
        else pl.lit(False)
    )
    if translations is None or translations.is_empty():
        return frame.with_columns(
            pl.col("opening").alias("category_text"),
            pl.lit(False).alias("categorized_via_translation"),
        )
    # By message and conversation, one translation each: a message id is one message within
    # a conversation and day only. Joined by id alone, a conversation whose opening id another
    # conversation's message also has (on another day of a range run), or whose opening
    # NocoDB holds on two days, got a row per translation: two category rows, one of them
    # read from the other conversation's text.
    newest_last = [name for name in ("day", "translated_at") if name in translations.columns]
    english = (
        translations.filter(
            pl.col("is_current") & (pl.col("target_language") == TRANSLATION_LANGUAGE)
        )
        .sort(newest_last, nulls_last=False)
        .unique(["conversation_id", "message_id"], keep="last", maintain_order=True)
        .select(
            "conversation_id",
            pl.col("message_id").alias("opening_id"),
            pl.col("text").alias("_translated"),
        )
    )
    via = uncovered & pl.col("_translated").is_not_null()
    return (
        frame.join(english, on=["conversation_id", "opening_id"], how="left")
        .with_columns(
            pl.when(via).then(pl.col("_translated")).otherwise(pl.col("opening"))
            .alias("category_text"),
            via.fill_null(False).alias("categorized_via_translation"),
        )
        .drop("_translated")
    )  # fmt: skip


MESSAGE_SIGNAL_SCHEMA: dict[str, pl.DataType] = {
    "message_id": pl.String(),
    "conversation_id": pl.String(),
    "language": pl.String(),
    "language_confidence": pl.Float64(),
    "sentiment": pl.String(),
    "sentiment_confidence": pl.Float64(),
    "sentiment_method": pl.String(),
    "sentiment_score": pl.Float64(),
    # Letters written: a conversation's language is weighted by how much was written in it.
    "characters": pl.Int64(),
    "day": pl.Date(),
}


def message_signals(
    messages: pl.DataFrame, taxonomy: Taxonomy, *, threshold: float = DEFAULT_THRESHOLD
) -> pl.DataFrame:
    """Language and sentiment of every user message, for the reports' trends, at the
    deployment's threshold (as `conversation_categories`: at 0.8 a message was `uncertain`
    there and `neutral` at 0.63 here)."""
    user = messages.filter(pl.col("role") == "user").select(
        "message_id", "conversation_id", pl.col("content").alias("text"), "day"
    )
    frame = user.with_columns(
        *detect_languages(user["text"]).get_columns(),
        pl.col("text").fill_null("").str.len_chars().alias("characters"),
    )
    frame = sentiment(frame, "text", taxonomy, language="language", threshold=threshold)
    frame = apply_ngram_heads(
        frame, "text", ngram_heads(taxonomy), ("sentiment",), threshold=threshold
    )
    return frame.select(list(MESSAGE_SIGNAL_SCHEMA)).cast(MESSAGE_SIGNAL_SCHEMA)
