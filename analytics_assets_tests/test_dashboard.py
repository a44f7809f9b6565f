"""The dashboard: its sums (pure), /dashboard/data over a seeded `conversation_analytics` on
the real MongoDB wire-protocol server (filters applied on the server, same keys as the rest
of the API), and the page (static, its files served from the package, a policy without
eval). The page in a real browser: test_dashboard_browser.py."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from statistics import mean

import pytest
from fastapi.testclient import TestClient
from pymongo import MongoClient

from analytics_assets.analytics.dashboard import aggregate, period_of
from analytics_assets.api import keys
from analytics_assets.api.app import create_app
from analytics_assets_tests import dashboard_seed
from analytics_assets_tests.dashboard_seed import DAYS


@pytest.fixture(scope="module")
def seeded(mongo_server):
    db = MongoClient(mongo_server)["dashboard_test"]
    documents = dashboard_seed.seed(db)
    key = keys.create_key(db, ["analytics:read"])
    return {
        "db": db,
        "documents": documents,
        "client": TestClient(create_app(lambda: db)),
        "headers": {"X-API-Key": key},
    }


def data(seeded, **params):
    response = seeded["client"].get("/dashboard/data", params=params, headers=seeded["headers"])
    assert response.status_code == 200, response.text
    return response.json()


def test_periods_are_named_as_the_reports_name_them():
    assert period_of("2026-11-05", "daily") == "2026-11-05"
    assert period_of("2026-11-05", "weekly") == "2026-11-02"  # that week's Monday
    assert period_of("2026-11-02", "weekly") == "2026-11-02"
    assert period_of("2026-11-30", "monthly") == "2026-11"


def test_sums_per_period_with_means_over_the_conversations_that_have_a_score():
    conversations = [
        {"day": "2026-11-02", "model": "a", "message_count": 4, "topic": "billing",
         "quality_score": 0.5, "satisfaction_score": None},
        {"day": "2026-11-03", "model": "a", "message_count": 2, "topic": "billing",
         "quality_score": 0.7, "satisfaction_score": 0.9},
        {"day": "2026-11-09", "model": None, "message_count": None, "topic": None},
    ]  # fmt: skip
    weekly = aggregate(conversations, "weekly")
    assert weekly["totals"] == {"conversations": 3, "messages": 6, "quality_mean": 0.6,
                                "satisfaction_mean": 0.9}  # fmt: skip
    assert weekly["volumes"] == [
        {"period": "2026-11-02", "conversations": 2, "messages": 6, "days": 7, "whole": True},
        {"period": "2026-11-09", "conversations": 1, "messages": 0, "days": 7, "whole": True},
    ]
    # A range that ends on Tuesday 2026-11-10 holds two days of the second week: it is no
    # whole week, and its lower count must not read as a fall.
    cut = aggregate(conversations, "weekly", (date(2026, 11, 2), date(2026, 11, 10)))
    assert [(v["days"], v["whole"]) for v in cut["volumes"]] == [(7, True), (2, False)]
    monthly = aggregate(conversations, "monthly", (date(2026, 11, 2), date(2026, 11, 30)))
    assert [(v["period"], v["days"], v["whole"]) for v in monthly["volumes"]] == [
        ("2026-11", 29, False)
    ]
    # Not yet categorized, no model: counted, under "unknown", not dropped.
    assert weekly["topics"] == [
        {"period": "2026-11-02", "value": "billing", "count": 2},
        {"period": "2026-11-09", "value": "unknown", "count": 1},
    ]
    assert weekly["by_model"] == [
        {"period": "2026-11-02", "model": "a", "conversations": 2, "quality_mean": 0.6,
         "satisfaction_mean": 0.9},
        {"period": "2026-11-09", "model": "unknown", "conversations": 1, "quality_mean": None,
         "satisfaction_mean": None},
    ]  # fmt: skip
    assert aggregate([], "daily")["totals"]["quality_mean"] is None


def test_each_filter_narrows_the_sums_on_the_server(seeded):
    documents = seeded["documents"]
    week = {"from": DAYS[0].isoformat(), "to": DAYS[-1].isoformat()}
    everything = data(seeded, **week)
    assert everything["totals"]["conversations"] == len(documents)
    assert everything["totals"]["messages"] == sum(d["message_count"] for d in documents)
    assert everything["totals"]["quality_mean"] == pytest.approx(
        mean(d["quality_score"] for d in documents), abs=1e-4
    )
    assert (everything["models"], everything["channels"]) == (
        ["claude-sonnet", "gpt-4o"], ["web", "whatsapp"],
    )  # fmt: skip
    for filters in ({"model": "gpt-4o"}, {"channel": "whatsapp"},
                    {"model": "claude-sonnet", "channel": "web"}):  # fmt: skip
        chosen = [d for d in documents if all(d[k] == v for k, v in filters.items())]
        body = data(seeded, **week, **filters)
        assert 0 < body["totals"]["conversations"] == len(chosen) < len(documents), filters
        summed = Counter()
        for row in body["topics"]:
            summed[row["value"]] += row["count"]
        assert summed == Counter(d["topic"] or "unknown" for d in chosen), filters
        # The filters' choices stay those of the whole range, so another can be picked.
        assert body["models"] == everything["models"]
    two_days = data(seeded, **{"from": DAYS[1].isoformat(), "to": DAYS[2].isoformat()})
    assert [v["period"] for v in two_days["volumes"]] == [DAYS[1].isoformat(),
                                                          DAYS[2].isoformat()]  # fmt: skip
    assert two_days["totals"]["conversations"] == sum(
        d["day"] in (DAYS[1].isoformat(), DAYS[2].isoformat()) for d in documents
    )
    weekly = data(seeded, **week, grain="weekly")
    assert weekly["volumes"] == [{"period": DAYS[0].isoformat(),
                                  "conversations": len(documents),
                                  "messages": everything["totals"]["messages"],
                                  "days": 7, "whole": True}]  # fmt: skip
    # Two days of that week: marked as such, so the bar does not read as a fall.
    part = data(seeded, grain="weekly", **{"from": DAYS[1].isoformat(), "to": DAYS[2].isoformat()})
    assert [(v["days"], v["whole"]) for v in part["volumes"]] == [(2, False)]


def test_without_a_range_the_four_weeks_up_to_the_latest_day_are_shown(seeded):
    body = data(seeded)
    assert body["to"] == DAYS[-1].isoformat()
    assert body["from"] == "2026-10-12"  # 27 days before
    assert body["totals"]["conversations"] == len(seeded["documents"])
    # Near the first day a date can name, the default range stops there (it overflowed: 500).
    earliest = data(seeded, to="0001-01-01")
    assert (earliest["from"], earliest["to"]) == ("0001-01-01", "0001-01-01")
    assert earliest["totals"]["conversations"] == 0


def test_a_weekly_or_monthly_default_range_starts_with_its_first_period(seeded):
    """The four weeks before a Wednesday began on a Thursday: the first weekly bar held four
    days against the others' seven, and read as a fall."""
    weekly = data(seeded, grain="weekly", to="2026-11-11")
    assert weekly["from"] == "2026-10-12"  # the Monday of 2026-10-15, 27 days before
    monthly = data(seeded, grain="monthly")
    assert monthly["from"] == "2026-10-01"
    assert data(seeded, grain="daily", to="2026-11-11")["from"] == "2026-10-15"
    # An explicit `from` is kept as asked.
    assert data(seeded, grain="weekly", **{"from": "2026-10-20"})["from"] == "2026-10-20"


def test_the_data_needs_an_analytics_key_and_refuses_what_is_not_a_filter(seeded):
    client, db = seeded["client"], seeded["db"]
    assert client.get("/dashboard/data").status_code == 401
    users_only = {"X-API-Key": keys.create_key(db, ["users:read"])}
    assert client.get("/dashboard/data", headers=users_only).status_code == 403
    headers = seeded["headers"]
    for params in ({"model": '{"$ne": null}'}, {"channel": "$where"}, {"grain": "hourly"},
                   {"model[$ne]": "x"}, {"from": "2025-01-01", "to": "2026-01-02"}):  # fmt: skip
        response = client.get("/dashboard/data", params=params, headers=headers)
        assert response.status_code == 422, params
        assert response.json()["error"]["code"] == "invalid_request"
    in_url = client.get("/dashboard/data", params={"api_key": headers["X-API-Key"]})
    assert in_url.status_code == 400 and in_url.json()["error"]["code"] == "key_in_url"


def test_the_page_is_static_loads_only_its_own_files_and_allows_no_eval(seeded):
    client = seeded["client"]
    page = client.get("/dashboard")  # no key: the page holds no data
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "gpt-4o" not in page.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    local = [source for source in sources if source != "data:,"]  # the empty favicon
    assert len(local) == 5 and all(s.startswith("/dashboard/assets/") for s in local), sources
    for source in local:
        served = client.get(source)
        assert served.status_code == 200 and served.content, source
        kind = "text/css" if source.endswith(".css") else "text/javascript"
        assert served.headers["content-type"].startswith(kind), source
    assert not re.search(r"<script>|<script [^>]*>[^<]", page.text), "no inline script"
    csp = page.headers["content-security-policy"]
    scripts = csp.split("script-src")[1].split(";")[0].split()
    assert scripts == ["'self'"]
    assert "unsafe-eval" not in csp and "http" not in csp
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # Only the page has this policy: its data and files keep the default one.
    assert client.get("/dashboard/assets/dashboard.js").headers["content-security-policy"] == (
        "default-src 'none'; frame-ancestors 'none'"
    )
