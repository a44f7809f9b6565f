"""The Python SDK (`sdk/python/`, `analytics_assets_client`) against the live API: the real
app served by uvicorn on loopback over the materialized sample in nx-27017. What the SDK
returns equals what MongoDB holds; its page iterator sees every conversation once; errors
carry the API's codes; retries honour Retry-After (through a loopback proxy that answers
429/503 or drops the connection before passing requests on) and never repeat the creation of
a webhook after no answer or a 5xx; webhook subscriptions are created, listed and deleted,
their deliveries listed, and the SDK's signature check accepts what the server's sender
signs; its models and endpoint table match the committed OpenAPI spec; the tutorial's
example (docs/sdk.md) runs."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from email.utils import formatdate
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import analytics_assets_client
import httpx
import pytest
import uvicorn
from analytics_assets_client import (
    ENDPOINTS,
    HTTP_METHODS,
    SCHEMAS,
    AnalyticsClient,
    ApiConnectionError,
    AsyncAnalyticsClient,
    AuthenticationError,
    ConversationSummary,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    WebhookCreated,
    parse_retry_after,
    verify_webhook_signature,
)
from dagster import DagsterInstance
from pydantic.json_schema import models_json_schema

from analytics_assets.api import keys
from analytics_assets.api.app import create_app
from analytics_assets.webhooks import delivery, signing
from analytics_assets.webhooks.events import Event
from analytics_assets_tests.conftest import range_tags, sample_definitions
from analytics_assets_tests.nocodb_server import free_port

DAYS = [date(2026, 11, 2) + timedelta(days=n) for n in range(3)]
ROOT = Path(__file__).parents[1]
SPEC = ROOT / "docs" / "openapi.json"
TUTORIAL = ROOT / "docs" / "sdk.md"
SDK = ROOT / "sdk" / "python"


def test_the_sdk_under_test_is_this_checkouts():
    """A shared venv may hold an editable install of another checkout's SDK: put
    `sdk/python` first on PYTHONPATH to test this one."""
    assert Path(analytics_assets_client.__file__).parent == SDK / "analytics_assets_client"


@pytest.fixture(scope="module")
def live(mongo_server, tmp_path_factory):
    """The sample materialized into nx-27017 and the real app on a loopback port."""
    defs, _, mongo = sample_definitions(tmp_path_factory.mktemp("sdk"), mongo_server, "sdk_test")
    assert (
        defs.resolve_job_def("ingestion_job")
        .execute_in_process(
            instance=DagsterInstance.ephemeral(), tags=range_tags(DAYS[0], DAYS[-1])
        )
        .success
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(mongo.db), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    db = mongo.db()
    try:
        yield {
            "db": db,
            "url": f"http://127.0.0.1:{port}",
            "key": keys.create_key(db, list(keys.SCOPES)),
        }
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture()
def client(live):
    with AnalyticsClient(live["url"], live["key"]) as client:
        yield client


class FaultProxy:
    """A loopback HTTP proxy in front of the API. Each request takes the next step of
    `script` (`"429:<Retry-After>"`, `"503"`, `"503:<Retry-After>"`, `"close"`: drop the
    connection unanswered, `"pass-close"`: pass the request on, then drop the connection
    without its answer); once the script is spent, requests pass through to the API.
    Records when each request arrived, and its method."""

    def __init__(self, upstream: str, script: list[str]):
        self.script = list(script)
        self.arrivals: list[float] = []
        self.methods: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                proxy.arrivals.append(time.time())
                proxy.methods.append(self.command)
                length = int(self.headers.get("Content-Length") or 0)
                request_body = self.rfile.read(length) if length else None
                step = proxy.script.pop(0) if proxy.script else "pass"
                if step in ("pass", "pass-close"):
                    answer = httpx.request(
                        self.command,
                        upstream + self.path,
                        headers=dict(self.headers),
                        content=request_body,
                    )
                    status, body = answer.status_code, answer.content
                    headers = {"Content-Type": answer.headers.get("content-type", "")}
                if step in ("close", "pass-close"):
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if step != "pass":
                    status_text, _, retry_after = step.partition(":")
                    status = int(status_text)
                    code = {429: "rate_limited", 503: "not_ready"}[status]
                    body = json.dumps({"error": {"code": code, "message": "try later"}}).encode()
                    headers = {"Content-Type": "application/json"}
                    if retry_after:
                        headers["Retry-After"] = retry_after
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_DELETE = do_GET

            def log_message(self, *args):  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def proxy_factory(live):
    proxies: list[FaultProxy] = []

    def start(script: list[str]) -> FaultProxy:
        proxies.append(FaultProxy(live["url"], script))
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.close()


def db_order(db, query: dict) -> list[str]:
    return [
        d["conversation_id"]
        for d in db["conversation_analytics"]
        .find(query, projection={"conversation_id": 1, "started_at": 1})
        .sort([("started_at", 1), ("conversation_id", 1)])
    ]


def test_a_conversation_is_what_mongodb_holds(live, client):
    db = live["db"]
    stored = db["conversation_analytics"].find_one({"day": DAYS[1].isoformat()})
    detail = client.get_conversation(stored["conversation_id"])
    summary = detail.conversation
    assert (summary.conversation_id, summary.user_id, summary.model, summary.turns) == (
        stored["conversation_id"], stored["user_id"], stored["model"], stored["turns"],
    )  # fmt: skip
    assert summary.quality_score == pytest.approx(stored["quality_score"])
    categories = db["conversation_categories"].find_one({"_id": stored["conversation_id"]})
    assert detail.categories.topic == categories["topic"]
    messages = db["conversation_messages"].find({"conversation_id": stored["conversation_id"]})
    assert sorted(m.message_id for m in detail.messages) == sorted(
        m["message_id"] for m in messages
    )
    assert all(m.text == m.content and not m.translated for m in detail.messages)


def test_iterating_conversations_follows_the_cursor_across_pages(live, client):
    db = live["db"]
    pages = list(client.iter_conversation_pages(page_size=40))
    everything = db_order(db, {})
    assert len(pages) == -(-len(everything) // 40) >= 3
    assert all(len(page.items) == 40 for page in pages[:-1]) and not pages[-1].next_cursor
    listed = [c.conversation_id for c in client.iter_conversations(page_size=40)]
    assert listed == everything
    assert len(listed) == db["conversation_analytics"].count_documents({})
    # Filters travel with every page; `from_` is sent as `from`.
    day = DAYS[0].isoformat()
    filtered = client.iter_conversations(page_size=7, from_=DAYS[0], to=day, model="gpt-4o")
    expected = db_order(db, {"day": day, "model": "gpt-4o"})
    seen = list(filtered)
    assert all(isinstance(c, ConversationSummary) for c in seen)
    assert [c.conversation_id for c in seen] == expected and len(expected) > 7


def test_reports_series_models_users_and_dashboard(live, client):
    db = live["db"]
    day = DAYS[1].isoformat()
    stored = db["analytics_reports"].find_one({"_id": f"daily:{day}"})
    report = client.get_report("daily", day)
    assert (report.conversations, report.messages, report.users) == (
        stored["conversations"], stored["messages"], stored["users"],
    )  # fmt: skip
    # The report is open: what the typed fields do not name is kept as sent.
    extra = set(stored) - set(type(report).model_fields) - {"_id", "user_ids", "new_user_ids",
                                                           "written_by_run"}  # fmt: skip
    assert extra and extra <= set(report.model_extra or {})
    listed = client.list_reports("daily", DAYS[0], DAYS[-1])
    assert [r.period for r in listed] == [d.isoformat() for d in DAYS]
    series = client.get_series("topics", DAYS[0], DAYS[-1])
    assert series.points[1].counts == {t["value"]: t["count"] for t in stored["topics"]}
    models = client.compare_models(DAYS[0], DAYS[-1])
    assert models.from_ == DAYS[0]
    assert sum(m["conversations"] for m in models.models) == sum(r.conversations for r in listed)
    user = db["user_analytics"].find_one({})
    analytics = client.get_user_analytics(user["user_id"])
    assert user["period"] in [p.period for p in analytics.periods]
    dashboard = client.get_dashboard_data(from_=DAYS[0], to=DAYS[-1])
    assert dashboard.totals.conversations == sum(r.conversations for r in listed)
    assert client.health().status == "ok" and client.ready().status == "ready"


def test_user_predictions_are_what_mongodb_holds_and_an_unscored_user_is_not_found(live, client):
    db = live["db"]
    # Three days of history: the baseline's predictions (the model needs more).
    scored = db["user_return_predictions"].find_one({"day": DAYS[-1].isoformat()})
    stored = list(db["user_return_predictions"].find({"user_id": scored["user_id"]}).sort("day", 1))
    served = client.user_predictions(scored["user_id"])
    assert served.user_id == scored["user_id"] and len(served.predictions) == len(stored) >= 1
    for prediction, document in zip(served.predictions, stored, strict=True):
        assert prediction.day == str(document["day"])[:10]
        for field in type(prediction).model_fields.keys() - {"day"}:
            value = getattr(prediction, field)
            expected = document.get(field)
            assert value == (pytest.approx(expected) if isinstance(value, float) else expected)
    assert served.predictions[-1].method == "baseline"
    assert 0 <= served.predictions[-1].return_probability_7d <= 1
    with pytest.raises(NotFoundError) as missing:
        client.user_predictions(f"u_{'0' * 20}")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(InvalidRequestError):
        client.user_predictions("user-00001")  # a source id, not a pseudonym


def test_webhooks_are_created_listed_and_deleted_with_the_scope_only(live, caplog):
    caplog.set_level(logging.DEBUG)
    db = live["db"]
    manager = keys.create_key(db, ["webhooks:manage"])
    reader = keys.create_key(db, ["conversations:read", "analytics:read", "users:read"])
    with AnalyticsClient(live["url"], manager) as client:
        created = client.create_webhook(
            "https://hooks.example.com/analytics", ["report.ready", "check.failed"],
            description="sdk test",
        )  # fmt: skip
        assert isinstance(created, WebhookCreated) and created.id.startswith("wh_")
        assert created.secret.startswith("whsec_") and created.secret not in repr(created)
        stored = db["webhook_subscriptions"].find_one({"_id": created.id})
        assert stored["secret"] == created.secret and stored["active"]
        assert created.events == sorted(stored["events"]) == ["check.failed", "report.ready"]
        listed = client.list_webhooks()
        assert created.id in [s.id for s in listed]
        assert created.secret not in json.dumps([s.model_dump() for s in listed])
        (mine,) = [s for s in listed if s.id == created.id]
        assert (mine.url, mine.description, mine.created_at) == (
            created.url, "sdk test", created.created_at,
        )  # fmt: skip
        assert client.webhook_deliveries(created.id) == []
        with pytest.raises(InvalidRequestError) as invalid:
            client.create_webhook("ftp://hooks.example.com/", ["report.ready"])
        assert (invalid.value.status, invalid.value.code) == (422, "invalid_request")
        with pytest.raises(TypeError):
            client.create_webhook("https://hooks.example.com/", "report.ready")  # type: ignore[arg-type]

        with AnalyticsClient(live["url"], reader) as unscoped:
            for call in (
                lambda: unscoped.create_webhook("https://hooks.example.com/", ["report.ready"]),
                unscoped.list_webhooks,
                lambda: unscoped.webhook_deliveries(created.id),
                lambda: unscoped.delete_webhook(created.id),
            ):
                with pytest.raises(PermissionDeniedError) as forbidden:
                    call()
                assert (forbidden.value.status, forbidden.value.code) == (403, "forbidden")
                assert "webhooks:manage" in forbidden.value.message
        assert db["webhook_subscriptions"].find_one({"_id": created.id})["active"]

        client.delete_webhook(created.id)
        assert created.id not in [s.id for s in client.list_webhooks()]
        assert not db["webhook_subscriptions"].find_one({"_id": created.id})["active"]
        with pytest.raises(NotFoundError) as gone:
            client.delete_webhook(created.id)
        assert (gone.value.status, gone.value.code) == (404, "not_found")
        with pytest.raises(NotFoundError):
            client.webhook_deliveries("wh_000000000000")
    # The client's side (the SDK, httpx, httpcore): pymongo's DEBUG command log, on the
    # server's side, shows the documents the API writes.
    client_side = "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name.split(".")[0] in ("analytics_assets_client", "httpx", "httpcore")
    )
    assert "HTTP Request: POST" in client_side
    assert created.secret not in client_side and manager not in client_side


class Receiver:
    """A loopback webhook receiver: records each request's headers and raw body, answers
    204."""

    def __init__(self):
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_delivery_is_listed_and_its_signature_verifies_with_the_sdk(live, client):
    """The server's delivery loop sends a real event to a loopback receiver: the SDK lists
    the delivery as MongoDB holds it, and its signature check accepts the request with the
    secret `create_webhook` returned, and refuses it with another secret, another body or
    once stale."""
    db = live["db"]
    receiver = Receiver()
    try:
        created = client.create_webhook(receiver.url, ["report.ready"])
        now = time.time()
        event = Event("report.ready", ("sdk-test", created.id), now, {"conversations": 3})
        assert delivery.enqueue(db, event, now=now) == 1
        assert delivery.deliver_pending(db, now).delivered >= 1
    finally:
        receiver.close()
    [(headers, body)] = [r for r in receiver.received if r[1] == event.body()]
    assert verify_webhook_signature(created.secret, headers, body)
    lower = {name.lower(): value for name, value in headers.items()}
    assert verify_webhook_signature(created.secret, lower, body)
    assert not verify_webhook_signature("whsec_other", headers, body)
    assert not verify_webhook_signature(created.secret, headers, body + b" ")
    sent_at = int(headers[signing.TIMESTAMP_HEADER])
    assert not verify_webhook_signature(created.secret, headers, body, now=sent_at + 301)

    [listed] = client.webhook_deliveries(created.id)
    stored = db["webhook_deliveries"].find_one({"subscription_id": created.id})
    assert (listed.id, listed.event_id, listed.event_type, listed.status) == (
        stored["_id"], event.id, "report.ready", "delivered",
    )  # fmt: skip
    assert [(a.number, a.status_code, a.error) for a in listed.attempts] == [(1, 204, None)]
    assert listed.delivered_at is not None and listed.next_attempt_at is None
    client.delete_webhook(created.id)


def test_the_sdk_signature_check_agrees_with_the_server_signing():
    secret, body, now = "whsec_" + "k" * 43, b'{"id":"evt_1","type":"report.ready"}', 1_790_000_000
    for timestamp in (now, now - 300, now + 300, now - 301, now + 301):
        headers = signing.signature_headers(secret, body, timestamp)
        for key, sent in ((secret, body), ("whsec_other", body), (secret, body[:-1])):
            expected = signing.verify_signature(
                key, sent, headers[signing.TIMESTAMP_HEADER], headers[signing.SIGNATURE_HEADER],
                now=now,
            )  # fmt: skip
            assert verify_webhook_signature(key, headers, sent, now=now) is expected
            assert expected == (timestamp in (now, now - 300, now + 300) and (key, sent) == (
                secret, body))  # fmt: skip
    headers = signing.signature_headers(secret, body, now)
    for broken in ({**headers, signing.TIMESTAMP_HEADER: "soon"},
                   {signing.SIGNATURE_HEADER: headers[signing.SIGNATURE_HEADER]},
                   {signing.TIMESTAMP_HEADER: str(now)}, {}):  # fmt: skip
        assert not verify_webhook_signature(secret, broken, body, now=now)


def test_creating_a_webhook_is_never_repeated_after_no_answer_or_a_5xx(live, proxy_factory):
    """A POST that got no answer, or a 5xx, may have created the subscription: raised at
    once (one request reached the proxy). A 429 is answered before the handler runs: retried.
    A DELETE is retried, and a 404 after an attempt whose answer was lost counts as done."""
    db = live["db"]
    url = "https://hooks.example.com/retries"

    def subscribed() -> int:
        return db["webhook_subscriptions"].count_documents({"url": url, "active": True})

    for step, raised in (("close", ApiConnectionError), ("503", ServiceUnavailableError),
                         ("pass-close", ApiConnectionError)):  # fmt: skip
        before = subscribed()
        proxy = proxy_factory([step])
        client = AnalyticsClient(proxy.url, live["key"], max_retries=3, backoff_base=0.05)
        with client, pytest.raises(raised):
            client.create_webhook(url, ["sync.completed"])
        assert proxy.methods == ["POST"], step
        # Passed on before the connection dropped: created once, never twice.
        assert subscribed() == before + (step == "pass-close")

    before = subscribed()
    proxy = proxy_factory(["429:1"])
    with AnalyticsClient(proxy.url, live["key"], max_retries=2) as client:
        created = client.create_webhook(url, ["sync.completed"])
        assert proxy.methods == ["POST", "POST"] and proxy.arrivals[1] - proxy.arrivals[0] >= 1
        assert subscribed() == before + 1

    proxy = proxy_factory(["pass-close"])
    with AnalyticsClient(proxy.url, live["key"], max_retries=2, backoff_base=0.05) as client:
        client.delete_webhook(created.id)  # deleted by the first try, 404 on the second
    assert proxy.methods == ["DELETE", "DELETE"]
    assert not db["webhook_subscriptions"].find_one({"_id": created.id})["active"]
    for leftover in db["webhook_subscriptions"].find({"url": url, "active": True}):
        with AnalyticsClient(live["url"], live["key"]) as client:
            client.delete_webhook(leftover["_id"])


def test_errors_carry_the_api_code_message_and_status_never_the_key(live, client, caplog):
    caplog.set_level(logging.DEBUG)
    wrong_key = live["key"][:-4] + "abcd"
    with AnalyticsClient(live["url"], wrong_key) as wrong:
        with pytest.raises(AuthenticationError) as unauthorized:
            wrong.get_report("daily", DAYS[0].isoformat())
        assert wrong_key not in repr(wrong)
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthorized")
    assert "X-API-Key" in unauthorized.value.message
    with pytest.raises(NotFoundError) as missing:
        client.get_conversation("conv-999999")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert "conv-999999" in missing.value.message
    with pytest.raises(InvalidRequestError) as invalid:
        client.get_user_analytics("user-00001")  # a source id, not a pseudonym
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_request")
    users_only = keys.create_key(live["db"], ["users:read"])
    with (
        AnalyticsClient(live["url"], users_only) as limited,
        pytest.raises(PermissionDeniedError) as forbidden,
    ):
        limited.get_report("daily", DAYS[0].isoformat())
    assert forbidden.value.code == "forbidden" and "analytics:read" in forbidden.value.message
    for error in (unauthorized.value, missing.value, invalid.value, forbidden.value):
        assert live["key"] not in str(error) and wrong_key not in str(error)
    assert live["key"] not in caplog.text and wrong_key not in caplog.text


def test_the_key_rate_limit_raises_rate_limited_and_a_retrying_client_gets_through(live):
    """A key of 60 a minute: its burst spent, the API answers 429 `rate_limited` with
    Retry-After; a client that may retry waits and gets the answer."""
    key = keys.create_key(live["db"], ["analytics:read"], rate_per_minute=60)
    period = DAYS[0].isoformat()
    with AnalyticsClient(live["url"], key, max_retries=0) as impatient:
        for _ in range(200):
            try:
                impatient.get_report("daily", period)
            except RateLimitError as error:
                limited = error
                break
        else:
            pytest.fail("the key's bucket never ran out")
    assert (limited.status, limited.code) == (429, "rate_limited")
    assert limited.retry_after is not None and 1 <= limited.retry_after <= 60
    with AnalyticsClient(live["url"], key, max_retries=3) as patient:
        assert patient.get_report("daily", period).period == period


def test_a_429_is_retried_after_retry_after_seconds(live, proxy_factory, caplog):
    caplog.set_level(logging.DEBUG)
    proxy = proxy_factory(["429:2"])
    period = DAYS[0].isoformat()
    started = time.monotonic()
    with AnalyticsClient(proxy.url, live["key"], max_retries=2) as client:
        report = client.get_report("daily", period)
    elapsed = time.monotonic() - started
    assert (
        report.conversations
        == live["db"]["analytics_reports"].find_one({"_id": f"daily:{period}"})["conversations"]
    )
    assert len(proxy.arrivals) == 2
    assert proxy.arrivals[1] - proxy.arrivals[0] >= 2.0 and elapsed >= 2.0
    print(f"429 Retry-After: 2 -> retried after {proxy.arrivals[1] - proxy.arrivals[0]:.3f} s")
    assert live["key"] not in caplog.text


def test_a_retry_after_date_is_waited_for_and_one_past_the_cap_is_raised_at_once(
    live, proxy_factory
):
    retry_at = int(time.time()) + 2
    proxy = proxy_factory([f"503:{formatdate(retry_at, usegmt=True)}"])
    with AnalyticsClient(proxy.url, live["key"], max_retries=1) as client:
        assert client.health().status == "ok"
    # The date has a resolution of a second: the retry comes no earlier than it says.
    assert len(proxy.arrivals) == 2 and proxy.arrivals[1] >= retry_at - 0.01

    capped = proxy_factory(["429:120"])
    started = time.monotonic()
    client = AnalyticsClient(capped.url, live["key"], max_retries=3, max_retry_wait=5)
    with client, pytest.raises(RateLimitError) as refused:
        client.get_report("daily", DAYS[0].isoformat())
    assert refused.value.retry_after == 120 and refused.value.code == "rate_limited"
    assert len(capped.arrivals) == 1 and time.monotonic() - started < 2


def test_a_503_without_retry_after_backs_off_and_the_last_error_is_raised(live, proxy_factory):
    proxy = proxy_factory(["503", "503", "503"])
    client = AnalyticsClient(proxy.url, live["key"], max_retries=2, backoff_base=0.2)
    with client, pytest.raises(ServiceUnavailableError) as unavailable:
        client.health()
    assert (unavailable.value.status, unavailable.value.code) == (503, "not_ready")
    gaps = [b - a for a, b in zip(proxy.arrivals, proxy.arrivals[1:], strict=False)]
    # Exponential with jitter: each wait is between half and all of 0.2 s, then 0.4 s.
    assert len(gaps) == 2 and gaps[0] >= 0.1 and gaps[1] >= 0.2


def test_a_dropped_connection_is_retried_and_a_dead_server_raises_connection_error(
    live, proxy_factory
):
    proxy = proxy_factory(["close"])
    conversation_id = live["db"]["conversation_analytics"].find_one({})["conversation_id"]
    with AnalyticsClient(proxy.url, live["key"], max_retries=2, backoff_base=0.05) as client:
        detail = client.get_conversation(conversation_id)
    assert detail.conversation.conversation_id == conversation_id and len(proxy.arrivals) == 2

    nobody = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    client = AnalyticsClient(nobody, live["key"], max_retries=2, backoff_base=0.05)
    with client, pytest.raises(ApiConnectionError, match="3 attempts") as refused:
        client.health()
    assert isinstance(refused.value.__cause__, httpx.ConnectError)
    assert live["key"] not in str(refused.value) and time.monotonic() - started < 5


def test_the_async_client_answers_what_the_sync_one_does(live, client, proxy_factory):
    db = live["db"]
    conversation_id = db["conversation_analytics"].find_one({})["conversation_id"]
    period = DAYS[2].isoformat()
    proxy = proxy_factory(["429:1", "close"])

    async def read():
        async with AsyncAnalyticsClient(live["url"], live["key"]) as direct:
            detail = await direct.get_conversation(conversation_id)
            listed = [c.conversation_id async for c in direct.iter_conversations(page_size=60)]
            try:
                await direct.get_conversation("conv-999999")
            except NotFoundError as error:
                missing = error
            predictions = await direct.user_predictions(scored)
            created = await direct.create_webhook("https://hooks.example.com/a", ["erasure.done"])
            subscriptions = await direct.list_webhooks()
            deliveries = await direct.webhook_deliveries(created.id)
            await direct.delete_webhook(created.id)
            remaining = await direct.list_webhooks()
        async with AsyncAnalyticsClient(proxy.url, live["key"], backoff_base=0.05) as retrying:
            started = time.monotonic()
            report = await retrying.get_report("daily", period)
            waited = time.monotonic() - started
        async with AsyncAnalyticsClient(failing.url, live["key"], backoff_base=0.05) as once:
            try:
                await once.create_webhook("https://hooks.example.com/b", ["erasure.done"])
            except ServiceUnavailableError as error:
                unavailable = error
        webhooks = (created, subscriptions, deliveries, remaining, unavailable)
        return detail, listed, missing, report, waited, predictions, webhooks

    scored = db["user_return_predictions"].find_one({})["user_id"]
    failing = proxy_factory(["503"])
    detail, listed, missing, report, waited, predictions, webhooks = asyncio.run(read())
    assert predictions == client.user_predictions(scored)
    created, subscriptions, deliveries, remaining, unavailable = webhooks
    assert created.id in [s.id for s in subscriptions] and created.secret.startswith("whsec_")
    assert deliveries == [] and created.id not in [s.id for s in remaining]
    assert unavailable.code == "not_ready" and failing.methods == ["POST"]
    assert detail == client.get_conversation(conversation_id)
    assert listed == db_order(db, {})
    assert (missing.status, missing.code) == (404, "not_found")
    # A 429 with Retry-After: 1, then a dropped connection, then the answer.
    assert report == client.get_report("daily", period)
    assert len(proxy.arrivals) == 3 and proxy.arrivals[1] - proxy.arrivals[0] >= 1.0
    assert waited >= 1.0


def test_retry_after_is_read_as_seconds_or_an_http_date():
    from datetime import UTC, datetime

    now = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Fri, 04 Dec 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Fri, 04 Dec 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def _without_docs(schema):
    """Titles and descriptions are prose; FastAPI leaves `"default": null` out."""
    if isinstance(schema, dict):
        return {
            name: _without_docs(value)
            for name, value in schema.items()
            if name not in ("title", "description") and not (name == "default" and value is None)
        } | ({"required": sorted(schema["required"])} if "required" in schema else {})
    if isinstance(schema, list):
        return [_without_docs(value) for value in schema]
    return schema


def test_the_sdk_models_match_every_schema_of_the_committed_spec():
    spec = json.loads(SPEC.read_text())["components"]["schemas"]
    _, generated = models_json_schema(
        [(model, "serialization") for model in SCHEMAS.values()],
        ref_template="#/components/schemas/{model}",
    )
    sdk = generated["$defs"]
    assert set(sdk) == set(spec), "an SDK model per schema of docs/openapi.json, no more"
    for name, schema in spec.items():
        assert _without_docs(sdk[name]) == _without_docs(schema), (
            f"sdk/python/analytics_assets_client/models.py: {name} differs from the spec"
        )


def test_the_sdk_has_a_method_per_documented_path_answering_its_schema():
    spec = json.loads(SPEC.read_text())
    documented = {
        (http_method.upper(), path)
        for path, operations in spec["paths"].items()
        for http_method in operations
    }
    called = {(HTTP_METHODS.get(name, "GET"), path) for name, path in ENDPOINTS.items()}
    assert called == documented and len(called) == len(ENDPOINTS)
    for method_name, path in ENDPOINTS.items():
        operation = spec["paths"][path][HTTP_METHODS.get(method_name, "GET").lower()]
        (status,) = [code for code in operation["responses"] if code.startswith("2")]
        content = operation["responses"][status].get("content")
        body = content["application/json"]["schema"] if content else None
        for client_class in (AnalyticsClient, AsyncAnalyticsClient):
            returns = get_type_hints(getattr(client_class, method_name))["return"]
            assert _without_docs(body) == _reference(returns), (client_class, method_name)


def _reference(response) -> dict | None:
    """How the spec names a body: its schema by reference, an array of them, or none
    (204)."""
    if response is type(None):
        return None
    if get_origin(response) is list:
        return {"type": "array", "items": _reference(get_args(response)[0])}
    assert SCHEMAS[response.__name__] is response
    return {"$ref": f"#/components/schemas/{response.__name__}"}


def test_the_sdk_passes_a_strict_type_check():
    """It ships `py.typed`: its users' type checkers trust its annotations."""
    package = SDK / "analytics_assets_client"
    assert (package / "py.typed").exists()
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(package)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success: no issues found" in run.stdout


def test_the_tutorial_example_runs_against_the_live_api(live):
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.DOTALL)
    assert blocks, "docs/sdk.md has no python example"
    example = "\n".join(blocks)
    run = subprocess.run(
        [sys.executable, "-c", example],
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SDK), os.environ.get("PYTHONPATH", "")]),
            "ANALYTICS_API_URL": live["url"],
            "ANALYTICS_API_KEY": live["key"],
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    total = live["db"]["conversation_analytics"].count_documents({})
    assert f"{total} conversations" in run.stdout
    assert "not_found" in run.stdout and live["key"] not in run.stdout + run.stderr
    created = re.search(r"webhook (wh_[0-9a-f]{12}) \['check.failed', 'report.ready'\]", run.stdout)
    assert created and "unsigned request: 401" in run.stdout
    subscription = live["db"]["webhook_subscriptions"].find_one({"_id": created[1]})
    assert not subscription["active"] and subscription["description"] == "the team's reports"
    assert "whsec_" not in run.stdout + run.stderr
