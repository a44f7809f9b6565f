"""Translators that fail part of the way: a batch refused, answers that are not
translations, a service that cannot list its languages, throttling with Retry-After, several
targets. A LibreTranslate-compatible service on loopback answers as each test tells it."""

from __future__ import annotations

import json
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import polars as pl
import pytest

from analytics_assets.nocodb.client import retry_after_seconds
from analytics_assets.settings import Settings
from analytics_assets.translation.pipeline import translate_messages
from analytics_assets.translation.quality import score_translations
from analytics_assets.translation.translators import HttpTranslator
from analytics_assets_tests.nocodb_server import free_port

DAY = date(2026, 11, 3)


class Service:
    """`languages`: the answer to GET /languages (a status code, or a JSON body);
    `translate`: a function of the request's body giving (status, headers, raw body)."""

    def __init__(self):
        self.languages: int | list = [{"code": "es", "targets": ["en", "de"]}]
        self.translate = self.translated
        self.requests: list[dict] = []
        self.language_requests = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: bytes, headers: dict | None = None):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                service.language_requests += 1
                if isinstance(service.languages, int):
                    self._reply(service.languages, b"")
                else:
                    self._reply(200, json.dumps(service.languages).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.requests.append(body)
                status, headers, raw = service.translate(body)
                self._reply(status, raw, headers)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def translated(body: dict):
        texts = [f"[{body['target']}] {text}" for text in body["q"]]
        return 200, {}, json.dumps({"translatedText": texts}).encode()


@pytest.fixture()
def service():
    running = Service()
    yield running
    running.server.shutdown()


def spanish(count: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "message_id": [f"m{n}" for n in range(count)],
            "conversation_id": [f"c{n}" for n in range(count)],
            "content": [f"¿Cuánto cuesta el plan número {n}?" for n in range(count)],
            "language": ["es"] * count,
            "day": [DAY] * count,
        }
    )


def translator_for(service: Service, **options) -> HttpTranslator:
    return HttpTranslator(service.url, timeout_s=2, max_attempts=2, backoff_s=0.01, **options)


def test_a_refused_batch_costs_only_its_own_messages(service):
    """Batches of 32: the second holds a message the service refuses (400). The first and
    third batches were translated, and paid for: they are kept, and only the second's 32
    messages are recorded as errors."""

    def refuse_a_batch(body):
        if any("número 40?" in text for text in body["q"]):
            return 400, {}, b'{"error": "text too long"}'
        return Service.translated(body)

    service.translate = refuse_a_batch
    run = translate_messages(spanish(70), ["en"], translator_for(service, batch_size=32))
    assert len(service.requests) == 3
    assert run.translations.height == 38 and run.counts["translated"] == 38
    assert run.counts["failed"] == 32
    failed = set(run.errors["key"])
    assert failed == {f"m{n}" for n in range(32, 64)}
    assert not failed & set(run.translations["message_id"])


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ((200, {}, b'{"error": "quota exceeded"}'), "no list of translated texts"),
        ((200, {}, b"<html>502 Bad Gateway</html>"), "not JSON"),
        # Nested thousands deep: RecursionError, which failed the whole step.
        ((200, {}, b"[" * 100_000 + b"]" * 100_000), "not JSON"),
        # A text where a list of five was sent: five translations, not five characters.
        ((200, {}, b'{"translatedText": "Hello"}'), "no list of translated texts"),
        ((200, {}, b'{"translatedText": ["a", 2, "c", "d", "e"]}'), "no list"),
    ],
)
def test_an_answer_that_is_not_a_list_of_translations_is_recorded(service, answer, reason):
    service.translate = lambda body: answer
    run = translate_messages(spanish(5), ["en"], translator_for(service))
    assert run.translations.is_empty()
    assert run.errors.height == 5 and run.counts["failed"] == 5
    assert run.errors["reason"].str.contains(reason).all()


def test_one_text_answered_as_a_text_is_its_translation(service):
    service.translate = lambda body: (200, {}, b'{"translatedText": "How much?"}')
    run = translate_messages(spanish(1), ["en"], translator_for(service))
    assert run.translations["text"].to_list() == ["How much?"] and run.errors.is_empty()


def test_a_service_that_cannot_list_its_languages_is_recorded_not_raised(service):
    service.languages = 503
    run = translate_messages(spanish(3), ["en"], translator_for(service))
    assert run.translations.is_empty() and run.counts["failed"] == 3
    assert run.errors["reason"].str.contains("/languages").all()


def test_a_throttled_batch_waits_as_long_as_the_service_asks(service):
    attempts = iter([(429, {"Retry-After": "7"}, b""), None])

    def throttled_once(body):
        answer = next(attempts)
        return answer if answer else Service.translated(body)

    service.translate = throttled_once
    waits: list[float] = []
    translator = translator_for(service)
    translator.sleep = waits.append
    run = translate_messages(spanish(2), ["en"], translator)
    assert run.translations.height == 2
    assert waits == [7.0]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("-4", 0.0), ("soon", None), ("inf", None), ("nan", None), ("", None)],
)
def test_retry_after_that_cannot_be_read_asks_for_no_particular_wait(header, seconds):
    response = httpx.Response(429, headers={"Retry-After": header})
    assert retry_after_seconds(response) == seconds


def test_several_targets_record_one_error_per_message_and_target(service):
    service.languages = [{"code": "es", "targets": ["en"]}]  # not de
    blank = {"message_id": "e", "conversation_id": "c9", "content": "  ", "language": "unknown"}
    messages = pl.concat([spanish(2), pl.DataFrame([{**blank, "day": DAY}])])
    run = translate_messages(messages, ["EN", "de", "en"], translator_for(service))
    # "EN" and "en" are one target: each message translated once into English.
    assert sorted(run.translations["target_language"].to_list()) == ["en", "en"]
    assert run.translations.select("message_id", "target_language").is_unique().all()
    # The unsupported pair es->de: one error per message, each its own document.
    assert run.errors.height == 2
    assert run.errors["record_key"].to_list() == ["m0 to de", "m1 to de"]
    # The blank message is counted once, not once per target.
    assert run.counts["empty"] == 1


def test_translation_targets_are_lowercase_and_named_once():
    assert Settings(translation_targets="EN, de,en").translation_targets == ["en", "de"]


def test_a_translation_too_short_to_tell_is_not_called_wrong():
    frame = pl.DataFrame(
        {
            "message_id": ["m0", "m1"],
            "source_text": ["¡Vale!", "¿Cuánto cuesta el plan Pro por usuario al mes?"],
            "text": ["👍", "How much does the Pro plan cost per user per month?"],
            "source_language": ["es", "es"],
            "target_language": ["en", "en"],
        }
    )
    scored = score_translations(frame, {})
    assert scored["target_language_ok"].to_list() == [None, True]


def test_a_service_that_stays_down_is_not_asked_for_every_batch(service):
    """Throttled for an hour: each batch used to wait its full retries (capped at 60 s
    each), and 960 messages slept 90 minutes. A wait longer than a minute fails the batch
    at once, and after three failed batches in a row the rest is recorded unsent."""
    service.translate = lambda body: (429, {"Retry-After": "3600"}, b"")
    waits: list[float] = []
    translator = translator_for(service, batch_size=32)
    translator.sleep = waits.append
    run = translate_messages(spanish(320), ["en"], translator)
    assert waits == [] and len(service.requests) == 3
    assert run.counts["failed"] == 320 and run.translations.is_empty()
    unsent = run.errors.filter(pl.col("reason").str.contains("not sent after 3 failed"))
    assert unsent.height == 320 - 3 * 32


def test_the_list_of_languages_is_asked_for_once_a_run(service):
    service.languages = 503
    messages = pl.concat([spanish(2), spanish(2).with_columns(
        pl.col("message_id") + "-fr", pl.lit("fr").alias("language"))])  # fmt: skip
    run = translate_messages(messages, ["en"], translator_for(service))
    assert run.counts["failed"] == 4
    assert service.language_requests == 2  # one call, its two attempts
