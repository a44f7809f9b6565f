"""Alerts over real loopback sinks: an HTTP receiver (http.server) and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from analytics_assets.alerts.core import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Alert,
    DeliveryError,
    build_message,
    deliver_email,
    deliver_webhook,
    run_link,
    severity_passes,
    sign_body,
    verify_signature,
)

SECRET = "s3cret-key"


def _alert() -> Alert:
    return Alert(
        kind="asset_check_failed",
        title="Asset check failed: conversations / error_rate",
        asset="conversations",
        partition="2026-11-03",
        check="error_rate",
        severity="ERROR",
        run_id="abc123",
        numbers={"error_rate": 0.07, "rejected": 12},
        link=run_link("http://ui.example:3000/", "abc123"),
    )


@pytest.fixture
def receiver():
    """An HTTP receiver on loopback: records (path, headers, body) of every POST and answers
    as Slack's Web API does (a webhook ignores the body)."""
    received: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), body))
            answer = json.dumps({"ok": True, "channel": "C1", "ts": "1.0"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def test_message_names_asset_partition_check_numbers_and_link():
    text = build_message(_alert())
    for part in ("conversations", "2026-11-03", "error_rate", "0.07", "rejected = 12"):
        assert part in text
    assert "http://ui.example:3000/runs/abc123" in text


def test_severity_filter():
    assert severity_passes("ERROR", "ERROR") and severity_passes("ERROR", "WARN")
    assert severity_passes("WARN", "WARN") and not severity_passes("WARN", "ERROR")


def test_webhook_is_signed_and_verifiable(receiver):
    url, received = receiver
    deliver_webhook(url, SECRET, _alert())
    [(_, headers, body)] = received
    assert verify_signature(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    assert not verify_signature("wrong", body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["asset"] == "conversations" and payload["partition"] == "2026-11-03"
    assert payload["check"] == "error_rate" and payload["link"].endswith("/runs/abc123")


def test_a_replayed_old_signature_is_refused():
    body = b"{}"
    old = int(time.time()) - 3600
    assert not verify_signature(SECRET, body, str(old), sign_body(SECRET, body, old))


def test_webhook_failure_raises_without_the_secret():
    with pytest.raises(DeliveryError) as info:
        deliver_webhook("http://127.0.0.1:9/nowhere", SECRET, _alert(), timeout_s=2)
    assert SECRET not in str(info.value)


@contextlib.contextmanager
def _smtp_server(controller_module, handler):
    """A real SMTP server (aiosmtpd) on a free loopback port, with `handler`; yields the port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = controller_module.Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def test_email_reaches_a_local_smtp_server():
    controller_module = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.handlers import Sink

    messages: list[bytes] = []

    class Handler(Sink):
        async def handle_DATA(self, server, session, envelope):
            messages.append(envelope.content)
            return "250 OK"

    with _smtp_server(controller_module, Handler()) as port:
        deliver_email(
            host="127.0.0.1",
            port=port,
            sender="alerts@example.org",
            recipients=["oncall@example.org"],
            alert=_alert(),
        )
    [raw] = messages
    text = raw.decode()
    assert "conversations" in text and "2026-11-03" in text and "/runs/abc123" in text


def test_recipients_the_mail_server_refused_are_said_while_the_others_get_the_alert():
    """smtplib raises only when every recipient is refused; with one of two refused (a
    mistyped address) it returned quietly, and that on-call person never heard of it."""
    controller_module = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.handlers import Sink

    from analytics_assets.defs.alerts import definitions
    from analytics_assets.settings import Settings

    delivered: list[list[str]] = []

    class RefusesOne(Sink):
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address.startswith("typo"):
                return "550 5.1.1 no such mailbox"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            delivered.append(list(envelope.rcpt_tos))
            return "250 OK"

    with _smtp_server(controller_module, RefusesOne()) as port:
        refused = deliver_email(
            host="127.0.0.1",
            port=port,
            sender="alerts@example.org",
            recipients=["oncall@example.org", "typo@example.org"],
            alert=_alert(),
        )
        settings = Settings(
            alert_smtp_host="127.0.0.1",
            alert_smtp_port=port,
            alert_smtp_from="alerts@example.org",
            alert_smtp_to="oncall@example.org,typo@example.org",
        )
        [sink] = definitions.sinks_for(settings)
        note = sink(_alert())
    assert refused == ["typo@example.org"]
    assert delivered == [["oncall@example.org"], ["oncall@example.org"]]
    assert note == "the mail server refused 1 of 2 recipients: typo@example.org"


def _materialize_with_failing_check(instance):
    import dagster as dg

    @dg.asset
    def tiny():
        return 1

    @dg.asset_check(asset=tiny, blocking=True)
    def tiny_is_two():
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata={"value": 1, "note": "x"}
        )

    result = dg.materialize([tiny, tiny_is_two], instance=instance, raise_on_error=False)
    return result.run_id


def test_a_failing_check_in_a_real_run_is_sent_once_across_two_ticks(receiver):
    import dagster as dg

    from analytics_assets.defs.alerts.sensors import build_check_alert_sensor

    url, received = receiver
    sink = lambda alert: deliver_webhook(url, SECRET, alert)  # noqa: E731
    check_sensor = build_check_alert_sensor([sink], ui_url="http://ui:3000")
    with dg.instance_for_test() as instance:
        run_id = _materialize_with_failing_check(instance)
        context = dg.build_sensor_context(instance=instance)
        check_sensor.evaluate_tick(context)
        second = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        check_sensor.evaluate_tick(second)
    # The blocking check fails the run too: one check alert and one run alert, each once.
    assert len(received) == 2
    for _, headers, body in received:
        assert verify_signature(SECRET, body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    by_kind = {json.loads(body)["kind"]: json.loads(body) for _, _, body in received}
    assert by_kind["run_failed"]["run_id"] == run_id
    assert by_kind["run_failed"]["link"] == f"http://ui:3000/runs/{run_id}"
    payload = by_kind["asset_check_failed"]
    assert payload["asset"] == "tiny" and payload["check"] == "tiny_is_two"
    assert payload["numbers"] == {"value": 1}
    assert payload["link"] == f"http://ui:3000/runs/{run_id}"


def test_a_delivery_failure_is_retried_next_tick(receiver):
    import dagster as dg

    from analytics_assets.defs.alerts.sensors import build_check_alert_sensor

    url, received = receiver
    target = {"url": "http://127.0.0.1:9/down"}
    sink = lambda alert: deliver_webhook(target["url"], SECRET, alert, timeout_s=2)  # noqa: E731
    check_sensor = build_check_alert_sensor([sink])
    with dg.instance_for_test() as instance:
        _materialize_with_failing_check(instance)
        context = dg.build_sensor_context(instance=instance)
        check_sensor.evaluate_tick(context)
        assert not received
        target["url"] = url
        second = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        check_sensor.evaluate_tick(second)
    assert len(received) == 2  # the check and the run, delivered on the retry


def test_with_nothing_configured_the_sensor_skips():
    import dagster as dg

    from analytics_assets.defs.alerts.sensors import build_check_alert_sensor

    with dg.instance_for_test() as instance:
        result = build_check_alert_sensor([]).evaluate_tick(
            dg.build_sensor_context(instance=instance)
        )
    assert result.skip_message == "no alert sink is configured"


def test_slack_message_reaches_a_fake_slack_web_api(receiver):
    from analytics_assets.alerts.core import deliver_slack

    url, received = receiver
    deliver_slack("xoxb-test", "#alerts", _alert(), base_url=url.removesuffix("hook"))
    [(path, headers, body)] = received
    assert path == "/chat.postMessage"
    assert headers["Authorization"] == "Bearer xoxb-test"
    text = body.decode()
    assert "alerts" in text and "conversations" in text and "error_rate" in text


def test_sinks_follow_the_settings():
    from analytics_assets.defs.alerts.definitions import sinks_for
    from analytics_assets.settings import Settings

    assert sinks_for(Settings()) == []
    configured = Settings(
        ANALYTICS_ALERT_WEBHOOK_URL="http://127.0.0.1:9/h",
        ANALYTICS_ALERT_SMTP_HOST="127.0.0.1",
        ANALYTICS_ALERT_SMTP_FROM="a@example.org",
        ANALYTICS_ALERT_SMTP_TO="b@example.org",
        ANALYTICS_ALERT_SLACK_TOKEN="xoxb-x",
        ANALYTICS_ALERT_SLACK_CHANNEL="#a",
    )
    assert len(sinks_for(configured)) == 3
    assert "xoxb-x" not in configured.public_json()


def test_a_failing_sink_neither_blocks_the_others_nor_makes_them_send_again():
    """The webhook works and e-mail always fails: the webhook got the same alerts again on
    every tick (1, 2, then 3 times), and a third sink after e-mail got nothing."""
    import dagster as dg

    from analytics_assets.alerts.core import DeliveryError
    from analytics_assets.defs.alerts.sensors import MAX_TRIES, build_check_alert_sensor, named_sink

    received: dict[str, list] = {"webhook": [], "slack": []}
    tries = {"email": 0}

    def failing_email(alert):
        tries["email"] += 1
        raise DeliveryError("SMTP delivery failed (SMTPNotSupportedError)")

    sinks = [
        named_sink("webhook", received["webhook"].append),
        named_sink("email", failing_email),
        named_sink("slack", received["slack"].append),
    ]
    check_sensor = build_check_alert_sensor(sinks)
    with dg.instance_for_test() as instance:
        _materialize_with_failing_check(instance)
        cursor = None
        for _ in range(MAX_TRIES + 2):
            context = dg.build_sensor_context(instance=instance, cursor=cursor)
            check_sensor.evaluate_tick(context)
            cursor = context.cursor
    # The check and the run, once each, to each working sink.
    assert len(received["webhook"]) == 2 and len(received["slack"]) == 2
    # E-mail was tried on MAX_TRIES ticks (its first alert failing each time), then dropped.
    assert tries["email"] == MAX_TRIES
    assert json.loads(cursor)["pending"] == []


def test_a_run_tagged_after_its_alert_is_not_alerted_again():
    """Tagging a run (the run-retry daemon does) moves its update time past the cursor."""
    import dagster as dg

    from analytics_assets.defs.alerts.sensors import build_check_alert_sensor

    received = []
    check_sensor = build_check_alert_sensor([received.append])
    with dg.instance_for_test() as instance:
        run_id = _materialize_with_failing_check(instance)
        context = dg.build_sensor_context(instance=instance)
        check_sensor.evaluate_tick(context)
        instance.add_run_tags(run_id, {"dagster/retry_number": "0", "team": "analytics"})
        second = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        check_sensor.evaluate_tick(second)
    assert len(received) == 2


def test_a_webhook_url_that_is_not_usable_fails_without_quoting_it():
    url = "hooks.example.com/services/T0/B0/SECRETNOSCHEME"
    with pytest.raises(DeliveryError) as raised:
        deliver_webhook(url, None, _alert())
    assert "SECRET" not in str(raised.value)


def test_smtp_with_a_login_is_upgraded_to_tls(monkeypatch):
    from analytics_assets.defs.alerts import definitions
    from analytics_assets.settings import Settings

    calls = []
    monkeypatch.setattr(definitions, "deliver_email", lambda **kwargs: calls.append(kwargs))
    base = {"alert_smtp_host": "smtp.example.com", "alert_smtp_from": "a@example.com",
            "alert_smtp_to": "b@example.com"}  # fmt: skip
    for extra, expected in (
        ({"alert_smtp_port": 587, "alert_smtp_user": "u", "alert_smtp_password": "p"},
         (True, False)),
        ({"alert_smtp_port": 465, "alert_smtp_user": "u", "alert_smtp_password": "p"},
         (False, True)),
        ({"alert_smtp_port": 25}, (False, False)),
    ):  # fmt: skip
        [sink] = definitions.sinks_for(Settings(**base, **extra))
        sink(_alert())
        assert (calls[-1]["starttls"], calls[-1]["ssl"]) == expected


def test_a_failing_sink_is_called_once_a_tick_however_many_alerts_wait():
    """A mail server that times out after 10 s cost 10 s per waiting run on every tick, and
    the retries alone outlasted the tick: the working sinks got new runs' alerts late."""
    import dagster as dg

    from analytics_assets.alerts.core import DeliveryError
    from analytics_assets.defs.alerts.sensors import build_check_alert_sensor, named_sink

    calls, received = [], []

    def timing_out(alert):
        calls.append(alert)
        raise DeliveryError("SMTP delivery failed (TimeoutError)")

    check_sensor = build_check_alert_sensor(
        [named_sink("email", timing_out), named_sink("webhook", received.append)]
    )
    with dg.instance_for_test() as instance:
        for _ in range(3):
            _materialize_with_failing_check(instance)
        context = dg.build_sensor_context(instance=instance)
        check_sensor.evaluate_tick(context)
        assert len(calls) == 1 and len(received) == 6  # 3 runs, a check and a run alert each
        second = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        check_sensor.evaluate_tick(second)
    assert len(calls) == 2
    assert len(json.loads(second.cursor)["pending"]) == 3


def _instigator(instance, name: str, kind: str = "SENSOR", running: bool = True):
    """A sensor or schedule's stored state, as the daemon keeps it (Dagster has no public
    constructor for what its daemon stores)."""
    from dagster._core.definitions.run_request import InstigatorType  # noqa: TID251
    from dagster._core.remote_origin import (  # noqa: TID251
        RegisteredCodeLocationOrigin,
        RemoteInstigatorOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.scheduler.instigation import (  # noqa: TID251
        InstigatorState,
        InstigatorStatus,
        ScheduleInstigatorData,
        SensorInstigatorData,
    )

    origin = RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("analytics"), "__repository__"), name
    )
    state = InstigatorState(
        origin,
        InstigatorType[kind],
        InstigatorStatus.RUNNING if running else InstigatorStatus.STOPPED,
        ScheduleInstigatorData("0 4 * * *") if kind == "SCHEDULE" else SensorInstigatorData(),
    )
    instance.add_instigator_state(state)
    return state


def _tick(instance, state, status: str, failures: int = 0, age_s: float = 0, error=None):
    import time

    from dagster._core.scheduler.instigation import TickData, TickStatus  # noqa: TID251
    from dagster_shared.error import SerializableErrorInfo

    if status == "FAILURE" and error is None:
        # As the daemon stores it: what the sensor raised is the cause of Dagster's wrapper.
        raised = SerializableErrorInfo(
            "401 from https://nocodb.example/api?xc-token=SECRETTOKEN", [], "HTTPStatusError"
        )
        error = SerializableErrorInfo(
            "Error occurred during the execution of evaluation_fn", [], "SensorExecutionError",
            cause=raised,
        )  # fmt: skip
    elif error == "unreachable":
        # As the daemon stores a tick whose code server is down: two wrappers, then gRPC's.
        rpc = SerializableErrorInfo("StatusCode.UNAVAILABLE", [], "_InactiveRpcError")
        inner = SerializableErrorInfo("Could not reach", [], "DagsterUserCodeUnreachableError", rpc)
        error = SerializableErrorInfo(
            "Unable to reach the code server", [], "DagsterUserCodeUnreachableError", inner
        )
    instance.create_tick(
        TickData(
            instigator_origin_id=state.instigator_origin_id,
            instigator_name=state.instigator_name,
            instigator_type=state.instigator_type,
            status=TickStatus[status],
            timestamp=time.time() - age_s,
            selector_id=state.selector_id,
            run_ids=[],
            run_keys=[],
            error=error,
            consecutive_failure_count=failures,
        )
    )


def test_a_sensor_or_schedule_that_starts_failing_is_alerted_once_per_run_of_failures(
    monkeypatch,
):
    """A failing sync sensor starts no run, so no run failure ever told anyone."""
    import dagster as dg

    from analytics_assets.alerts.core import DeliveryError
    from analytics_assets.defs.alerts import sensors
    from analytics_assets.defs.alerts.sensors import build_check_alert_sensor, named_sink

    received: list = []
    sink_up = {"value": False}

    def flaky(alert):
        if not sink_up["value"]:
            raise DeliveryError("webhook refused (503)")
        received.append(alert)

    check_sensor = build_check_alert_sensor([named_sink("webhook", flaky)], ui_url="http://ui")
    with dg.instance_for_test() as instance:
        sync = _instigator(instance, "nocodb_sync_sensor")
        report = _instigator(instance, "daily_report_schedule", kind="SCHEDULE")
        stopped = _instigator(instance, "old_sensor", running=False)
        itself = _instigator(instance, "asset_check_alert_sensor")
        removed = _instigator(instance, "sensor_removed_from_the_code_last_quarter")
        deploying = _instigator(instance, "reconciliation_sensor")
        _tick(instance, sync, "FAILURE", failures=1)
        _tick(instance, report, "SUCCESS")
        _tick(instance, stopped, "FAILURE", failures=4)
        _tick(instance, itself, "FAILURE", failures=1)
        _tick(instance, removed, "FAILURE", failures=1, age_s=90 * 86400)
        # A code server restarting fails every tick for a moment: not alerted at once.
        _tick(instance, deploying, "FAILURE", 1, error="unreachable")

        cursor = None

        def tick():
            nonlocal cursor
            context = dg.build_sensor_context(instance=instance, cursor=cursor)
            check_sensor.evaluate_tick(context)
            cursor = context.cursor

        def titles():
            return [alert.title for alert in received]

        tick()  # the sink is down: the alert waits in the cursor
        assert received == [] and len(json.loads(cursor)["pending"]) == 1
        sink_up["value"] = True
        tick()
        assert titles() == ["Sensor failing: nocodb_sync_sensor (HTTPStatusError)"]
        alert = received[0]
        assert alert.kind == "sensor_failing" and alert.numbers == {"consecutive_failures": 1}
        assert alert.link == "http://ui/automation"
        assert "SECRETTOKEN" not in json.dumps(alert.to_dict())

        _tick(instance, sync, "FAILURE", failures=2)  # the same run of failures
        _tick(instance, report, "STARTED")
        tick()
        assert len(received) == 1
        _tick(instance, sync, "STARTED")  # a tick in progress ends nothing
        _tick(instance, report, "FAILURE", failures=1)
        tick()
        _tick(instance, sync, "FAILURE", failures=3)
        tick()
        assert titles()[1:] == ["Schedule failing: daily_report_schedule (HTTPStatusError)"]

        # Good, then failing again within the hour (a flapping sensor): not sent yet.
        _tick(instance, sync, "SKIPPED")
        tick()
        _tick(instance, sync, "FAILURE", failures=1)
        tick()
        assert len(received) == 2
        # The hour over and still failing: sent (it may have looked fixed for a tick).
        monkeypatch.setattr(sensors, "FAILING_ALERT_COOLDOWN_S", 0)
        _tick(instance, sync, "FAILURE", failures=2)
        _tick(instance, deploying, "FAILURE", 3, error="unreachable")
        tick()
        assert titles()[2:] == [
            "Sensor failing: nocodb_sync_sensor (HTTPStatusError)",
            "Sensor failing: reconciliation_sensor (DagsterUserCodeUnreachableError)",
        ]
        # Recovered, then failing again: a new run of failures.
        _tick(instance, sync, "SUCCESS")
        tick()
        _tick(instance, sync, "FAILURE", failures=1)
        tick()
    assert titles()[4:] == ["Sensor failing: nocodb_sync_sensor (HTTPStatusError)"]


def test_a_cursor_of_the_first_failing_sensor_version_is_read():
    import dagster as dg

    from analytics_assets.defs.alerts.sensors import build_check_alert_sensor

    check_sensor = build_check_alert_sensor([lambda alert: None])
    cursor = json.dumps({"after": None, "handled": [], "pending": [], "failing": {"s": 17}})
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor)
        check_sensor.evaluate_tick(context)
    assert json.loads(context.cursor)["failing"] == {}


def test_a_failing_sensors_alert_kept_in_the_cursor_survives_a_field_removed_from_alerts():
    import dagster as dg

    from analytics_assets.defs.alerts.sensors import build_check_alert_sensor

    received: list = []
    check_sensor = build_check_alert_sensor([received.append])
    alert = {"kind": "sensor_failing", "title": "Sensor failing: x", "retired_field": 1}
    cursor = json.dumps({"pending": [{"alert": alert, "sinks": ["sink 1"], "tries": 1}]})
    with dg.instance_for_test() as instance:
        check_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert [a.title for a in received] == ["Sensor failing: x"]


def test_the_failed_checks_of_a_run_dagster_will_retry_are_sent_and_its_failure_is_not():
    """A retry runs only the failed steps; a non-blocking check that failed without failing
    its step is not among them. The whole run was skipped, and the check never alerted."""
    import dagster as dg

    from analytics_assets.defs.alerts.sensors import WILL_RETRY_TAG, build_check_alert_sensor

    received: list[Alert] = []
    check_sensor = build_check_alert_sensor([received.append])
    with dg.instance_for_test() as instance:
        run_id = _materialize_with_failing_check(instance)
        instance.add_run_tags(run_id, {WILL_RETRY_TAG: "true"})
        context = dg.build_sensor_context(instance=instance)
        check_sensor.evaluate_tick(context)
        second = dg.build_sensor_context(instance=instance, cursor=context.cursor)
        check_sensor.evaluate_tick(second)
    assert [(alert.kind, alert.check) for alert in received] == [
        ("asset_check_failed", "tiny_is_two")
    ]


def test_a_sink_that_fails_halfway_is_not_sent_again_what_it_took():
    """The run's alerts go one after another: the sink took the first and failed on the
    second, and the next tick sent it both again. Each delivery carries the alert's id, the
    same on the retry, for a receiver to drop copies by."""
    import dagster as dg

    from analytics_assets.defs.alerts.sensors import build_check_alert_sensor, named_sink

    taken: list[dict] = []
    calls = {"count": 0}

    def flaky(alert: Alert) -> None:
        calls["count"] += 1
        if calls["count"] == 2:
            raise DeliveryError("webhook answered HTTP 500")
        taken.append(alert.to_dict())

    check_sensor = build_check_alert_sensor([named_sink("webhook", flaky)])
    with dg.instance_for_test() as instance:
        _materialize_with_failing_check(instance)
        cursor = None
        for _ in range(3):
            context = dg.build_sensor_context(instance=instance, cursor=cursor)
            check_sensor.evaluate_tick(context)
            cursor = context.cursor
    assert sorted(alert["kind"] for alert in taken) == ["asset_check_failed", "run_failed"]
    assert len({alert["id"] for alert in taken}) == 2
    assert json.loads(cursor)["pending"] == []


def test_a_webhook_that_redirects_is_a_failed_delivery_and_numbers_stay_strict_json():
    """urllib followed a 302 to a POST with a GET without the body and counted its 200 as
    delivered. A ratio over a zero median went out as `Infinity`, which strict JSON refuses."""
    seen: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(("POST", self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(302 if self.path == "/moved" else 200)
            self.send_header("Location", "/landing")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            seen.append(("GET", b""))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with pytest.raises(DeliveryError, match="HTTP 302"):
            deliver_webhook(f"{base}/moved", None, _alert())
        assert [method for method, _ in seen] == ["POST"]
        numbers = {"ratio": float("inf"), "spread": float("nan"), "today": 3}
        infinite = Alert(kind="asset_check_failed", title="t", numbers=numbers)
        deliver_webhook(f"{base}/hook", None, infinite)
    finally:
        server.shutdown()
    body = json.loads(seen[-1][1], parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert body["numbers"] == {"ratio": "inf", "spread": "nan", "today": 3}
    assert body["id"] == infinite.alert_id


def test_a_late_report_is_alerted_once_for_its_day_however_many_runs_find_it_late():
    """The freshness check is not partitioned and runs in every run of the report's job:
    30 rebuilds of old days sent 30 "stale" alerts for one late report, each naming the
    rebuilt day instead of the day whose report was missing."""
    import dagster as dg

    from analytics_assets.defs.alerts.sensors import FRESHNESS_CHECK, build_check_alert_sensor

    due = {"day": "2026-11-14"}

    @dg.asset
    def report():
        return 1

    @dg.asset_check(asset=report, name=FRESHNESS_CHECK)
    def freshness():
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"expected_partition": due["day"]})  # fmt: skip

    received: list[Alert] = []
    check_sensor = build_check_alert_sensor([received.append])
    with dg.instance_for_test() as instance:
        cursor = None
        for rebuilt in ("2026-11-01", "2026-11-02", "2026-11-03", "next"):
            if rebuilt == "next":
                due["day"] = "2026-11-15"
            dg.materialize([report, freshness], instance=instance, tags={"rebuilt": rebuilt})
            context = dg.build_sensor_context(instance=instance, cursor=cursor)
            check_sensor.evaluate_tick(context)
            cursor = context.cursor
    assert [(alert.kind, alert.partition) for alert in received] == [
        ("stale_report", "2026-11-14"), ("stale_report", "2026-11-15")
    ]  # fmt: skip


def test_a_run_stored_after_the_cursor_passed_its_end_is_still_alerted():
    """A run's update time is its end event's, stamped in its own process: run A failed
    200 ms before run B succeeded but was stored after B, and a tick between the two had
    moved the cursor past A's time. A's failure was never sent."""
    import dagster as dg

    from analytics_assets.defs.alerts.sensors import build_check_alert_sensor, named_sink

    sent: list[Alert] = []
    check_sensor = build_check_alert_sensor([named_sink("memo", sent.append)])

    @dg.op
    def step():
        pass

    @dg.job
    def some_job():
        step()

    with dg.instance_for_test() as instance:

        def finish(run, status: dg.DagsterEventType, at: float) -> None:
            event = dg.DagsterEvent(event_type_value=status.value, job_name=run.job_name,
                                    message="finished")  # fmt: skip
            entry = dg.EventLogEntry(error_info=None, level=10, user_message="", run_id=run.run_id,
                                     timestamp=at, dagster_event=event)  # fmt: skip
            instance.handle_new_event(entry)

        failed, succeeded = (instance.create_run_for_job(some_job) for _ in range(2))
        now = time.time()
        finish(succeeded, dg.DagsterEventType.RUN_SUCCESS, now)
        cursor = None

        def tick() -> None:
            nonlocal cursor
            context = dg.build_sensor_context(instance=instance, cursor=cursor)
            check_sensor.evaluate_tick(context)
            cursor = context.cursor

        tick()
        finish(failed, dg.DagsterEventType.RUN_FAILURE, now - 0.2)
        tick()
        tick()
    assert [(alert.kind, alert.run_id) for alert in sent] == [("run_failed", failed.run_id)]
