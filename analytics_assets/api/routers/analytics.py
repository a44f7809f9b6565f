"""/analytics/models and /analytics/{dimension}: the daily reports summed per model, and a
dimension's counts per period."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from analytics_assets.analytics.reports import model_comparison
from analytics_assets.api.auth import RequireScope
from analytics_assets.api.common import ERRORS, REPORTS, DbProvider, Grain
from analytics_assets.api.models import ModelComparison, Series

# The URL's dimension -> the report field that holds its counts.
DIMENSIONS = {"topics": "topics", "intents": "intents", "sentiment": "sentiments",
              "languages": "languages"}  # fmt: skip


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
    ) -> ModelComparison:
        totals: dict[str, dict] = {}
        for document in db_provider()[REPORTS].find(
            {"kind": "daily", "day": {"$gte": from_.isoformat(), "$lte": to.isoformat()}},
            projection={"per_model": 1},
        ):
            for parts in document.get("per_model") or []:
                merged = totals.setdefault(parts["model"], {"model": parts["model"]})
                for name, value in parts.items():
                    if name != "model":
                        merged[name] = merged.get(name, 0) + (value or 0)
        per_model = sorted(totals.values(), key=lambda parts: parts["model"])
        return ModelComparison.from_parts(from_, to, per_model, model_comparison(per_model))

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
    ) -> Series:
        field = DIMENSIONS[dimension]
        documents = (
            db_provider()[REPORTS]
            .find(
                {"kind": grain, "day": {"$gte": from_.isoformat(), "$lte": to.isoformat()}},
                projection={"period": 1, field: 1},
            )
            .sort("period", 1)
        )
        return Series(
            dimension=dimension,
            grain=grain,
            points=[
                {
                    "period": doc["period"],
                    "counts": {item["value"]: int(item["count"]) for item in doc.get(field) or []},
                }
                for doc in documents
            ],
        )

    return router
