"""API keys on requests: who the caller is (`X-API-Key`), whether the key has the endpoint's
scope, whether it is within its rate, that a client guessing keys is slowed down, and that no
unknown query parameter slips through."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from fastapi import Depends, HTTPException, Request, Security, params
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from analytics_assets.api import keys
from analytics_assets.api.common import DbProvider
from analytics_assets.api.ratelimit import TokenBuckets

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False)

# A verified key is trusted this long without asking MongoDB again: one query less per
# request, at the price of a revocation taking up to this long to bite.
KEY_CACHE_S = 5.0

# require(scope, allowed query parameters) -> the dependency that enforces both.
RequireScope = Callable[..., params.Depends]


# Failed authentications allowed per client address: a burst of this many, refilled at this
# many a minute. Past it the address gets 429 without a database lookup, so guessing keys
# costs the guesser time and the database nothing.
FAILED_AUTH_PER_MINUTE = 20
# Answers remembered, valid and invalid: bounded, the oldest forgotten first.
MAX_CACHED_KEYS = 10_000


class KeyVerifier:
    """Checks a key against MongoDB, remembering each answer (a miss too) for KEY_CACHE_S."""

    def __init__(self, db_provider: DbProvider, clock: Callable[[], float]):
        self._db_provider = db_provider
        self._clock = clock
        self._verified: dict[bytes, tuple[float, keys.ApiKey | None]] = {}
        self.lookups = 0  # database lookups made, for tests and metrics

    @staticmethod
    def _digest(api_key: str) -> bytes:
        # Cached under a digest: the process never keeps the keys themselves around.
        return hashlib.sha256(api_key.encode()).digest()

    def cached(self, api_key: str | None) -> tuple[bool, keys.ApiKey | None]:
        """(whether the answer is known without a lookup, the key)."""
        if not api_key:
            return True, None
        cached = self._verified.get(self._digest(api_key))
        if cached and self._clock() - cached[0] < KEY_CACHE_S:
            return True, cached[1]
        return False, None

    def __call__(self, api_key: str | None) -> keys.ApiKey | None:
        known, key = self.cached(api_key)
        if known:
            return key
        self.lookups += 1
        key = keys.verify(self._db_provider(), api_key)
        digest = self._digest(api_key)
        self._verified.pop(digest, None)
        while len(self._verified) >= MAX_CACHED_KEYS:
            self._verified.pop(next(iter(self._verified)))
        self._verified[digest] = (self._clock(), key)
        return key


class FailedAuthLimiter:
    """A bucket of failed authentications per client address."""

    def __init__(self, buckets: TokenBuckets, per_minute: int = FAILED_AUTH_PER_MINUTE):
        self._buckets = buckets
        self.per_minute = per_minute

    def blocked(self, address: str) -> int:
        """Seconds until the address may try again (0: it may now)."""
        return self._buckets.wait_s(f"auth:{address}", self.per_minute)

    def failed(self, address: str) -> None:
        self._buckets.take(f"auth:{address}", self.per_minute)


class KeyGate:
    """Who the caller is and whether it is within its rate: what every key-protected
    request goes through, by REST dependency (`scope_dependency`) or at /graphql."""

    def __init__(
        self, verify: KeyVerifier, buckets: TokenBuckets, failures: FailedAuthLimiter
    ) -> None:
        self.verify = verify
        self.buckets = buckets
        self.failures = failures

    def key(self, request: Request, api_key: str | None) -> keys.ApiKey:
        """The caller's key; HTTPException 401 without a valid one, 429 when the client's
        address has failed too often lately."""
        key = _authenticate(request, api_key, self.verify, self.failures)
        if key is None:
            raise HTTPException(401, "a valid X-API-Key header is required")
        return key

    def take_token(self, request: Request, key: keys.ApiKey) -> None:
        """One request off the key's bucket; HTTPException 429 when it is empty."""
        _take_token(request, self.buckets, key)


def scope_dependency(gate: KeyGate) -> RequireScope:
    def require(scope: str, allowed_params: tuple[str, ...] = ()) -> params.Depends:
        # The scope in the security requirement puts it in the OpenAPI spec (and so in the
        # API reference, docs/reference/api.md); a default, not Annotated, because the
        # annotation is text here and could not see `scope`.
        async def check(
            request: Request, api_key: str | None = Security(API_KEY, scopes=[scope])
        ) -> None:
            # Async, so a request whose key was verified lately is checked on the event loop
            # instead of in a trip through the thread pool. Decided once: anything else (a
            # MongoDB lookup, a refusal) goes to the thread pool, so no lookup ever blocks
            # the loop, even when the cached answer expires in between.
            _refuse_unknown_params(request, allowed_params)
            known, key = gate.verify.cached(api_key)
            if not known or key is None:
                key = await run_in_threadpool(gate.key, request, api_key)
            if scope not in key.scopes:
                raise HTTPException(403, f"this key lacks the {scope} scope")
            gate.take_token(request, key)

        return Depends(check)

    return require


def _authenticate(
    request: Request, api_key: str | None, verify: KeyVerifier, failures: FailedAuthLimiter
) -> keys.ApiKey | None:
    known, key = verify.cached(api_key)
    if known and key is not None:
        return key  # a key verified lately passes even from a blocked address
    address = request.client.host if request.client else "unknown"
    wait_s = failures.blocked(address)
    if wait_s and api_key:
        raise HTTPException(
            429,
            "too many failed authentications from this address",
            headers={"Retry-After": str(wait_s)},
        )
    key = verify(api_key)
    if key is None and api_key:
        failures.failed(address)
    return key


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
