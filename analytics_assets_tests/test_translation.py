"""Translations: detection with known answers, the conversation view, each translator
(stored in the real NocoDB, LibreTranslate-compatible on loopback, a tiny random Marian model
on the CPU), storage with history, bad input, and retrieval in a requested language."""

from __future__ import annotations

import json
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
from dagster import DagsterInstance

from analytics_assets.categorization.language import detect_languages
from analytics_assets.defs.storage.lake import ParquetLakeIOManager
from analytics_assets.defs.translation.resources import TranslationResource
from analytics_assets.sources.seed import create_base, create_table
from analytics_assets.translation.detection import conversation_languages, message_languages
from analytics_assets.translation.pipeline import translate_messages
from analytics_assets.translation.retrieval import get_conversation
from analytics_assets.translation.translators import (
    HttpTranslator,
    Item,
    LocalSeq2SeqTranslator,
    SourceTranslator,
    TranslationError,
)
from analytics_assets_tests.conftest import make_client, range_tags, sample_definitions
from analytics_assets_tests.nocodb_server import free_port

DAY = date(2026, 11, 3)
KNOWN = [
    ("en", "Hi"),
    ("en", "How do I export my dashboard to a PDF file every Monday morning?"),
    ("es", "¿Cuánto cuesta el plan Pro por usuario al mes?"),
    ("de", "Die App stürzt ab, wenn ich eine CSV-Datei hochlade."),
    ("fr", "Je n'arrive pas à me connecter, le courriel de réinitialisation n'arrive jamais."),
    ("pt", "Como faço para alterar o cartão de crédito da minha assinatura?"),
    ("it", "Vorrei sapere se esiste uno sconto per le organizzazioni senza scopo di lucro."),
    ("nl", "Hoe voeg ik een nieuwe beheerder toe aan onze werkruimte?"),
    ("ru", "Есть ли скидка при оплате за год?"),
    ("ja", "プロプランは1ユーザーあたりいくらですか？"),
    ("zh", "专业版每个用户每月多少钱？"),
    ("unknown", "👍👍 123"),
    ("unknown", ""),
    # A long message: judged on its first characters, still right.
    ("de", "Seit dem letzten Update funktioniert die Synchronisierung nicht mehr. " * 30),
]


def test_detection_on_a_multilingual_fixture_with_known_answers():
    detected = detect_languages(pl.Series([text for _, text in KNOWN]))
    assert detected["language"].to_list()[1:] == [language for language, _ in KNOWN][1:]
    # "Hi" is too short to be sure of anything: whatever lingua says, it says it unsure.
    assert detected["language_confidence"][0] < 0.9
    assert detected.filter(pl.col("language") == "unknown")["language_confidence"].sum() == 0


def test_conversation_languages_dominant_mixed_and_confident():
    # The user messages' signals (message_signals): language, confidence, characters.
    signals = pl.DataFrame(
        {
            "conversation_id": ["a", "a", "b", "b", "c"],
            "language": ["de", "en", "es", "en", "unknown"],
            "language_confidence": [0.9, 0.8, 1.0, 0.5, 0.0],
            "characters": [80, 20, 90, 10, 3],
        }
    )
    day = date(2026, 11, 1)
    conversations = pl.DataFrame({"conversation_id": ["a", "b", "c", "d"], "day": [day] * 4})
    languages = conversation_languages(conversations, signals)
    # One row per conversation, including those with nothing recognizable (c) or no user
    # message at all (d).
    assert languages["conversation_id"].to_list() == ["a", "b", "c", "d"]
    rows = {r["conversation_id"]: r for r in languages.iter_rows(named=True)}
    # a: 80 characters of German, 20 of English: German, and English reaches 20 %: mixed.
    assert (rows["a"]["dominant_language"], rows["a"]["mixed_language"]) == ("de", True)
    assert rows["a"]["dominant_share"] == pytest.approx(0.8)
    assert rows["a"]["language_confidence"] == pytest.approx(0.8 * 0.9)
    assert (rows["b"]["dominant_language"], rows["b"]["mixed_language"]) == ("es", False)
    assert rows["b"]["languages"] == ["es", "en"]
    for unknown in ("c", "d"):
        assert rows[unknown]["dominant_language"] == "unknown"
        assert rows[unknown]["language_confidence"] == 0.0 and rows[unknown]["languages"] == []
    assert rows["a"]["day"] == day


def test_a_user_message_held_on_two_days_counts_once_in_its_conversations_languages():
    """conversation_languages reads the start day's and the next day's signals: a message
    NocoDB holds again after midnight has a signal on both days. Counted twice, its
    language's share doubled: 100 characters of French and 120 of English read as French
    (conversation_categories, reading the messages' newest copies, said English)."""
    first, second = date(2026, 11, 2), date(2026, 11, 3)
    signals = pl.DataFrame(
        {
            "message_id": ["1", "2", "1"],
            "conversation_id": ["c"] * 3,
            "language": ["fr", "en", "fr"],
            "language_confidence": [0.9, 0.9, 0.9],
            "characters": [100, 120, 100],
            "day": [first, first, second],
        }
    )
    conversations = pl.DataFrame({"conversation_id": ["c"], "day": [first]})
    row = conversation_languages(conversations, signals).row(0, named=True)
    assert row["dominant_language"] == "en"
    assert row["dominant_share"] == pytest.approx(120 / 220)
    # Message 1 of another conversation on the next day is another message: it counts.
    other = signals.with_columns(
        pl.when(pl.col("day") == second)
        .then(pl.lit("d"))
        .otherwise("conversation_id")
        .alias("conversation_id")
    )
    both = pl.DataFrame({"conversation_id": ["c", "d"], "day": [first, first]})
    shares = dict(conversation_languages(both, other).select("conversation_id", "dominant_share")
                  .iter_rows())  # fmt: skip
    assert shares == {"c": pytest.approx(120 / 220), "d": 1.0}


class LibreTranslate:
    """A LibreTranslate-compatible service on loopback: translates es/de/fr/ru into English
    (not ja), and can be made slower than the client's timeout for its next requests."""

    def __init__(self):
        self.calls = 0
        self.slow_next = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, body):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._reply([{"code": c, "targets": ["en"]} for c in ("es", "de", "fr", "ru")])

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.calls += 1
                if body["target"] != "en":
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if service.slow_next > 0:
                    service.slow_next -= 1
                    time.sleep(0.6)
                texts = [
                    f"This is the English version of a message that was written in "
                    f"{body['source']}, number {n}."
                    for n, _ in enumerate(body["q"])
                ]
                self._reply({"translatedText": texts})

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture()
def libretranslate():
    service = LibreTranslate()
    yield service
    service.stop()


def day_messages(texts: list[tuple[str, str]]) -> pl.DataFrame:
    rows = [
        {"message_id": f"m{n}", "conversation_id": f"c{n // 3}", "role": "user",
         "content": text, "day": DAY}
        for n, (_, text) in enumerate(texts)
    ]  # fmt: skip
    frame = pl.DataFrame(rows)
    return pl.concat([frame, detect_languages(frame["content"])], how="horizontal")


def test_http_translator_storage_idempotence_history_and_bad_input(libretranslate):
    messages = day_messages(KNOWN)
    translator = HttpTranslator(libretranslate.url, timeout_s=0.3, backoff_s=0.01)
    reference = "How much does the Pro plan cost per user per month?"
    first = translate_messages(messages, ["en"], translator, references={("m2", "en"): reference})
    translated = first.translations
    # chrF only where the source holds a reference translation.
    scored = translated.filter(pl.col("chrf").is_not_null())
    assert scored["message_id"].to_list() == ["m2"] and 0 < scored["chrf"][0] < 100
    # Not re-translated: English and unknown (empty, emoji) messages.
    assert set(translated["source_language"]) == {"es", "de", "fr", "ru", "pt", "it", "nl",
                                                  "zh"} - {"pt", "it", "nl", "zh"}  # fmt: skip
    # "Hi": lingua alone is unsure (its first guess is Maori), fastText's second opinion
    # makes it English. The emoji stays unknown.
    assert first.counts["already_en"] == 2 and first.counts["empty"] == 1
    assert first.counts["unknown_language"] == 1
    # Unsupported pairs are recorded, not fatal.
    unsupported = first.errors.filter(pl.col("reason").str.contains("unsupported"))
    assert set(unsupported["key"]) == {
        f"m{n}" for n, (lang, _) in enumerate(KNOWN) if lang in {"pt", "it", "nl", "ja", "zh"}
    }
    assert (unsupported["stage"] == "translate").all()
    assert translated["target_language_ok"].all() and translated["is_current"].all()

    # The same translator again: the same rows, not more.
    again = translate_messages(messages, ["en"], translator, previous=translated)
    assert again.translations.height == translated.height

    # A better translator (another version): its rows are current, the old ones history.
    better = SourceTranslator({("m2", "en"): "How much is the Pro plan per user per month?"},
                              version="2")  # fmt: skip
    upgraded = translate_messages(messages, ["en"], better, previous=again.translations)
    m2 = upgraded.translations.filter(pl.col("message_id") == "m2").sort("translated_at")
    assert m2["translator"].to_list() == ["http", "source"]
    assert m2["is_current"].to_list() == [False, True]
    others = upgraded.translations.filter(pl.col("message_id") != "m2")
    assert others["is_current"].all()  # kept and still current where nothing better came


def test_a_message_edited_since_its_translation_does_not_keep_the_old_one():
    """An earlier row was kept current for every message that still existed: one edited to
    remove a card number and a name kept showing them in its translation, and one blanked
    kept its old text."""
    messages = day_messages([("es", "mi tarjeta es 4111 1111 1111 1111, llámame Juan Pérez"),
                             ("es", "¿Cuánto cuesta el plan Pro por usuario al mes?"),
                             ("es", "Quiero cancelar mi suscripción, por favor.")])  # fmt: skip
    original = SourceTranslator(
        {("m0", "en"): "my card is 4111 1111 1111 1111, call me Juan Pérez",
         ("m1", "en"): "How much is the Pro plan per user per month?",
         ("m2", "en"): "I want to cancel my subscription, please."},
        version="1",
    )  # fmt: skip
    first = translate_messages(messages, ["en"], original).translations
    assert first.height == 3
    edited = messages.with_columns(
        pl.when(pl.col("message_id") == "m0").then(pl.lit("¿Cómo cambio mi tarjeta?"))
        .when(pl.col("message_id") == "m2").then(pl.lit(""))
        .otherwise(pl.col("content")).alias("content")
    )  # fmt: skip
    # This run's translator answers none of them: only earlier rows could be current.
    silent = SourceTranslator({}, version="2")
    again = translate_messages(edited, ["en"], silent, previous=first).translations
    assert again["message_id"].to_list() == ["m1"]
    assert "4111" not in " ".join(again["text"].to_list() + again["source_text"].to_list())
    # With no translator configured, a run keeps what is still true of its messages.
    from analytics_assets.translation.pipeline import earlier_translations

    kept = earlier_translations(first, edited.select("message_id", "content"))
    assert kept["message_id"].to_list() == ["m1"] and kept["is_current"].all()
    # Stored under its own policy (translations redacted, messages kept raw), a row's source
    # text is the message's text as that policy stores it: the same text, not an edit.
    from analytics_assets.privacy.pii import anonymize

    def redacted(texts: pl.Series) -> pl.Series:
        return anonymize(texts)[0]

    stored = first.with_columns(redacted(first["source_text"]).alias("source_text"))
    kept = translate_messages(messages, ["en"], silent, previous=stored, as_stored=redacted)
    assert sorted(kept.translations["message_id"].to_list()) == ["m0", "m1", "m2"]
    assert "<CARD>" in kept.translations.filter(pl.col("message_id") == "m0")["source_text"][0]


def test_a_range_run_translates_each_day_as_a_run_of_that_day_alone():
    """Message id 1 is c1's German message on one day and c2's French one on the next (a
    source numbering messages per conversation), and m-9 is held again on the second day
    (re-delivered after midnight). Keyed by id over the range, the first day lost its
    translation, the second got two, and the French one took the German's language."""
    from datetime import timedelta

    from analytics_assets.translation.translators import Translator

    class Tagging(Translator):
        name, version = "tagging", "1"

        def supports(self, source, target):
            return True

        def translate(self, items, target):
            return {item.message_id: f"[{item.source_language}] {item.text}" for item in items}

    first, second = DAY, DAY + timedelta(days=1)
    german = "Ich habe mein Passwort vergessen und komme nicht mehr rein"
    french = "J'ai oublié mon mot de passe et je ne peux plus me connecter"
    spanish = "¿Cuánto cuesta el plan Pro por usuario al mes?"
    messages = pl.DataFrame({
        "message_id": ["1", "m-9", "1", "m-9"], "conversation_id": ["c1", "c3", "c2", "c3"],
        "role": "user", "content": [german, spanish, french, spanish],
        "day": [first, first, second, second],
    })  # fmt: skip
    # message_signals' rows: the languages detected once, reused (not detected again).
    known = pl.concat(
        [messages.select("message_id", "conversation_id", "day"),
         detect_languages(messages["content"])], how="horizontal",
    )  # fmt: skip
    with_languages = message_languages(messages, known=known)
    assert with_languages["language"].to_list() == ["de", "es", "fr", "es"]

    def run(frame):
        return translate_messages(frame, ["en"], Tagging()).translations.select(
            "day", "conversation_id", "message_id", "text"
        )

    by_day = pl.concat(
        [run(with_languages.filter(pl.col("day") == day)) for day in (first, second)]
    )
    ranged = run(with_languages)
    assert ranged.sort("day", "message_id").equals(by_day.sort("day", "message_id"))
    assert ranged.sort("day", "message_id").rows() == [
        (first, "c1", "1", f"[de] {german}"),
        (first, "c3", "m-9", f"[es] {spanish}"),
        (second, "c2", "1", f"[fr] {french}"),
        (second, "c3", "m-9", f"[es] {spanish}"),
    ]


def test_a_translator_that_times_out_is_retried_then_recorded(libretranslate):
    messages = day_messages([("es", "¿Cuánto cuesta el plan Pro por usuario al mes?")])
    translator = HttpTranslator(libretranslate.url, timeout_s=0.3, max_attempts=3,
                                backoff_s=0.01)  # fmt: skip
    libretranslate.slow_next = 2  # two timeouts, then an answer
    recovered = translate_messages(messages, ["en"], translator)
    assert recovered.translations.height == 1 and translator.retries == 2
    libretranslate.slow_next = 3  # every attempt times out
    failed = translate_messages(messages, ["en"], translator)
    assert failed.translations.is_empty()
    assert failed.errors["reason"].to_list() == ["http: /translate timed out after 3 attempts"]
    # A request the service refuses (4xx) is not retried: it would fail the same way.
    retries = translator.retries
    with pytest.raises(TranslationError, match="400"):
        translator.translate([Item("m0", "hola", "es")], "xx")
    assert translator.retries == retries


def test_source_translator_reads_translations_stored_in_nocodb(nocodb):
    with make_client(nocodb) as client:
        base_id = create_base(client, "translations_test")
        table = create_table(client, base_id, "message_translations",
                             [("message_id", "SingleLineText"), ("language", "SingleLineText"),
                              ("text", "LongText")])  # fmt: skip
        client.insert_records(table, [
            {"message_id": "m2", "language": "en", "text": "How much is the Pro plan?"},
            {"message_id": "m3", "language": "en", "text": "The app crashes on CSV upload."},
        ])  # fmt: skip
    from analytics_assets.defs.ingestion.resources import NocoDBSourceResource

    source = NocoDBSourceResource(url=nocodb.url, api_token=nocodb.token, base_id=base_id,
                                  requests_per_second=0)  # fmt: skip
    translator = TranslationResource(translator="source").build(source)
    run = translate_messages(day_messages(KNOWN), ["en"], translator)
    assert dict(run.translations.select("message_id", "text").iter_rows()) == {
        "m2": "How much is the Pro plan?",
        "m3": "The app crashes on CSV upload.",
    }
    assert run.counts["not_provided"] > 0 and run.errors.is_empty()

    # A table that names the conversation: a message id is one message within its
    # conversation, and another conversation's message with that id has its own text. By
    # the id alone, each got whichever translation was stored last for the id.
    with make_client(nocodb) as client:
        table = create_table(client, base_id, "message_translations_by_conversation",
                             [("conversation_id", "SingleLineText"),
                              ("message_id", "SingleLineText"), ("language", "SingleLineText"),
                              ("text", "LongText")])  # fmt: skip
        client.insert_records(table, [
            {"conversation_id": "c0", "message_id": "m2", "language": "en",
             "text": "How much is the Pro plan?"},
            {"conversation_id": "c1", "message_id": "m3", "language": "en",
             "text": "The app crashes on CSV upload."},
            {"conversation_id": "c9", "message_id": "m2", "language": "en",
             "text": "Another conversation's second message."},
            {"conversation_id": "c0", "message_id": "m3", "language": "en",
             "text": "Another conversation's third message."},
        ])  # fmt: skip
    translator = TranslationResource(
        translator="source", source_table="message_translations_by_conversation"
    ).build(source)
    run = translate_messages(day_messages(KNOWN), ["en"], translator)
    assert dict(run.translations.select("message_id", "text").iter_rows()) == {
        "m2": "How much is the Pro plan?",
        "m3": "The app crashes on CSV upload.",
    }


def test_a_reference_that_names_the_conversation_scores_only_its_own_message():
    from analytics_assets.translation.quality import score_translations

    frame = pl.DataFrame(
        {
            "message_id": ["1", "1"],
            "conversation_id": ["a", "b"],
            "source_language": ["es", "es"],
            "target_language": ["en", "en"],
            "source_text": ["¿Cuánto cuesta el plan?", "La app se cierra sola."],
            "text": ["How much is the plan?", "The app closes by itself."],
        }
    )
    references = {("a", "1", "en"): "How much does the plan cost?"}
    chrf = score_translations(frame, references)["chrf"].to_list()
    assert chrf[0] is not None and chrf[0] > 40 and chrf[1] is None
    # A reference table without the conversation still scores by the message id.
    by_id = score_translations(frame, {("1", "en"): "How much does the plan cost?"})
    assert by_id["chrf"].null_count() == 0


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory):
    """A randomly initialised Marian model with a word-level tokenizer, built here: it proves
    loading, batching, device choice and storage, not quality."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("models")
    folder = root / "es-en"
    corpus = [text for _, text in KNOWN] + ["the plan costs money", "hello world"]
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        corpus, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"])
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    config = MarianConfig(
        vocab_size=fast.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=128, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0, forced_eos_token_id=1,
    )  # fmt: skip
    MarianMTModel(config).save_pretrained(folder)
    return root


def test_local_translator_loads_a_model_folder_and_translates_in_batches(tiny_marian):
    translator = LocalSeq2SeqTranslator(tiny_marian, device="cpu", batch_size=2,
                                        max_new_tokens=6)  # fmt: skip
    assert translator.supports("es", "en") and not translator.supports("de", "en")
    assert translator.device == "cpu"
    messages = day_messages([(lang, text) for lang, text in KNOWN if lang in {"es", "de", "en"}])
    run = translate_messages(messages, ["en"], translator)
    spanish = messages.filter(pl.col("language") == "es")["message_id"].to_list()
    assert sorted(run.translations["message_id"]) == sorted(spanish)
    assert run.translations["translator_version"].str.starts_with("local:").all()
    assert set(run.errors["reason"].str.extract(r"(unsupported language pair de->en)")) == {
        "unsupported language pair de->en"
    }
    if not __import__("torch").cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            _ = LocalSeq2SeqTranslator(tiny_marian, device="cuda").device


def test_translations_materialize_with_errors_in_mongodb_and_retrieval(
    libretranslate, mongo_server, tmp_path
):
    defs, lake, mongo = sample_definitions(
        tmp_path,
        mongo_server,
        "translations",
        translation=TranslationResource(translator="http", http_url=libretranslate.url),
    )
    job = defs.resolve_job_def("ingestion_job")
    for _ in range(2):  # the second run must change nothing
        assert job.execute_in_process(
            instance=DagsterInstance.ephemeral(), tags=range_tags(DAY, DAY)
        ).success
    db = mongo.db()
    stored = list(db["conversation_translations"].find({}))
    lake_rows = lake.lake().scan_days("conversation_translations", [DAY]).collect()
    assert len(stored) == lake_rows.height > 0
    assert {d["source_language"] for d in stored} <= {"es", "de", "fr", "ru"}
    errors = list(db["processing_errors"].find({"stage": "translate"}))
    assert errors and all("unsupported" in e["reason"] for e in errors)
    # The validation errors of the day are still there beside them.
    assert db["processing_errors"].count_documents({"stage": "validate"}) >= 0

    conversation_id = lake_rows["conversation_id"][0]
    view = get_conversation(lake.lake(), conversation_id, "en")
    assert view["translated_messages"] >= 1
    for message in view["messages"]:
        assert message["text"] == (message["original"] if not message["translated"]
                                   else message["text"])  # fmt: skip
    untranslated = get_conversation(lake.lake(), conversation_id)
    assert untranslated["translated_messages"] == 0
    assert get_conversation(lake.lake(), "no-such-conversation", "en") is None


def test_the_conversation_command_prints_a_translated_conversation(
    libretranslate, tmp_path, monkeypatch, capsys
):
    from analytics_assets.cli import main

    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    # C1 controls (a CSI, an OSC) and a right-to-left override, which ingestion keeps in
    # text: printed raw, a terminal that acts on them obeys what a user wrote.
    hostile = "Hi, I have a question.\x9b2J\x9d8;;https://evil.example\x9c \u202etxt.exe"
    messages = day_messages([("en", hostile),
                             ("es", "¿Cuánto cuesta el plan Pro por usuario al mes?")])  # fmt: skip
    messages = messages.with_columns(
        pl.lit("c0").alias("conversation_id"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("created_at"),
    )
    run = translate_messages(messages, ["en"], HttpTranslator(libretranslate.url))
    reader = lake.lake()
    reader.write_day("conversation_messages", DAY, messages)
    reader.write_day("conversation_translations", DAY, run.translations)
    monkeypatch.setenv("ANALYTICS_LAKE_URL", lake.base_url)
    assert main(["conversation", "c0", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert not set(out) & {"\x9b", "\x9c", "\x9d", "\u202e"} and "\\u009b2J" in out
    printed = json.loads(out)  # the escapes are JSON's: the text reads back as it was
    assert printed["messages"][0]["text"] == hostile
    assert [m["translated"] for m in printed["messages"]] == [False, True]
    assert printed["messages"][1]["text"].startswith("This is the English version")
    assert main(["conversation", "nope"]) == 1


def test_a_conversation_shows_a_message_held_on_two_days_once(tmp_path):
    """`analytics-assets conversation` reads every day of the lake: a message NocoDB holds
    again after midnight (each day keeps its copy) was printed twice, and counted twice in
    `translated_messages`."""
    from datetime import UTC, datetime, timedelta

    following = DAY + timedelta(days=1)
    question = datetime(2026, 11, 3, 23, 59, tzinfo=UTC)
    reply = datetime(2026, 11, 4, 0, 1, tzinfo=UTC)
    messages = pl.DataFrame(
        {
            "message_id": ["1", "2", "1"],
            "conversation_id": ["c"] * 3,
            "role": ["user", "assistant", "user"],
            "content": [
                "¿Cuánto cuesta el plan Pro por usuario al mes?",
                "20 €",
                "¿Cuánto cuesta el plan Pro por usuario al mes?",
            ],
            "created_at": [question, reply, reply],
            "day": [DAY, following, following],
        }
    )
    translations = pl.DataFrame(
        {
            "message_id": ["1", "1"],
            "conversation_id": ["c", "c"],
            "target_language": ["en", "en"],
            "text": ["How much is the Pro plan per user a month?"] * 2,
            "translator": ["t", "t"],
            "is_current": [True, True],
            "day": [DAY, following],
        }
    )
    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake")).lake()
    for day in (DAY, following):
        lake.write_day("conversation_messages", day, messages.filter(pl.col("day") == day))
        lake.write_day("conversation_translations", day,
                       translations.filter(pl.col("day") == day))  # fmt: skip
    view = get_conversation(lake, "c", "en")
    assert [m["message_id"] for m in view["messages"]] == ["1", "2"]
    assert view["translated_messages"] == 1


def test_categorization_reads_the_translation_where_the_rules_do_not_speak_the_language():
    from datetime import UTC, datetime

    import yaml

    from analytics_assets.categorization.conversations import categorize_conversations
    from analytics_assets.categorization.taxonomy import DEFAULT_TAXONOMY, parse_taxonomy

    document = yaml.safe_load(DEFAULT_TAXONOMY.read_text())
    english_only = parse_taxonomy({**document, "rule_languages": ["en"]})
    headers = pl.DataFrame({"conversation_id": ["es-1", "en-1"], "day": [DAY, DAY]})
    messages = pl.DataFrame(
        {
            "message_id": ["m-es", "m-en"],
            "conversation_id": ["es-1", "en-1"],
            "role": ["user", "user"],
            "content": ["Hola, quisiera saber algo sobre mi cuenta por favor.",
                        "I was charged twice this month, can you refund one payment?"],
            "created_at": [datetime(2026, 11, 3, 9, tzinfo=UTC)] * 2,
            "day": [DAY, DAY],
        }
    )  # fmt: skip
    translations = pl.DataFrame(
        {
            "message_id": ["m-es"],
            "conversation_id": ["es-1"],
            "target_language": ["en"],
            "text": ["I was charged twice this month, can you refund one payment?"],
            "is_current": [True],
        }
    )
    rows = {
        r["conversation_id"]: r
        for r in categorize_conversations(
            headers, messages, english_only, translations=translations
        ).iter_rows(named=True)
    }
    assert rows["es-1"]["categorized_via_translation"] and rows["es-1"]["topic"] == "billing"
    assert not rows["en-1"]["categorized_via_translation"]
    # The shipped taxonomy speaks Spanish: no detour.
    shipped = parse_taxonomy(document)
    direct = categorize_conversations(headers, messages, shipped, translations=translations)
    assert not direct["categorized_via_translation"].any()


def test_an_opening_is_read_through_its_own_conversations_translation_once():
    """Two conversations open with a message of the same id (a source numbering messages per
    conversation), one on each day of a range run, and NocoDB holds one opening on both days:
    each conversation gets one row, categorized from its own opening's translation."""
    from datetime import UTC, datetime, timedelta

    import yaml

    from analytics_assets.categorization.conversations import categorize_conversations
    from analytics_assets.categorization.taxonomy import DEFAULT_TAXONOMY, parse_taxonomy

    english_only = parse_taxonomy(
        {**yaml.safe_load(DEFAULT_TAXONOMY.read_text()), "rule_languages": ["en"]}
    )
    next_day = DAY + timedelta(days=1)
    headers = pl.DataFrame({"conversation_id": ["billing", "login"], "day": [DAY, next_day]})
    messages = pl.DataFrame(
        {
            "message_id": ["1", "1"],
            "conversation_id": ["billing", "login"],
            "role": ["user", "user"],
            "content": ["Hola, quisiera saber algo sobre mi cuenta por favor.",
                        "Hola, tengo una pregunta sobre mi cuenta, gracias."],
            "created_at": [datetime(2026, 11, 3, 9, tzinfo=UTC),
                           datetime(2026, 11, 4, 9, tzinfo=UTC)],
            "day": [DAY, next_day],
        }
    )  # fmt: skip
    refund = "I was charged twice this month, can you refund one payment?"
    password = "I forgot my password and cannot log in to my account."
    translations = pl.DataFrame(
        {
            "message_id": ["1", "1", "1"],
            "conversation_id": ["billing", "billing", "login"],
            "target_language": ["en", "en", "en"],
            "text": [refund, refund, password],
            "is_current": [True, True, True],
            "day": [DAY, next_day, next_day],
        }
    )
    categories = categorize_conversations(
        headers, messages, english_only, translations=translations
    )
    assert sorted(categories["conversation_id"]) == ["billing", "login"]
    topics = dict(categories.select("conversation_id", "topic").iter_rows())
    assert topics == {"billing": "billing", "login": "account"}
    assert categories["categorized_via_translation"].all()


def test_user_messages_keep_the_language_message_signals_detected(monkeypatch):
    """Each message is detected once: the user's come from message_signals (here a label
    the detector would never give, to show it is reused), only the assistant's are detected."""
    import analytics_assets.translation.detection as detection

    seen: list[list[str]] = []

    def counting(texts):
        seen.append(texts.to_list())
        return detect_languages(texts)

    monkeypatch.setattr(detection, "detect_languages", counting)
    messages = pl.DataFrame(
        {
            "message_id": ["u1", "a1", "u2"],
            "conversation_id": ["c"] * 3,
            "role": ["user", "assistant", "user"],
            "content": ["Hola, ¿cómo cambio mi contraseña?",
                        "Puedes cambiarla en Ajustes, en la sección Seguridad.", "gracias"],
            "day": [date(2026, 11, 1)] * 3,
        }
    )  # fmt: skip
    signals = pl.DataFrame(
        {"message_id": ["u1", "u2"], "language": ["xx", "es"], "language_confidence": [0.9, 0.8]}
    )
    result = message_languages(messages, known=signals)
    assert seen == [["Puedes cambiarla en Ajustes, en la sección Seguridad."]]
    by_id = dict(zip(result["message_id"], result["language"], strict=True))
    assert by_id == {"u1": "xx", "a1": "es", "u2": "es"}
