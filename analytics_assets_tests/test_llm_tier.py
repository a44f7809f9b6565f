"""The optional LLM tier against a local fake OpenAI-compatible server (a real HTTP server
on loopback that answers /v1/chat/completions from a script): the budget holds, a repeated
text is answered from the cache, malformed or off-taxonomy output is an abstention with its
reason, and only what the cheaper tiers left undecided is asked."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
import yaml

from analytics_assets.categorization.conversations import categorize_texts
from analytics_assets.categorization.llm import LlmLabeler
from analytics_assets.categorization.taxonomy import (
    DEFAULT_TAXONOMY as TAXONOMY_PATH,
)
from analytics_assets.categorization.taxonomy import load_taxonomy, parse_taxonomy

TAXONOMY = load_taxonomy()


class FakeOpenAI:
    """Answers each request with `answer(user_text) -> content string`; records requests."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "body": body,
                                      "auth": self.headers.get("Authorization")})  # fmt: skip
                text = body["messages"][-1]["content"]
                payload = {
                    "choices": [{"message": {"role": "assistant", "content": fake.answer(text)}}],
                    "usage": {"prompt_tokens": 120, "completion_tokens": 15},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def scripted(text: str) -> str:
    if "garbage" in text:
        return "I think this is about billing!"  # not JSON
    if "invented" in text:
        return json.dumps({"topic": "astrology", "intent": "support", "sentiment": "neutral"})
    return json.dumps({"topic": "Billing", "intent": "support", "sentiment": "negative"})


@pytest.fixture
def server():
    fake = FakeOpenAI(scripted)
    yield fake
    fake.close()


def test_labels_come_back_validated_with_cost_and_a_structured_schema(server, tmp_path):
    labeler = LlmLabeler(server.url, "fake-model", api_key="sk-test", budget=10,
                         price_per_1k_tokens=0.5, cache_path=tmp_path / "cache.sqlite")  # fmt: skip
    answers, run = labeler.label(["se me cobró dos veces"], TAXONOMY)
    # "Billing" is the taxonomy's billing: labels are matched however they are spelled.
    assert answers[0].labels == {"topic": "billing", "intent": "support", "sentiment": "negative"}
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    schema = request["body"]["response_format"]["json_schema"]["schema"]
    assert set(schema["properties"]["topic"]["enum"]) == set(TAXONOMY.names("topic"))
    assert run.requests == 1 and run.prompt_tokens == 120 and run.completion_tokens == 15
    assert run.cost == pytest.approx(135 / 1000 * 0.5)


def test_the_budget_holds_and_a_repeat_is_a_cache_hit(server, tmp_path):
    cache = tmp_path / "cache.sqlite"
    labeler = LlmLabeler(server.url, "fake-model", budget=2, cache_path=cache)
    texts = ["one", "two", "three", "four"]
    answers, run = labeler.label(texts, TAXONOMY)
    assert run.requests == 2 and run.over_budget == 2 and len(server.requests) == 2
    assert [a.reason for a in answers[2:]] == ["over budget", "over budget"]
    # A new run (a new process: the cache is on disk) asks only what it has not seen.
    again = LlmLabeler(server.url, "fake-model", budget=2, cache_path=cache)
    answers, run = again.label(texts, TAXONOMY)
    assert run.cache_hits == 2 and run.requests == 2 and len(server.requests) == 4
    assert all(a.labels for a in answers)
    assert [a.cached for a in answers] == [True, True, False, False]


def test_malformed_or_off_taxonomy_output_is_an_abstention_with_its_reason(server):
    labeler = LlmLabeler(server.url, "fake-model", budget=10)
    answers, run = labeler.label(["garbage please", "an invented topic"], TAXONOMY)
    assert [a.labels for a in answers] == [None, None]
    assert [a.reason for a in answers] == ["malformed output", "unknown topic label"]
    assert run.abstained == {"malformed output": 1, "unknown topic label": 1}
    # Abstentions are not cached: the next run may ask again.
    labeler.label(["garbage please"], TAXONOMY)
    assert len(server.requests) == 3


def test_an_unreachable_endpoint_abstains_instead_of_failing_the_run():
    labeler = LlmLabeler("http://127.0.0.1:9/v1", "fake-model", budget=5, timeout=2)
    answers, run = labeler.label(["hello"], TAXONOMY)
    assert answers[0].labels is None and answers[0].reason.startswith("request failed")
    assert run.requests == 1 and sum(run.abstained.values()) == 1


def test_only_what_the_rules_left_undecided_reaches_the_llm(server):
    labeler = LlmLabeler(server.url, "fake-model", budget=10)
    texts = pl.DataFrame(
        {
            "id": ["a", "b"],
            # The rules know this one (a pricing keyword)...
            "text": ["How much does the Pro plan cost per seat per month?",
                     # ...and not this one.
                     "bitte hilfe, die Abbuchung kam doppelt"],
        }
    )  # fmt: skip
    result = categorize_texts(texts, TAXONOMY, llm=labeler).to_dicts()
    asked = [r["body"]["messages"][-1]["content"] for r in server.requests]
    assert asked == ["bitte hilfe, die Abbuchung kam doppelt"]
    assert (result[0]["topic"], result[0]["topic_method"]) == ("pricing", "rules")
    assert (result[1]["topic"], result[1]["topic_method"]) == ("billing", "llm")


class RawOpenAI(FakeOpenAI):
    """Answers every request with the body `payloads` gives next, as it is."""

    def __init__(self, payloads: list):
        super().__init__(lambda text: "")
        bodies = iter(payloads)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                body = next(bodies)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server.RequestHandlerClass = Handler


def test_an_answer_of_the_wrong_shape_is_an_abstention_not_a_failed_run():
    good = json.dumps({"topic": "billing", "intent": "support", "sentiment": "neutral"})
    choices = [{"message": {"content": good}}]
    server = RawOpenAI([
        [],
        "rate limited",
        {"choices": choices, "usage": ["not", "a", "mapping"]},
        {"choices": choices, "usage": {"prompt_tokens": "many", "completion_tokens": 1e400}},
    ])  # fmt: skip
    try:
        labeler = LlmLabeler(server.url, "fake-model", budget=10)
        answers, run = labeler.label([f"text {n}" for n in range(4)], TAXONOMY)
    finally:
        server.close()
    assert [a.reason for a in answers[:2]] == ["malformed output", "malformed output"]
    assert [a.labels["topic"] for a in answers[2:]] == ["billing", "billing"]
    assert run.prompt_tokens == 0 and run.completion_tokens == 0


def test_a_cached_label_the_taxonomy_no_longer_has_is_asked_again(server, tmp_path):
    cache = tmp_path / "cache.sqlite"
    LlmLabeler(server.url, "fake-model", budget=5, cache_path=cache).label(["refund?"], TAXONOMY)
    document = yaml.safe_load(TAXONOMY_PATH.read_text())
    del document["topics"]["billing"]
    without_billing = parse_taxonomy(document)
    assert without_billing.version == TAXONOMY.version
    answers, run = LlmLabeler(server.url, "fake-model", budget=5, cache_path=cache).label(
        ["refund?"], without_billing
    )
    assert run.cache_hits == 0 and answers[0].reason == "unknown topic label"


def test_json_nested_thousands_deep_is_an_abstention_and_a_down_endpoint_is_left_after_five():
    """A body of `[[[[…` raised RecursionError, which nothing caught: the step failed with
    the requests it had paid for. An endpoint that fails every request was asked the whole
    budget's worth, each costing a timeout."""
    from analytics_assets.categorization.llm import FAILURES_IN_A_ROW

    deep = "[" * 100_000 + "]" * 100_000
    server = RawOpenAI([deep.encode(), {"choices": [{"message": {"content": deep}}]}])
    try:
        answers, _ = LlmLabeler(server.url, "fake-model", budget=10).label(["a", "b"], TAXONOMY)
    finally:
        server.close()
    assert [a.reason for a in answers] == ["request failed: RecursionError", "malformed output"]
    down = LlmLabeler("http://127.0.0.1:9/v1", "fake-model", budget=50, timeout=2)
    answers, run = down.label([f"text {n}" for n in range(12)], TAXONOMY)
    assert run.requests == FAILURES_IN_A_ROW == 5
    assert run.abstained["not sent after 5 failed requests"] == 7


def test_the_cache_asks_again_for_an_edited_taxonomy_or_another_endpoint(server, tmp_path):
    """The key held the taxonomy's version: a custom taxonomy is "unversioned" however it is
    edited, and a label added under the same version kept the old answers."""
    cache = tmp_path / "cache.sqlite"
    LlmLabeler(server.url, "fake-model", budget=5, cache_path=cache).label(["refund?"], TAXONOMY)
    document = yaml.safe_load(TAXONOMY_PATH.read_text())
    document["topics"]["refunds"] = {"description": "Money back for a purchase."}
    with_refunds = parse_taxonomy(document)
    assert with_refunds.version == TAXONOMY.version
    _, run = LlmLabeler(server.url, "fake-model", budget=5, cache_path=cache).label(
        ["refund?"], with_refunds
    )
    assert run.cache_hits == 0 and run.requests == 1
    other = FakeOpenAI(scripted)
    try:
        _, run = LlmLabeler(other.url, "fake-model", budget=5, cache_path=cache).label(
            ["refund?"], TAXONOMY
        )
    finally:
        other.close()
    assert run.cache_hits == 0 and run.requests == 1
    _, run = LlmLabeler(server.url, "fake-model", budget=5, cache_path=cache).label(
        ["refund?"], TAXONOMY
    )
    assert run.cache_hits == 1 and run.requests == 0


def test_usage_that_is_missing_or_not_a_count_is_counted_as_unknown_not_as_free():
    good = json.dumps({"topic": "billing", "intent": "support", "sentiment": "happy-ish"})
    choices = [{"message": {"content": good}}]
    server = RawOpenAI([
        {"choices": choices},
        {"choices": choices, "usage": {"prompt_tokens": "1e12", "completion_tokens": 3}},
        {"choices": choices, "usage": {"prompt_tokens": 10**12, "completion_tokens": 3}},
        {"choices": choices, "usage": {"prompt_tokens": 100.0, "completion_tokens": 20}},
    ])  # fmt: skip
    try:
        labeler = LlmLabeler(server.url, "fake-model", budget=10, price_per_1k_tokens=1.0)
        answers, run = labeler.label([f"text {n}" for n in range(4)], TAXONOMY)
    finally:
        server.close()
    assert (run.prompt_tokens, run.completion_tokens, run.without_usage) == (100, 20, 3)
    assert run.cost == pytest.approx(0.12)
    assert run.metadata()["llm_requests_without_usage"] == 3
    # A sentiment off the list no longer costs the topic and intent the tier is asked for.
    assert [a.labels for a in answers] == [{"topic": "billing", "intent": "support"}] * 4


def test_a_text_without_letters_or_digits_is_not_sent(server):
    """Zero-width spaces or a byte-order mark passed the blank check, and the endpoint,
    whose schema has no "don't know", labelled them billing."""
    labeler = LlmLabeler(server.url, "fake-model", budget=10)
    answers, run = labeler.label(["\u200b\u2060", "\ufeff", "🙂🙂", "ok"], TAXONOMY)
    assert [a.reason for a in answers[:3]] == ["no words"] * 3
    assert answers[3].labels is not None
    assert len(server.requests) == 1 and run.requests == 1


def test_the_endpoint_can_say_no_label_fits_and_that_is_an_abstention():
    """The strict schema's enums lacked the fallbacks (`other`, `uncertain`): a compliant
    endpoint had to pick a label for junk, stored as a sure `llm` label."""
    assistant = load_taxonomy("assistant")
    fake = FakeOpenAI(
        lambda text: json.dumps({"topic": "other", "intent": "uncertain", "sentiment": "neutral"})
    )
    try:
        labeler = LlmLabeler(fake.url, "fake-model", budget=5)
        texts = pl.DataFrame({"id": ["junk"], "text": ["asdf qwer zxcv"]})
        row = categorize_texts(texts, assistant, llm=labeler).row(0, named=True)
        schema = fake.requests[0]["body"]["response_format"]["json_schema"]["schema"]
        system = fake.requests[0]["body"]["messages"][0]["content"]
    finally:
        fake.close()
    assert "other" in schema["properties"]["topic"]["enum"]
    assert assistant.fallbacks["intent"] in schema["properties"]["intent"]["enum"]
    assert "- other: none of the above fits" in system
    assert (row["topic"], row["topic_method"]) == ("other", "fallback")
    assert row["intent_method"] == "fallback"
    assert labeler.last_run.abstained == {"none of the labels fits": 1}
