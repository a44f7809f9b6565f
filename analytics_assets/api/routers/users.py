"""/users/{user_id}/analytics and /users/{user_id}/predictions: a user's analytics per period
and return predictions per day, found by their pseudonym."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from analytics_assets.api import queries
from analytics_assets.api.auth import RequireScope
from analytics_assets.api.common import (
    ERRORS,
    NOT_FOUND,
    DbProvider,
    PseudonymPath,
    json_response,
)
from analytics_assets.api.models import UserAnalytics, UserPredictions


def build_router(db_provider: DbProvider, require: RequireScope) -> APIRouter:
    router = APIRouter(tags=["users"], responses=ERRORS)

    @router.get(
        "/users/{user_id}/analytics",
        response_model=UserAnalytics,
        responses=NOT_FOUND,
        dependencies=[require("users:read")],
    )
    def user(user_id: PseudonymPath) -> Response:
        analytics = queries.user_analytics(db_provider(), user_id)
        if analytics is None:
            raise HTTPException(404, "no analytics for this user")
        return json_response(analytics, UserAnalytics)

    @router.get(
        "/users/{user_id}/predictions",
        response_model=UserPredictions,
        responses=NOT_FOUND,
        dependencies=[require("users:read")],
    )
    def predictions(user_id: PseudonymPath) -> Response:
        """Per day the user was scored: the probability of returning within 7 days and the
        expected conversations in them (docs/metrics.md, "Return prediction")."""
        predictions = queries.user_predictions(db_provider(), user_id)
        if predictions is None:
            raise HTTPException(404, "no predictions for this user")
        return json_response(predictions, UserPredictions)

    return router
