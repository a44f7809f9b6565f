"""The client through a fault-injecting proxy in front of the real NocoDB."""

from __future__ import annotations

import pytest

from analytics_assets.nocodb.client import NocoDBClient, RetryPolicy
from analytics_assets.nocodb.errors import NocoDBRetriesExhaustedError
from analytics_assets.sources.seed import create_base, create_table
from analytics_assets_tests.conftest import make_client
from analytics_assets_tests.fault_proxy import FAULTS, FaultProxy, every_fault_between_successes

pytestmark = pytest.mark.nocodb

ROWS = 1234


@pytest.fixture(scope="module")
def base_id(nocodb) -> str:
    with make_client(nocodb) as client:
        return create_base(client, "fault_tests")


@pytest.fixture(scope="module")
def table_id(nocodb, base_id) -> str:
    with make_client(nocodb) as client:
        table = create_table(client, base_id, "records", [("key", "SingleLineText")])
        client.insert_records(table, ({"key": f"r{n:05d}"} for n in range(ROWS)))
    return table


def proxied_client(proxy: FaultProxy, token: str, **retry: float) -> NocoDBClient:
    policy = RetryPolicy(
        **{
            "max_attempts": 4,
            "backoff_base_s": 0.02,
            "backoff_max_s": 0.1,
            "throttle_wait_s": 0.1,
            **retry,
        }
    )
    return NocoDBClient(proxy.url, token, requests_per_second=0, timeout_s=0.5, retry=policy)


def test_every_record_arrives_exactly_once_through_every_fault(nocodb, table_id):
    with (
        FaultProxy(nocodb.url, every_fault_between_successes(rounds=2)) as proxy,
        proxied_client(proxy, nocodb.token) as client,
    ):
        keys = [record["key"] for record in client.iter_records(table_id, sort="Id", page_size=50)]
    assert len(keys) == ROWS
    assert keys == [f"r{n:05d}" for n in range(ROWS)]
    assert set(proxy.injected) == set(FAULTS)
    assert sum(proxy.injected.values()) == 2 * len(FAULTS)
    # Each fault costs one retry, but a stall once answers are known: its twin answers
    # (a hedged read) and nothing is retried.
    assert client.stats.retries + client.stats.hedged == 2 * len(FAULTS)
    assert client.stats.throttled == 4
    # Retry-After: 1 was honoured (two waits of 1 s) beside the short backoffs.
    assert client.stats.retry_wait_s >= 2.0


def test_a_burst_longer_than_the_retry_budget_fails_loudly(nocodb, table_id):
    with (
        FaultProxy(nocodb.url, ["503"] * 10) as proxy,
        proxied_client(proxy, nocodb.token, max_attempts=3) as client,
        pytest.raises(NocoDBRetriesExhaustedError, match="HTTP 503"),
    ):
        list(client.iter_records(table_id))


def test_inserts_are_not_retried_after_an_ambiguous_failure(nocodb, base_id):
    with make_client(nocodb) as client:
        table_id = create_table(client, base_id, "inserts", [("key", "SingleLineText")])
    with (
        FaultProxy(nocodb.url, ["truncated"]) as proxy,
        proxied_client(proxy, nocodb.token) as client,
        pytest.raises(Exception, match="may have been applied"),
    ):
        client.insert_records(table_id, [{"key": "ambiguous"}])
    # The proxy forwarded the insert before cutting the answer: exactly one row, no retry.
    with make_client(nocodb) as client:
        assert [r["key"] for r in client.iter_records(table_id)] == ["ambiguous"]


def test_a_stalled_read_is_answered_by_its_twin_after_a_few_typical_answer_times(nocodb, table_id):
    """Once answers are known, a GET slower than 3x the recent p95 (at least 1 s) is sent
    again and the first answer wins: a stall of 3 s costs about 1 s, with no retry; the
    read timeout (5x the p95, floor 0.3 s here) still follows what answers take."""
    from analytics_assets.nocodb.client import ReadTimeout

    plan = [None] * 8 + ["timeout"]
    with (
        FaultProxy(nocodb.url, plan, slow_response_s=3.0) as proxy,
        NocoDBClient(proxy.url, nocodb.token, requests_per_second=0, timeout_s=2.5,
                     retry=RetryPolicy(backoff_base_s=0.01, backoff_max_s=0.01)) as client,
    ):  # fmt: skip
        client.read_timeout = ReadTimeout(2.5, floor_s=0.3)
        assert client.read_timeout.current() == 2.5  # nothing observed yet: the ceiling
        pages = list(client.iter_pages(table_id, sort="Id", page_size=100))
        assert sum(len(page.records) for page in pages) == ROWS
        assert proxy.injected["timeout"] == 1
        # Answered by the twin, before the 3 s stall or the read timeout ended: no retry.
        assert client.stats.hedged == 1 and client.stats.retries == 0
        assert 0.3 <= client.read_timeout.current() < 2.5


def test_a_read_whose_twin_stalls_too_is_answered_by_a_third_copy(nocodb, table_id):
    """Both the read and its twin meet a stall: a third copy goes after the hedging delay
    again, instead of both being waited out to the read timeout and retried (bench_faults:
    one such page held its shard, and the whole fetch, 11 s). The answer that came from a
    twin counts what that copy took, not the hedging wait before it, so the next hedging
    delay does not grow with the faults."""
    plan = [None] * 8 + ["timeout", "timeout"]
    with (
        FaultProxy(nocodb.url, plan, slow_response_s=6.0) as proxy,
        _hedging_client(proxy, nocodb.token) as client,
    ):
        pages = list(client.iter_pages(table_id, sort="Id", page_size=100))
        assert sum(len(page.records) for page in pages) == ROWS
        assert proxy.injected["timeout"] == 2
        assert client.stats.hedged == 2 and client.stats.retries == 0
        assert max(client.read_timeout._recent) < 1.0


def _hedging_client(proxy: FaultProxy, token: str) -> NocoDBClient:
    """Stalled copies abandoned after 4 s; a twin after 1 s (the hedging floor)."""
    from analytics_assets.nocodb.client import ReadTimeout

    client = NocoDBClient(proxy.url, token, requests_per_second=0, timeout_s=5.0,
                          retry=RetryPolicy(backoff_base_s=0.01, backoff_max_s=0.01))  # fmt: skip
    client.read_timeout = ReadTimeout(5.0, floor_s=4.0)
    return client


def test_a_twin_that_fails_fast_beside_a_stalled_read_is_replaced_at_once(nocodb, table_id):
    """The read stalls, its twin is reset: a third copy goes at once and answers. The
    stalled copy is not waited out to its read timeout and retried."""
    plan = [None] * 8 + ["timeout", "reset"]
    with (
        FaultProxy(nocodb.url, plan, slow_response_s=6.0) as proxy,
        _hedging_client(proxy, nocodb.token) as client,
    ):
        pages = list(client.iter_pages(table_id, sort="Id", page_size=100))
        assert sum(len(page.records) for page in pages) == ROWS
        assert proxy.injected == {"timeout": 1, "reset": 1}
        assert client.stats.hedged == 2 and client.stats.retries == 0


def test_twins_wait_for_a_place_of_their_own(nocodb, table_id):
    """Twins in flight are capped for the whole client (HEDGE_EXTRA_IN_FLIGHT): with every
    place taken, a stalled read gets no twin and is retried after its read timeout."""
    import threading

    plan = [None] * 8 + ["timeout"]
    with (
        FaultProxy(nocodb.url, plan, slow_response_s=6.0) as proxy,
        _hedging_client(proxy, nocodb.token) as client,
    ):
        client._twin_places = threading.BoundedSemaphore(1)
        client._twin_places.acquire()  # taken, as by a stalled twin of another read
        pages = list(client.iter_pages(table_id, sort="Id", page_size=100))
        assert sum(len(page.records) for page in pages) == ROWS
        assert client.stats.hedged == 0 and client.stats.retries == 1


def test_a_stall_before_any_answer_is_known_gets_a_twin_after_the_cold_delay(nocodb, table_id):
    """The very first request of a client knows no answer times: it used to be waited on for
    the whole timeout (30 s). It gets a twin after HEDGE_COLD_S (3 s) instead."""
    from analytics_assets.nocodb.client import HEDGE_COLD_S

    with (
        FaultProxy(nocodb.url, ["timeout"], slow_response_s=HEDGE_COLD_S + 5) as proxy,
        NocoDBClient(proxy.url, nocodb.token, requests_per_second=0, timeout_s=30.0) as client,
    ):
        assert client.read_timeout.hedge_after() == HEDGE_COLD_S
        page = next(client.iter_pages(table_id, sort="Id", page_size=10))
        assert len(page.records) == 10
        assert proxy.injected["timeout"] == 1
        assert client.stats.hedged == 1 and client.stats.retries == 0
    # A timeout no longer than the cold delay: nothing to gain from a twin.
    with NocoDBClient(nocodb.url, nocodb.token, timeout_s=HEDGE_COLD_S) as client:
        assert client.read_timeout.hedge_after() is None


def test_a_429_after_other_faults_waits_as_the_first_429():
    """The wait after a 429 without Retry-After follows the 429s the request met, not its
    attempts: after two 500s, a first 429 waits the first throttle wait (0.05 s here), not
    four times that."""
    import httpx

    answers = iter([500, 500, 429, 200])

    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers), json={})

    policy = RetryPolicy(backoff_base_s=0.001, backoff_max_s=0.001, throttle_first_wait_s=0.05)
    with NocoDBClient("http://nocodb.test", "token", requests_per_second=0, retry=policy,
                      transport=httpx.MockTransport(server)) as client:  # fmt: skip
        assert client.request("GET", "/records") == {}
    assert client.stats.retries == 3 and client.stats.throttled == 1
    # Two backoffs of at most 1 ms, and one throttle wait of 50 ms (was 200 ms).
    assert 0.05 <= client.stats.retry_wait_s <= 0.052


def test_a_429_without_retry_after_is_retried_soon_then_less_often():
    policy = RetryPolicy()
    assert [policy.throttle_wait(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_request_waiting_to_retry_gives_its_place_to_another():
    """Under `in_flight_limit(1)`, four readers: the page answered with a 429 (Retry-After:
    1) waits its second out holding no place, so the three other pages are answered
    meanwhile, one at a time. An in-process server: the schedule must be exact."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    lock, in_flight, most, answered = threading.Lock(), 0, 0, []

    def server(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        page = request.url.params["page"]
        with lock:
            in_flight += 1
            most = max(most, in_flight)
            throttled = page == "a" and "a" not in answered
            answered.append(page)
        time.sleep(0.05)
        with lock:
            in_flight -= 1
        if throttled:
            return httpx.Response(429, headers={"Retry-After": "1"}, json={})
        return httpx.Response(200, json={"page": page})

    with NocoDBClient(
        "http://nocodb.test", "token", requests_per_second=0, transport=httpx.MockTransport(server)
    ) as client:
        with client.in_flight_limit(1), ThreadPoolExecutor(4) as pool:
            first = pool.submit(client.request, "GET", "/records", params={"page": "a"})
            time.sleep(0.02)  # page a is asked for first
            others = pool.map(
                lambda page: client.request("GET", "/records", params={"page": page}), "bcd"
            )
            assert [body["page"] for body in others] == ["b", "c", "d"]
            assert first.result()["page"] == "a"
        assert client._places is None  # the limit ends with its block
    assert most == 1
    assert answered[0] == "a" and answered[-1] == "a" and sorted(answered[1:-1]) == ["b", "c", "d"]
