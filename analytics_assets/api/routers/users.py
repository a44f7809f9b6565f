"""/users/{user_id}/analytics and /users/{user_id}/predictions: a user's analytics per period
and return predictions per day, found by their pseudonym."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from analytics_assets.api.auth import RequireScope
from analytics_assets.api.common import (
    ERRORS,
    NOT_FOUND,
    USER_ANALYTICS,
    USER_PREDICTIONS,
    DbProvider,
    PseudonymPath,
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
    def user(user_id: PseudonymPath) -> UserAnalytics:
        documents = list(db_provider()[USER_ANALYTICS].find({"user_id": user_id}).sort("period", 1))
        if not documents:
            raise HTTPException(404, "no analytics for this user")
        return UserAnalytics.from_documents(user_id, documents)

    @router.get(
        "/users/{user_id}/predictions",
        response_model=UserPredictions,
        responses=NOT_FOUND,
        dependencies=[require("users:read")],
    )
    def predictions(user_id: PseudonymPath) -> UserPredictions:
        """Per day the user was scored: the probability of returning within 7 days and the
        expected conversations in them (docs/metrics.md, "Return prediction")."""
        documents = list(db_provider()[USER_PREDICTIONS].find({"user_id": user_id}).sort("day", 1))
        if not documents:
            raise HTTPException(404, "no predictions for this user")
        return UserPredictions.from_documents(user_id, documents)

    return router
