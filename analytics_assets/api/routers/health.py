"""/health and /ready: for load balancers and orchestrators, so no API key."""

from __future__ import annotations

from fastapi import APIRouter

from analytics_assets.api.common import DbProvider, error_response
from analytics_assets.api.models import ErrorBody, Health


def build_router(db_provider: DbProvider) -> APIRouter:
    router = APIRouter(tags=["service"])

    @router.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok")

    @router.get("/ready", response_model=Health, responses={503: {"model": ErrorBody}})
    def ready():
        try:
            db_provider().command("ping")
        except Exception:
            return error_response(503, "not_ready", "MongoDB is not reachable")
        return Health(status="ready")

    return router
