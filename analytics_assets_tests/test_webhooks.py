"""Webhooks against real loopback receivers (http.server): one that accepts and verifies,
one that fails (500), one that hangs; the subscriptions and delivery log in the real
MongoDB wire-protocol server (nx-27017); the sensor on real Dagster runs; the API routes."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import DagsterInstance
from fastapi.testclient import TestClient

from analytics_assets.webhooks import delivery, subscriptions
from analytics_assets.webhooks.delivery import DELIVERY_HEADER, EVENT_HEADER
from analytics_assets.webhooks.events import (
    CHECK_FAILED,
    ERASURE_DONE,
    REPORT_READY,
    SYNC_COMPLETED,
    Event,
)
from analytics_assets.webhooks.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign_body,
    verify_signature,
)
from analytics_assets.webhooks.subscriptions import DEAD_LETTERS, SUBSCRIPTIONS


class Receiver:
    """An HTTP receiver on loopback that records every POST (headers, body) and answers
    `status`, or never answers while `hang` is set (until it is shut down)."""

    def __init__(self, status: int = 200, *, hang: bool = False):
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                if hang:
                    receiver.released.wait(30)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(status: int = 200, *, hang: bool = False) -> Receiver:
        made.append(Receiver(status, hang=hang))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def db(mongo):
    return mongo.db()


def _event(kind: str = REPORT_READY, partition: str = "2026-11-02", at: float | None = None):
    data = {"asset": "daily_report", "kind": "daily", "partition": partition,
            "run_id": "run-1", "numbers": {"conversations": 12}}  # fmt: skip
    return Event(kind, ("run-1", "daily_report", partition), at or time.time(), data)


def test_alerts_and_webhooks_share_one_signature():
    from analytics_assets.alerts import core

    assert core.sign_body is sign_body and core.verify_signature is verify_signature
    body = b'{"a":1}'
    # HMAC-SHA256 over "<timestamp>.<body>", computed independently.
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign_body("k", body, 1700000000) == "sha256=" + expected


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/hook",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "http://user:pw@example.org/hook",
        "https://token@example.org/hook",
        "http:///nohost",
        "http://example.org/hook#frag",
        "http://exa mple.org/",
        "http://example.org:99999/",
        "",
    ],
)
def test_urls_that_cannot_be_subscribed_are_refused(db, url):
    with pytest.raises(subscriptions.InvalidSubscription):
        subscriptions.create(db, url, [REPORT_READY])
    assert db[SUBSCRIPTIONS].count_documents({}) == 0


def test_unknown_or_no_events_are_refused(db):
    for events in ([], ["report.done"], [REPORT_READY, "x"]):
        with pytest.raises(subscriptions.InvalidSubscription):
            subscriptions.create(db, "https://example.org/hook", events)


def test_an_accepting_receiver_gets_a_signed_delivery_once_and_a_replay_is_refused(db, receivers):
    receiver = receivers(200)
    created = subscriptions.create(db, receiver.url, [REPORT_READY, SYNC_COMPLETED])
    assert created.secret.startswith("whsec_") and len(created.secret) > 40
    event = _event()
    assert delivery.enqueue(db, event, now=time.time()) == 1
    assert delivery.enqueue(db, event, now=time.time()) == 0  # the same event: one delivery
    assert delivery.enqueue(db, _event(CHECK_FAILED), now=time.time()) == 0  # not subscribed
    outcome = delivery.deliver_pending(db, time.time())
    assert outcome == delivery.PassOutcome(delivered=1)
    assert delivery.deliver_pending(db, time.time() + 3600).delivered == 0
    [(headers, body)] = receiver.received
    timestamp, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert verify_signature(created.secret, body, timestamp, signature)
    assert not verify_signature("whsec_wrong", body, timestamp, signature)
    assert not verify_signature(created.secret, body.replace(b"12", b"13"), timestamp, signature)
    # Replayed later than the tolerance (5 minutes): refused, although the signature matches.
    later = int(timestamp) + 301
    assert not verify_signature(created.secret, body, timestamp, signature, now=later)
    old = int(time.time()) - 3600
    old_signature = sign_body(created.secret, body, old)
    assert not verify_signature(created.secret, body, str(old), old_signature)
    payload = json.loads(body)
    assert payload["id"] == event.id == headers[DELIVERY_HEADER]
    assert payload["type"] == headers[EVENT_HEADER] == REPORT_READY
    assert payload["data"] == {"asset": "daily_report", "kind": "daily", "numbers":
                               {"conversations": 12}, "partition": "2026-11-02",
                               "run_id": "run-1"}  # fmt: skip
    [logged] = subscriptions.deliveries(db, created.subscription["_id"])
    assert logged["status"] == "delivered" and logged["event_id"] == event.id
    assert [(a["number"], a["status_code"], a["error"]) for a in logged["attempts"]] == [
        (1, 200, None)
    ]
    # The secret is stored to sign, never listed.
    assert all("secret" not in s for s in subscriptions.list_subscriptions(db))
    assert created.secret not in json.dumps(logged)


def test_a_failing_receiver_is_retried_on_the_backoff_then_dead_lettered(db, receivers):
    receiver = receivers(500)
    start = float(int(time.time()))
    created = subscriptions.create(db, receiver.url, [REPORT_READY], now=start - 1)
    sub_id = created.subscription["_id"]
    delivery.enqueue(db, _event(at=start), now=start)
    schedule = delivery.retry_schedule(4, base_s=10)
    assert schedule == [0, 10, 30, 70]  # 10 s, then doubling
    options = {"max_attempts": 4, "backoff_base_s": 10}
    outcomes = []
    for offset in (0, 5, 10, 29, 30, 69, 70, 1000):
        outcomes.append(delivery.deliver_pending(db, start + offset, **options))
    # Attempts exactly when due: never early, never after the last.
    assert [o.retrying for o in outcomes] == [1, 0, 1, 0, 1, 0, 0, 0]
    assert [o.dead for o in outcomes] == [0, 0, 0, 0, 0, 0, 1, 0]
    assert len(receiver.received) == 4
    # The same body every time, each with its own timestamp and signature.
    assert len({body for _, body in receiver.received}) == 1
    stamps = [int(h[TIMESTAMP_HEADER]) for h, _ in receiver.received]
    assert stamps == [int(start + s) for s in schedule]
    for headers, body in receiver.received:
        sent_at = int(headers[TIMESTAMP_HEADER])
        assert verify_signature(created.secret, body, str(sent_at), headers[SIGNATURE_HEADER],
                                now=sent_at)  # fmt: skip
    [logged] = subscriptions.deliveries(db, sub_id)
    assert logged["status"] == "dead" and logged["next_attempt_at"] is None
    assert [a["status_code"] for a in logged["attempts"]] == [500] * 4
    assert [a["at"] - start for a in logged["attempts"]] == pytest.approx(schedule)
    [dead] = subscriptions.dead_letters(db)
    assert dead["subscription_id"] == sub_id and dead["attempts"] == 4
    assert dead["last_status_code"] == 500 and json.loads(dead["body"])["type"] == REPORT_READY
    assert db[DEAD_LETTERS].count_documents({}) == 1


def test_a_hanging_receiver_times_out_without_holding_up_the_others(db, receivers):
    hanging = [receivers(hang=True), receivers(hang=True)]
    accepting = receivers(200)
    for receiver in (*hanging, accepting):
        subscriptions.create(db, receiver.url, [REPORT_READY])
    delivery.enqueue(db, _event(), now=time.time())
    started = time.perf_counter()
    outcome = delivery.deliver_pending(db, time.time(), timeout_s=1.0)
    seconds = time.perf_counter() - started
    assert outcome == delivery.PassOutcome(delivered=1, retrying=2)
    assert len(accepting.received) == 1
    # Two hanging receivers cost one timeout together, not one each.
    assert 1.0 <= seconds < 1.9, seconds
    for receiver in hanging:
        sub_id = receiver_subscription(db, receiver.url)
        [logged] = subscriptions.deliveries(db, sub_id)
        [attempt] = logged["attempts"]
        assert logged["status"] == "pending" and attempt["status_code"] is None
        assert attempt["error"] == "timed out after 1 s" and attempt["duration_ms"] >= 1000


def test_a_receiver_that_does_not_speak_http_is_retried_and_the_others_are_recorded(db, receivers):
    """urllib lets `http.client` errors through (a status line that is not HTTP, a header
    line too long). One raised out of the pass: nothing was recorded, the healthy receiver got the
    same delivery again on every pass, and the broken one was never backed off."""
    listener = socket.create_server(("127.0.0.1", 0))
    # Not HTTP at all; then a header line longer than http.client reads.
    replies = [b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n"]

    def answer_badly():
        for reply in replies:
            connection, _ = listener.accept()
            with connection:
                # The whole request is read first: unread, the close resets the connection.
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
                while len(body) < length:
                    body += connection.recv(65536)
                connection.sendall(reply)

    threading.Thread(target=answer_badly, daemon=True).start()
    broken_url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    accepting = receivers(200)
    subscriptions.create(db, broken_url, [REPORT_READY])
    subscriptions.create(db, accepting.url, [REPORT_READY])
    try:
        delivery.enqueue(db, _event(), now=time.time())
        first = delivery.deliver_pending(db, time.time(), backoff_base_s=0)
        second = delivery.deliver_pending(db, time.time() + 1, backoff_base_s=0)
    finally:
        listener.close()
    assert first == delivery.PassOutcome(delivered=1, retrying=1)
    assert second == delivery.PassOutcome(retrying=1)
    assert len(accepting.received) == 1
    [logged] = subscriptions.deliveries(db, receiver_subscription(db, broken_url))
    assert [attempt["error"] for attempt in logged["attempts"]] == [
        "not a valid HTTP response (BadStatusLine)",
        "not a valid HTTP response (LineTooLong)",
    ]


def receiver_subscription(db, url: str) -> str:
    return next(s["_id"] for s in subscriptions.list_subscriptions(db) if s["url"] == url)


def test_a_removed_subscription_gets_nothing_more_and_forgets_its_secret(db, receivers):
    receiver = receivers(500)
    created = subscriptions.create(db, receiver.url, [REPORT_READY])
    sub_id = created.subscription["_id"]
    now = time.time()
    delivery.enqueue(db, _event(at=now), now=now)
    delivery.deliver_pending(db, now)
    assert subscriptions.remove(db, sub_id) and not subscriptions.remove(db, sub_id)
    assert delivery.deliver_pending(db, now + 10_000) == delivery.PassOutcome()
    assert len(receiver.received) == 1
    [logged] = subscriptions.deliveries(db, sub_id)
    assert logged["status"] == "cancelled"
    assert db[SUBSCRIPTIONS].find_one({"_id": sub_id})["secret"] is None
    assert subscriptions.list_subscriptions(db) == []


def test_a_new_subscription_gets_what_happens_from_then_on_not_the_backlog(db, receivers):
    receiver = receivers(200)
    before = time.time() - 60
    subscriptions.create(db, receiver.url, [REPORT_READY])
    assert delivery.enqueue(db, _event(at=before), now=time.time()) == 0
    assert delivery.enqueue(db, _event(partition="2026-11-03"), now=time.time()) == 1


def test_the_cli_adds_lists_shows_the_log_and_dead_letters_and_removes(
    mongo_server, monkeypatch, capsys, receivers
):
    from pymongo import MongoClient

    from analytics_assets.cli import main
    from analytics_assets.settings import get_settings

    monkeypatch.setenv("MONGODB_URI", mongo_server)
    monkeypatch.setenv("MONGODB_DATABASE", "webhooks_cli")
    receiver = receivers(500)
    try:
        events = "report.ready, sync.completed"
        assert main(["webhooks", "add", receiver.url, "--events", events]) == 0
        added = capsys.readouterr().out
        sub_id, secret = added.split()[0], added.split("secret: ")[1].split()[0]
        assert "report.ready,sync.completed" in added and secret.startswith("whsec_")
        db = MongoClient(mongo_server)["webhooks_cli"]
        now = float(int(time.time())) + 1  # after the subscription
        delivery.enqueue(db, _event(at=now), now=now)
        for offset in (0, 60):
            delivery.deliver_pending(db, now + offset, max_attempts=2)
        assert main(["webhooks", "list"]) == 0
        listed = capsys.readouterr().out
        # Where it points, not its path: a receiver's URL may carry a token there.
        origin = receiver.url.split("/", 3)
        assert sub_id in listed and f"{'/'.join(origin[:3])}/…" in listed
        assert secret not in listed and receiver.url not in listed
        assert main(["webhooks", "deliveries", sub_id]) == 0
        log = capsys.readouterr().out
        assert "report.ready  dead" in log and log.count("  500  ") == 2
        assert main(["webhooks", "dead-letters"]) == 0
        assert "2 attempts, last 500" in capsys.readouterr().out
        assert main(["webhooks", "remove", sub_id]) == 0
        assert main(["webhooks", "remove", sub_id]) == 1
        with pytest.raises(SystemExit):
            main(["webhooks", "add", "ftp://example.org/", "--events", "report.ready"])
        assert "only http and https" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


# --- The API routes -----------------------------------------------------------------------


@pytest.fixture
def api(mongo):
    from analytics_assets.api import keys
    from analytics_assets.api.app import create_app

    db = mongo.db()
    return {
        "db": db,
        "client": TestClient(create_app(mongo.db)),
        "manage": {"X-API-Key": keys.create_key(db, ["webhooks:manage"])},
        "read": {"X-API-Key": keys.create_key(db, ["analytics:read"])},
    }


def test_the_api_creates_lists_shows_deliveries_and_removes_with_the_scope(api, receivers):
    client, manage, db = api["client"], api["manage"], api["db"]
    receiver = receivers(200)
    body = {"url": receiver.url, "events": [REPORT_READY, CHECK_FAILED], "description": "ops"}
    created = client.post("/webhooks", json=body, headers=manage)
    assert created.status_code == 201, created.text
    subscription = created.json()
    sub_id, secret = subscription["id"], subscription["secret"]
    assert subscription["events"] == [CHECK_FAILED, REPORT_READY]
    listed = client.get("/webhooks", headers=manage).json()
    assert [s["id"] for s in listed] == [sub_id] and "secret" not in listed[0]
    delivery.enqueue(db, _event(), now=time.time())
    delivery.deliver_pending(db, time.time())
    [(headers, sent)] = receiver.received
    assert verify_signature(secret, sent, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    log = client.get(f"/webhooks/{sub_id}/deliveries", headers=manage).json()
    assert [(d["event_type"], d["status"], len(d["attempts"])) for d in log] == [
        (REPORT_READY, "delivered", 1)
    ]
    assert log[0]["attempts"][0]["status_code"] == 200
    assert secret not in json.dumps(listed) + json.dumps(log)
    options = client.options("/webhooks")
    assert options.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert client.delete(f"/webhooks/{sub_id}", headers=manage).status_code == 204
    assert client.delete(f"/webhooks/{sub_id}", headers=manage).status_code == 404
    assert client.get("/webhooks", headers=manage).json() == []
    # The log outlives the subscription.
    assert client.get(f"/webhooks/{sub_id}/deliveries", headers=manage).status_code == 200
    assert client.get("/webhooks/wh_000000000000/deliveries", headers=manage).status_code == 404


class _ApiUserDatabase:
    """The database as the API's user in production sees it (terraform: `read` on the
    database, find, insert and update on `webhook_subscriptions` and `webhook_deliveries`
    only): any other write is refused, as Atlas refuses it. A proxy over the real server,
    for that one fault."""

    WRITES = ("insert_one", "insert_many", "update_one", "update_many", "replace_one",
              "delete_one", "delete_many", "create_index", "create_indexes", "bulk_write",
              "find_one_and_update", "drop")  # fmt: skip

    def __init__(self, db):
        self._db = db

    def __getitem__(self, name):
        collection = self._db[name]
        if name in ("webhook_subscriptions", "webhook_deliveries"):
            return _ReadOnlyCollection(collection, ("create_index", "create_indexes", "drop",
                                                    "delete_one", "delete_many"))  # fmt: skip
        return _ReadOnlyCollection(collection, self.WRITES)

    def __getattr__(self, name):
        return getattr(self._db, name)


class _ReadOnlyCollection:
    def __init__(self, collection, writes):
        self._collection, self._writes = collection, writes

    def __getattr__(self, name):
        if name in self._writes:
            raise PermissionError(f"not authorized: {name} on {self._collection.name}")
        return getattr(self._collection, name)


def test_the_api_manages_subscriptions_with_the_database_rights_production_gives_it(mongo):
    """Creating a subscription also made the delivery log's indexes, which the API's
    read-only user may not: every `POST /webhooks` in production answered 500."""
    from analytics_assets.api import keys
    from analytics_assets.api.app import create_app

    db = mongo.db()
    manage = {"X-API-Key": keys.create_key(db, ["webhooks:manage"])}
    client = TestClient(create_app(lambda: _ApiUserDatabase(mongo.db())))
    body = {"url": "https://example.org/hook", "events": [REPORT_READY]}
    created = client.post("/webhooks", json=body, headers=manage)
    assert created.status_code == 201, created.text
    sub_id = created.json()["id"]
    assert client.get(f"/webhooks/{sub_id}/deliveries", headers=manage).status_code == 200
    assert client.delete(f"/webhooks/{sub_id}", headers=manage).status_code == 204


def test_the_api_refuses_keys_without_the_scope_and_bad_subscriptions(api):
    client, manage, read = api["client"], api["manage"], api["read"]
    body = {"url": "https://example.org/hook", "events": [REPORT_READY]}
    assert client.post("/webhooks", json=body).status_code == 401
    forbidden = client.post("/webhooks", json=body, headers=read)
    assert forbidden.status_code == 403
    assert "webhooks:manage" in forbidden.json()["error"]["message"]
    assert client.get("/webhooks", headers=read).status_code == 403
    assert client.delete("/webhooks/wh_000000000000", headers=read).status_code == 403
    for bad in (
        {**body, "url": "http://user:pw@example.org/"},
        {**body, "url": "gopher://example.org/"},
        {**body, "events": ["report.done"]},
        {**body, "events": []},
        {**body, "extra": 1},
    ):
        refused = client.post("/webhooks", json=bad, headers=manage)
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["code"] == "invalid_request"
    assert client.delete("/webhooks/not-an-id", headers=manage).status_code == 422
    assert api["db"][SUBSCRIPTIONS].count_documents({}) == 0


# --- The sensor on real Dagster runs ------------------------------------------------------


def test_a_failed_check_in_a_real_run_is_enqueued_and_delivered_once(mongo, receivers):
    """A run before any subscription moves the cursor and is told to nobody (also not to a
    later subscriber); a failed check after subscribing is delivered once across two ticks."""
    import dagster as dg

    from analytics_assets.defs.webhooks.sensors import webhook_sensor

    receiver = receivers(200)

    @dg.asset
    def tiny():
        return 1

    @dg.asset_check(asset=tiny)
    def tiny_is_two():
        return dg.AssetCheckResult(passed=False, metadata={"value": 1, "note": "text"})

    def tick(instance, cursor):
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"mongo": mongo}
        ) as context:
            webhook_sensor.evaluate_tick(context)
            return context.cursor

    with dg.instance_for_test() as instance:
        before = dg.materialize([tiny, tiny_is_two], instance=instance).run_id
        cursor = tick(instance, None)
        assert cursor is not None
        created = subscriptions.create(mongo.db(), receiver.url, [CHECK_FAILED])
        run_id = dg.materialize([tiny, tiny_is_two], instance=instance).run_id
        for _ in range(2):
            cursor = tick(instance, cursor)
    [(headers, body)] = receiver.received
    assert verify_signature(created.secret, body, headers[TIMESTAMP_HEADER],
                            headers[SIGNATURE_HEADER])  # fmt: skip
    payload = json.loads(body)
    assert payload["type"] == CHECK_FAILED and run_id != before
    assert payload["data"] == {"asset": "tiny", "check": "tiny_is_two", "severity": "ERROR",
                               "partitions": [], "run_id": run_id, "job": "__ephemeral_asset_job__",
                               "numbers": {"value": 1}}  # fmt: skip


DAY = date(2026, 11, 2)


def test_a_sample_run_makes_report_ready_and_sync_completed_once_across_two_cron_ticks(
    mongo_server, tmp_path, receivers
):
    from analytics_assets.defs.sensor_ticks import evaluate, tick
    from analytics_assets_tests.conftest import sample_definitions

    defs, _, mongo = sample_definitions(tmp_path, mongo_server, "webhooks_e2e")
    db = mongo.db()
    receiver = receivers(200)
    failing = receivers(503)
    created = subscriptions.create(db, receiver.url, [REPORT_READY, SYNC_COMPLETED])
    subscriptions.create(db, failing.url, [SYNC_COMPLETED])
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=instance, partition_key=DAY.isoformat()
    )
    assert result.success
    # Two ticks the way cron runs them (`analytics-assets sensor-tick webhook_sensor`): the
    # sensor targets no job, and its cursor file moves once.
    cursor_file = tmp_path / "webhook_sensor.cursor.json"
    tick(defs, instance, "webhook_sensor", cursor_file)
    cursor = json.loads(cursor_file.read_text())["cursor"]
    assert cursor
    tick(defs, instance, "webhook_sensor", cursor_file)
    assert json.loads(cursor_file.read_text())["cursor"] == cursor
    payloads = [json.loads(body) for _, body in receiver.received]
    by_type = sorted((p["type"], p["data"].get("partition")) for p in payloads)
    assert by_type == [(REPORT_READY, DAY.isoformat()), (SYNC_COMPLETED, DAY.isoformat())]
    for headers, body in receiver.received:
        assert verify_signature(created.secret, body, headers[TIMESTAMP_HEADER],
                                headers[SIGNATURE_HEADER])  # fmt: skip
    report = next(p for p in payloads if p["type"] == REPORT_READY)
    stored = db["analytics_reports"].find_one({"_id": f"daily:{DAY}"})
    assert report["data"]["run_id"] == result.run_id
    assert report["data"]["numbers"]["conversations"] == stored["conversations"]
    assert report["data"]["numbers"]["messages"] == stored["messages"]
    sync = next(p for p in payloads if p["type"] == SYNC_COMPLETED)
    assert sync["data"]["run_id"] == result.run_id and sync["data"]["job"] == "ingestion_job"
    assert sync["data"]["numbers"]["materializations"] >= 5
    # Identifiers and numbers only: no user id, no text of a message.
    raw = json.dumps(payloads)
    assert "user-0" not in raw and "u_" not in raw
    # The failing receiver got its first attempt, the second tick was before its retry.
    assert len(failing.received) == 1
    [pending] = subscriptions.deliveries(db, receiver_subscription(db, failing.url))
    assert pending["status"] == "pending" and pending["attempts"][0]["status_code"] == 503

    # An erasure (its reports left to the rebuild sensor): erasure.done, with counts only.
    from analytics_assets.defs.privacy.jobs import run_erasure

    erasures = receivers(200)
    erasure_subscription = subscriptions.create(db, erasures.url, [ERASURE_DONE])
    pseudonym = db["user_analytics"].find_one({})["user_id"]
    audit = run_erasure(defs, instance, pseudonym, requested_by="test", rebuild_reports=False)
    third = evaluate(defs, instance, "webhook_sensor", cursor)
    evaluate(defs, instance, "webhook_sensor", third.cursor)
    [(headers, body)] = erasures.received
    assert verify_signature(erasure_subscription.secret, body, headers[TIMESTAMP_HEADER],
                            headers[SIGNATURE_HEADER])  # fmt: skip
    erased = json.loads(body)
    assert erased["type"] == ERASURE_DONE and erased["data"]["job"] == "erase_user_job"
    assert erased["data"]["numbers"]["conversations"] == audit["conversations"] > 0
    assert pseudonym not in body.decode()
    assert len(receiver.received) == 2  # nothing new for report.ready / sync.completed
