"""The Python SDK (`sdk/python/`, `analytics_assets_client`) against the live API: the real
app served by uvicorn on loopback over the materialized sample in nx-27017. What the SDK
returns equals what MongoDB holds; its page iterator sees every conversation once; errors
carry the API's codes; retries honour Retry-After (through a loopback proxy that answers
429/503 or drops the connection before passing requests on); its models and endpoint table
match the committed OpenAPI spec; the tutorial's example (docs/sdk.md) runs."""

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

import httpx
import pytest
import uvicorn
from analytics_assets_client import (
    ENDPOINTS,
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
    parse_retry_after,
)
from dagster import DagsterInstance
from pydantic.json_schema import models_json_schema

from analytics_assets.api import keys
from analytics_assets.api.app import create_app
from analytics_assets_tests.conftest import range_tags, sample_definitions
from analytics_assets_tests.nocodb_server import free_port

DAYS = [date(2026, 11, 2) + timedelta(days=n) for n in range(3)]
ROOT = Path(__file__).parents[1]
SPEC = ROOT / "docs" / "openapi.json"
TUTORIAL = ROOT / "docs" / "sdk.md"


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
    connection unanswered); once the script is spent, requests pass through to the API.
    Records when each request arrived."""

    def __init__(self, upstream: str, script: list[str]):
        self.script = list(script)
        self.arrivals: list[float] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                proxy.arrivals.append(time.time())
                step = proxy.script.pop(0) if proxy.script else "pass"
                if step == "close":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if step == "pass":
                    answer = httpx.get(upstream + self.path, headers=dict(self.headers))
                    status, body = answer.status_code, answer.content
                    headers = {"Content-Type": answer.headers.get("content-type", "")}
                else:
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
        async with AsyncAnalyticsClient(proxy.url, live["key"], backoff_base=0.05) as retrying:
            started = time.monotonic()
            report = await retrying.get_report("daily", period)
            waited = time.monotonic() - started
        return detail, listed, missing, report, waited

    detail, listed, missing, report, waited = asyncio.run(read())
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
    documented = {path for path, methods in spec["paths"].items() if "get" in methods}
    assert set(ENDPOINTS.values()) == documented
    for method_name, path in ENDPOINTS.items():
        answer = spec["paths"][path]["get"]["responses"]["200"]
        body = answer["content"]["application/json"]["schema"]
        for client_class in (AnalyticsClient, AsyncAnalyticsClient):
            returns = get_type_hints(getattr(client_class, method_name))["return"]
            assert _without_docs(body) == _reference(returns), (client_class, method_name)


def _reference(response) -> dict:
    """How the spec names a body: its schema by reference, or an array of them."""
    if get_origin(response) is list:
        return {"type": "array", "items": _reference(get_args(response)[0])}
    assert SCHEMAS[response.__name__] is response
    return {"$ref": f"#/components/schemas/{response.__name__}"}


def test_the_sdk_passes_a_strict_type_check():
    """It ships `py.typed`: its users' type checkers trust its annotations."""
    package = ROOT / "sdk" / "python" / "analytics_assets_client"
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
        env={**os.environ, "ANALYTICS_API_URL": live["url"], "ANALYTICS_API_KEY": live["key"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    total = live["db"]["conversation_analytics"].count_documents({})
    assert f"{total} conversations" in run.stdout
    assert "not_found" in run.stdout and live["key"] not in run.stdout + run.stderr
