"""A small NocoDB Data API v2 client on httpx that pages correctly and never gives up early.

Why our own: the PyPI clients page by the requested `limit` (NocoDB silently caps it) and
do not retry, so a 429 or a reset mid-backfill loses or duplicates records.
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

from analytics_assets.nocodb.errors import (
    NocoDBAuthError,
    NocoDBError,
    NocoDBInvalidOffsetError,
    NocoDBNotFoundError,
    NocoDBQueryError,
    NocoDBRetriesExhaustedError,
)
from analytics_assets.nocodb.pacing import RequestPacer

# NocoDB refuses bigger pages silently (it returns 1000 rows and says nothing).
MAX_PAGE_SIZE = 1000
# The server rejects request bodies over 1 MB; stay well below it when inserting.
MAX_INSERT_BODY_BYTES = 768 * 1024
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    # A 429 without Retry-After asks for no particular wait: the first retry comes after
    # 1 s, doubling up to `throttle_wait_s` (NocoDB Cloud blocks a token for 30 s, so there
    # the retries reach its wait in five steps). Waiting the full 30 s at once made every
    # throttle on a self-hosted server cost 30 s of the whole run.
    throttle_first_wait_s: float = 1.0
    throttle_wait_s: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so parallel clients do not retry in step."""
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))

    def throttle_wait(self, throttles_before: int) -> float:
        """The wait after a 429 without Retry-After, by the 429s this request met before."""
        return min(self.throttle_wait_s, self.throttle_first_wait_s * 2**throttles_before)


# A read (GET) that has not answered after HEDGE_FACTOR x the recent p95 answer time (at
# least HEDGE_FLOOR_S) is sent once more and the first answer wins: a stalled request costs
# a few page times instead of a whole read timeout (>= 10 s), and only ~1 in 20 requests
# can ever be duplicated on a healthy server.
HEDGE_FACTOR = 3.0
HEDGE_FLOOR_S = 1.0
# Copies of one read in flight at most (the read and its twins).
HEDGE_COPIES = 3
# Twins in flight at most, for the whole client: what hedging may add to the requests in
# flight (`in_flight_limit`), stalled twins that have not timed out yet included.
HEDGE_EXTRA_IN_FLIGHT = 8
# Before five answers are known: a first request to a cold NocoDB (its metadata, the first
# page) can take a second or two, rarely three.
HEDGE_COLD_S = 3.0


class ReadTimeout:
    """How long to wait for an answer: a multiple of what recent answers took, between a
    floor and a ceiling. A stalled request is abandoned (and retried) after a few typical
    page times instead of after a fixed 30 s, and a server that is slow for everyone
    raises the timeout with it instead of failing every request."""

    # The floor is generous on purpose: a page of 1,000 long messages can take seconds to
    # serialize, and a timeout below that would retry a healthy request until it fails.
    def __init__(self, ceiling_s: float, *, floor_s: float = 10.0, factor: float = 5.0,
                 window: int = 50):  # fmt: skip
        self.ceiling_s = ceiling_s
        self.floor_s = min(floor_s, ceiling_s)
        self.factor = factor
        self._recent: list[float] = []
        self._window = window
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._recent.append(seconds)
            del self._recent[: -self._window]

    def _p95(self) -> float | None:
        with self._lock:
            if len(self._recent) < 5:
                return None
            return sorted(self._recent)[int(len(self._recent) * 0.95) - 1]

    def current(self) -> float:
        slow = self._p95()
        if slow is None:
            return self.ceiling_s  # nothing known yet: the patient default
        return max(self.floor_s, min(self.ceiling_s, self.factor * slow))

    def hedge_after(self) -> float | None:
        """When a read still unanswered gets a twin (None: never): well past what answers
        usually take, far before the timeout gives up on it. Before enough answers are
        known, after `HEDGE_COLD_S` where the timeout is longer: the first requests of a
        run are waited on for the whole ceiling (30 s), and a stall among them cost a
        backfill's fetch that much (under 30 % faults, one run in six)."""
        slow = self._p95()
        if slow is None:
            return HEDGE_COLD_S if self.ceiling_s > HEDGE_COLD_S else None
        return min(max(HEDGE_FLOOR_S, HEDGE_FACTOR * slow), self.current())


@dataclass
class ClientStats:
    """Counters for one client; safe to update from several threads."""

    requests: int = 0
    hedged: int = 0
    retries: int = 0
    throttled: int = 0
    retry_wait_s: float = 0.0
    pages: int = 0
    records: int = 0
    bytes_received: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **increments: float) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return {
                "requests": self.requests,
                "hedged": self.hedged,
                "retries": self.retries,
                "throttled": self.throttled,
                "retry_wait_s": round(self.retry_wait_s, 3),
                "pages": self.pages,
                "records": self.records,
                "bytes_received": self.bytes_received,
            }


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    index: int
    offset: int
    is_last: bool
    total_rows: int | None


@dataclass(frozen=True)
class TableInfo:
    id: str
    title: str
    # Column title -> NocoDB UI type (uidt), in the table's order.
    columns: dict[str, str]

    @property
    def primary_key(self) -> str | None:
        """The auto-increment `Id` column, which a table created without one lacks."""
        return next((title for title, uidt in self.columns.items() if uidt == "ID"), None)


def day_filter(field_name: str, day: date) -> str:
    """A `where` clause selecting one UTC day of a DateTime field."""
    next_day = day + timedelta(days=1)
    return (
        f"({field_name},ge,exactDate,{day.isoformat()})"
        f"~and({field_name},lt,exactDate,{next_day.isoformat()})"
    )


def blank_filter(field_name: str) -> str:
    return f"({field_name},blank)"


def and_filters(*clauses: str | None) -> str | None:
    present = [clause for clause in clauses if clause]
    return "~and".join(present) if present else None


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The wait a response's Retry-After asks for (seconds or an HTTP date); None where it
    asks for none or cannot be read (then the caller's own backoff applies)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        return max(0.0, parsed.timestamp() - time.time())
    return max(0.0, seconds) if math.isfinite(seconds) else None


class NocoDBClient:
    """Thread-safe client for one NocoDB server and API token."""

    def __init__(
        self,
        base_url: str,
        api_token: str,
        *,
        requests_per_second: float = 5.0,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        page_size: int = MAX_PAGE_SIZE,
        pacer: RequestPacer | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        if not api_token:
            raise NocoDBAuthError("No NocoDB API token: set NOCODB_API_TOKEN.")
        self.base_url = base_url.rstrip("/")
        self.page_size = min(page_size, MAX_PAGE_SIZE)
        self.retry = retry or RetryPolicy()
        self.pacer = pacer or RequestPacer(requests_per_second)
        self.stats = ClientStats()
        self.read_timeout = ReadTimeout(timeout_s)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"xc-token": api_token, "accept": "application/json"},
            timeout=timeout_s,
            transport=transport,
        )
        self._tables: dict[str, TableInfo] = {}
        self._tables_lock = threading.Lock()
        # Reads (and twins of slow ones) run here, so the thread that waits is never the one
        # stuck. Enough threads that stalled reads, which keep one until their timeout, do
        # not queue the others behind them (a queued read looks stalled and gets a twin).
        self._hedges = ThreadPoolExecutor(max_workers=64, thread_name_prefix="nocodb-hedge")
        # Places for requests in flight, while `in_flight_limit` holds (None: no limit).
        self._places: threading.BoundedSemaphore | None = None
        # Twins of slow reads in flight, the client's whole (`_send_hedged`).
        self._twin_places = threading.BoundedSemaphore(HEDGE_EXTRA_IN_FLIGHT)

    @contextmanager
    def in_flight_limit(self, requests: int) -> Iterator[None]:
        """While the block runs, at most `requests` of this client's requests (twins of slow
        reads aside) are in flight, and a request waiting for its retry holds no place. A
        reader can then keep more threads than places: a page that waits out a 429 or a
        backoff lets another page go, and the server sees no more requests than before."""
        self._places = threading.BoundedSemaphore(requests)
        try:
            yield
        finally:
            self._places = None

    @contextmanager
    def _place(self) -> Iterator[None]:
        places = self._places
        if places is None:
            yield
            return
        with places:
            yield

    def __enter__(self) -> NocoDBClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._hedges.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def __repr__(self) -> str:
        # Never show the token.
        return f"NocoDBClient(base_url={self.base_url!r})"

    # -- transport ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
    ) -> Any:
        """Sends one request with pacing and retries; returns the decoded JSON body.

        A non-idempotent request (an insert) is retried only when the server cannot have
        applied it: a refused connection or a 429.
        """
        last_problem = "no attempt made"
        # 429s answered to this request so far: a 429 without Retry-After waits by how
        # often the server has throttled it, not by how many other faults came first (a
        # 429 after two resets waited 4 s instead of 1 s).
        throttled = 0
        for attempt in range(self.retry.max_attempts):
            self.pacer.wait()
            self.stats.add(requests=1)
            wait_s: float | None = None
            # The place is given back before any wait to retry.
            with self._place():
                try:
                    if method == "GET" and idempotent:
                        response = self._send_hedged(path, params)
                    else:
                        response = self._send(method, path, params, json_body)
                    body = response.content
                    self.stats.add(bytes_received=len(body))
                    if response.status_code < 300:
                        return json.loads(body) if body else None
                    last_problem = f"HTTP {response.status_code}"
                    wait_s = self._wait_before_retrying(
                        response, method, path, idempotent, throttled
                    )
                    throttled += response.status_code == 429
                except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                    last_problem = f"{type(error).__name__}: {error}"
                except (
                    httpx.TimeoutException,
                    httpx.TransportError,
                    json.JSONDecodeError,
                ) as error:
                    # Read timeouts, resets and truncated bodies: the request may have been applied.
                    last_problem = f"{type(error).__name__}: {error}"
                    if not idempotent:
                        raise NocoDBError(
                            f"{method} {path} failed mid-flight ({last_problem}); not retried "
                            "because the request may have been applied."
                        ) from error
            if attempt + 1 == self.retry.max_attempts:
                break
            delay = wait_s if wait_s is not None else self.retry.backoff(attempt)
            self.stats.add(retries=1, retry_wait_s=delay)
            time.sleep(delay)
        raise NocoDBRetriesExhaustedError(
            f"{method} {path} failed after {self.retry.max_attempts} attempts; last: {last_problem}"
        )

    def _send(self, method: str, path: str, params: Any, json_body: Any) -> httpx.Response:
        sent = time.perf_counter()
        response = self._http.request(
            method, path, params=params, json=json_body, timeout=self._timeout()
        )
        # What this copy took, not the wait for a hedged read's twin: timed around
        # `_send_hedged`, every hedged answer counted its hedging delay, the 95th percentile
        # grew with the faults, and so did the next hedging delay (3.5 s instead of 1 s).
        if response.status_code < 300:
            self.read_timeout.observe(time.perf_counter() - sent)
        return response

    def _send_hedged(self, path: str, params: Any) -> httpx.Response:
        """A GET that gets a twin when it is slower than usual (`ReadTimeout.hedge_after`),
        and another each time that much more passes unanswered, up to `HEDGE_COPIES`. The
        first answer wins, whatever it is (a 5xx goes to the retry logic as usual). A copy
        that fails (a reset, a cut body, its read timeout) is waited past while a younger
        copy is out, and replaced at once beside an older one still out while fewer than
        `HEDGE_COPIES` were sent; else the failure goes to the retry logic, which sends the
        read again after its backoff.
        Copies left out finish or time out on their own, blocking nobody. (With one twin
        only, a page whose twin met a fault too waited out its stalled first copy's whole
        read timeout, 10 s, and held its shard.) Twins need a place of their own
        (`HEDGE_EXTRA_IN_FLIGHT` for the client): a server slow for everyone is not sent
        three times the requests."""
        delay = self.read_timeout.hedge_after()
        if delay is None:
            return self._send("GET", path, params, None)
        copies = [self._hedges.submit(self._send, "GET", path, params, None)]
        pending = set(copies)
        while True:
            done, pending = wait(
                pending,
                timeout=delay if len(copies) < HEDGE_COPIES else None,
                return_when=FIRST_COMPLETED,
            )
            # Whatever else finished meanwhile, an answer wins.
            for future in sorted(done, key=copies.index):
                if future.exception() is None:
                    return future.result()
            if done:
                youngest_failed = max(done, key=copies.index)
                younger_out = any(copies.index(o) > copies.index(youngest_failed)
                                  for o in pending)  # fmt: skip
                if younger_out:
                    continue
                # Replaced at once only beside an older copy still out (which looked stalled
                # but may yet answer); alone, a failure gets the retry logic's backoff.
                if (not pending or len(copies) >= HEDGE_COPIES
                        or not self._twin_places.acquire(blocking=False)):  # fmt: skip
                    raise youngest_failed.exception()
            elif not self._twin_places.acquire(blocking=False):
                continue  # every twin place is taken: wait on the copies out
            self.pacer.wait()
            if any(future.done() for future in pending):
                # A copy finished while the pacer held the twin back: see to it first.
                self._twin_places.release()
                continue
            self.stats.add(requests=1, hedged=1)
            twin = self._hedges.submit(self._send, "GET", path, params, None)
            twin.add_done_callback(lambda _: self._twin_places.release())
            copies.append(twin)
            pending.add(twin)

    def _timeout(self) -> httpx.Timeout:
        ceiling = self.read_timeout.ceiling_s
        return httpx.Timeout(ceiling, connect=min(ceiling, 10.0), read=self.read_timeout.current())

    def _wait_before_retrying(
        self, response: httpx.Response, method: str, path: str, idempotent: bool, throttled: int
    ) -> float | None:
        """For an answer that is not a success: how long to wait before the next attempt
        (None: the backoff's choice); raises where no retry may follow."""
        status = response.status_code
        if status not in RETRYABLE_STATUS:
            raise self._error_for(response, path)
        if status == 429:
            self.stats.add(throttled=1)
            wait_s = retry_after_seconds(response)
            if wait_s is None:
                wait_s = self.retry.throttle_wait(throttled)
            # Only this request waits: the others (other pages, other shards) go on, and
            # each waits as long as the server tells it, should it be throttled too.
            return wait_s
        if not idempotent:
            raise NocoDBError(
                f"NocoDB answered {status} to {method} {path}; not retried because the "
                "request may have been applied.",
                status_code=status,
            )
        return retry_after_seconds(response)

    @staticmethod
    def _error_for(response: httpx.Response, path: str) -> NocoDBError:
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        code = payload.get("error") if isinstance(payload, dict) else None
        message = ""
        if isinstance(payload, dict):
            message = payload.get("message") or payload.get("msg") or ""
        detail = f"NocoDB answered {status} for {path}: {message or response.text[:200]}"
        if status in (401, 403):
            return NocoDBAuthError(
                f"{detail}. Check the API token in NOCODB_API_TOKEN and its access to the base.",
                status_code=status,
                code=code,
            )
        if status == 404:
            return NocoDBNotFoundError(
                f"{detail}. Check the table ids/titles and field names in the source mapping.",
                status_code=status,
                code=code,
            )
        if code == "INVALID_OFFSET_VALUE":
            return NocoDBInvalidOffsetError(detail, status_code=status, code=code)
        if status in (400, 422):
            return NocoDBQueryError(detail, status_code=status, code=code)
        return NocoDBError(detail, status_code=status, code=code)

    # -- metadata ----------------------------------------------------------------------------

    def list_bases(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v2/meta/bases")["list"]

    def list_tables(self, base_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v2/meta/bases/{base_id}/tables")["list"]

    def table_info(self, table: str, *, base_id: str | None = None) -> TableInfo:
        """Resolves a table id or title to its id and columns (cached per client)."""
        with self._tables_lock:
            cached = self._tables.get(table)
        if cached:
            return cached
        table_id = self._resolve_table_id(table, base_id)
        meta = self.request("GET", f"/api/v2/meta/tables/{table_id}")
        info = TableInfo(
            id=meta["id"],
            title=meta["title"],
            columns={column["title"]: column["uidt"] for column in meta["columns"]},
        )
        with self._tables_lock:
            self._tables[table] = info
        return info

    def _resolve_table_id(self, table: str, base_id: str | None) -> str:
        base_ids = [base_id] if base_id else [base["id"] for base in self.list_bases()]
        for candidate_base in base_ids:
            for meta in self.list_tables(candidate_base):
                if table in (meta["id"], meta["title"], meta.get("table_name")):
                    return meta["id"]
        raise NocoDBNotFoundError(
            f"No NocoDB table with id or title {table!r} in base(s) {base_ids}. "
            "Check the table settings (NOCODB_CONVERSATIONS_TABLE / NOCODB_MESSAGES_TABLE)."
        )

    # -- records -----------------------------------------------------------------------------

    def iter_pages(
        self,
        table_id: str,
        *,
        where: str | None = None,
        sort: str | Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
        page_size: int | None = None,
        start_offset: int = 0,
    ) -> Iterator[Page]:
        """Streams a query page by page; holds one page in memory at a time.

        The offset advances by the rows actually returned, not by the requested limit,
        because NocoDB caps `limit` without saying so. Sort by a unique key for a stable
        order: offset paging over an unsorted table can skip or repeat rows.
        """
        limit = min(page_size or self.page_size, MAX_PAGE_SIZE)
        params: dict[str, Any] = {"limit": limit}
        if where:
            params["where"] = where
        if sort:
            params["sort"] = sort if isinstance(sort, str) else ",".join(sort)
        if fields:
            params["fields"] = ",".join(fields)
        offset = start_offset
        index = 0
        path = f"/api/v2/tables/{table_id}/records"
        while True:
            body = self.request("GET", path, params={**params, "offset": offset})
            records = body.get("list", [])
            page_info = body.get("pageInfo", {})
            is_last = bool(page_info.get("isLastPage", True)) or not records
            self.stats.add(pages=1, records=len(records))
            yield Page(
                records=records,
                index=index,
                offset=offset,
                is_last=is_last,
                total_rows=page_info.get("totalRows"),
            )
            if is_last:
                return
            offset += len(records)
            index += 1

    def iter_keyset(
        self,
        table_id: str,
        key: str,
        *,
        after: int,
        up_to: int,
        fields: Sequence[str] | None = None,
        page_size: int | None = None,
        where: str | None = None,
    ) -> Iterator[Page]:
        """Pages of the rows with `after < key <= up_to` (and `where`, when given), in key
        order, each page asked for as `key > last key seen`: every request is an index range
        at offset 0, so a page costs the same at the end of a table as at its start (an
        offset makes the server count past every earlier row), shards of the key range can
        be read at once, and a row deleted or moved out of `where` between two pages does
        not shift the next page past a row it should have held."""
        limit = min(page_size or self.page_size, MAX_PAGE_SIZE)
        path = f"/api/v2/tables/{table_id}/records"
        index, cursor = 0, after
        while True:
            condition = f"({key},gt,{cursor})~and({key},le,{up_to})"
            params: dict[str, Any] = {
                "limit": limit,
                "offset": 0,
                "sort": key,
                "where": f"{condition}~and({where})" if where else condition,
            }
            if fields:
                params["fields"] = ",".join(fields)
            body = self.request("GET", path, params=params)
            records = body.get("list", [])
            self.stats.add(pages=1, records=len(records))
            # NocoDB says whether more rows match; a short page alone is no proof of the
            # end, since a server may cap `limit` below the one asked for (its
            # DB_QUERY_LIMIT_MAX) without saying so, and every later page was lost.
            said = body.get("pageInfo", {}).get("isLastPage")
            is_last = not records or (said if isinstance(said, bool) else len(records) < limit)
            yield Page(records=records, index=index, offset=0, is_last=is_last, total_rows=None)
            if is_last or not records:
                return
            cursor = int(records[-1][key])
            index += 1

    def key_bounds(self, table_id: str, key: str) -> tuple[int, int] | None:
        """The smallest and largest value of an integer key (two one-row requests, sent at
        once: a retried one does not hold the other back)."""

        def first_key(sort: str) -> int | None:
            page = next(self.iter_pages(table_id, sort=sort, fields=[key], page_size=1))
            return int(page.records[0][key]) if page.records else None

        with ThreadPoolExecutor(2, thread_name_prefix="nocodb-bounds") as pool:
            low, high = pool.map(first_key, (key, f"-{key}"))
        if low is None or high is None:
            return None
        return low, high

    def iter_records(self, table_id: str, **query: Any) -> Iterator[dict[str, Any]]:
        for page in self.iter_pages(table_id, **query):
            yield from page.records

    def insert_records(self, table_id: str, records: Iterable[dict[str, Any]]) -> int:
        """Inserts records in batches under NocoDB's 1 MB body limit; returns the count."""
        inserted = 0
        batch: list[dict[str, Any]] = []
        batch_bytes = 0
        for record in records:
            size = len(json.dumps(record, ensure_ascii=False).encode()) + 1
            if batch and (batch_bytes + size > MAX_INSERT_BODY_BYTES or len(batch) >= 1000):
                inserted += self._insert_batch(table_id, batch)
                batch, batch_bytes = [], 0
            batch.append(record)
            batch_bytes += size
        if batch:
            inserted += self._insert_batch(table_id, batch)
        return inserted

    def _insert_batch(self, table_id: str, batch: list[dict[str, Any]]) -> int:
        self.request(
            "POST", f"/api/v2/tables/{table_id}/records", json_body=batch, idempotent=False
        )
        return len(batch)

    def update_records(self, table_id: str, records: list[dict[str, Any]]) -> None:
        """Updates records by their `Id` (PATCH is idempotent: same values, same result)."""
        for start in range(0, len(records), 500):
            self.request(
                "PATCH",
                f"/api/v2/tables/{table_id}/records",
                json_body=records[start : start + 500],
            )

    def delete_records(self, table_id: str, ids: list[int]) -> None:
        for start in range(0, len(ids), 500):
            self.request(
                "DELETE",
                f"/api/v2/tables/{table_id}/records",
                json_body=[{"Id": record_id} for record_id in ids[start : start + 500]],
            )
