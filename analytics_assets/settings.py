"""Every setting of a deployment, read from the environment once into one typed object.

`get_settings()` is the process's copy; code that is handed a `Settings` (the definitions,
the API, the CLI) passes it down instead of reading the environment again. Secrets are
`SecretStr`: only whether they are set is ever shown (`public_view`); Dagster resources
receive them as `EnvVar`s, resolved at run time, so they never enter a run's config.

Pure: no Dagster here, so the read API and the CLI load settings without loading Dagster.
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
Deployment = Literal["local", "prod"]
DEPLOYMENTS: tuple[Deployment, ...] = ("local", "prod")

# A comma-separated list in the environment (`en,de`), a list here.
CommaList = Annotated[list[str], NoDecode]


def _env(name: str, **kwargs: Any) -> Any:
    """A field read from the environment variable `name` (and settable by field name)."""
    return Field(validation_alias=AliasChoices(name, name.lower()), **kwargs)


# How a table holds text (docs/privacy.md): `PrivacyResource` applies them.
TEXT_POLICIES = ("redact", "pseudonymize", "keep")


def _read_back_days() -> dict[str, int]:
    """Per table, the days a later day's build reads back in it, its own included: new and
    returning users look back 30 days in conversation_analytics, the return predictions 90
    days in user_analytics."""
    from analytics_assets import tables
    from analytics_assets.analytics.return_prediction import HISTORY_DAYS as PREDICTION_DAYS
    from analytics_assets.analytics.users import HISTORY_DAYS

    return {tables.CONVERSATION_ANALYTICS: HISTORY_DAYS + 1, tables.USER_ANALYTICS: PREDICTION_DAYS}


class Settings(BaseSettings):
    """The deployment's configuration; each field names its environment variable."""

    # An empty variable counts as unset (NOCODB_URL= is no NocoDB).
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, frozen=True, env_ignore_empty=True
    )

    # -- where and what -----------------------------------------------------------------------
    deployment: Deployment = _env("ANALYTICS_DEPLOYMENT", default="local")
    step_executor: Literal["auto", "in_process", "multiprocess", "celery", "k8s"] = _env(
        "ANALYTICS_STEP_EXECUTOR",
        default="auto",
        description="How a run executes its steps; auto: in one process locally (a step "
        "process costs seconds of imports), a process per step in prod (isolation); celery: "
        "each step a task on ANALYTICS_CELERY_BROKER, run by workers on any machine, the "
        "model tier on the `gpu` queue; k8s: each step its own Kubernetes Job (dagster-k8s), "
        "the model tier on the GPU node pool (docs/scale-out.md).",
    )
    lease_ttl_s: float = _env(
        "ANALYTICS_LEASE_TTL_S",
        default=120.0,
        gt=0,
        le=86_400,
        allow_inf_nan=False,
        description="A run's day leases expire this long after its last heartbeat (every "
        "process executing one of its steps renews them every quarter of it): how long a "
        "killed run keeps its days from the next. Longer than the gap between two steps "
        "(a Kubernetes step pod waiting for a node: deployments/k8s sets 900).",
    )
    k8s_gpu_image: str | None = _env(
        "ANALYTICS_K8S_GPU_IMAGE",
        default=None,
        description="Under the k8s executor, the image of the model tier's step pods (the "
        "release's `-gpu` image, CUDA PyTorch); None: the run's image.",
    )
    # Secrets: a broker URL carries the Redis password.
    celery_broker: SecretStr | None = _env(
        "ANALYTICS_CELERY_BROKER", default=None, description="e.g. redis://host:6379/0"
    )
    celery_backend: SecretStr | None = _env(
        "ANALYTICS_CELERY_BACKEND",
        default=None,
        description="Where workers put the steps' results; None: the broker.",
    )
    local_dir: Path = _env(
        "ANALYTICS_LOCAL_DIR",
        default=PROJECT_ROOT / ".local",
        description="The local deployment's working folder (sample, lake, embedded MongoDB).",
    )
    partitions_start: str = _env(
        "ANALYTICS_PARTITIONS_START",
        default="2026-01-01",
        description="The first day the daily partitions list (Dagster needs it at import).",
    )

    # -- the source ---------------------------------------------------------------------------
    nocodb_url: str | None = _env("NOCODB_URL", default=None)
    nocodb_api_token: SecretStr | None = _env("NOCODB_API_TOKEN", default=None)
    nocodb_base_id: str | None = _env("NOCODB_BASE_ID", default=None)
    # 0: no pacing (a server of one's own, the tests); never negative.
    nocodb_requests_per_second: float = _env("NOCODB_REQUESTS_PER_SECOND", default=5.0, ge=0)
    nocodb_conversations_table: str = _env("NOCODB_CONVERSATIONS_TABLE", default="conversations")
    nocodb_messages_table: str = _env("NOCODB_MESSAGES_TABLE", default="messages")
    nocodb_field_map: dict[str, dict[str, str]] = _env(
        "NOCODB_FIELD_MAP",
        default_factory=dict,
        description='Canonical -> source field per table, e.g. {"messages": {"content": "text"}}.',
    )
    nocodb_role_names: dict[str, str] = _env(
        "NOCODB_ROLE_NAMES",
        default_factory=dict,
        description='A message role as written -> user/assistant/system/tool, e.g. {"bot": '
        '"assistant"} (human, gpt, ai, model, developer, function... are known already).',
    )
    nocodb_feedback_table: str | None = _env("NOCODB_FEEDBACK_TABLE", default=None)
    nocodb_translations_table: str = _env(
        "NOCODB_TRANSLATIONS_TABLE", default="message_translations"
    )
    nocodb_reference_translations_table: str | None = _env(
        "NOCODB_REFERENCE_TRANSLATIONS_TABLE", default=None
    )
    export_dir: str | None = _env(
        "ANALYTICS_EXPORT_DIR",
        default=None,
        description="A folder of NocoDB exports to read instead of the generated sample.",
    )

    # -- storage ------------------------------------------------------------------------------
    lake_url: str | None = _env("ANALYTICS_LAKE_URL", default=None)
    state_url: str | None = _env(
        "ANALYTICS_STATE_URL",
        default=None,
        description="Where resume checkpoints and trained heads live, e.g. s3://bucket/state "
        "(shared by every worker); None: the local disk (as before).",
    )
    s3_endpoint_url: str | None = _env("ANALYTICS_S3_ENDPOINT_URL", default=None)
    aws_region: str | None = _env("AWS_REGION", default=None)
    mongodb_uri: SecretStr | None = _env("MONGODB_URI", default=None)
    mongodb_database: str = _env("MONGODB_DATABASE", default="analytics")
    embedded_mongo_port: int = _env("ANALYTICS_EMBEDDED_MONGO_PORT", default=27018)

    # -- categorization -----------------------------------------------------------------------
    categorization_tier: Literal["rules", "model"] = _env(
        "ANALYTICS_CATEGORIZATION_TIER", default="rules"
    )
    device: Literal["auto", "cpu", "cuda"] = _env("ANALYTICS_DEVICE", default="auto")
    categorization_threshold: float = _env(
        "ANALYTICS_CATEGORIZATION_THRESHOLD",
        default=0.5,
        ge=0,
        le=1,
        description="Below this confidence a label is the fallback (other/uncertain).",
    )
    encoder: Literal["use-m3", "e5-small", "minilm"] = _env(
        "ANALYTICS_ENCODER",
        default="use-m3",
        description="The model tier's sentence encoder (docs/categorization.md).",
    )
    heads_dir: str | None = _env("ANALYTICS_HEADS_DIR", default=None)
    feedback_file: str | None = _env("ANALYTICS_FEEDBACK_FILE", default=None)
    taxonomy: str | None = _env(
        "ANALYTICS_TAXONOMY", default=None, description="A taxonomy YAML; None: the shipped one."
    )
    llm_url: str | None = _env(
        "ANALYTICS_LLM_URL",
        default=None,
        description="An OpenAI-compatible API base URL (…/v1); None: no LLM tier.",
    )
    llm_model: str = _env("ANALYTICS_LLM_MODEL", default="gpt-4o-mini")
    llm_api_key: SecretStr | None = _env("ANALYTICS_LLM_API_KEY", default=None)
    llm_budget: int = _env(
        "ANALYTICS_LLM_BUDGET", default=200, ge=0, description="LLM requests per run, at most."
    )
    llm_price_per_1k_tokens: float = _env(
        "ANALYTICS_LLM_PRICE_PER_1K_TOKENS", default=0.0, ge=0, allow_inf_nan=False
    )
    languages: CommaList | None = _env(
        "ANALYTICS_LANGUAGES",
        default=None,
        description="ISO 639-1 codes lingua chooses among; None: the default set.",
    )

    # -- incremental sync ---------------------------------------------------------------------
    sync_overlap_minutes: float = _env(
        "ANALYTICS_SYNC_OVERLAP_MINUTES", default=5.0, ge=0, allow_inf_nan=False
    )
    sync_bootstrap: Literal["latest", "all"] = _env("ANALYTICS_SYNC_BOOTSTRAP", default="latest")
    reconcile_days: int = _env(
        "ANALYTICS_RECONCILE_DAYS",
        default=0,
        ge=0,
        description="Days back the reconciliation compares; 0: every materialized day.",
    )
    source_deletions: Literal["remove", "mark"] = _env(
        "ANALYTICS_SOURCE_DELETIONS", default="remove"
    )

    # -- translation --------------------------------------------------------------------------
    translator: Literal["none", "source", "http", "local"] = _env("TRANSLATOR", default="none")
    translation_targets: CommaList = _env("TRANSLATION_TARGETS", default_factory=lambda: ["en"])
    translation_http_url: str | None = _env("TRANSLATION_HTTP_URL", default=None)
    translation_http_api_key: SecretStr | None = _env("TRANSLATION_HTTP_API_KEY", default=None)
    translation_model_dir: str | None = _env("TRANSLATION_MODEL_DIR", default=None)

    # -- privacy ------------------------------------------------------------------------------
    privacy_pseudonym_key: SecretStr | None = _env("PRIVACY_PSEUDONYM_KEY", default=None)
    privacy_default_policy: Literal["redact", "pseudonymize", "keep"] = _env(
        "PRIVACY_DEFAULT_POLICY", default="redact"
    )
    privacy_policies: dict[str, str] = _env("PRIVACY_POLICIES", default_factory=dict)
    privacy_restricted_tables: CommaList = _env("PRIVACY_RESTRICTED_TABLES", default_factory=list)
    privacy_keep_user_mapping: bool = _env("PRIVACY_KEEP_USER_MAPPING", default=False)
    privacy_retention_days: dict[str, int] = _env("PRIVACY_RETENTION_DAYS", default_factory=dict)

    # Alerts (analytics_assets/alerts/, defs/alerts/): each sink is off while unset.
    alert_slack_token: SecretStr | None = _env("ANALYTICS_ALERT_SLACK_TOKEN", default=None)
    alert_slack_channel: str | None = _env("ANALYTICS_ALERT_SLACK_CHANNEL", default=None)
    alert_smtp_host: str | None = _env("ANALYTICS_ALERT_SMTP_HOST", default=None)
    alert_smtp_port: int = _env("ANALYTICS_ALERT_SMTP_PORT", default=25)
    alert_smtp_user: str | None = _env("ANALYTICS_ALERT_SMTP_USER", default=None)
    alert_smtp_password: SecretStr | None = _env("ANALYTICS_ALERT_SMTP_PASSWORD", default=None)
    alert_smtp_from: str | None = _env("ANALYTICS_ALERT_SMTP_FROM", default=None)
    alert_smtp_to: CommaList = _env("ANALYTICS_ALERT_SMTP_TO", default_factory=list)
    # auto: STARTTLS where a user and password are set (never a password in plain text),
    # TLS from the start on port 465, else plain (a relay on a trusted network).
    alert_smtp_security: Literal["auto", "starttls", "ssl", "none"] = _env(
        "ANALYTICS_ALERT_SMTP_SECURITY", default="auto"
    )
    alert_webhook_url: str | None = _env("ANALYTICS_ALERT_WEBHOOK_URL", default=None)
    alert_webhook_secret: SecretStr | None = _env("ANALYTICS_ALERT_WEBHOOK_SECRET", default=None)
    alert_min_severity: Literal["ERROR", "WARN"] = _env(
        "ANALYTICS_ALERT_MIN_SEVERITY", default="ERROR"
    )
    ui_url: str | None = _env("ANALYTICS_UI_URL", default=None)

    @field_validator(
        "languages",
        "translation_targets",
        "privacy_restricted_tables",
        "alert_smtp_to",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("privacy_policies", "privacy_retention_days", mode="after")
    @classmethod
    def _known_tables(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        """A misspelled table (`conversation_mesages`) kept its default in silence: its
        policy redact, its retention forever."""
        from analytics_assets import tables

        known = {v for k, v in vars(tables).items() if k.isupper() and isinstance(v, str)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; the tables are {sorted(known)}")
        if info.field_name == "privacy_policies":
            wrong = sorted(t for t, p in value.items() if p not in TEXT_POLICIES)
            if wrong:
                # The tables, not the values: an error names the setting, never what it holds.
                raise ValueError(
                    f"policies must be redact, pseudonymize or keep; not so for {wrong}"
                )
        elif any(not 1 <= days <= 36_500 for days in value.values()):
            raise ValueError("days kept must be 1 to 36,500")
        else:
            short = {
                table: needed
                for table, needed in _read_back_days().items()
                if value.get(table, needed) < needed
            }
            if short:
                # Kept shorter, the days a later day reads back were gone, and its numbers
                # were wrong without a word: a returning user counted new.
                raise ValueError(
                    "kept shorter than what reads them back: "
                    + ", ".join(
                        f"{table} needs at least {days} days" for table, days in short.items()
                    )
                )
        return value

    @field_validator("languages", mode="after")
    @classmethod
    def _empty_means_default(cls, value: list[str] | None) -> list[str] | None:
        return value or None

    @field_validator("partitions_start", mode="after")
    @classmethod
    def _a_day(cls, value: str) -> str:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a day, YYYY-MM-DD") from None
        if len(value) != 10:
            raise ValueError("must be a day, YYYY-MM-DD (no time)")
        return value

    @field_validator(
        "ui_url",
        "nocodb_url",
        "llm_url",
        "translation_http_url",
        "alert_webhook_url",
        "s3_endpoint_url",
        mode="after",
    )
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        # Without a scheme (`nocodb:8080`) every request failed as a transport error, retried
        # eight times before the run failed. Empty is unset, as before (NocoDB: the sample).
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, e.g. http://nocodb:8080")
        return value

    @field_validator("local_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Made absolute once, when the settings are read: a relative folder meant another
        # folder for every process that started somewhere else (a code server, a worker).
        return value.expanduser().absolute()

    @field_validator("translation_targets", mode="after")
    @classmethod
    def _language_codes(cls, value: list[str]) -> list[str]:
        # Compared with the detector's lowercase ISO codes: "EN" would send every English
        # message for translation, and "en,en" store each translation twice.
        return list(dict.fromkeys(code.lower() for code in value))

    # -- derived ------------------------------------------------------------------------------

    @property
    def reads_nocodb(self) -> bool:
        """Production always reads NocoDB; locally, setting NOCODB_URL switches to it."""
        return self.deployment == "prod" or bool(self.nocodb_url)

    @property
    def uses_external_mongodb(self) -> bool:
        return self.deployment == "prod" or self.mongodb_uri is not None

    @property
    def runs_steps_in_process(self) -> bool:
        if self.step_executor == "auto":
            return self.deployment == "local"
        return self.step_executor == "in_process"

    @property
    def runs_steps_on_celery(self) -> bool:
        return self.step_executor == "celery"

    @property
    def runs_steps_on_k8s(self) -> bool:
        return self.step_executor == "k8s"

    def local_path(self, *parts: str) -> Path:
        return Path(self.local_dir, *parts)

    @property
    def lake_location(self) -> str | None:
        """ANALYTICS_LAKE_URL, else the local deployment's `.local/lake`; None in prod
        without it (prod names its lake)."""
        if self.lake_url or self.deployment == "prod":
            return self.lake_url
        return str(self.local_path("lake"))

    def state_location(self, folder: str) -> str | None:
        """`folder` under ANALYTICS_STATE_URL; None without it (each caller's local default)."""
        return f"{self.state_url.rstrip('/')}/{folder}" if self.state_url else None

    @property
    def embedded_mongo_dir(self) -> str:
        """The embedded MongoDB-compatible server's data folder (local deployment)."""
        return str(self.local_path("mongo"))

    @property
    def sample_export_dir(self) -> Path:
        """Where the local deployment generates the bundled sample export."""
        return self.local_path("sample_export")

    def public_view(self) -> dict[str, Any]:
        """Every setting as resolved, secrets replaced by whether they are set: fit for the
        UI, logs and `analytics-assets settings`."""
        view: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "<set>"
            elif name.endswith("_url") and isinstance(value, str):
                # A URL can carry a secret: a webhook's token in its path, a password before
                # the host, an API key in the query. Where it points is enough here.
                value = url_origin(value)
            elif isinstance(value, str | Path) and "://" in str(value):
                # A folder setting may be a bucket URL too (`s3://KEY:SECRET@bucket/x`,
                # `…?sig=`): the same care.
                value = url_without_credentials(str(value))
            elif isinstance(value, Path):
                value = str(value)
            view[name] = value
        return view

    def public_json(self) -> str:
        return json.dumps(self.public_view(), indent=2, sort_keys=True, default=str)


def url_without_credentials(url: str) -> str:
    """`url` without a user or password before the host, a query or a fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<not a URL>"  # `https://a:b@[bad/`: its text may hold the password
    if not parts.netloc:
        # No scheme (`admin:hunter2@nocodb.internal:8080`, a path): whatever stands before
        # an `@` of its first part may be a user and a password.
        first, slash, rest = url.partition("/")
        first = first.rpartition("@")[2]
        return (first + slash + rest).split("?")[0].split("#")[0]
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def url_origin(url: str) -> str:
    """Where an HTTP `url` points (scheme, host and port), and "/…" where it held more;
    another URL (a bucket and its prefix, a local path) without credentials or query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<not a URL>"
    if parts.scheme not in ("http", "https"):
        return url_without_credentials(url)
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    more = parts.path.strip("/") or parts.query or parts.fragment
    return f"{origin}/…" if more else origin


@cache
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
