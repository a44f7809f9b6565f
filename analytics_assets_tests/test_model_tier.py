"""The model tier on the default encoder (use-m3, from its package), on the CPU, and device
choice."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analytics_assets.categorization.conversations import categorize_texts
from analytics_assets.categorization.device import (
    DeviceUnavailableError,
    collect,
    resolve_device,
)
from analytics_assets.categorization.model_tier import (
    ModelTier,
    ZeroShot,
    score,
    train_head,
)
from analytics_assets.categorization.taxonomy import load_taxonomy
from analytics_assets.sources.generator import SampleSpec, generate_sample

torch = pytest.importorskip("torch", reason="the model tier needs the ml extra")
TAXONOMY = load_taxonomy()


@pytest.fixture(scope="module")
def embedder():
    from analytics_assets.categorization.embeddings import shared_embedder

    return shared_embedder(resolve_device("auto"))


def test_device_auto_falls_back_to_the_cpu_and_says_so(embedder):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == "cpu"
    embedder.embed(["hello"])
    assert embedder.last_run.device == "cpu"


def test_device_cuda_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceUnavailableError, match="device=auto"):
        resolve_device("cuda")


def test_heavy_queries_fall_back_to_the_cpu_engine():
    query = pl.LazyFrame({"topic": ["a", "b", "a"]}).group_by("topic").len()
    frame, engine = collect(query, device="cpu")
    assert engine == "cpu"
    assert dict(frame.sort("topic").iter_rows()) == {"a": 2, "b": 1}


def test_embeddings_are_normalized_and_meaningful(embedder):
    vectors = embedder.embed(
        ["I was charged twice on my card", "Please refund the double charge", "Tell me a joke"]
    )
    assert vectors.shape == (3, embedder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_zero_shot_puts_clear_examples_in_the_right_topic(embedder):
    zero_shot = ZeroShot.from_taxonomy(TAXONOMY, "topic", embedder.embed)
    texts = {
        "billing": "Why did you take money from my card twice? I need my money back.",
        "bug": "Everything froze and then the page went blank with a stack trace.",
        "pricing": "What would ten licences for my team cost each year?",
        "account": "I forgot my password and cannot get into my profile.",
    }
    prediction = zero_shot.predict(embedder.embed(list(texts.values())), threshold=0.0)
    assert prediction.labels == list(texts)
    assert prediction.method == "zero_shot"


def test_a_trained_head_generalizes_to_held_out_phrases(embedder):
    """With MiniLM the head beat zero-shot here; with use-m3 zero-shot already gets the
    generator's phrases right (they are close to the taxonomy's examples), so what is
    asserted is that a head learns the topics from other phrases, not which one wins: that
    is decided per deployment by measurement (`train_and_choose`)."""
    data = generate_sample(SampleSpec(days=3, conversations=800, seed=11))
    texts = [label["opening"] for label in data.labels]
    truth = [label["topic"] for label in data.labels]
    vectors = embedder.embed(texts)
    # Held out by phrase, not by row: the head must generalize, not recall a sentence.
    phrases = sorted(set(texts))
    np.random.default_rng(1).shuffle(phrases)
    held_out = set(phrases[: len(phrases) // 4])
    train = np.array([i for i, text in enumerate(texts) if text not in held_out])
    test = np.array([i for i, text in enumerate(texts) if text in held_out])

    zero_shot = ZeroShot.from_taxonomy(TAXONOMY, "topic", embedder.embed)
    zero_shot.fit_temperature(vectors[train], [truth[i] for i in train])
    head = train_head(vectors[train], [truth[i] for i in train], fallback="other")
    expected = [truth[i] for i in test]
    zero_shot_scores = score(expected, zero_shot.predict(vectors[test], threshold=0.0).labels)
    head_scores = score(expected, head.predict(vectors[test], threshold=0.0).labels)
    assert head_scores.accuracy > 0.8 and head_scores.macro_f1 > 0.75
    assert zero_shot_scores.accuracy > 0.6


def test_the_threshold_yields_uncertain(embedder):
    model = ModelTier.build(embedder, TAXONOMY, threshold=0.99)
    prediction = model.predict(["hmm, something about the thing"])["intent"]
    assert prediction.labels == ["uncertain"]
    assert prediction.confidence[0] < 0.99


TWO_TEXTS = pl.DataFrame(
    {
        "id": ["rule", "model"],
        "text": [
            "How much does the Pro plan cost per seat?",
            "My card got debited two times for one month, please return one.",
        ],
    }
)


def test_zero_shot_fills_in_only_where_rules_are_unsure(embedder, monkeypatch):
    from analytics_assets.categorization import conversations

    # Without the rules tier's n-gram heads, which would fill in first (test_ngram_heads).
    monkeypatch.setattr(conversations, "ngram_heads", lambda taxonomy: {})
    model = ModelTier.build(embedder, TAXONOMY, shipped=False)
    result = categorize_texts(TWO_TEXTS, TAXONOMY, model=model).to_dicts()
    assert (result[0]["topic"], result[0]["topic_method"]) == ("pricing", "rules")
    # No billing keyword matches, so the rules abstain and zero-shot decides.
    assert (result[1]["topic"], result[1]["topic_method"]) == ("billing", "zero_shot")
    assert result[1]["topic_confidence"] > 0.5


def test_a_shipped_head_labels_where_it_is_sure_and_the_rules_fill_in(embedder):
    """A head trained on labelled real text was more precise than the keywords on the
    independent set, so where it is sure it decides; the rules keep what it is not sure of."""
    model = ModelTier.build(embedder, TAXONOMY)
    assert model.head_overrides_rules("topic")
    result = categorize_texts(TWO_TEXTS, TAXONOMY, model=model).to_dicts()
    assert [r["topic"] for r in result] == ["pricing", "billing"]
    assert result[1]["topic_method"] == "head"
    # Sentiment comes from the shipped head too, in languages no rule or lexicon speaks.
    texts = pl.DataFrame(
        {
            "id": ["ja", "de"],
            "text": ["すぐに直してくれて本当に助かりました！",
                     "Der Export ist seit gestern kaputt und niemand antwortet"],
        }
    )  # fmt: skip
    labelled = categorize_texts(texts, TAXONOMY, model=model)
    assert labelled["sentiment"].to_list() == ["positive", "negative"]
    assert set(labelled["sentiment_method"]) == {"head"}


def test_a_custom_taxonomy_gets_no_shipped_head_with_labels_it_lacks(embedder):
    from analytics_assets.categorization.model_tier import shipped_heads
    from analytics_assets.categorization.taxonomy import parse_taxonomy

    custom = parse_taxonomy(
        {
            "version": "custom-1",
            "fallbacks": {"topic": "other", "intent": "uncertain", "sentiment": "uncertain"},
            "topics": {"shipping": {"description": "Parcels and couriers."},
                       "other": {"description": "Anything else."}},
            "intents": {"ask": {"description": "A question."}},
        }
    )  # fmt: skip
    heads = shipped_heads(embedder.name, custom)
    assert set(heads) == {"sentiment"}
    model = ModelTier.build(embedder, custom)
    assert model.predictors["topic"].__class__.__name__ == "ZeroShot"


@pytest.mark.parametrize("encoder", ["use-m3", "e5-small", "minilm"])
def test_the_assistant_taxonomy_gets_its_shipped_heads(encoder):
    """Each encoder's assistant topic and intent heads (scripts/train_shipped_heads.py
    --corpus assistant) fit the assistant taxonomy, whose fallbacks they learnt as classes,
    and were trained on the shipped corpus as it is now; its sentiment head learnt from that
    corpus and the support one. Support and a custom taxonomy get support's."""
    import hashlib

    from analytics_assets.categorization.model_tier import SHIPPED_HEADS, shipped_heads
    from analytics_assets.categorization.taxonomy import parse_taxonomy

    def digest(paths) -> str:
        return hashlib.sha256(b"".join(path.read_bytes() for path in paths)).hexdigest()[:12]

    support_corpus = sorted(SHIPPED_HEADS.glob("support_training*.jsonl"))
    assistant_corpus = [SHIPPED_HEADS / "assistant_training.jsonl"]
    assistant = load_taxonomy("assistant")
    heads = shipped_heads(encoder, assistant)
    assert set(heads) == {"topic", "intent", "sentiment"}
    for dimension in ("topic", "intent"):
        assert heads[dimension].metrics["corpus_sha256_12"] == digest(assistant_corpus)
        fallback = assistant.fallbacks[dimension]
        assert set(heads[dimension].names) - {fallback} == set(assistant.names(dimension))
    assert heads["sentiment"].metrics["domain"] == "assistant"
    assert heads["sentiment"].version.endswith(digest(support_corpus + assistant_corpus))
    support = shipped_heads(encoder, load_taxonomy("support"))
    assert support["topic"].version.startswith(f"shipped-{encoder}-support-")
    assert support["sentiment"].version.startswith(f"shipped-{encoder}-support-sentiment-")
    custom = parse_taxonomy({"version": "c", "topics": {"parcels": {}}, "intents": {"track": {}}})
    assert shipped_heads(encoder, custom)["sentiment"].version == support["sentiment"].version


def test_a_sure_fallback_from_a_head_is_still_an_abstention():
    """The assistant heads learnt `other` and `uncertain` as classes; where one is sure of
    the fallback, the row keeps the fallback method (the LLM tier and the abstention rate
    see it), and it never replaces a label the keywords gave."""
    from types import SimpleNamespace

    from analytics_assets.categorization.conversations import apply_model_tier
    from analytics_assets.categorization.model_tier import Prediction

    class SureOfOther:
        threshold = 0.5
        decisive = {"topic": frozenset({"coding"})}
        # The head's own labels: it overrides a keyword's label only where it knows it.
        predictors = {"topic": SimpleNamespace(names=["coding", "other"])}

        def head_overrides_rules(self, dimension):
            return True

        def predict(self, texts, dimensions):
            n = len(texts)
            return {"topic": Prediction(["other"] * n, np.full(n, 0.97), "head", "h")}

    frame = pl.DataFrame(
        {
            "text": ["continue", "fix my python script"],
            "topic": ["other", "coding"],
            "topic_confidence": [0.0, 0.9],
            "topic_method": ["fallback", "rules"],
            "intent": ["uncertain", "uncertain"],
            "intent_confidence": [0.0, 0.0],
            "intent_method": ["fallback", "fallback"],
        }
    )
    labelled = apply_model_tier(frame, "text", SureOfOther())
    assert labelled["topic_method"].to_list() == ["fallback", "rules"]
    assert labelled["topic"].to_list() == ["other", "coding"]


def test_feedback_trains_heads_and_adopts_only_better_ones(embedder, tmp_path):
    from analytics_assets.categorization.conversations import model_version
    from analytics_assets.categorization.feedback import train_and_choose
    from analytics_assets.defs.categorization.resources import CategorizationResource

    data = generate_sample(SampleSpec(days=2, conversations=300, seed=5))
    openings = pl.DataFrame(
        {
            "conversation_id": [label["conversation_id"] for label in data.labels],
            "opening": [label["opening"] for label in data.labels],
        }
    )
    feedback = pl.DataFrame(
        [{k: label[k] for k in ("conversation_id", "topic", "intent")} for label in data.labels]
    )
    # Earlier, wrong corrections of 40 conversations, superseded by the rows after them.
    superseded = feedback.head(40).with_columns(pl.lit("other").alias("topic"))
    feedback = pl.concat([superseded, feedback])
    heads = tmp_path / "heads"
    # A head belongs to the encoder whose embeddings it was trained on: its own folder.
    first = {
        d.dimension: d
        for d in train_and_choose(
            openings, feedback, TAXONOMY, embedder.embed, heads / embedder.name
        )
    }
    assert set(first) == {"topic", "intent"}
    assert first["topic"].corrections == len(data.labels)  # the superseded ones not counted
    assert first["topic"].baseline_name == "zero-shot"
    assert (
        first["topic"].adopted and first["topic"].head.macro_f1 > first["topic"].baseline.macro_f1
    )
    # The same corrections again: the new head is no better than the adopted one, so it stays.
    second = {
        d.dimension: d
        for d in train_and_choose(
            openings, feedback, TAXONOMY, embedder.embed, heads / embedder.name
        )
    }
    assert second["topic"].baseline_name == first["topic"].version
    assert not second["topic"].adopted

    resource = CategorizationResource(tier="model", device="cpu", heads_dir=str(heads))
    assert resource.current_heads()["topic"] == first["topic"].version
    model = resource.model_tier(TAXONOMY)
    assert first["topic"].version in model_version(model)
    prediction = model.predict(["How much does the Pro plan cost per seat?"])
    assert prediction["topic"].labels == ["pricing"] and prediction["topic"].method == "head"


def test_discovery_separates_new_topics_and_names_their_terms(embedder):
    from analytics_assets.categorization.discovery import discover

    shipping = [
        f"Where is my parcel? The delivery was due {day} and the courier never came."
        for day in ("Monday", "Tuesday", "Friday", "yesterday", "last week")
    ] + ["My parcel delivery is late again, the courier lost it."]
    gdpr = [
        f"Under GDPR I request deletion of all my personal data, {n}."
        for n in ("now", "today", "this week", "immediately", "as required by law")
    ] + ["Delete my personal data per GDPR, please confirm deletion."]
    texts = shipping + gdpr
    clusters = discover(texts, embedder.embed(texts), max_clusters=2)
    assert sorted(clusters["size"].to_list()) == [6, 6]
    terms = [set(row) for row in clusters["terms"].to_list()]
    assert any({"parcel", "courier"} <= t for t in terms)
    assert any({"gdpr", "personal"} <= t for t in terms)


def test_a_range_run_of_topic_discovery_clusters_each_day_on_its_own(embedder):
    """A single-run backfill clustered the whole range once and filed every cluster under
    its first day: the other days had no discovery, and the first held theirs."""
    from datetime import UTC, date, datetime

    import polars as pl

    from analytics_assets.defs.categorization.assets import clusters_by_day

    days = [date(2026, 11, 1), date(2026, 11, 2)]
    openings = {
        days[0]: [f"Where is my parcel? The courier never came {n}." for n in range(4)],
        days[1]: [f"Delete all my personal data under GDPR {n}." for n in range(6)],
    }
    rows = [
        (f"c-{day.day}-{n}", day, text)
        for day, texts in openings.items()
        for n, text in enumerate(texts)
    ]
    categories = pl.DataFrame(
        {"conversation_id": [r[0] for r in rows], "topic": "other", "day": [r[1] for r in rows]}
    )
    messages = pl.DataFrame(
        {
            "conversation_id": [r[0] for r in rows],
            "role": "user",
            "content": [r[2] for r in rows],
            "created_at": [datetime(r[1].year, r[1].month, r[1].day, 9, tzinfo=UTC) for r in rows],
            "day": [r[1] for r in rows],
        }
    )
    clusters, clustered = clusters_by_day(days, categories, messages, embedder.embed)
    sizes = clusters.group_by("day").agg(pl.col("size").sum())
    assert dict(sizes.iter_rows()) == {days[0]: 4, days[1]: 6}
    assert clustered == {days[0]: 4, days[1]: 6}
    # A taxonomy whose fallback topic is `misc`: its conversations are the ones clustered
    # (with `other` written in, none ever were).
    misc = categories.with_columns(pl.lit("misc").alias("topic"))
    _, clustered = clusters_by_day(days, misc, messages, embedder.embed, fallback="misc")
    assert clustered == {days[0]: 4, days[1]: 6}


def test_a_range_run_of_topic_discovery_gives_each_day_its_own_metadata(tmp_path, embedder):
    """Materialized over two days in one run: each day's materialization reports that day's
    conversations and clusters, not the run's."""
    from datetime import UTC, date, datetime

    import polars as pl
    from dagster import BackfillPolicy, DagsterInstance, asset, materialize

    from analytics_assets.defs.categorization.assets import topic_discovery
    from analytics_assets.defs.categorization.resources import CategorizationResource
    from analytics_assets.defs.partitions import daily_partitions, days_in
    from analytics_assets.defs.storage.lake import ParquetLakeIOManager

    def rows(context) -> list[tuple[str, date, str]]:
        # Four conversations on odd days, three on even ones.
        return [
            (f"c-{day.day}-{n}", day, f"Where is my parcel? The courier lost it ({n}).")
            for day in days_in(context.partition_time_window)
            for n in range(3 + day.day % 2)
        ]

    upstream = {"partitions_def": daily_partitions, "io_manager_key": "lake_io_manager",
                "backfill_policy": BackfillPolicy.single_run()}  # fmt: skip

    @asset(**upstream)
    def conversation_categories(context) -> pl.DataFrame:
        found = rows(context)
        return pl.DataFrame(
            {
                "conversation_id": [r[0] for r in found],
                "topic": "other",
                "day": [r[1] for r in found],
            }
        )

    @asset(**upstream)
    def conversation_messages(context) -> pl.DataFrame:
        found = rows(context)
        return pl.DataFrame({
            "conversation_id": [r[0] for r in found], "role": "user",
            "content": [r[2] for r in found], "day": [r[1] for r in found],
            "created_at": [datetime(d.year, d.month, d.day, 9, tzinfo=UTC) for _, d, _ in found],
        })  # fmt: skip

    result = materialize(
        [conversation_categories, conversation_messages, topic_discovery],
        resources={
            "lake_io_manager": ParquetLakeIOManager(base_url=str(tmp_path)),
            "categorization": CategorizationResource(device="cpu"),
        },
        instance=DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": "2026-11-01",
            "dagster/asset_partition_range_end": "2026-11-02",
        },
    )
    assert result.success
    reported = {
        m.partition: m.metadata["conversations_in_other"].value
        for m in result.asset_materializations_for_node("topic_discovery")
    }
    assert reported == {"2026-11-01": 4, "2026-11-02": 3}


def test_the_same_openings_are_embedded_once_for_topic_intent_and_sentiment(embedder):
    """categorize_conversations asks for topic and intent of each opening, then for the
    sentiment of the same openings, then of the last turns: only texts the previous call
    did not have reach the encoder."""
    from datetime import UTC, datetime

    from analytics_assets.categorization.conversations import categorize_conversations
    from analytics_assets.transforms.raw import raw_frame_from_records
    from analytics_assets.transforms.records import (
        validate_conversation_headers,
        validate_messages,
    )

    embedded: list[str] = []

    class Counting:
        name, device, version = embedder.name, embedder.device, embedder.version

        def embed(self, texts):
            embedded.extend(texts)
            return embedder.embed(texts)

    model = ModelTier.build(Counting(), TAXONOMY)
    embedded.clear()  # the zero-shot prototypes were embedded while building
    data = generate_sample(SampleSpec(days=1, conversations=40, seed=3))

    def raw(records, table):
        return raw_frame_from_records(records, table=table, day=data.spec.start, page=0,
                                      fetched_at=datetime.now(UTC), source="test")  # fmt: skip

    headers = validate_conversation_headers(raw(data.conversations, "conversations")).valid
    messages = validate_messages(raw(data.messages, "messages")).valid
    categorize_conversations(headers, messages, TAXONOMY, model=model)

    turns = (
        messages.filter(pl.col("role") == "user")
        .sort("created_at", "message_id")
        .group_by("conversation_id")
        .agg(pl.col("content").first().alias("opening"), pl.col("content").last().alias("last"))
    )
    per_header = headers.select("conversation_id").join(turns, on="conversation_id", how="left")
    openings = per_header["opening"].fill_null("").to_list()
    lasts = per_header["last"].fill_null("").to_list()
    # Each opening once (topic and intent; the sentiment call reuses them), then only the
    # last turns that differ from every opening.
    assert len(embedded) == len(openings) + sum(last not in set(openings) for last in lasts)
    assert len(embedded) < 2 * len(openings) + len(lasts)


def test_pooling_the_encoder_head_with_the_ngram_head(embedder):
    """Off by default (ENCODER_WEIGHTS: 1.0, measured no better on the frozen test half);
    with a weight below 1, a dimension's probabilities are a weighted geometric mean of the
    shipped encoder head's and the shipped n-gram head's, a text too short for the n-grams
    keeps the encoder head's, the other dimensions stay alone, and the model version names
    the n-gram head and the weight."""
    from analytics_assets.categorization.conversations import model_version
    from analytics_assets.categorization.model_tier import ENCODER_WEIGHTS, softmax

    assert set(ENCODER_WEIGHTS.values()) == {1.0}
    model = ModelTier.build(embedder, TAXONOMY)
    head, ngram = model.predictors["sentiment"], model.companions["sentiment"]
    texts = ["Der Export ist seit gestern kaputt und niemand antwortet",
             "ok", "すぐに直してくれて本当に助かりました！"]  # fmt: skip
    encoder = head.probabilities(embedder.embed(texts))
    alone = model.predict(texts, ("sentiment",))["sentiment"]
    assert np.allclose(alone.confidence, encoder.max(axis=1))
    assert "&" not in model_version(model)

    weight = 0.7
    model.encoder_weights["sentiment"] = weight
    grams, answered = ngram.distributions(texts, head.names)
    assert answered.tolist() == [True, False, True]
    assert np.allclose(grams[answered].sum(axis=1), 1.0)
    expected = softmax(weight * np.log(encoder) + (1 - weight) * np.log(np.maximum(grams, 1e-9)))
    expected[1] = encoder[1]
    pooled = model.predict(texts, ("sentiment",))["sentiment"]
    assert np.allclose(pooled.confidence, expected.max(axis=1), atol=1e-6)
    assert pooled.labels[0] == "negative" and pooled.labels[2] == "positive"
    assert pooled.method == "head"
    topic = model.predict(texts, ("topic",))["topic"]
    assert np.allclose(
        topic.confidence, model.predictors["topic"].probabilities(embedder.embed(texts)).max(1)
    )
    version = model_version(model)
    assert f"sentiment:{head.version}&{ngram.version}@{weight:g}" in version
    assert version.count("&") == 1


def test_a_head_adopted_from_corrections_is_not_pooled(embedder):
    """A head trained on a team's corrections was measured alone when it was adopted, so it
    stays alone; a custom taxonomy still pools support's sentiment heads."""
    from analytics_assets.categorization.conversations import model_version
    from analytics_assets.categorization.taxonomy import parse_taxonomy

    corrected = train_head(
        embedder.embed(["great, thanks", "this is broken", "what is the price"] * 4),
        ["positive", "negative", "neutral"] * 4,
        fallback="uncertain",
        epochs=50,
    )
    model = ModelTier.build(embedder, TAXONOMY, {"sentiment": corrected})
    assert "sentiment" not in model.companions
    assert f"sentiment:{corrected.version}+" in model_version(model) + "+"
    custom = parse_taxonomy(
        {
            "version": "custom-1",
            "topics": {"parcels": {"description": "Parcels and couriers."}},
            "intents": {"track": {"description": "Where is my parcel?"}},
        }
    )
    assert set(ModelTier.build(embedder, custom).companions) == {"sentiment"}


def test_a_taxonomy_of_keywords_only_reads_its_labels_from_their_names(embedder):
    """Zero-shot left out every label without a description or examples: a taxonomy of
    keywords only failed to load, and one with a single described label gave it to every
    text at 1.0."""
    from analytics_assets.categorization.taxonomy import parse_taxonomy

    keywords_only = parse_taxonomy(
        {
            "topics": {"shipping": {"keywords": ["parcel", "courier"]},
                       "billing": {"keywords": ["invoice", "refund"]}},
            "intents": {"ask": {"keywords": ["how"]}, "complain": {"keywords": ["terrible"]}},
        }
    )  # fmt: skip
    model = ModelTier.build(embedder, keywords_only)
    predicted = model.predict(["Where is my parcel? The courier never came."], ["topic"])
    assert predicted["topic"].labels == ["shipping"]
    one_described = parse_taxonomy(
        {
            "topics": {"returns": {"description": "Sending a product back for a refund."},
                       "other": {}},
            "intents": {"ask": {"keywords": ["how"]}, "complain": {"keywords": ["terrible"]}},
        }
    )  # fmt: skip
    model = ModelTier.build(embedder, one_described)
    predicted = model.predict(["Hello there!", "What is the weather tomorrow?"], ["topic"])
    assert predicted["topic"].labels == ["other", "other"]
    assert list(predicted["topic"].confidence) == [0.0, 0.0]


def test_a_head_adopted_under_another_taxonomy_is_left_out(tmp_path, embedder, caplog):
    """Adopted correction heads were kept per encoder only: after ANALYTICS_TAXONOMY went
    from support to assistant, a topic head adopted from support corrections replaced the
    assistant's own, and its labels, unknown there, made every text `other`."""
    import json

    from analytics_assets.categorization.feedback import HEADS_INDEX, load_model_tier
    from analytics_assets.categorization.model_tier import train_head
    from analytics_assets.categorization.taxonomy import load_taxonomy

    texts = ["I was charged twice on my invoice", "The app crashes when I upload a file"] * 4
    head = train_head(embedder.embed(texts), ["billing", "bug"] * 4, fallback="other")
    folder = tmp_path / "heads" / embedder.name
    head.save(folder)
    (folder / HEADS_INDEX).write_text(json.dumps({"topic": head.version}))
    support = load_model_tier(load_taxonomy("support"), device="cpu", batch_size=32,
                              threshold=0.5, heads_dir=tmp_path / "heads")  # fmt: skip
    assert support.predictors["topic"].version == head.version
    with caplog.at_level("WARNING"):
        assistant = load_model_tier(load_taxonomy("assistant"), device="cpu", batch_size=32,
                                    threshold=0.5, heads_dir=tmp_path / "heads")  # fmt: skip
    assert assistant.predictors["topic"].version != head.version
    assert "left out: its labels are not the taxonomy's" in caplog.text
    predicted = assistant.predict(["Who won the world cup in 1998?"], ["topic"])
    assert predicted["topic"].labels != ["other"]


def test_evaluate_scores_the_model_tier_the_pipeline_runs(tmp_path, embedder, monkeypatch, capsys):
    """`evaluate --tier model` left out the adopted correction heads and used a threshold of
    its own: it measured another model tier than the one labelling the conversations."""
    import json

    from analytics_assets.categorization.feedback import HEADS_INDEX
    from analytics_assets.categorization.model_tier import train_head
    from analytics_assets.cli import main
    from analytics_assets.settings import get_settings

    # An adopted head trained on corrections that call feature requests billing (and the
    # other way round): where it runs, the feature request is billing.
    texts = ["Please add a dark theme to the phone app", "I was charged twice on my invoice"] * 4
    head = train_head(embedder.embed(texts), ["billing", "features"] * 4, fallback="other")
    folder = tmp_path / "heads" / embedder.name
    head.save(folder)
    (folder / HEADS_INDEX).write_text(json.dumps({"topic": head.version}))
    labelled = tmp_path / "labelled.csv"
    pl.DataFrame({"id": ["1"], "text": ["Can you add dark mode to the mobile app?"],
                  "topic": ["features"]}).write_csv(labelled)  # fmt: skip
    arguments = ["evaluate", str(labelled), "--tier", "model", "--device", "cpu",
                 "--encoder", embedder.name]  # fmt: skip

    def evaluated(heads_dir) -> str:
        # Settings are read once per process: read again with the folder, then put back.
        monkeypatch.setenv("ANALYTICS_HEADS_DIR", str(heads_dir))
        get_settings.cache_clear()
        try:
            assert main(arguments) == 0
        finally:
            monkeypatch.undo()
            get_settings.cache_clear()
        return capsys.readouterr().out

    # No adopted head: the shipped one, as the pipeline would run it.
    assert "topic: accuracy 1.000" in evaluated(tmp_path / "no-heads")
    assert "topic: accuracy 0.000" in evaluated(tmp_path / "heads")


def test_a_blank_text_gets_no_label_from_the_model_in_categorize_and_evaluate(embedder):
    """`categorize_texts` (the `categorize` and `evaluate` commands) lacked the abstention
    the conversations have: empty, missing and zero-width texts got the heads' labels."""
    from analytics_assets.categorization.conversations import categorize_texts

    texts = pl.DataFrame({"id": ["a", "b", "c"], "text": ["", None, " \u200b\ufeff "]})
    model = ModelTier.build(embedder, TAXONOMY)
    for row in categorize_texts(texts, TAXONOMY, model=model).iter_rows(named=True):
        for dimension in ("topic", "intent", "sentiment"):
            assert row[f"{dimension}_method"] == "fallback", (row["id"], dimension)
            assert row[f"{dimension}_confidence"] == 0


def test_a_conversation_without_user_text_gets_no_label_from_the_model(embedder):
    """The model tier's heads gave an assistant-only conversation a sure `chit_chat`."""
    from datetime import UTC, datetime

    from analytics_assets.categorization.conversations import categorize_conversations

    at = datetime(2026, 11, 3, 9, tzinfo=UTC)
    messages = pl.DataFrame(
        {"conversation_id": ["bot-only"], "message_id": ["m1"], "role": ["assistant"],
         "content": ["Hi! How can I help you today?"], "created_at": [at]}
    )  # fmt: skip
    headers = pl.DataFrame({"conversation_id": ["bot-only"], "day": [at.date()]})
    model = ModelTier.build(embedder, TAXONOMY)
    row = categorize_conversations(headers, messages, TAXONOMY, model=model).row(0, named=True)
    for prefix in ("topic", "intent", "sentiment_opening", "sentiment"):
        assert row[f"{prefix}_method"] == "fallback" and row[f"{prefix}_confidence"] == 0
