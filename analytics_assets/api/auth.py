"""API keys on requests: who the caller is (`X-API-Key`), whether the key has the endpoint's
scope, whether it is within its rate, and that no unknown query parameter slips through."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, params
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader

from analytics_assets.api import keys
from analytics_assets.api.common import DbProvider
from analytics_assets.api.ratelimit import TokenBuckets

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False)

# A verified key is trusted this long without asking MongoDB again: one query less per
# request, at the price of a revocation taking up to this long to bite.
KEY_CACHE_S = 5.0

# require(scope, allowed query parameters) -> the dependency that enforces both.
RequireScope = Callable[..., params.Depends]


class KeyVerifier:
    """Checks a key against MongoDB, remembering each answer for KEY_CACHE_S."""

    def __init__(self, db_provider: DbProvider, clock: Callable[[], float]):
        self._db_provider = db_provider
        self._clock = clock
        self._verified: dict[bytes, tuple[float, keys.ApiKey | None]] = {}

    def __call__(self, api_key: str | None) -> keys.ApiKey | None:
        if not api_key:
            return None
        # Cached under a digest: the process never keeps the keys themselves around.
        digest = hashlib.sha256(api_key.encode()).digest()
        cached = self._verified.get(digest)
        if cached and self._clock() - cached[0] < KEY_CACHE_S:
            return cached[1]
        key = keys.verify(self._db_provider(), api_key)
        if len(self._verified) > 10_000:  # bounded: unknown keys are cached too
            self._verified.clear()
        self._verified[digest] = (self._clock(), key)
        return key


def scope_dependency(
    verify: Callable[[str | None], keys.ApiKey | None], buckets: TokenBuckets
) -> RequireScope:
    def require(scope: str, allowed_params: tuple[str, ...] = ()) -> params.Depends:
        def check(request: Request, api_key: Annotated[str | None, Security(API_KEY)]) -> None:
            _refuse_unknown_params(request, allowed_params)
            key = verify(api_key)
            if key is None:
                raise HTTPException(401, "a valid X-API-Key header is required")
            if scope not in key.scopes:
                raise HTTPException(403, f"this key lacks the {scope} scope")
            _take_token(request, buckets, key)

        return Depends(check)

    return require


def _refuse_unknown_params(request: Request, allowed_params: tuple[str, ...]) -> None:
    # Refused rather than ignored: `user_id[$ne]=` must not pass for a filter.
    unknown = set(request.query_params) - set(allowed_params)
    if unknown:
        raise RequestValidationError(
            [{"loc": ("query", sorted(unknown)[0]), "msg": "unknown parameter"}]
        )


def _take_token(request: Request, buckets: TokenBuckets, key: keys.ApiKey) -> None:
    decision = buckets.take(key.key_id, key.rate_per_minute)
    # The app's middleware copies it into the RateLimit-* headers of the response.
    request.state.rate = decision
    if not decision.allowed:
        raise HTTPException(
            429,
            f"rate limit of {decision.limit} requests a minute exceeded",
            headers={
                "Retry-After": str(decision.retry_after_s),
                "RateLimit-Limit": str(decision.limit),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(decision.reset_s),
            },
        )
