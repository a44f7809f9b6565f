"""The categorization rules tier on hand-written multilingual examples with known answers."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest
from dagster import DagsterInstance

from analytics_assets.categorization.conversations import CATEGORY_SCHEMA, categorize_texts
from analytics_assets.categorization.feedback import latest_corrections, read_feedback
from analytics_assets.categorization.taxonomy import load_taxonomy, parse_taxonomy
from analytics_assets_tests.conftest import range_tags

TAXONOMY = load_taxonomy()

EXAMPLES = [
    # text, language, topic, intent, sentiment
    ("How much does the Enterprise plan cost per seat?", "en", "pricing", "purchase", None),
    ("The app crashes with error 500 when I upload a CSV", "en", "bug", "troubleshooting", None),
    ("I was charged twice this month, can you refund one payment?", "en", "billing", "support",
     None),
    ("¿Cuánto cuesta el plan Pro por usuario?", "es", "pricing", "purchase", None),
    ("Wie viel kostet der Pro-Tarif pro Nutzer?", "de", "pricing", "purchase", None),
    ("Comment changer la carte bancaire de mon abonnement ?", "fr", "billing", None, None),
    ("O aplicativo trava quando envio um arquivo CSV.", "pt", "bug", "troubleshooting", None),
    ("上传CSV文件时应用程序崩溃了。", "zh", "bug", "troubleshooting", None),
    ("Не могу войти, письмо для сброса пароля не приходит.", "ru", "account", None, None),
    ("ログインできません。パスワードリセットのメールが届きません。", "ja", "account", None, None),
    ("Great, thanks for the quick help, it works perfectly!", "en", None, None, "positive"),
    ("This is useless and frustrating, nothing works.", "en", None, None, "negative"),
    ("Eso no funciona, ya lo probé. Qué frustración.", "es", None, None, "negative"),
    ("Vielen Dank, das hat geklappt!", "de", None, None, "positive"),
]  # fmt: skip


@pytest.fixture(scope="module")
def categorized() -> pl.DataFrame:
    texts = pl.DataFrame(
        {"id": [str(n) for n in range(len(EXAMPLES))], "text": [e[0] for e in EXAMPLES]}
    )
    return categorize_texts(texts, TAXONOMY)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_known_answers(categorized, index):
    text, language, topic, intent, sentiment = EXAMPLES[index]
    row = categorized.row(index, named=True)
    assert row["language"] == language, text
    assert row["language_confidence"] > 0.5
    if topic:
        assert (row["topic"], row["topic_method"]) == (topic, "rules"), text
    if intent:
        assert row["intent"] == intent, text
    if sentiment:
        assert row["sentiment"] == sentiment, text
    for dimension in ("topic", "intent", "sentiment"):
        assert 0.0 <= row[f"{dimension}_confidence"] <= 1.0


def test_hard_inputs_fall_back_instead_of_guessing():
    texts = pl.DataFrame(
        {
            "id": ["empty", "emoji", "code", "long", "none"],
            "text": [
                "",
                "🎉🙏👍",
                "SELECT id, total FROM orders WHERE created_at > now() - interval '1 day';",
                "The export is broken again. " * 2000,
                None,
            ],
        }
    )
    result = categorize_texts(texts, TAXONOMY).to_dicts()
    empty, emoji, code, long, missing = result
    for row in (empty, emoji, missing):
        assert row["language"] == "unknown" and row["language_confidence"] == 0.0
        assert row["topic"] == "other" and row["intent"] == "uncertain"
        assert row["sentiment"] == "uncertain" and row["sentiment_method"] == "fallback"
    assert code["topic"] == "other" and code["topic_method"] == "fallback"
    assert long["topic"] == "bug" and long["topic_confidence"] > 0.99
    assert long["language"] == "en"


def test_below_the_threshold_the_label_is_the_fallback(monkeypatch):
    from analytics_assets.categorization import conversations

    # One pricing hit and one billing hit: a tie, so no keyword label is sure enough; the
    # n-gram head then fills in (it is sure: an invoice is billing).
    texts = pl.DataFrame({"id": ["tie"], "text": ["discount on the invoice"]})
    row = categorize_texts(texts, TAXONOMY).row(0, named=True)
    assert (row["topic"], row["topic_method"]) == ("billing", "ngram")
    assert row["topic_confidence"] > 0.9
    # The keywords alone (no heads): the fallback.
    monkeypatch.setattr(conversations, "ngram_heads", lambda taxonomy: {})
    row = categorize_texts(texts, TAXONOMY).row(0, named=True)
    assert row["topic"] == "other"
    assert row["topic_method"] == "fallback"
    assert row["topic_confidence"] == pytest.approx(0.25)
    strict = categorize_texts(
        pl.DataFrame({"id": ["one"], "text": ["what is the price"]}), TAXONOMY, threshold=0.6
    ).row(0, named=True)
    assert strict["topic"] == "other"  # one hit gives 0.5, below 0.6


def test_a_deployment_taxonomy_with_custom_rules_wins(tmp_path):
    custom = parse_taxonomy(
        {
            "version": "acme-1",
            "topics": {
                "shipping": {"description": "Deliveries", "keywords": ["parcel", "delivery"]},
                "other": {"description": "Anything else"},
            },
            "intents": {"support": {"keywords": ["where is"]}},
        }
    )
    row = categorize_texts(
        pl.DataFrame({"id": ["1"], "text": ["Where is my parcel? The delivery is late."]}), custom
    ).row(0, named=True)
    assert (row["topic"], row["intent"]) == ("shipping", "support")
    assert row["topic_confidence"] == pytest.approx(0.75)


def test_a_bad_rule_fails_when_the_taxonomy_loads():
    with pytest.raises(pl.exceptions.ComputeError, match="regex"):
        parse_taxonomy({"topics": {"x": {"patterns": ["(unclosed"]}}, "intents": {"y": {}}})


def test_conversation_categories_for_two_days_end_to_end(mongo, tmp_path):
    from analytics_assets.definitions import build_definitions
    from analytics_assets.defs.ingestion.resources import ExportSourceResource
    from analytics_assets.defs.storage.lake import ParquetLakeIOManager
    from analytics_assets.deployments import storage_resources

    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    source = ExportSourceResource(
        export_dir=str(tmp_path / "export"), generate_sample_if_missing=True
    )
    defs = build_definitions(
        resources={"record_source": source, **storage_resources({"base_url": lake.base_url}, mongo)}
    )
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        tags=range_tags("2026-11-03", "2026-11-04"),
    )
    assert result.success
    root = lake.lake().base_path
    categories = pl.read_parquet(f"{root}/conversation_categories/day=*/data.parquet")
    conversations = pl.read_parquet(f"{root}/conversations/day=*/data.parquet")
    assert categories.schema == pl.Schema(CATEGORY_SCHEMA)
    assert set(categories["conversation_id"]) == set(conversations["conversation_id"])
    assert set(categories["day"]) == {date(2026, 11, 3), date(2026, 11, 4)}
    assert categories["topic"].n_unique() >= 8
    assert categories["language"].n_unique() >= 5
    assert mongo.db()["conversation_categories"].count_documents({}) == categories.height
    signals = pl.read_parquet(f"{root}/message_signals/day=*/data.parquet")
    messages = pl.read_parquet(f"{root}/conversation_messages/day=*/data.parquet")
    assert signals.height == messages.filter(pl.col("role") == "user").height
    assert set(signals["sentiment"]) <= {"positive", "neutral", "negative", "uncertain"}
    # Each day's materialization describes that day's rows, not the run's.
    by_day = {}
    for materialization in result.asset_materializations_for_node("conversation_categories"):
        by_day[materialization.partition] = {
            k: getattr(v, "value", v) for k, v in materialization.metadata.items()
        }
    assert set(by_day) == {"2026-11-03", "2026-11-04"}
    for day, metadata in by_day.items():
        rows = categories.filter(pl.col("day") == date.fromisoformat(day))
        assert metadata["taxonomy_version"] == TAXONOMY.version
        assert (metadata["device"], metadata["aggregation_engine"]) == ("cpu", "cpu")
        assert metadata["conversations"] == rows.height > 0
        assert metadata["topics"] == dict(rows.group_by("topic").len().iter_rows())
        assert metadata["languages"] == dict(rows.group_by("language").len().iter_rows())
        fallback = rows.filter(pl.col("intent_method") == "fallback").height
        assert metadata["abstention_rate"]["intent"] == round(fallback / rows.height, 4)
        assert metadata["run/days"] == 2


def test_categorize_and_evaluate_commands(tmp_path, capsys):
    import json

    from analytics_assets.cli import main

    labelled = tmp_path / "labelled.csv"
    pl.DataFrame(
        {
            "id": ["1", "2", "3"],
            "text": [e[0] for e in EXAMPLES[:3]],
            "topic": [e[2] for e in EXAMPLES[:3]],
            "language": ["en", "en", "en"],
        }
    ).write_csv(labelled)
    assert main(["evaluate", str(labelled)]) == 0
    printed = capsys.readouterr().out
    assert "topic: accuracy 1.000  macro-F1 1.000  abstention 0.000  (n=3)" in printed
    assert "language: accuracy 1.000" in printed
    assert "confusion (rows: truth, columns: predicted)" in printed

    output = tmp_path / "labels.jsonl"
    assert main(["categorize", str(labelled), "--output", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["topic"] for row in rows] == ["pricing", "bug", "billing"]
    assert {"topic_confidence", "topic_method", "intent", "sentiment", "language"} <= set(rows[0])


def test_a_label_is_one_label_however_it_is_spelled(tmp_path, capsys):
    """`How to`, `how-to` and `how_to` are one label in the taxonomy, in labelled data and
    in corrections."""
    from analytics_assets.categorization.taxonomy import canonical_label, parse_taxonomy
    from analytics_assets.cli import main

    spellings = ["How to", "how-to", "how_to", "  HOW  TO ", "How-To", "How–to", "how\u2011to"]
    assert {canonical_label(spelling) for spelling in spellings} == {"how_to"}
    taxonomy = parse_taxonomy(
        {
            "topics": {"Billing": {"keywords": ["invoice"]}},
            "intents": {"How to": {"keywords": ["how do i"]}, "chit-chat": {"keywords": ["hi"]}},
        }
    )
    assert taxonomy.names("intent") == ["how_to", "chit_chat"]
    with pytest.raises(ValueError, match="twice"):
        parse_taxonomy({"topics": {"a": {}}, "intents": {"how-to": {}, "How to": {}}})

    # The shipped taxonomy's `chit_chat`, labelled the way a person writes it.
    labelled = tmp_path / "labelled.csv"
    pl.DataFrame(
        {"id": ["1"], "text": ["hi there, how are you today?"], "intent": ["Chit-chat"]}
    ).write_csv(labelled)
    assert main(["evaluate", str(labelled)]) == 0
    printed = capsys.readouterr().out
    assert "Chit-chat" not in printed and "chit_chat" in printed


def test_evaluate_counts_abstentions_by_method_not_by_label(tmp_path, capsys):
    """Read from the label, a sure `other` found by the support taxonomy's keywords (a topic
    there) was an abstention: the rate and the accuracy said `1.000` together."""
    from analytics_assets.cli import main

    labelled = tmp_path / "labelled.csv"
    pl.DataFrame({"id": ["1", "2"], "text": ["Tell me a joke about cats", "hmm"],
                  "topic": ["other", "other"]}).write_csv(labelled)  # fmt: skip
    rules = categorize_texts(pl.read_csv(labelled).select("id", "text"), TAXONOMY)
    assert rules["topic_method"].to_list() == ["rules", "fallback"]
    assert main(["evaluate", str(labelled)]) == 0
    printed = capsys.readouterr().out
    assert "topic: accuracy 1.000  macro-F1 1.000  abstention 0.500  (n=2)" in printed


@pytest.mark.parametrize(
    ("written", "refusal"),
    [
        # PyYAML kept the last of a repeated key: the first `billing` was gone.
        ("topics:\n  billing: {keywords: [invoice]}\n  billing: {keywords: [refund]}\n"
         "intents:\n  ask: {keywords: [how]}\n", "twice in one section"),
        # One text was read character by character: the keywords p, a, r, c, e, l.
        ("topics:\n  shipping: {keywords: parcel}\nintents:\n  ask: {keywords: [how]}\n",
         "must be a list"),
        ("topics:\n  shipping: {patterns: 'return label'}\nintents:\n  ask: {}\n",
         "must be a list"),
        # `on:` is YAML's true: the label `true`.
        ("topics:\n  on: {keywords: [brand]}\nintents:\n  ask: {keywords: [how]}\n",
         "not a text"),
        # An empty item was the keyword "None", which matched "none of this works".
        ("topics:\n  a: {keywords: [x]}\nintents:\n  ask:\n    keywords:\n      - how\n"
         "      -\n", "empty item"),
        # In a flow list, `error:` is a mapping: the shipped assistant taxonomy held three.
        ("topics:\n  a: {keywords: [x]}\nintents:\n  fix: {keywords: [debug, error:]}\n",
         "nested"),
        ("topics:\n  '--': {keywords: [x]}\nintents:\n  ask: {keywords: [how]}\n",
         "no name"),
    ],
)  # fmt: skip
def test_a_taxonomy_file_that_would_load_other_than_written_is_refused(tmp_path, written, refusal):
    from analytics_assets.categorization.taxonomy import load_taxonomy

    path = tmp_path / "taxonomy.yaml"
    path.write_text(written, encoding="utf-8")
    with pytest.raises(ValueError, match=refusal):
        load_taxonomy(str(path))


def test_keywords_that_end_in_punctuation_match_and_stay_whole_words():
    """A word boundary was asked after `c++` and `c#` too, where there is none: the shipped
    assistant taxonomy's `c++`, `c#` and `.net` never matched."""
    from analytics_assets.categorization.rules import classify
    from analytics_assets.categorization.taxonomy import load_taxonomy

    texts = ["I am learning c++", "a c# question", "hosting asp.net core", "abc++ xyz"]
    labelled = classify(pl.DataFrame({"text": texts}), "text", "topic", load_taxonomy("assistant"))
    assert labelled["topic"].to_list() == ["coding", "coding", "coding", "other"]


@pytest.mark.nocodb
def test_corrections_are_read_from_a_nocodb_table(nocodb):
    from analytics_assets.defs.categorization.assets import _read_feedback
    from analytics_assets.defs.categorization.resources import CategorizationResource
    from analytics_assets.defs.ingestion.resources import NocoDBSourceResource
    from analytics_assets.sources.seed import create_base, create_table
    from analytics_assets_tests.conftest import make_client

    columns = [
        (name, "SingleLineText")
        for name in ("conversation_id", "topic", "intent", "sentiment", "corrected_by")
    ] + [("corrected_at", "DateTime")]
    with make_client(nocodb) as client:
        base_id = create_base(client, "feedback_tests")
        table = create_table(client, base_id, "category_feedback", columns)
        client.insert_records(
            table,
            [
                {"conversation_id": "conv-1", "topic": "billing", "intent": "complaint",
                 "corrected_by": "ana", "corrected_at": "2026-11-20 10:00:00+00:00"},
                {"conversation_id": "conv-2", "topic": "pricing", "corrected_by": "ben",
                 "corrected_at": "2026-11-21 11:00:00+00:00"},
                # A second look at conv-1, a day later: its topic was wrong.
                {"conversation_id": "conv-1", "topic": "account", "corrected_by": "cem",
                 "corrected_at": "2026-11-21 09:00:00+00:00"},
            ],
        )  # fmt: skip
    feedback = _read_feedback(
        CategorizationResource(feedback_table="category_feedback"),
        NocoDBSourceResource(
            url=nocodb.url, api_token=nocodb.token, base_id=base_id, requests_per_second=0
        ),
    )
    assert feedback.height == 3
    # What trains a head: each conversation's latest correction of each label, by the time
    # NocoDB hands back (the later fix of conv-1's topic keeps its earlier intent).
    rows = {row["conversation_id"]: row for row in latest_corrections(feedback).to_dicts()}
    assert set(rows) == {"conv-1", "conv-2"}
    assert (rows["conv-1"]["topic"], rows["conv-1"]["intent"]) == ("account", "complaint")
    assert rows["conv-2"]["intent"] is None


def test_a_correction_superseded_by_a_later_one_is_not_trained_on():
    """Latest by the correction's time, whatever the rows' order (a time that does not parse
    is the oldest); by the rows' order without a time column; a blank label corrects
    nothing."""
    feedback = pl.DataFrame(
        {
            "conversation_id": ["a", "b", "a", "a", "c", "c"],
            "topic": ["billing", "bug_report", "account", None, "", "pricing"],
            "intent": ["question", None, None, "complaint", "question", "  "],
            "corrected_at": ["2026-01-02 10:00:00+00:00", "2026-01-01T00:00:00Z",
                             "2026-01-03T10:00:00+01:00", "2026-01-01", "garbage",
                             "2026-01-05 00:00:00"],
        }
    )  # fmt: skip
    latest = {row["conversation_id"]: row for row in latest_corrections(feedback).to_dicts()}
    assert set(latest) == {"a", "b", "c"}
    assert (latest["a"]["topic"], latest["a"]["intent"]) == ("account", "question")
    assert (latest["b"]["topic"], latest["b"]["intent"]) == ("bug_report", None)
    assert (latest["c"]["topic"], latest["c"]["intent"]) == ("pricing", "question")
    by_order = {
        row["conversation_id"]: row
        for row in latest_corrections(feedback.drop("corrected_at")).to_dicts()
    }
    assert (by_order["a"]["topic"], by_order["a"]["intent"]) == ("account", "complaint")
    # Times without seconds; NocoDB's columns: the row added later wins, whatever was edited.
    minutes = pl.DataFrame(
        {"conversation_id": ["a", "a"], "topic": ["account", "billing"],
         "corrected_at": ["2026-11-21 09:00", "2026-11-20T10:00+01:00"]}
    )  # fmt: skip
    assert latest_corrections(minutes)["topic"].to_list() == ["account"]
    nocodb = pl.DataFrame(
        {"conversation_id": ["a", "a"], "topic": ["billing", "account"],
         "CreatedAt": ["2026-11-20 10:00:00+00:00", "2026-11-21 10:00:00+00:00"],
         "UpdatedAt": ["2026-11-22 08:00:00+00:00", None]}
    )  # fmt: skip
    assert latest_corrections(nocodb)["topic"].to_list() == ["account"]


def test_corrections_written_as_lists_or_mixed_types_are_read_as_labels(tmp_path):
    """A hand-written file mixes `"billing"`, `["billing"]` and numbers in one column: a
    JSON file failed on it, and JSON lines trained on the label `["account"]`. A list of one
    label is that label; several labels, or a nested value, correct nothing."""
    records = [
        {"conversation_id": "a", "topic": "billing", "intent": "question"},
        {"conversation_id": "b", "topic": ["account"], "intent": {"label": "complaint"}},
        {"conversation_id": 3, "topic": ["billing", "pricing"], "intent": [" how to "]},
        {"conversation_id": "d", "topic": [], "extra": 1.5},
    ]
    expected = [("a", "billing", "question"), ("b", "account", None), ("3", None, "how to"),
                ("d", None, None)]  # fmt: skip
    as_json = tmp_path / "corrections.json"
    as_json.write_text(json.dumps(records))
    as_lines = tmp_path / "corrections.jsonl"
    as_lines.write_text("\n".join(json.dumps(record) for record in records) + "\n")
    for path in (as_json, as_lines):
        latest = latest_corrections(read_feedback(path))
        assert latest.select("conversation_id", "topic", "intent").rows() == expected
    # A frame whose columns are typed lists (a table read from NocoDB or parquet).
    typed = pl.DataFrame(
        {"conversation_id": ["a", "b", "c"], "topic": [["billing"], ["a", "b"], None],
         "intent": [[["nested"]], [["x"]], None]}
    )  # fmt: skip
    assert latest_corrections(typed).select("topic", "intent").rows() == [
        ("billing", None), (None, None), (None, None)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="one JSON object per correction"):
        (tmp_path / "labels.json").write_text('["billing"]')
        read_feedback(tmp_path / "labels.json")


def test_an_empty_correction_file_trains_nothing_and_one_without_ids_says_so(tmp_path):
    from analytics_assets.defs.categorization.assets import _read_feedback
    from analytics_assets.defs.categorization.resources import CategorizationResource

    def read(text: str) -> pl.DataFrame:
        (tmp_path / "corrections.jsonl").write_text(text)
        return _read_feedback(
            CategorizationResource(feedback_file=str(tmp_path / "corrections.jsonl")), None
        )

    assert read("").schema == {"conversation_id": pl.String}
    assert read('{"conversation_id": "a", "topic": "billing"}\n').height == 1
    with pytest.raises(ValueError, match=r"conversation_id column; found \['id', 'topic'\]"):
        read('{"id": "a", "topic": "billing"}\n')


def _conversation(conversation_id: str, turns: list[tuple[str, str]]) -> list[dict]:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 11, 3, 9, tzinfo=UTC)
    return [
        {"conversation_id": conversation_id, "message_id": f"{conversation_id}-{n}",
         "role": role, "content": text, "created_at": start + timedelta(minutes=n)}
        for n, (role, text) in enumerate(turns)
    ]  # fmt: skip


def test_the_last_turn_is_read_in_its_own_language():
    """An English opening and a Spanish complaint at the end: the English lexicon, gated on
    the conversation's language, found no word it knew in the complaint and called the user
    calm (neutral, confidence 1.0)."""
    from analytics_assets.categorization.conversations import categorize_conversations

    messages = pl.DataFrame(
        _conversation("c1", [
            ("user", "How do I export my dashboard to a PDF file every Monday morning?"),
            ("assistant", "Open the dashboard, then Share > Schedule export."),
            ("user", "Esto es una basura, nada funciona y nadie responde. Quiero cancelar ya."),
        ])
    )  # fmt: skip
    headers = pl.DataFrame({"conversation_id": ["c1"], "day": [date(2026, 11, 3)]})
    row = categorize_conversations(headers, messages, TAXONOMY).row(0, named=True)
    assert row["language"] == "en"
    assert row["sentiment_method"] != "lexicon"
    assert row["sentiment"] == "negative"


def test_a_conversation_without_user_text_gets_no_label():
    from analytics_assets.categorization.conversations import categorize_conversations

    messages = pl.DataFrame(
        _conversation("bot-only", [("assistant", "Hi! How can I help you today?")])
        + _conversation("blank", [("user", "   "), ("assistant", "Hello?")])
    )
    headers = pl.DataFrame(
        {"conversation_id": ["bot-only", "blank", "none"], "day": [date(2026, 11, 3)] * 3}
    )
    rows = categorize_conversations(headers, messages, TAXONOMY)
    fallbacks = {"topic": "other", "intent": "uncertain", "sentiment_opening": "uncertain",
                 "sentiment": "uncertain"}  # fmt: skip
    for prefix, fallback in fallbacks.items():
        assert rows[prefix].to_list() == [fallback] * 3, prefix
        assert (rows[f"{prefix}_method"] == "fallback").all()
        assert (rows[f"{prefix}_confidence"] == 0).all()


def test_evaluate_leaves_out_blank_labels_and_reads_language_tags(tmp_path, capsys):
    """A blank label cell crashed `evaluate` (TypeError in sorting None); `EN` and `pt-BR`
    were scored as wrong against the detector's `en` and `pt`."""
    from analytics_assets.cli import main

    labelled = tmp_path / "labelled.csv"
    pl.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "text": [
                EXAMPLES[0][0],
                EXAMPLES[1][0],
                "Como faço para alterar o cartão de crédito da minha assinatura?",
                EXAMPLES[2][0],
            ],
            "topic": [EXAMPLES[0][2], "", "billing", EXAMPLES[2][2]],
            "language": ["EN", "en", "pt-BR", None],
            "sentiment": [None] * 4,  # a column nobody filled in
        }
    ).write_csv(labelled)
    assert main(["evaluate", str(labelled)]) == 0
    printed = capsys.readouterr().out
    assert "sentiment: no labelled rows" in printed
    assert "topic: accuracy" in printed and "(n=3)" in printed
    assert "language: accuracy 1.000  macro-F1 1.000  abstention 0.000  (n=3)" in printed


@pytest.mark.parametrize(
    "text",
    [
        "I am not very happy with the new dashboard",
        "The new dashboard is not really great",
        "I don\u2019t love the new dashboard",  # a phone's apostrophe
    ],
)
def test_a_negation_up_to_three_words_back_turns_the_lexicon_around(text):
    """Only the word right before was read, and a curly apostrophe split "don’t": all three
    were positive (0.79-0.82). VADER looks three words back; so does the lexicon now."""
    from analytics_assets.categorization.rules import lexicon_compound

    assert lexicon_compound(pl.DataFrame({"text": [text]}), "text")[0] < -0.4


def test_message_signals_use_the_deployments_threshold():
    """At 0.8, a message the n-gram head is 0.63 sure of was `uncertain` in
    conversation_categories and `neutral` in message_signals."""
    from analytics_assets.categorization.conversations import message_signals

    messages = pl.DataFrame(
        {"message_id": ["m1"], "conversation_id": ["c1"], "role": ["user"],
         "content": ["Merhaba, fatura adresimi nasıl değiştirebilirim?"],
         "day": [date(2026, 11, 3)]}
    )  # fmt: skip
    relaxed = message_signals(messages, TAXONOMY, threshold=0.5).row(0, named=True)
    strict = message_signals(messages, TAXONOMY, threshold=0.999).row(0, named=True)
    assert relaxed["sentiment_method"] != "fallback"
    assert strict["sentiment"] == "uncertain" and strict["sentiment_method"] == "fallback"


@pytest.mark.parametrize(
    "text", ["No, it works great now", "Not bad. Great support!", "No problem, thanks!"]
)
def test_a_negation_does_not_reach_past_the_end_of_its_clause(text):
    """Three words back across a comma or a full stop, "No, it works great now" was a sure
    negative (0.83)."""
    from analytics_assets.categorization.rules import lexicon_compound

    assert lexicon_compound(pl.DataFrame({"text": [text]}), "text")[0] > 0.4


def test_a_one_word_english_last_turn_keeps_the_english_lexicon():
    """ "wow" is Yoruba to the detector at 0.62: read again in its own language, the last
    turn of an English conversation lost the lexicon, and its sentiment."""
    from analytics_assets.categorization.conversations import categorize_conversations

    messages = pl.DataFrame(
        _conversation("c1", [
            ("user", "How do I export my dashboard to a PDF file every Monday morning?"),
            ("assistant", "Open the dashboard, then Share > Schedule export."),
            ("user", "wow"),
        ])
    )  # fmt: skip
    headers = pl.DataFrame({"conversation_id": ["c1"], "day": [date(2026, 11, 3)]})
    row = categorize_conversations(headers, messages, TAXONOMY).row(0, named=True)
    assert row["sentiment_method"] == "lexicon" and row["sentiment"] == "positive"
