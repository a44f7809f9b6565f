"""/analytics/models and /analytics/{dimension}: the daily reports summed per model, and a
dimension's counts per period."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from analytics_assets.api import queries
from analytics_assets.api.auth import RequireScope
from analytics_assets.api.common import ERRORS, DbProvider, Grain, check_range, json_response
from analytics_assets.api.models import ModelComparison, Series


def build_router(db_provider: DbProvider, require: RequireScope) -> APIRouter:
    router = APIRouter(tags=["analytics"], responses=ERRORS)

    # Before /analytics/{dimension}, which would otherwise take "models" for a dimension.
    @router.get(
        "/analytics/models",
        response_model=ModelComparison,
        dependencies=[require("analytics:read", ("from", "to"))],
    )
    def models(
        from_: Annotated[date, Query(alias="from")], to: Annotated[date, Query()]
    ) -> Response:
        check_range(from_, to)
        return json_response(queries.model_comparison(db_provider(), from_, to), ModelComparison)

    @router.get(
        "/analytics/{dimension}",
        response_model=Series,
        dependencies=[require("analytics:read", ("from", "to", "grain"))],
    )
    def series(
        dimension: Literal["topics", "intents", "sentiment", "languages"],
        from_: Annotated[date, Query(alias="from")],
        to: Annotated[date, Query()],
        grain: Grain = "daily",
    ) -> Response:
        """Counts per period, from the reports of the periods that overlap `from`..`to`. A
        period is here once its report is built (a week's by `weekly_report_job`, a month's
        by `monthly_report_job`): one not built yet is absent, not zero. `/dashboard/data`
        counts from the conversations and has every period."""
        check_range(from_, to, grain)
        return json_response(queries.series(db_provider(), dimension, from_, to, grain), Series)

    return router
