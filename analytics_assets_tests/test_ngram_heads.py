"""The rules tier's character n-gram heads (fastText, shipped in the package): they fill in
where the keywords and the lexicon abstain, in any language, and say nothing of a text
without enough letters to judge."""

from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from analytics_assets.categorization.conversations import (
    categorize_texts,
    message_signals,
    model_version,
)
from analytics_assets.categorization.ngram_heads import (
    MIN_LETTERS,
    NGRAM_HEADS,
    _has_letters,
    _normalized_whole,
    letters,
    ngram_heads,
    normalized,
)
from analytics_assets.categorization.taxonomy import load_taxonomy, parse_taxonomy
from analytics_assets_tests.conftest import import_benchmark

SUPPORT = load_taxonomy(None)


SUPPORT_CORPORA = sorted(NGRAM_HEADS.parent.glob("support_training*.jsonl"))
ASSISTANT_CORPORA = [NGRAM_HEADS.parent / "assistant_training.jsonl"]


@pytest.mark.parametrize(
    ("name", "folder", "corpora"),
    [
        ("support", "", SUPPORT_CORPORA),
        ("assistant", "assistant", ASSISTANT_CORPORA),
        ("combined", "combined", SUPPORT_CORPORA + ASSISTANT_CORPORA),
    ],
)
def test_the_shipped_heads_were_trained_on_the_shipped_corpus(name, folder, corpora):
    """Retrain (scripts/train_ngram_heads.py --corpus <name>) whenever a corpus changes."""
    manifest = json.loads((NGRAM_HEADS / folder / "manifest.json").read_text())
    assert manifest["name"] == name
    assert manifest["corpora"] == [corpus.name for corpus in corpora]
    digest = hashlib.sha256(b"".join(corpus.read_bytes() for corpus in corpora)).hexdigest()
    assert manifest["corpus_sha256"] == digest[:12]
    for entry in manifest["heads"].values():
        assert (NGRAM_HEADS / folder / entry["file"]).exists() and entry["temperature"] >= 1


def test_each_taxonomy_gets_the_heads_trained_for_it():
    """The assistant taxonomy's topic and intent heads were trained on ShareGPT openings,
    its sentiment head on those and the support corpus; the support taxonomy keeps its own,
    the topic head with its higher floor."""
    assistant = ngram_heads(load_taxonomy("assistant"))
    support = ngram_heads(SUPPORT)
    assert set(assistant) == set(support) == {"topic", "intent", "sentiment"}
    assert assistant["topic"].path.parent.name == assistant["intent"].path.parent.name
    assert assistant["topic"].path.parent.name == "assistant"
    # Each taxonomy's own domain's sentiment head; a custom taxonomy gets support's.
    assert assistant["sentiment"].path.parent.name == "combined"
    assert support["sentiment"].path.parent == NGRAM_HEADS
    assert assistant["topic"].floor == 0.0 and support["topic"].floor == 0.7
    assert assistant["topic"].version != support["topic"].version
    labels, _ = assistant["topic"].predict(["Write a python function that merges two sorted lists"])
    assert labels == ["coding"]


# Written for this test (none of them is in a training or evaluation set); the keywords
# leave each of these dimensions undecided, the heads are sure.
KNOWN = [
    ("계정을 삭제하고 싶어요", {"topic": "account", "intent": "support"}),
    ("这个功能太好用了，谢谢你们！", {"topic": "feedback", "intent": "feedback"}),
    ("Die Rechnung wurde zweimal von meiner Karte abgebucht", {"sentiment": "negative"}),
    ("الدفع لا يعمل وأنا غاضب جدا", {"topic": "billing"}),
]


def test_heads_fill_in_where_the_keywords_abstain_in_any_language():
    texts = pl.DataFrame({"id": [str(i) for i in range(len(KNOWN))], "text": [t for t, _ in KNOWN]})
    rows = categorize_texts(texts, SUPPORT).to_dicts()
    for row, (text, expected) in zip(rows, KNOWN, strict=True):
        for dimension, label in expected.items():
            assert row[dimension] == label, (text, dimension)
            assert row[f"{dimension}_method"] == "ngram", (text, dimension)
            assert 0.5 <= row[f"{dimension}_confidence"] <= 1.0


@pytest.mark.parametrize("text", ["", "ok", "???", "12345", "👍👍", None])
def test_too_few_letters_no_opinion(text):
    labels, probabilities = ngram_heads(SUPPORT)["topic"].predict([text])
    assert labels == [""] and probabilities[0] == 0.0
    row = categorize_texts(pl.DataFrame({"id": ["1"], "text": [text]}), SUPPORT).row(0, named=True)
    assert row["topic_method"] == row["intent_method"] == row["sentiment_method"] == "fallback"


def test_letters_count_dense_scripts_three_times():
    assert letters("ok") == 2 < MIN_LETTERS <= letters("退款") == 6
    assert letters("refund 42!") == 6
    # A mark in a dense block that is not a letter counts two.
    assert letters("・") == 2 and letters("退款・") == 8


# Pieces of text where normalizing part of a text could differ from normalizing all of it:
# what NFKC composes with what precedes it (combining marks, Hangul vowels), expands (ﬁ, ㍿)
# or folds to a space (U+3000); sigma, whose lower case depends on what follows; runs of
# whitespace of every kind, which fold to one space, so that a cut far into the text can
# still fall inside the first `max_chars` characters of the line.
_PIECES = [
    "a", "e", "Σ", "σ", "İ", "ﬁ", "㍿", "\u0301", "\u0327", "\u0345", "e\u0301", "\u1100",
    "\u1161", "ᾈ", "Ǆ", "ｱ", "\uff9e", "가", "・", "退", " ", "\n", "\u3000", "\u00a0",
    "\t", "\r\n", "\x1c", "\u2028", "      ", "\n\n\n\n", "\u3000" * 5, "\u0301" * 6,
]  # fmt: skip
_TRICKY = "".join(dict.fromkeys("".join(_PIECES)))


@settings(max_examples=500, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(_PIECES), max_size=120),
    max_chars=st.sampled_from([2, 5, 12]),
)
# Cut before the "a", the sigma would end its word and fold to "ς"; it is followed by a
# letter, so it is "σ". Cut before the mark, "e" and "\u0301" would not compose into "é".
@example(pieces=["x", "Σ\u0301\u0301", "a", "b" * 10], max_chars=2)
@example(pieces=["   ", "ye", "\u0301", "b" * 10], max_chars=2)
def test_a_long_text_normalizes_as_if_read_whole(pieces, max_chars):
    """`normalized` reads a long text only up to a space or line break past 2 x max_chars:
    the same line as normalizing the whole text, whatever surrounds the cut."""
    text = "".join(pieces)
    assert normalized(text, max_chars) == _normalized_whole(text)[:max_chars]


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(_TRICKY + "1_!😀"), max_size=12))
def test_has_letters_stops_early_and_agrees_with_letters(text):
    for at_least in (1, 3, MIN_LETTERS, 8):
        assert _has_letters(text, at_least) == (letters(text) >= at_least)


def test_rows_of_different_lengths_are_each_scaled_on_their_own():
    """The temperature scales all rows at once when fastText gives every label; should a row
    ever lack one, each row is scaled alone, with the same result as for that row alone."""
    shipped = ngram_heads(SUPPORT)["sentiment"]
    rows = {"text one": (["__label__neutral", "__label__positive", "__label__negative"],
                         [0.6, 0.3, 0.1]),
            "text two": (["__label__negative", "__label__neutral"], [0.9, 0.1])}  # fmt: skip

    class _Model:
        def predict(self, line, k):
            return rows[line]

    class _Head(type(shipped)):
        @property
        def model(self):
            return _Model()

    head = _Head(**{name: getattr(shipped, name) for name in shipped.__dataclass_fields__})
    labels, probabilities = head.predict(["text one", "text two", "ok"])
    assert labels == ["neutral", "negative", ""]
    alone = [head.predict([text])[1][0] for text in ("text one", "text two")]
    assert list(probabilities[:2]) == alone and probabilities[2] == 0.0
    scaled = 0.9 ** (1 / head.temperature)
    assert probabilities[1] == pytest.approx(scaled / (scaled + 0.1 ** (1 / head.temperature)))


def test_a_custom_taxonomy_keeps_only_the_sentiment_head():
    custom = parse_taxonomy(
        {
            "version": "acme-1",
            "topics": {"shipping": {"keywords": ["parcel"]}, "other": {}},
            "intents": {"support": {"keywords": ["where is"]}},
        }
    )
    assert set(ngram_heads(custom)) == {"sentiment"}
    assert ngram_heads(custom)["sentiment"].path.parent == NGRAM_HEADS  # support's
    row = categorize_texts(
        pl.DataFrame({"id": ["1"], "text": ["Die Rechnung wurde zweimal abgebucht"]}), custom
    ).row(0, named=True)
    assert row["topic_method"] == "fallback" and row["sentiment_method"] == "ngram"
    assert model_version(None, ngram_heads(custom)).startswith("rules-2+ngram-")
    assert model_version(None, {}) == "rules-2"
    # Every corpus whose heads label is named: for the assistant taxonomy, its own and the
    # combined one (sentiment).
    assert model_version(None, ngram_heads(load_taxonomy("assistant"))).count("+ngram-") == 2


def test_message_signals_read_non_english_sentiment_from_the_head():
    messages = pl.DataFrame(
        {
            "message_id": ["m1", "m2"],
            "conversation_id": ["c1", "c1"],
            "role": ["user", "user"],
            "content": ["Die Rechnung wurde zweimal von meiner Karte abgebucht", "ok"],
            "day": [None, None],
        },
        schema_overrides={"day": pl.Date},
    )
    signals = message_signals(messages, SUPPORT)
    assert signals["sentiment"].to_list() == ["negative", "uncertain"]
    assert signals["sentiment_method"].to_list() == ["ngram", "fallback"]


def test_the_rules_tier_on_the_frozen_multilingual_test_half():
    """A regression gate, not a target. Measured (benchmarks/eval_multilingual.py --split
    test): over all texts topic 0.593, intent 0.613, sentiment macro-F1 0.732; weakest
    language topic 0.40, intent 0.47, sentiment 0.62. Without the heads: 0.241, 0.063,
    0.180."""
    evaluation = import_benchmark("eval_multilingual")
    result = evaluation.evaluate(evaluation.load("test"))

    def of(dimension: str, language: str = "all") -> dict:
        return result.filter(
            (pl.col("dimension") == dimension) & (pl.col("language") == language)
        ).row(0, named=True)

    assert of("topic")["accuracy"] >= 0.54 and of("intent")["accuracy"] >= 0.56
    assert of("sentiment")["macro_f1"] >= 0.68
    per_language = result.filter(pl.col("language") != "all")
    floors = {"topic": ("accuracy", 0.3), "intent": ("accuracy", 0.35),
              "sentiment": ("macro_f1", 0.5)}  # fmt: skip
    for dimension, (column, floor) in floors.items():
        rows = per_language.filter(pl.col("dimension") == dimension)
        assert rows.height == 12 and rows.filter(pl.col(column) < floor).height == 0


def test_the_lexicon_leaves_one_mildly_polar_word_to_the_head():
    """VADER calls "help" positive (compound 0.40): a plain request read as a happy user. The
    lexicon decides only where it is clear (neutral, or polar from LEXICON_POLAR_BOUND); in
    between the sentiment head does, and a plain request is neutral."""
    from analytics_assets.categorization.rules import LEXICON_POLAR_BOUND, sentiment

    texts = pl.DataFrame(
        {
            "text": [
                "Can you help me write a cover letter for a data analyst job?",
                "This is terrible, I hate it, the app is broken and useless",
                "How do I sort a list in Python?",
            ]
        }
    )
    assistant = load_taxonomy("assistant")
    by_lexicon = sentiment(texts, "text", assistant)
    assert 0.05 < by_lexicon["sentiment_score"][0] < LEXICON_POLAR_BOUND
    assert by_lexicon["sentiment_method"].to_list() == ["fallback", "lexicon", "lexicon"]
    labelled = categorize_texts(texts.with_columns(pl.Series("id", ["1", "2", "3"])), assistant)
    assert labelled["sentiment"].to_list() == ["neutral", "negative", "neutral"]
    assert labelled["sentiment_method"].to_list() == ["ngram", "lexicon", "lexicon"]


def test_a_sure_fallback_from_an_ngram_head_is_still_an_abstention():
    """The assistant intent head learnt `uncertain` from bare follow-ups such as "continue";
    sure of it or not, the row keeps the fallback method."""
    head = ngram_heads(load_taxonomy("assistant"))["intent"]
    labels, probabilities = head.predict(["continue please"])
    assert labels == ["uncertain"] and probabilities[0] >= 0.5
    row = categorize_texts(
        pl.DataFrame({"id": ["1"], "text": ["continue please"]}), load_taxonomy("assistant")
    ).row(0, named=True)
    assert (row["intent"], row["intent_method"]) == ("uncertain", "fallback")


def test_a_privacy_placeholder_alone_is_not_a_text_to_label():
    """`<PHONE>` alone was a sure `bug`, `troubleshooting` and `negative`: the letters of
    the placeholder's name counted as the user's words."""
    from analytics_assets.categorization.conversations import categorize_texts
    from analytics_assets.categorization.taxonomy import load_taxonomy

    texts = pl.DataFrame({"id": ["a", "b", "c"], "text": ["<PHONE>", "<EMAIL:3fa9c0>", "<GOV_ID>"]})
    labelled = categorize_texts(texts, load_taxonomy())
    for dimension in ("topic", "intent", "sentiment"):
        assert (labelled[f"{dimension}_method"] == "fallback").all(), dimension
