"""POST /graphql against the real MongoDB wire-protocol server (nx-27017), filled by
materializing the sample: answers equal REST's; keys, scopes and rate limits as REST;
depth, cost and alias limits refused before any database access; arguments checked like
REST's parameters; the committed SDL matches the code."""

from __future__ import annotations

import gc
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance
from fastapi.testclient import TestClient

from analytics_assets.api import keys
from analytics_assets.api.app import create_app
from analytics_assets.api.graphql_api import MAX_COST, MAX_DEPTH, schema_sdl
from analytics_assets.api.ratelimit import TokenBuckets
from analytics_assets_tests.conftest import range_tags, sample_definitions

DAYS = [date(2026, 11, 2) + timedelta(days=n) for n in range(3)]
SDL = Path(__file__).parents[1] / "docs" / "schema.graphql"
SUMMARY_FIELDS = (
    "conversation_id user_id model channel started_at ended_at day turns message_count "
    "total_tokens latency_p50_ms latency_p95_ms topic intent sentiment language quality_score "
    "satisfaction_score"
)
MESSAGE_FIELDS = "message_id role created_at content text translated translator"
CATEGORY_FIELDS = (
    "topic topic_confidence intent intent_confidence sentiment_opening sentiment language "
    "method model_version"
)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingDb:
    """The database provider, counting how often the app asks for the database."""

    def __init__(self, provider):
        self.provider = provider
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.provider()


@pytest.fixture(scope="module")
def filled(mongo_server, tmp_path_factory):
    defs, _, mongo = sample_definitions(tmp_path_factory.mktemp("gql"), mongo_server, "gql_test")
    instance = DagsterInstance.ephemeral()
    assert (
        defs.resolve_job_def("ingestion_job")
        .execute_in_process(instance=instance, tags=range_tags(DAYS[0], DAYS[-1]))
        .success
    )
    db = mongo.db()
    clock = FakeClock()
    counting = CountingDb(mongo.db)
    app = create_app(counting, buckets=TokenBuckets(clock=clock), clock=clock)
    key = keys.create_key(db, list(keys.SCOPES))
    return {"db": db, "client": TestClient(app), "clock": clock, "key": key,
            "headers": {"X-API-Key": key}, "counting": counting}  # fmt: skip


def gql(filled, query, variables=None, key=None, **body):
    headers = {"X-API-Key": key} if key else filled["headers"]
    payload = {"query": query, **({"variables": variables} if variables else {}), **body}
    return filled["client"].post("/graphql", json=payload, headers=headers)


def rest(filled, path, **params):
    return filled["client"].get(path, params=params, headers=filled["headers"])


def code_of(response) -> str:
    return response.json()["errors"][0]["extensions"]["code"]


def test_a_conversation_with_its_messages_and_categories_equals_the_rest_answer(filled):
    stored = filled["db"]["conversation_analytics"].find_one({"day": DAYS[1].isoformat()})
    query = f"""query($id: String!) {{ conversation(conversation_id: $id) {{ {SUMMARY_FIELDS}
        scores {{ name value }} categories {{ {CATEGORY_FIELDS} }}
        messages {{ {MESSAGE_FIELDS} }} }} }}"""
    response = gql(filled, query, {"id": stored["conversation_id"]})
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    answer = response.json()["data"]["conversation"]
    expected = rest(filled, f"/conversations/{stored['conversation_id']}").json()
    assert {name: answer[name] for name in SUMMARY_FIELDS.split()} == expected["conversation"]
    assert answer["categories"] == expected["categories"]
    assert answer["messages"] == expected["messages"] and len(answer["messages"]) >= 2
    assert {s["name"]: s["value"] for s in answer["scores"]} == expected["scores"]
    missing = gql(filled, '{ conversation(conversation_id: "conv-999999") { day } }')
    assert missing.json() == {"data": {"conversation": None}}


def test_conversations_page_with_the_rest_cursor_and_nested_fields(filled):
    day = DAYS[0].isoformat()
    query = """query($day: Date!, $after: String) {
        conversations(from: $day, to: $day, model: "gpt-4o", first: 7, after: $after) {
            items { conversation_id categories { topic } messages { message_id } }
            next_cursor } }"""
    seen, cursor, first_cursor = [], None, None
    while True:
        response = gql(filled, query, {"day": day, "after": cursor})
        assert response.status_code == 200, response.text
        page = response.json()["data"]["conversations"]
        assert len(page["items"]) <= 7
        assert all(item["categories"]["topic"] and item["messages"] for item in page["items"])
        seen += [item["conversation_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        first_cursor = first_cursor or cursor
        if not cursor:
            break
    expected = []
    rest_cursor = None
    while True:
        params = {"from": day, "to": day, "model": "gpt-4o", "limit": 7}
        body = rest(filled, "/conversations", **params,
                    **({"cursor": rest_cursor} if rest_cursor else {})).json()  # fmt: skip
        expected += [item["conversation_id"] for item in body["items"]]
        # The same cursor format: REST's first next_cursor is GraphQL's.
        if rest_cursor is None:
            assert body["next_cursor"] == first_cursor
        rest_cursor = body["next_cursor"]
        if not rest_cursor:
            break
    assert seen == expected and len(expected) > 7


def test_a_pages_nested_fields_read_for_the_page_at_once_equal_each_conversations(filled):
    """A page's categories and messages are read in one query for the page: the same as
    each conversation's own, translated ones too, in the same order."""
    db, day = filled["db"], DAYS[2].isoformat()
    on_page = [
        d["conversation_id"]
        for d in db["conversation_analytics"]
        .find({"day": day})
        .sort([("started_at", 1), ("conversation_id", 1)])
        .limit(12)
    ]
    # The sample runs no translator: French translations of a few messages, one of them
    # superseded (not current, so never shown).
    for number, conversation_id in enumerate(on_page[:3]):
        message = db["conversation_messages"].find_one({"conversation_id": conversation_id})
        for current in (True, False):
            version = f"{number}-{current}"
            db["conversation_translations"].insert_one({
                "_id": f"{message['message_id']}:fr:test:{version}",
                "message_id": message["message_id"], "conversation_id": conversation_id,
                "target_language": "fr", "translator": "test", "translator_version": version,
                "text": f"traduit {version}", "is_current": current,
            })  # fmt: skip
    query = f"""query($day: Date!) {{ conversations(from: $day, to: $day, first: 12) {{
        items {{ conversation_id categories {{ {CATEGORY_FIELDS} }}
                 messages {{ {MESSAGE_FIELDS} }}
                 french: messages(lang: "fr") {{ {MESSAGE_FIELDS} }} }} }} }}"""
    response = gql(filled, query, {"day": day})
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    items = response.json()["data"]["conversations"]["items"]
    assert [item["conversation_id"] for item in items] == on_page
    for item in items:
        path = f"/conversations/{item['conversation_id']}"
        assert item["categories"] == rest(filled, path).json()["categories"]
        assert item["messages"] == rest(filled, path).json()["messages"]
        assert item["french"] == rest(filled, path, lang="fr").json()["messages"]
    translated = [m["text"] for item in items for m in item["french"] if m["translated"]]
    assert sorted(translated) == ["traduit 0-True", "traduit 1-True", "traduit 2-True"]
    filled["clock"].now += 60


def test_reports_series_model_comparison_and_user_analytics(filled):
    span = {"from": DAYS[0].isoformat(), "to": DAYS[-1].isoformat()}
    day = DAYS[1].isoformat()
    query = """query($from: Date!, $to: Date!, $day: String!) {
        report(kind: daily, period: $day) { kind period conversations messages users
            topics { value count } complete details }
        reports(kind: daily, from: $from, to: $to) { period conversations }
        series(dimension: topics, from: $from, to: $to) { points { period counts { value count } } }
        model_comparison(from: $from, to: $to) { from to models comparison { metric model } } }"""
    response = gql(filled, query, {**span, "day": day})
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    data = response.json()["data"]
    expected = rest(filled, f"/analytics/reports/daily/{day}").json()
    for name in ("kind", "period", "conversations", "messages", "users", "topics", "complete"):
        assert data["report"][name] == expected[name], name
    assert "user_ids" not in data["report"]["details"]
    listed = rest(filled, "/analytics/reports/daily", **span).json()
    assert data["reports"] == [{"period": r["period"], "conversations": r["conversations"]}
                               for r in listed]  # fmt: skip
    series = rest(filled, "/analytics/topics", **span).json()
    assert [{"period": p["period"], "counts": {c["value"]: c["count"] for c in p["counts"]}}
            for p in data["series"]["points"]] == series["points"]  # fmt: skip
    models = rest(filled, "/analytics/models", **span).json()
    assert data["model_comparison"]["models"] == models["models"]
    assert data["model_comparison"]["from"] == span["from"]
    assert [(r["metric"], r["model"]) for r in data["model_comparison"]["comparison"]] == [
        (r["metric"], r["model"]) for r in models["comparison"]
    ]


def test_user_analytics_by_pseudonym_only(filled):
    stored = filled["db"]["user_analytics"].find_one({})
    query = "query($u: String!) { user_analytics(user_id: $u) { user_id periods { period } } }"
    answer = gql(filled, query, {"u": stored["user_id"]}).json()["data"]["user_analytics"]
    expected = rest(filled, f"/users/{stored['user_id']}/analytics").json()
    periods = [{"period": p["period"]} for p in expected["periods"]]
    assert answer == {"user_id": stored["user_id"], "periods": periods}
    for raw in ("user-00001", "42", stored["user_id"].upper()):
        refused = gql(filled, query, {"u": raw})
        assert refused.json()["data"] == {"user_analytics": None}, raw
        assert code_of(refused) == "invalid_argument"
    unknown = gql(filled, query, {"u": f"u_{'0' * 20}"})
    assert unknown.json() == {"data": {"user_analytics": None}}


def test_missing_and_wrong_keys_are_401_and_out_of_scope_fields_403(filled):
    client, db = filled["client"], filled["db"]
    query = {"query": '{ reports(kind: daily, from: "2026-11-02", to: "2026-11-02") { period } }'}
    missing = client.post("/graphql", json=query)
    assert missing.status_code == 401 and code_of(missing) == "unauthorized"
    wrong = client.post("/graphql", json=query, headers={"X-API-Key": "aak_nothing_here"})
    assert wrong.status_code == 401
    analytics_only = keys.create_key(db, ["analytics:read"])
    assert gql(filled, query["query"], key=analytics_only).status_code == 200
    calls = filled["counting"].calls
    mixed = gql(filled, query["query"].replace("} }", "} conversations { next_cursor } }"),
                key=analytics_only)  # fmt: skip
    assert mixed.status_code == 403 and code_of(mixed) == "forbidden"
    assert "conversations needs conversations:read" in mixed.json()["errors"][0]["message"]
    assert filled["counting"].calls == calls  # refused before any database access
    users_only = keys.create_key(db, ["users:read"])
    forbidden = gql(filled, '{ report(kind: daily, period: "2026-11-02") { period } }',
                    key=users_only)  # fmt: skip
    assert forbidden.status_code == 403 and "analytics:read" in forbidden.text


def test_a_burst_over_the_rate_limit_gets_429_then_recovers(filled):
    limited = keys.create_key(filled["db"], ["analytics:read"], rate_per_minute=5)
    query = '{ report(kind: daily, period: "2026-11-02") { period } }'
    statuses = [gql(filled, query, key=limited).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    refused = gql(filled, query, key=limited)
    assert code_of(refused) == "rate_limited" and int(refused.headers["Retry-After"]) == 12
    filled["clock"].now += 12
    recovered = gql(filled, query, key=limited)
    assert recovered.status_code == 200 and recovered.headers["RateLimit-Limit"] == "5"


def test_too_deep_too_costly_and_too_many_aliases_are_refused_without_database_access(filled):
    gql(filled, "{ __typename }")  # the key is verified and cached
    calls = filled["counting"].calls
    too_deep = gql(
        filled, "{ __schema { types { fields { type { ofType { ofType { name } } } } } } }"
    )
    assert too_deep.status_code == 400 and code_of(too_deep) == "query_too_deep"
    assert str(MAX_DEPTH) in too_deep.text
    # 100 conversations x an estimated 50 messages each is over the cost limit.
    costly = gql(filled, "{ conversations(first: 100) { items { messages { text } } } }")
    assert costly.status_code == 400 and code_of(costly) == "query_too_costly"
    assert str(MAX_COST) in costly.text
    # The same through a variable and a fragment.
    hidden = gql(
        filled,
        """query($n: Int!) { conversations(first: $n) { ...page } }
                 fragment page on ConversationPage { items { messages { text } } }""",
        {"n": 100},
    )
    assert code_of(hidden) == "query_too_costly"
    years = gql(filled, '{ reports(kind: daily, from: "1990-01-01", to: "2026-01-01") { period } }')
    assert code_of(years) == "query_too_costly"
    aliases = " ".join(f'a{n}: report(kind: daily, period: "2026-11-02") {{ period }}'
                       for n in range(11))  # fmt: skip
    assert code_of(gql(filled, "{ " + aliases + " }")) == "too_many_aliases"
    batch = filled["client"].post("/graphql", json=[{"query": "{ __typename }"}] * 2,
                                  headers=filled["headers"])  # fmt: skip
    assert batch.status_code == 400 and code_of(batch) == "batching_not_supported"
    tokens = gql(filled, "{ " + " ".join(["__typename"] * 1200) + " }")
    assert code_of(tokens) == "too_many_tokens"
    assert filled["counting"].calls == calls
    # Within the limits: a smaller page with its messages, and shallow introspection.
    assert gql(filled, "{ conversations(first: 20) { items { messages { text } } } }"
               ).status_code == 200  # fmt: skip
    shallow = gql(filled, '{ __type(name: "Conversation") { fields { name } } }')
    assert "messages" in {f["name"] for f in shallow.json()["data"]["__type"]["fields"]}


@pytest.mark.parametrize(
    "argument", ["user_id", "model", "channel", "topic", "intent", "sentiment", "language"]
)
def test_injection_attempts_in_arguments_are_rejected(filled, argument):
    query = f"query($v: String) {{ conversations({argument}: $v) {{ next_cursor }} }}"
    for attempt in ('{"$ne": null}', "$where", "x'||1==1", "a" * 200):
        response = gql(filled, query, {"v": attempt})
        assert response.json()["data"] is None, (argument, attempt)
        assert code_of(response) == "invalid_argument"
    # An object where a string belongs is a type error, refused before execution.
    typed = gql(filled, f"{{ conversations({argument}: {{ne: null}}) {{ next_cursor }} }}")
    assert typed.status_code == 400 and code_of(typed) == "invalid_query"
    as_variable = gql(filled, query, {"v": {"$ne": None}})
    assert "errors" in as_variable.json() and as_variable.json()["data"] is None


def test_malformed_cursors_and_page_sizes(filled):
    query = "query($a: String, $n: Int!) { conversations(first: $n, after: $a) { next_cursor } }"
    for cursor in ("not-base64!!", "eyJhIjoxfQ", "0", "WyJkdCIsIm5vdCBhIGRhdGUiLCJ4Il0"):
        response = gql(filled, query, {"a": cursor, "n": 5})
        assert code_of(response) == "invalid_argument", cursor
    for size in (0, 101):
        assert code_of(gql(filled, query, {"n": size})) == "invalid_argument"


def test_ranges_read_whole_are_capped_as_in_rest(filled):
    """`model_comparison` and `series` from year 1 to 9999 read every report, priced at one;
    five years of daily reports were within the price. REST refuses more than 366 periods."""
    for query, start, end in (
        ("query($f: Date!, $t: Date!) { model_comparison(from: $f, to: $t) { from } }",
         "0001-01-01", "9999-12-31"),
        ("query($f: Date!, $t: Date!) { series(dimension: topics, from: $f, to: $t) { grain } }",
         "0001-01-01", "9999-12-31"),
        ("query($f: Date!, $t: Date!) { reports(kind: daily, from: $f, to: $t) { period } }",
         "2021-01-01", "2026-01-01"),
    ):  # fmt: skip
        response = gql(filled, query, {"f": start, "t": end})
        assert code_of(response) == "invalid_argument", query
        assert "at most 366" in response.json()["errors"][0]["message"]
        year = gql(filled, query, {"f": "2025-11-01", "t": "2026-11-01"})
        assert "errors" not in year.json(), year.json()


def test_hostile_bodies_literals_and_variables_are_client_errors(filled):
    """Each of these was a 500 or an `internal_error`."""
    client = filled["client"]
    nested = b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    deep = client.post("/graphql", content=nested, headers={
        **filled["headers"], "Content-Type": "application/json"})  # fmt: skip
    assert deep.status_code == 400 and code_of(deep) == "bad_request"
    huge = gql(filled, "{ conversations(first: " + "9" * 4400 + ") { next_cursor } }")
    assert huge.status_code == 400 and code_of(huge) == "invalid_query"
    typed = gql(filled, "query($d: Date) { conversations(from: $d) { next_cursor } }", {"d": 123})
    assert code_of(typed) == "invalid_query"


def test_http_rules_get_refused_options_and_errors_without_stack_traces(filled, caplog):
    client = filled["client"]
    get = client.get("/graphql", params={"query": "{ __typename }"}, headers=filled["headers"])
    assert get.status_code == 405 and get.headers["allow"] == "POST, OPTIONS"
    assert client.options("/graphql").headers["allow"] == "POST, OPTIONS"
    assert client.options("/conversations").headers["allow"] == "GET, HEAD, OPTIONS"
    form = client.post("/graphql", data={"query": "{ __typename }"}, headers=filled["headers"])
    assert form.status_code == 415
    too_big = gql(filled, "{ __typename }" + " " * 17_000)
    assert too_big.status_code == 413
    ok = gql(filled, "{ __typename }")
    assert ok.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"

    def broken_database():
        raise RuntimeError("connection string mongodb://user:secret@db")

    key = keys.create_key(filled["db"], ["analytics:read"])
    # The key is verified against the working database, then the data queries fail.
    app = create_app(_failing_after_first(filled["db"], broken_database))
    client = TestClient(app)
    # Garbage of earlier tests first: a Dagster instance's SQLite connection finalized on
    # this thread logs sqlalchemy's own traceback, which is not the API's.
    gc.collect()
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        response = client.post("/graphql", headers={"X-API-Key": key},
                               json={"query": '{ report(kind: daily, period: "2026-11-02") '
                                              "{ period } }"})  # fmt: skip
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "internal_error"
    assert "secret" not in response.text
    assert "RuntimeError in GraphQL report" in caplog.text
    assert "secret" not in caplog.text and "Traceback" not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)


def _failing_after_first(db, failure):
    calls = []

    def provider():
        calls.append(1)
        return db if len(calls) == 1 else failure()

    return provider


def test_the_committed_schema_matches_the_code():
    assert SDL.read_text() == schema_sdl(), (
        "docs/schema.graphql is stale: run `.venv/bin/analytics-assets graphql-schema`"
    )


def test_a_pages_messages_keep_each_conversations_own_translation(mongo):
    """A source numbering messages per conversation: message 1 of two conversations on one
    page, each translated. The page's translations were read into one map keyed by message
    id alone: both conversations showed the same conversation's translation."""
    from analytics_assets.api import queries
    from analytics_assets.api.common import MESSAGES, TRANSLATIONS

    db = mongo.db()
    created = datetime(2026, 11, 2, 9, tzinfo=UTC)
    for conversation, day in (("c-1", "2026-11-02"), ("c-2", "2026-11-03")):
        db[MESSAGES].insert_one({"_id": f"1:{conversation}", "message_id": "1",
                                 "conversation_id": conversation, "role": "user",
                                 "content": f"hola de {conversation}", "created_at": created,
                                 "day": day})  # fmt: skip
        db[TRANSLATIONS].insert_one({"_id": f"1:{conversation}:en:t:1", "message_id": "1",
                                     "conversation_id": conversation, "target_language": "en",
                                     "translator": "t", "translator_version": "1",
                                     "text": f"hello from {conversation}", "is_current": True,
                                     "day": day})  # fmt: skip
    page = queries.messages_by_conversation(db, ["c-1", "c-2"], "en")
    shown = {conversation: [m.text for m in found] for conversation, found in page.items()}
    assert shown == {"c-1": ["hello from c-1"], "c-2": ["hello from c-2"]}
    # The page answers as each conversation read on its own does.
    for conversation in ("c-1", "c-2"):
        alone = queries.conversation_messages(db, conversation, "en")
        assert [m.text for m in alone] == shown[conversation]
