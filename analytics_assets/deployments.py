"""Which resources each deployment uses, decided in this one place from `Settings`.

- `local` (the default): the bundled sample export, a lake in `.local/lake`, the embedded
  MongoDB; set NOCODB_URL and NOCODB_API_TOKEN to read a real NocoDB instead.
- `prod`: a real NocoDB, an `s3://` lake and a real MongoDB.
Secrets are passed as `EnvVar`s, so Dagster resolves them at run time and never shows them;
every other value is the resolved setting, visible on the UI's resources page. The executor
(how a run executes its steps, Celery and Kubernetes included) is chosen here too.
"""

from __future__ import annotations

from typing import Any

from dagster import EnvVar, ExecutorDefinition, in_process_executor, multiprocess_executor
from dagster_aws.s3 import S3Resource
from dagster_celery import celery_executor

from analytics_assets.defs.categorization.resources import CategorizationResource, LlmResource
from analytics_assets.defs.ingestion.resources import (
    ExportSourceResource,
    NocoDBSourceResource,
    RecordSourceResource,
    SourceSchemaConfig,
    SyncSettings,
)
from analytics_assets.defs.privacy.resources import PrivacyResource
from analytics_assets.defs.queues import STEP_RESOURCES
from analytics_assets.defs.storage.io_managers import LakeAndMongoIOManager
from analytics_assets.defs.storage.lake import LakeResource, ParquetLakeIOManager
from analytics_assets.defs.storage.leases import PARTITION_LEASES, PartitionLeaseResource
from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.defs.translation.resources import TranslationResource
from analytics_assets.privacy.keys import local_key_file
from analytics_assets.settings import DEPLOYMENTS, Settings, get_settings
from analytics_assets.storage.placement import LAKE_AND_MONGO_IO_MANAGER, LAKE_IO_MANAGER
from analytics_assets.storage.state import CHECKPOINTS_FOLDER, HEADS_FOLDER


def _secret(settings: Settings, field: str, variable: str) -> EnvVar | None:
    """The secret as an EnvVar when it is set (prod requires it at run time regardless)."""
    return EnvVar(variable) if getattr(settings, field) is not None else None


def source_schema(settings: Settings) -> SourceSchemaConfig:
    field_map = settings.nocodb_field_map
    return SourceSchemaConfig(
        conversations_table=settings.nocodb_conversations_table,
        messages_table=settings.nocodb_messages_table,
        conversation_fields=field_map.get("conversations", {}),
        message_fields=field_map.get("messages", {}),
        role_names=settings.nocodb_role_names,
    )


def record_source_for(settings: Settings) -> RecordSourceResource:
    if settings.reads_nocodb:
        return NocoDBSourceResource(
            url=EnvVar("NOCODB_URL"),
            api_token=EnvVar("NOCODB_API_TOKEN"),
            base_id=settings.nocodb_base_id,
            requests_per_second=settings.nocodb_requests_per_second,
            source_schema=source_schema(settings),
            # In S3 with ANALYTICS_STATE_URL: a retry on another worker resumes the pull.
            checkpoint_dir=settings.state_location(CHECKPOINTS_FOLDER),
            checkpoint_s3=state_s3(settings),
        )
    return ExportSourceResource(
        export_dir=settings.export_dir or str(settings.sample_export_dir),
        # Only the bundled sample is generated; a team's own export folder is never written.
        generate_sample_if_missing=settings.export_dir is None,
        source_schema=source_schema(settings),
    )


def state_s3(settings: Settings) -> S3Resource:
    """The S3 endpoint and region of the state (checkpoints, heads): the lake's."""
    return S3Resource(endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region)


def lake_settings_for(settings: Settings) -> dict[str, Any]:
    # Without a lake (prod before the variable is set) an EnvVar resolved at run time, so the
    # code location still loads.
    base_url: Any = settings.lake_location or EnvVar("ANALYTICS_LAKE_URL")
    # Keys come from the standard AWS chain (env, profile, role); only where to connect here.
    s3 = S3Resource(endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region)
    return {"base_url": base_url, "s3": s3}


def mongo_for(settings: Settings) -> MongoResource:
    if settings.uses_external_mongodb:
        return MongoResource(uri=EnvVar("MONGODB_URI"), database=settings.mongodb_database)
    # The embedded default: nx-27017 on loopback, its files in .local/mongo.
    return MongoResource(
        embedded_data_dir=settings.embedded_mongo_dir,
        embedded_port=settings.embedded_mongo_port,
        database=settings.mongodb_database,
    )


def storage_resources(
    lake_settings: dict[str, Any], mongo: MongoResource, steps_in_one_process: bool = True
) -> dict[str, Any]:
    """The lake (as a resource and as the two IO managers of storage/placement.py) and
    MongoDB, on shared settings."""
    return {
        "lake": LakeResource(**lake_settings),
        LAKE_IO_MANAGER: ParquetLakeIOManager(**lake_settings),
        LAKE_AND_MONGO_IO_MANAGER: LakeAndMongoIOManager(**lake_settings, mongo=mongo),
        # The same database for the steps that work on collections directly (retention,
        # erasure, the privacy checks).
        "mongo": mongo,
        # Day leases in that database: one writer per day across machines.
        PARTITION_LEASES: PartitionLeaseResource(
            mongo=mongo,
            release_when_process_ends=steps_in_one_process,
            ttl_s=get_settings().lease_ttl_s,
        ),
    }


def categorization_for(settings: Settings) -> CategorizationResource:
    return CategorizationResource(
        tier=settings.categorization_tier,
        device=settings.device,
        encoder=settings.encoder,
        threshold=settings.categorization_threshold,
        heads_dir=settings.heads_dir
        or settings.state_location(HEADS_FOLDER)
        or str(settings.local_path("heads")),
        heads_s3=state_s3(settings),
        feedback_table=settings.nocodb_feedback_table,
        # Locally, the sample export carries corrections for every fifth conversation. In
        # production there is no sample: the image's path to it failed train_heads_job with
        # a missing file instead of saying which setting to make.
        feedback_file=settings.feedback_file
        or (
            str(settings.local_path("sample_export", "category_feedback.json"))
            if settings.deployment == "local"
            else None
        ),
        taxonomy_path=settings.taxonomy,
    )


def llm_for(settings: Settings) -> LlmResource:
    """The optional LLM tier; `enabled` only where a deployment names an endpoint."""
    return LlmResource(
        base_url=settings.llm_url,
        model=settings.llm_model,
        api_key=_secret(settings, "llm_api_key", "ANALYTICS_LLM_API_KEY"),
        budget=settings.llm_budget,
        price_per_1k_tokens=settings.llm_price_per_1k_tokens,
        cache_path=str(settings.local_path("llm_cache.sqlite")),
    )


def sync_settings_for(settings: Settings) -> SyncSettings:
    """The incremental sync's settings (defaults suit NocoDB Cloud's clock and limits)."""
    return SyncSettings(
        overlap_minutes=settings.sync_overlap_minutes,
        bootstrap=settings.sync_bootstrap,
        reconcile_days=settings.reconcile_days,
        deletions=settings.source_deletions,
    )


def translation_for(settings: Settings) -> TranslationResource:
    return TranslationResource(
        translator=settings.translator,
        target_languages=settings.translation_targets,
        http_url=settings.translation_http_url,
        http_api_key=_secret(settings, "translation_http_api_key", "TRANSLATION_HTTP_API_KEY"),
        local_model_dir=settings.translation_model_dir,
        device=settings.device,
        source_table=settings.nocodb_translations_table,
        reference_table=settings.nocodb_reference_translations_table,
    )


def privacy_for(settings: Settings) -> PrivacyResource:
    """The HMAC key is PRIVACY_PSEUDONYM_KEY (an EnvVar, required in prod); locally without
    it, a random key created once in .local/pseudonym.key."""
    key = _secret(settings, "privacy_pseudonym_key", "PRIVACY_PSEUDONYM_KEY")
    if settings.deployment == "prod":
        key = EnvVar("PRIVACY_PSEUDONYM_KEY")
    return PrivacyResource(
        default_policy=settings.privacy_default_policy,
        policies=settings.privacy_policies,
        restricted_tables=settings.privacy_restricted_tables,
        pseudonym_key=key,
        pseudonym_key_file=local_key_file(settings),
        keep_user_mapping=settings.privacy_keep_user_mapping,
        retention_days=settings.privacy_retention_days,
    )


def executor_for(settings: Settings) -> ExecutorDefinition:
    """How a run executes its steps (ANALYTICS_STEP_EXECUTOR). Under Celery the broker and
    result backend are read from the environment at run time, so their passwords never enter
    a run's config; without ANALYTICS_CELERY_BACKEND, Redis is the result backend too."""
    if settings.runs_steps_on_celery:
        if settings.celery_broker is None:
            raise ValueError("ANALYTICS_STEP_EXECUTOR=celery needs ANALYTICS_CELERY_BROKER")
        backend = "ANALYTICS_CELERY_" + ("BACKEND" if settings.celery_backend else "BROKER")
        return celery_executor.configured(
            {"broker": {"env": "ANALYTICS_CELERY_BROKER"}, "backend": {"env": backend}}
        )
    if settings.runs_steps_on_k8s:
        return k8s_executor()
    return in_process_executor if settings.runs_steps_in_process else multiprocess_executor


def k8s_executor() -> ExecutorDefinition:
    """Each step its own Kubernetes Job. An untagged step gets the `light` requests and
    limits; heavy and model-tier steps override them with their op tags (defs/queues.py). The
    cluster, namespace, image, service account and secrets come from the K8sRunLauncher of
    deployments/k8s/values.yaml. Imported here only: dagster-k8s brings the Kubernetes client,
    about 2 s of imports that every other executor's step processes would pay too."""
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(K8S_EXECUTOR_CONFIG, name="k8s")


# The k8s executor's config (test_k8s validates it against dagster-k8s's schema).
K8S_EXECUTOR_CONFIG = {
    "step_k8s_config": {"container_config": {"resources": STEP_RESOURCES["light"]}}
}


def resources_for(settings: Settings | None = None) -> dict[str, Any]:
    """Every resource of the deployment `settings` names (the process's settings if None)."""
    settings = settings or get_settings()
    if settings.deployment not in DEPLOYMENTS:
        raise ValueError(f"ANALYTICS_DEPLOYMENT must be one of {DEPLOYMENTS}")
    return {
        "record_source": record_source_for(settings),
        "categorization": categorization_for(settings),
        "llm": llm_for(settings),
        "sync_settings": sync_settings_for(settings),
        "translation": translation_for(settings),
        "privacy": privacy_for(settings),
        **storage_resources(
            lake_settings_for(settings), mongo_for(settings), settings.runs_steps_in_process
        ),
    }
