"""/users/{user_id}/analytics: a user's analytics per period, found by their own id or by
their pseudonym."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, HTTPException

from analytics_assets.api.auth import RequireScope
from analytics_assets.api.common import ERRORS, NOT_FOUND, USER_ANALYTICS, DbProvider, IdPath
from analytics_assets.api.models import UserAnalytics


def build_router(
    db_provider: DbProvider, require: RequireScope, stored_user_id: Callable[[str], str]
) -> APIRouter:
    router = APIRouter(tags=["users"], responses=ERRORS)

    @router.get(
        "/users/{user_id}/analytics",
        response_model=UserAnalytics,
        responses=NOT_FOUND,
        dependencies=[require("users:read")],
    )
    def user(user_id: IdPath) -> UserAnalytics:
        pseudonym = stored_user_id(user_id)
        documents = list(
            db_provider()[USER_ANALYTICS].find({"user_id": pseudonym}).sort("period", 1)
        )
        if not documents:
            raise HTTPException(404, "no analytics for this user")
        # The caller's id is not echoed: a response carries only the pseudonym.
        return UserAnalytics.from_documents(pseudonym, documents)

    return router
