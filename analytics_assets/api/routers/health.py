"""/health and /ready: for load balancers and orchestrators, so no API key."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from analytics_assets.api.common import DbProvider, error_response
from analytics_assets.api.models import ErrorBody, Health


def build_router(db_provider: DbProvider, ready: Callable[[], bool] | None = None) -> APIRouter:
    """`ready` answers whether the database is reachable without side effects (it must not
    start an embedded server); without it, a ping through `db_provider`."""
    router = APIRouter(tags=["service"])

    def ping() -> bool:
        db_provider().command("ping")
        return True

    is_ready = ready or ping

    @router.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok")

    @router.get("/ready", response_model=Health, responses={503: {"model": ErrorBody}})
    def readiness():
        try:
            answered = is_ready()
        except Exception:
            answered = False
        if not answered:
            return error_response(503, "not_ready", "MongoDB is not reachable")
        return Health(status="ready")

    return router
