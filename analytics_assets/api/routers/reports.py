"""/analytics/reports: one daily, weekly or monthly report (cacheable once its period has
closed), or a kind's reports over a range of days."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from analytics_assets.api import queries
from analytics_assets.api.auth import RequireScope
from analytics_assets.api.common import (
    ERRORS,
    NOT_FOUND,
    PERIOD_PATTERN,
    DbProvider,
    Grain,
    check_range,
    json_response,
)
from analytics_assets.api.models import Report


def build_router(db_provider: DbProvider, require: RequireScope) -> APIRouter:
    router = APIRouter(tags=["analytics"], responses=ERRORS)

    @router.get(
        "/analytics/reports/{kind}/{period}",
        response_model=Report,
        responses=NOT_FOUND,
        dependencies=[require("analytics:read")],
    )
    def report(
        request: Request,
        kind: Grain,
        period: Annotated[str, Path(pattern=PERIOD_PATTERN)],
    ) -> Response:
        body = queries.report(db_provider(), kind, period)
        if body is None:
            raise HTTPException(404, f"no {kind} report for {period}")
        etag = '"' + hashlib.sha256(body.model_dump_json().encode()).hexdigest()[:32] + '"'
        # A closed period's report changes only when it is rebuilt: the caller may cache
        # it and revalidate; a shared cache may not (the answer depends on the key, and
        # the security middleware adds `Vary: X-API-Key`).
        closed = period_end(kind, period) < datetime.now(UTC).date()
        headers = {
            "ETag": etag,
            "Cache-Control": "private, max-age=3600, must-revalidate" if closed else "no-cache",
        }
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return json_response(body, Report, headers)

    @router.get(
        "/analytics/reports/{kind}",
        response_model=list[Report],
        dependencies=[require("analytics:read", ("from", "to"))],
    )
    def reports(
        kind: Grain,
        from_: Annotated[date, Query(alias="from")],
        to: Annotated[date, Query()],
    ) -> Response:
        """The reports of the periods that overlap `from`..`to`, oldest first; a period whose
        report is not built yet is absent (a week's is built by `weekly_report_job`, a
        month's by `monthly_report_job`)."""
        check_range(from_, to, kind)
        return json_response(queries.reports(db_provider(), kind, from_, to), list[Report])

    return router


def period_end(kind: str, period: str) -> date:
    if kind == "daily":
        return date.fromisoformat(period)
    if kind == "weekly":
        return date.fromisoformat(period) + timedelta(days=6)
    year, month = (int(part) for part in period[:7].split("-"))
    return (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)
