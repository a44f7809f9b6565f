"""POST /graphql: the read models of the REST API, queried in one request with the fields
the caller picks. The same keys, scopes and rate limits as REST; the same MongoDB queries
(`queries`), so both answer alike.

A request goes through, in this order, each refusal answered before any database access
but the key check's: the key (401, 429 after too many failures from the address), one token
off the key's bucket (429), the body (a JSON object: no batches), the document's size
(tokens), its depth, aliases and estimated cost (400, each with its code), GraphQL
validation (400), the scopes of every field asked (403) - then execution. Refusals are
GraphQL-shaped: `{"errors": [{"message", "extensions": {"code"}}]}`. GraphiQL is off (the
API's Content-Security-Policy allows no outside script) and GET is refused (405): a query
never sits in a URL, where logs and proxies keep it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Annotated, Any

import strawberry
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_leaf_type,
    is_list_type,
    parse,
    validate,
)
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef
from starlette.concurrency import run_in_threadpool
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig

from analytics_assets.api import keys, models, queries
from analytics_assets.api.auth import API_KEY, KeyGate
from analytics_assets.api.common import (
    CURSOR_PATTERN,
    ID_PATTERN,
    LABEL_PATTERN,
    LANG_PATTERN,
    LANGUAGE_PATTERN,
    MAX_PAGE_SIZE,
    MODEL_PATTERN,
    PERIOD_PATTERN,
    DbProvider,
    check_range,
)
from analytics_assets.privacy.pii import USER_PSEUDONYM_PATTERN

log = logging.getLogger("analytics_assets.api")

PATH = "/graphql"
# Limits, checked on the document before anything runs. The schema has no cycles, so a
# data query is at most 4 deep; the depth limit is for introspection's recursive types.
MAX_DEPTH = 6
# Estimated objects in the answer: a list multiplies what is selected under it by its
# `first` (conversations), its range's periods (reports, series) or an estimate below.
MAX_COST = 2_000
MAX_ALIASES = 10
MAX_TOKENS = 1_000
# Selections walked while estimating (fragments spread many times count each time).
MAX_SELECTIONS = 5_000
# A conversation's messages counted for the estimate (the sample's longest has fewer).
MESSAGES_ESTIMATE = 50
LIST_ESTIMATE = 10
DEFAULT_PAGE = 50
PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 28}

# The scope each field of Query needs, as its REST twin does.
ROOT_SCOPES = {
    "conversation": "conversations:read",
    "conversations": "conversations:read",
    "report": "analytics:read",
    "reports": "analytics:read",
    "series": "analytics:read",
    "model_comparison": "analytics:read",
    "user_analytics": "users:read",
}


@dataclass
class Context:
    db_provider: DbProvider
    key: keys.ApiKey


def _db(info: strawberry.Info, scope: str):
    # Checked here too, not only before execution: a field added without a scope entry
    # fails closed.
    if scope not in info.context.key.scopes:
        raise GraphQLError(f"this key lacks the {scope} scope", extensions={"code": "forbidden"})
    return info.context.db_provider()


def _range_checked(from_: date, to: date, grain: str = "daily") -> None:
    """The REST endpoints' cap on a range read whole (`common.check_range`): without it,
    `model_comparison` from year 1 to 9999 read every report, at the cost of one."""
    try:
        check_range(from_, to, grain)
    except RequestValidationError as error:
        raise GraphQLError(
            f"from: {error.errors()[0]['msg']}",
            extensions={"code": "invalid_argument", "argument": "from"},
        ) from error


def _checked(name: str, value: str | None, pattern: str) -> str | None:
    if value is not None and not re.fullmatch(pattern, value):
        raise GraphQLError(
            f"{name}: does not match the pattern {pattern}",
            extensions={"code": "invalid_argument", "argument": name},
        )
    return value


def _fields_of(cls: type, model: Any) -> dict[str, Any]:
    """A read model's values for the strawberry type's plain fields (resolvers excluded)."""
    definition = cls.__strawberry_definition__
    names = [f.python_name for f in definition.fields if f.base_resolver is None]
    return {name: getattr(model, name) for name in names if hasattr(model, name)}


@strawberry.enum(description="A report's period.")
class Grain(Enum):
    daily = "daily"
    weekly = "weekly"
    monthly = "monthly"


@strawberry.enum(description="What a series counts.")
class Dimension(Enum):
    topics = "topics"
    intents = "intents"
    sentiment = "sentiment"
    languages = "languages"


@strawberry.type
class Count:
    value: str
    count: int


@strawberry.type
class Score:
    name: str
    value: float | None


@strawberry.type
class Categories:
    topic: str | None
    topic_confidence: float | None
    intent: str | None
    intent_confidence: float | None
    sentiment_opening: str | None
    sentiment: str | None
    language: str | None
    method: str | None
    model_version: str | None


@strawberry.type
class Message:
    message_id: str
    role: str | None
    created_at: str | None
    content: str | None = strawberry.field(description="The original text.")
    text: str | None = strawberry.field(
        description="In `lang` where a translation exists, else the original."
    )
    translated: bool
    translator: str | None


class PageLoads:
    """A page's categories and messages, each read for the whole page in one query the
    first time one conversation of the page asks (not one query a conversation)."""

    def __init__(self, ids: list[str]):
        self.ids = ids
        self._categories: dict[str, models.Categories] | None = None
        self._messages: dict[str | None, dict[str, list[models.Message]]] = {}

    def categories(self, db) -> dict[str, models.Categories]:
        if self._categories is None:
            self._categories = queries.categories_by_conversation(db, self.ids)
        return self._categories

    def messages(self, db, lang: str | None) -> dict[str, list[models.Message]]:
        if lang not in self._messages:
            self._messages[lang] = queries.messages_by_conversation(db, self.ids, lang)
        return self._messages[lang]


@strawberry.type(description="A conversation's analytics; its categories and messages on demand.")
class Conversation:
    conversation_id: str
    user_id: str | None = strawberry.field(description="A pseudonym, never a source id.")
    model: str | None
    channel: str | None
    started_at: str | None
    ended_at: str | None
    day: str
    turns: int | None
    message_count: int | None
    total_tokens: int | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    topic: str | None
    intent: str | None
    sentiment: str | None
    language: str | None
    quality_score: float | None
    satisfaction_score: float | None
    score_values: strawberry.Private[dict[str, float | None]]
    page: strawberry.Private[PageLoads | None] = None

    @classmethod
    def from_document(cls, document: dict, page: PageLoads | None = None) -> Conversation:
        summary = models.ConversationSummary.from_document(document)
        return cls(
            **_fields_of(cls, summary), score_values=models.score_fields(document), page=page
        )

    @strawberry.field(description="Every score of the conversation, by name.")
    def scores(self) -> list[Score]:
        return [Score(name=name, value=value) for name, value in self.score_values.items()]

    @strawberry.field
    def categories(self, info: strawberry.Info) -> Categories:
        db = _db(info, "conversations:read")
        if self.page is None:
            model = queries.conversation_categories(db, self.conversation_id)
        else:
            model = self.page.categories(db)[self.conversation_id]
        return Categories(**_fields_of(Categories, model))

    @strawberry.field(description="Oldest first; with `lang`, translated where possible.")
    def messages(self, info: strawberry.Info, lang: str | None = None) -> list[Message]:
        _checked("lang", lang, LANG_PATTERN)
        db = _db(info, "conversations:read")
        if self.page is None:
            found = queries.conversation_messages(db, self.conversation_id, lang)
        else:
            found = self.page.messages(db, lang)[self.conversation_id]
        return [Message(**_fields_of(Message, message)) for message in found]


@strawberry.type
class ConversationPage:
    items: list[Conversation]
    next_cursor: str | None = strawberry.field(
        description="Pass as `after` for the next page; null on the last."
    )


@strawberry.type(description="A daily, weekly or monthly report; user ids stay in MongoDB.")
class Report:
    kind: str
    period: str
    conversations: int
    messages: int
    users: int
    new_users: int | None
    returning_users: int | None
    topics: list[Count]
    intents: list[Count]
    sentiments: list[Count]
    languages: list[Count]
    quality_mean: float | None
    satisfaction_mean: float | None
    latency_p50_mean: float | None
    total_tokens: int | None
    errors: int | None
    complete: bool
    missing_inputs: list[str]
    details: JSON = strawberry.field(
        description="The rest of the report as stored (per-model parts, changes, histograms)."
    )

    @classmethod
    def from_model(cls, model: models.Report) -> Report:
        values = _fields_of(cls, model)
        for name in ("topics", "intents", "sentiments", "languages"):
            values[name] = [Count(value=c.value, count=c.count) for c in values[name]]
        return cls(**values, details=json.loads(json.dumps(model.model_extra or {}, default=str)))


@strawberry.type
class SeriesPoint:
    period: str
    counts: list[Count]


@strawberry.type
class Series:
    dimension: str
    grain: str
    points: list[SeriesPoint]


@strawberry.type
class ModelComparisonRow:
    model: str
    metric: str
    value: float
    others: float
    difference: float
    n: int
    others_n: int
    p_value: float
    significant: bool


@strawberry.type
class ModelComparison:
    from_: date = strawberry.field(name="from")
    to: date
    models: JSON = strawberry.field(description="The daily reports' per-model parts, summed.")
    comparison: list[ModelComparisonRow]

    @classmethod
    def from_model(cls, model: models.ModelComparison) -> ModelComparison:
        return cls(
            from_=model.from_,
            to=model.to,
            models=json.loads(json.dumps(model.models, default=str)),
            comparison=[ModelComparisonRow(**row.model_dump()) for row in model.comparison],
        )


@strawberry.type
class UserPeriod:
    period: str
    conversations: int | None
    messages: int | None
    details: JSON = strawberry.field(description="The period's other figures, as stored.")


@strawberry.type
class UserAnalytics:
    user_id: str
    periods: list[UserPeriod]

    @classmethod
    def from_model(cls, model: models.UserAnalytics) -> UserAnalytics:
        return cls(
            user_id=model.user_id,
            periods=[
                UserPeriod(
                    period=p.period,
                    conversations=p.conversations,
                    messages=p.messages,
                    details=json.loads(json.dumps(p.model_extra or {}, default=str)),
                )
                for p in model.periods
            ],
        )


From = Annotated[date, strawberry.argument(name="from")]
OptionalFrom = Annotated[date | None, strawberry.argument(name="from")]


@strawberry.type
class Query:
    @strawberry.field(description="One conversation by id; null when there is none.")
    def conversation(self, info: strawberry.Info, conversation_id: str) -> Conversation | None:
        _checked("conversation_id", conversation_id, ID_PATTERN)
        document = queries.conversation_summary(_db(info, "conversations:read"), conversation_id)
        return None if document is None else Conversation.from_document(document)

    @strawberry.field(description="Conversations by start time, filtered, `first` at a time.")
    def conversations(
        self,
        info: strawberry.Info,
        from_: OptionalFrom = None,
        to: date | None = None,
        user_id: str | None = None,
        model: str | None = None,
        channel: str | None = None,
        topic: str | None = None,
        intent: str | None = None,
        sentiment: str | None = None,
        language: str | None = None,
        first: int = DEFAULT_PAGE,
        after: str | None = None,
    ) -> ConversationPage:
        if not 1 <= first <= MAX_PAGE_SIZE:
            raise GraphQLError(
                f"first: between 1 and {MAX_PAGE_SIZE}",
                extensions={"code": "invalid_argument", "argument": "first"},
            )
        filters = queries.ConversationFilters(
            from_=from_,
            to=to,
            user_id=_checked("user_id", user_id, USER_PSEUDONYM_PATTERN),
            model=_checked("model", model, MODEL_PATTERN),
            channel=_checked("channel", channel, LABEL_PATTERN),
            topic=_checked("topic", topic, LABEL_PATTERN),
            intent=_checked("intent", intent, LABEL_PATTERN),
            sentiment=_checked("sentiment", sentiment, LABEL_PATTERN),
            language=_checked("language", language, LANGUAGE_PATTERN),
        )
        _checked("after", after, CURSOR_PATTERN)
        db = _db(info, "conversations:read")
        try:
            documents, next_cursor = queries.conversation_documents(db, filters, first, after)
        except RequestValidationError as error:
            raise GraphQLError(
                "after: malformed cursor",
                extensions={"code": "invalid_argument", "argument": "after"},
            ) from error
        page = PageLoads([doc["conversation_id"] for doc in documents])
        return ConversationPage(
            items=[Conversation.from_document(doc, page) for doc in documents],
            next_cursor=next_cursor,
        )

    @strawberry.field(description="One report (`period`: YYYY-MM-DD, or YYYY-MM monthly).")
    def report(self, info: strawberry.Info, kind: Grain, period: str) -> Report | None:
        _checked("period", period, PERIOD_PATTERN)
        found = queries.report(_db(info, "analytics:read"), kind.value, period)
        return None if found is None else Report.from_model(found)

    @strawberry.field(
        description="A kind's reports whose period overlaps the range (the week or month "
        "that holds `from` included)."
    )
    def reports(self, info: strawberry.Info, kind: Grain, from_: From, to: date) -> list[Report]:
        _range_checked(from_, to, kind.value)
        found = queries.reports(_db(info, "analytics:read"), kind.value, from_, to)
        return [Report.from_model(report) for report in found]

    @strawberry.field(description="A dimension's counts per period.")
    def series(
        self,
        info: strawberry.Info,
        dimension: Dimension,
        from_: From,
        to: date,
        grain: Grain = Grain.daily,
    ) -> Series:
        _range_checked(from_, to, grain.value)
        found = queries.series(_db(info, "analytics:read"), dimension.value, from_, to, grain.value)
        return Series(
            dimension=found.dimension,
            grain=found.grain,
            points=[
                SeriesPoint(
                    period=point.period,
                    counts=[Count(value=v, count=c) for v, c in point.counts.items()],
                )
                for point in found.points
            ],
        )

    @strawberry.field(description="The daily reports summed per model, and the comparison.")
    def model_comparison(self, info: strawberry.Info, from_: From, to: date) -> ModelComparison:
        _range_checked(from_, to)
        return ModelComparison.from_model(
            queries.model_comparison(_db(info, "analytics:read"), from_, to)
        )

    @strawberry.field(
        description="A user's analytics per period, by pseudonym (`u_` and 20 hex digits); "
        "source user ids are refused. Null when the user has none."
    )
    def user_analytics(self, info: strawberry.Info, user_id: str) -> UserAnalytics | None:
        _checked("user_id", user_id, USER_PSEUDONYM_PATTERN)
        found = queries.user_analytics(_db(info, "users:read"), user_id)
        return None if found is None else UserAnalytics.from_model(found)


class _Schema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        # strawberry logs each error with its traceback; an unexpected one is logged here by
        # type and field path only (a traceback may hold connection strings and values).
        for error in errors:
            if _unexpected(error):
                path = ".".join(str(part) for part in error.path or [])
                log.error("unhandled %s in GraphQL %s", type(error.original_error).__name__, path)


def _unexpected(error: GraphQLError) -> bool:
    if error.message.startswith("Variable '$"):
        # A variable's value refused by its type's parser (a number for a Date raises
        # TypeError there): the client's error, not ours.
        return False
    return error.original_error is not None and not isinstance(error.original_error, GraphQLError)


SCHEMA = _Schema(query=Query, config=StrawberryConfig(auto_camel_case=False))
if set(SCHEMA._schema.query_type.fields) != set(ROOT_SCOPES):
    # A field without a scope would be checked by nothing before execution.
    raise RuntimeError(f"ROOT_SCOPES must name each Query field: {sorted(ROOT_SCOPES)}")


def schema_sdl() -> str:
    """The schema in SDL, as committed in docs/schema.graphql."""
    return SCHEMA.as_str() + "\n"


# --- limits -------------------------------------------------------------------------------


INTROSPECTION_ROOTS = {"__schema": SchemaMetaFieldDef, "__type": TypeMetaFieldDef}


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


@dataclass
class Measure:
    """What a document asks, measured before it runs."""

    depth: int = 0
    cost: int = 0
    aliases: int = 0
    selections: int = 0
    root_fields: set[str] = field(default_factory=set)


class _Measurer:
    def __init__(self, schema: GraphQLSchema, fragments: dict, variables: dict):
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.measure = Measure()

    def value(self, node: ValueNode | None) -> Any:
        if isinstance(node, VariableNode):
            return self.variables.get(node.name.value)
        if isinstance(node, IntValueNode):
            try:
                return int(node.value)
            except ValueError:
                # Over Python's 4,300 digits: unreadable, so the worst case; GraphQL's own
                # validation then refuses it as no 32-bit Int.
                return None
        if isinstance(node, StringValueNode):
            return node.value
        return None if node is None else getattr(node, "value", None)

    def arguments(self, node: FieldNode) -> dict[str, Any]:
        return {argument.name.value: self.value(argument.value) for argument in node.arguments}

    def periods(self, arguments: dict[str, Any], kind: Any) -> int:
        """The periods a range holds (the worst case where it cannot be read)."""
        try:
            days = date.fromisoformat(arguments["to"]) - date.fromisoformat(arguments["from"])
            span = days.days + 1
        except (KeyError, TypeError, ValueError):
            return MAX_COST + 1  # unreadable: over the limit
        return max(1, math.ceil(max(span, 0) / PERIOD_DAYS.get(str(kind), 1)))

    def sizes(self, parent: str, name: str, node: FieldNode) -> tuple[int, int]:
        """(objects the field returns for each parent, multiplier of what is under them)."""
        arguments = self.arguments(node)
        if (parent, name) == ("Query", "conversations"):
            first = arguments.get("first", DEFAULT_PAGE)
            readable = isinstance(first, int) and 0 < first <= MAX_PAGE_SIZE
            return 1, first if readable else MAX_PAGE_SIZE
        if (parent, name) == ("Query", "reports"):
            return self.periods(arguments, arguments.get("kind")), 1
        if (parent, name) == ("Query", "series"):
            return 1, self.periods(arguments, arguments.get("grain", "daily"))
        if (parent, name) in (("ConversationPage", "items"), ("Series", "points")):
            return 1, 1  # counted by the parent's multiplier
        if (parent, name) == ("Conversation", "messages"):
            return MESSAGES_ESTIMATE, 1
        if (parent, name) == ("__Schema", "types"):
            return len(self.schema.type_map), 1
        return LIST_ESTIMATE, 1

    def walk(
        self,
        selections: SelectionSetNode,
        parent,
        depth: int,
        multiplier: int,
        spreading: tuple[str, ...] = (),
    ) -> None:
        for selection in selections.selections:
            self.measure.selections += 1
            if self.measure.selections > MAX_SELECTIONS or self.measure.cost > MAX_COST:
                raise Refused(400, "query_too_costly", _COST_MESSAGE)
            if isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in spreading:
                    continue  # unknown or cyclic: validation refuses it
                on = self.schema.get_type(fragment.type_condition.name.value)
                spread = (*spreading, name)
                self.walk(fragment.selection_set, on or parent, depth, multiplier, spread)
            elif isinstance(selection, InlineFragmentNode):
                on = selection.type_condition and self.schema.get_type(
                    selection.type_condition.name.value
                )
                self.walk(selection.selection_set, on or parent, depth, multiplier, spreading)
            else:
                self.field(selection, parent, depth, multiplier, spreading)

    def field(self, node: FieldNode, parent, depth, multiplier, spreading) -> None:
        name = node.name.value
        self.measure.depth = max(self.measure.depth, depth)
        if self.measure.depth > MAX_DEPTH:
            raise Refused(400, "query_too_deep", f"queries are limited to {MAX_DEPTH} levels")
        if node.alias:
            self.measure.aliases += 1
            if self.measure.aliases > MAX_ALIASES:
                raise Refused(400, "too_many_aliases", f"at most {MAX_ALIASES} aliases")
        if depth == 1:
            self.measure.root_fields.add(name)
        definition = INTROSPECTION_ROOTS.get(name) if depth == 1 else None
        if definition is None and isinstance(parent, GraphQLObjectType):
            definition = parent.fields.get(name)
        if definition is None:
            return  # __typename, or unknown: validation refuses the latter
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return
        is_list = is_list_type(get_nullable_type(definition.type))
        size, under = self.sizes(parent.name, name, node)
        count = multiplier * (size if is_list else 1)
        self.measure.cost += count
        if node.selection_set:
            self.walk(node.selection_set, named, depth + 1, count * under, spreading)


_COST_MESSAGE = (
    f"the query's estimated cost exceeds {MAX_COST} objects: ask for fewer items (`first`), "
    "a shorter range or fewer nested lists"
)


def measure(document, operation: OperationDefinitionNode, variables: dict) -> Measure:
    """Depth, aliases and estimated cost of `operation`; Refused past a limit."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    measurer = _Measurer(SCHEMA._schema, fragments, variables)
    measurer.walk(operation.selection_set, SCHEMA._schema.query_type, 1, 1)
    if measurer.measure.cost > MAX_COST:
        raise Refused(400, "query_too_costly", _COST_MESSAGE)
    return measurer.measure


# --- the endpoint -------------------------------------------------------------------------


def _error(message: str, code: str, **extensions: Any) -> dict:
    return {"message": message, "extensions": {"code": code, **extensions}}


def _refusal(refused: Refused) -> JSONResponse:
    return JSONResponse(
        {"errors": [_error(refused.message, refused.code)]}, refused.status, refused.headers
    )


def _request_body(raw: bytes) -> tuple[str, dict, str | None]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        # RecursionError: arrays nested thousands deep, which fit in the body's 16 KiB.
        raise Refused(400, "bad_request", "the body must be JSON") from error
    if isinstance(body, list):
        raise Refused(400, "batching_not_supported", "one query a request, not a list")
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise Refused(400, "bad_request", 'the body must be {"query": "...", "variables": {}}')
    variables = body.get("variables") or {}
    operation_name = body.get("operationName")
    if not isinstance(variables, dict) or not isinstance(operation_name, str | None):
        raise Refused(400, "bad_request", "variables must be an object, operationName a string")
    return body["query"], variables, operation_name


def _operation(document, operation_name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    chosen = operations
    if len(chosen) != 1:
        raise Refused(400, "invalid_query", "name the one operation to run (operationName)")
    if chosen[0].operation != OperationType.QUERY:
        raise Refused(400, "invalid_query", "only queries: this API reads")
    return chosen[0]


def check_document(query: str, variables: dict, operation_name: str | None, key: keys.ApiKey):
    """Parses, measures and validates the document and checks the key's scopes; Refused
    at the first problem. Nothing here touches the database."""
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError as error:
        code = (
            "too_many_tokens"
            if "more than" in error.message and "tokens" in error.message
            else "invalid_query"
        )
        raise Refused(400, code, error.message) from error
    operation = _operation(document, operation_name)
    measured = measure(document, operation, variables)
    problems = validate(SCHEMA._schema, document, max_errors=10)
    if problems:
        raise Refused(400, "invalid_query", "; ".join(p.message for p in problems))
    lacking = sorted(
        f"{name} needs {ROOT_SCOPES[name]}"
        for name in measured.root_fields
        if name in ROOT_SCOPES and ROOT_SCOPES[name] not in key.scopes
    )
    if lacking:
        raise Refused(403, "forbidden", "this key lacks a scope: " + ", ".join(lacking))
    return measured


def _formatted(error: GraphQLError) -> dict:
    if _unexpected(error):
        internal = _error("internal error", "internal_error")
        return {**internal, "path": error.path}
    formatted = error.formatted
    formatted.setdefault("extensions", {}).setdefault("code", "invalid_query")
    return formatted


def build_router(db_provider: DbProvider, gate: KeyGate) -> APIRouter:
    router = APIRouter()

    def answer(request: Request, api_key: str | None, body: bytes) -> JSONResponse:
        # Synchronous (MongoDB's driver is), so run in the thread pool like REST's endpoints.
        try:
            try:
                key = gate.key(request, api_key)
                gate.take_token(request, key)
            except HTTPException as error:
                code = {401: "unauthorized", 429: "rate_limited"}.get(error.status_code, "error")
                raise Refused(error.status_code, code, str(error.detail), error.headers) from error
            media_type = request.headers.get("content-type", "").split(";")[0].strip()
            if media_type != "application/json":
                raise Refused(415, "unsupported_media_type", "send application/json")
            query, variables, operation_name = _request_body(body)
            check_document(query, variables, operation_name, key)
        except Refused as refused:
            return _refusal(refused)
        result = SCHEMA.execute_sync(
            query,
            variable_values=variables,
            context_value=Context(db_provider, key),
            operation_name=operation_name,
        )
        answered: dict[str, Any] = {"data": result.data}
        if result.errors:
            answered["errors"] = [_formatted(error) for error in result.errors]
        return JSONResponse(answered)

    @router.post(PATH, include_in_schema=False)
    async def graphql(request: Request) -> JSONResponse:
        body = await request.body()
        api_key = request.headers.get(API_KEY.model.name)
        return await run_in_threadpool(answer, request, api_key, body)

    return router


def write_schema(path, sdl: Callable[[], str] = schema_sdl) -> None:
    path.write_text(sdl())
