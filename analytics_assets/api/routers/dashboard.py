"""/dashboard: a page of charts for people who never open Dagster, and /dashboard/data, the
aggregates it draws, filtered by date range, model and channel on the server.

The page is static and holds no data: it asks for an API key and sends it in the
`X-API-Key` header from its script, like any other client. Vega, Vega-Lite and vega-embed
are served from the package (static/vega/), so the page works offline."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from analytics_assets.analytics.dashboard import FIELDS, aggregate, period_start
from analytics_assets.api.auth import RequireScope
from analytics_assets.api.common import (
    CONVERSATIONS,
    ERRORS,
    MAX_RANGE_DAYS,
    MODEL_PATTERN,
    DbProvider,
    Grain,
    Label,
    check_range,
)
from analytics_assets.api.models import Dashboard

STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = "/dashboard/assets"
# Without a range the page shows the four weeks up to the latest day that has conversations.
DEFAULT_DAYS = 28
# Every conversation of the range is read (its FIELDS only) and summed here: the range is
# capped so that one request stays cheap.
MAX_DAYS = MAX_RANGE_DAYS
PARAMS = ("from", "to", "grain", "model", "channel")
# The page's policy: its scripts and styles are files of this server, its data comes from
# this server. Vega draws without eval (vega-embed's `ast` mode: expressions are
# interpreted), so no 'unsafe-eval'. Inline styles are allowed because vega-embed and Vega's
# SVG renderer set style attributes; scripts stay file-only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)


def install_page(app: FastAPI) -> str:
    """Serves /dashboard and its files; returns the page's Content-Security-Policy."""
    page = (STATIC / "dashboard.html").read_text()
    app.mount(ASSETS, StaticFiles(directory=str(STATIC)), name="dashboard-assets")
    app.add_api_route("/dashboard", lambda: HTMLResponse(page), include_in_schema=False)
    return CSP


def build_router(db_provider: DbProvider, require: RequireScope) -> APIRouter:
    router = APIRouter(tags=["dashboard"], responses=ERRORS)

    @router.get(
        "/dashboard/data",
        response_model=Dashboard,
        response_model_by_alias=True,
        dependencies=[require("analytics:read", PARAMS)],
    )
    def data(
        from_: Annotated[
            date | None,
            Query(
                alias="from",
                description=f"Default: `to` less 27 days, for the weekly and monthly grain "
                "back to the start of that week or month (the first bar a whole period). At "
                f"most {MAX_DAYS} days before `to` (422 beyond).",
            ),
        ] = None,
        to: Annotated[
            date | None, Query(description="Default: the latest day with conversations.")
        ] = None,
        grain: Grain = "daily",
        model: Annotated[str | None, Query(pattern=MODEL_PATTERN)] = None,
        channel: Label = None,
    ) -> Dashboard:
        collection = db_provider()[CONVERSATIONS]
        to = to or _latest_day(collection)
        if from_ is None:
            # Never before the first day a date can name (`to=0001-01-01` must not overflow).
            from_ = to - min(timedelta(days=DEFAULT_DAYS - 1), to - date.min)
            # A week or month cut by the default window read as a fall in its first bar
            # (4 days against 7): the window starts with the period instead.
            start = period_start(from_, grain)
            if (to - start).days < MAX_DAYS:
                from_ = start
        # In days whatever the grain: every conversation of the range is read.
        check_range(from_, to)
        in_range: dict[str, Any] = {"day": {"$gte": from_.isoformat(), "$lte": to.isoformat()}}
        # Plain strings, pattern-checked above: never a query document.
        selected = {
            name: value for name, value in (("model", model), ("channel", channel)) if value
        }
        documents = collection.find(
            {**in_range, **selected}, projection={name: 1 for name in FIELDS}
        )
        return Dashboard(
            **{"from": from_},
            to=to,
            grain=grain,
            model=model,
            channel=channel,
            models=_choices(collection, "model", in_range),
            channels=_choices(collection, "channel", in_range),
            **aggregate(documents, grain, (from_, to)),
        )

    return router


def _latest_day(collection) -> date:
    latest = collection.find({}, projection={"day": 1}).sort("day", -1).limit(1)
    days = [str(document["day"])[:10] for document in latest]
    return date.fromisoformat(days[0]) if days else date.today()


def _choices(collection, name: str, in_range: dict) -> list[str]:
    return sorted(value for value in collection.distinct(name, in_range) if value)
