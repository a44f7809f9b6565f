"""deployments/k8s/values.yaml as Dagster's Helm chart 1.13.27 reads it, without `helm`.

No registry offers a `helm` binary that runs here, and the chart may not be copied into the
repository, so two parts of the chart are written out by hand from its source
(github.com/dagster-io/dagster, `helm/dagster/`):

- `CHART_KEYS`: the keys the chart's values schema allows, for the sections these values use
  (`schema/schema/charts/dagster/values.py` and `subschema/{daemon,run_launcher,
  compute_log_manager,postgresql,concurrency,service_account,...}.py`,
  `charts/dagster_user_deployments/{values.py,subschema/user_deployments.py}`), from which
  the chart's values.schema.json is generated: a key the chart does not know fails
  `helm upgrade`. Kept to the sections these values use; update it with the chart.
- `render_instance_config`: the instance config (dagster.yaml) the chart renders from the
  values: `templates/configmap-instance.yaml` with `templates/helpers/instance/_*.tpl`, for
  the blocks these values set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S_DIR = ROOT / "deployments" / "k8s"
VALUES_PATH = K8S_DIR / "values.yaml"
MANIFESTS = sorted((K8S_DIR / "manifests").glob("*.yaml"))
RELEASE = "analytics-assets"
NAMESPACE = "analytics"
# The EKS version of deployments/terraform/modules/eks (variable kubernetes_version).
KUBERNETES_VERSION = "1.33.0"

# Kubernetes objects and free-form maps: their shape is Kubernetes' (checked by
# kubernetes-validate in test_k8s.py) or the user's, not the chart's.
ANY = None
_IMAGE = {"repository": ANY, "tag": ANY, "pullPolicy": ANY}
_POD_PLACEMENT = {
    "annotations": ANY,
    "labels": ANY,
    "nodeSelector": ANY,
    "affinity": ANY,
    "tolerations": ANY,
    "podSecurityContext": ANY,
    "securityContext": ANY,
    "resources": ANY,
    "schedulerName": ANY,
    "volumeMounts": ANY,
    "volumes": ANY,
}
_PROBES = {"livenessProbe": ANY, "readinessProbe": ANY, "startupProbe": ANY}
_ENV = {"env": ANY, "envConfigMaps": ANY, "envSecrets": ANY}
_SERVICE_ACCOUNT = {"create": ANY, "name": ANY, "annotations": ANY}
_TAG_LIMIT = {"key": ANY, "value": ANY, "limit": ANY}

CHART_KEYS: dict[str, Any] = {
    "global": {
        "postgresqlSecretName": ANY,
        "dagsterHome": ANY,
        "serviceAccountName": ANY,
        "celeryConfigSecretName": ANY,
    },
    "serviceAccount": _SERVICE_ACCOUNT,
    "dagsterWebserver": {
        "replicaCount": ANY,
        "image": _IMAGE,
        "nameOverride": ANY,
        "pathPrefix": ANY,
        "service": ANY,
        "workspace": ANY,
        "enableReadOnly": ANY,
        "dbStatementTimeout": ANY,
        "dbPoolRecycle": ANY,
        "logLevel": ANY,
        "deploymentLabels": ANY,
        **_ENV,
        **_POD_PLACEMENT,
        **_PROBES,
    },
    "dagsterDaemon": {
        "enabled": ANY,
        "image": _IMAGE,
        "runCoordinator": {
            "enabled": ANY,
            "type": ANY,
            "config": {
                "queuedRunCoordinator": {
                    "maxConcurrentRuns": ANY,
                    "tagConcurrencyLimits": ANY,
                    "dequeueIntervalSeconds": ANY,
                    "dequeueNumWorkers": ANY,
                    "dequeueUseThreads": ANY,
                    "blockOpConcurrencyLimitedRuns": ANY,
                },
                "customRunCoordinator": ANY,
            },
        },
        "heartbeatTolerance": ANY,
        "deploymentLabels": ANY,
        "runMonitoring": {
            "enabled": ANY,
            "startTimeoutSeconds": ANY,
            "cancelTimeoutSeconds": ANY,
            "maxResumeRunAttempts": ANY,
            "pollIntervalSeconds": ANY,
            "freeSlotsAfterRunEndSeconds": ANY,
        },
        "runRetries": {"enabled": ANY, "maxRetries": ANY, "retryOnAssetOrOpFailure": ANY},
        "sensors": ANY,
        "schedules": ANY,
        **_ENV,
        **_POD_PLACEMENT,
        **_PROBES,
    },
    "dagster-user-deployments": {
        "enabled": ANY,
        "enableSubchart": ANY,
        "dagsterHome": ANY,
        "postgresqlSecretName": ANY,
        "celeryConfigSecretName": ANY,
        "includeInstance": ANY,
        "global": ANY,
        "imagePullSecrets": ANY,
        "serviceAccount": _SERVICE_ACCOUNT,
        "deployments": [
            {
                "name": ANY,
                "image": _IMAGE,
                "dagsterApiGrpcArgs": ANY,
                "codeServerArgs": ANY,
                "includeConfigInLaunchedRuns": {"enabled": ANY},
                "port": ANY,
                **_ENV,
                **_POD_PLACEMENT,
                **_PROBES,
            }
        ],
    },
    "postgresql": {
        "image": _IMAGE,
        "enabled": ANY,
        "postgresqlHost": ANY,
        "postgresqlUsername": ANY,
        "postgresqlPassword": ANY,
        "postgresqlDatabase": ANY,
        "postgresqlParams": ANY,
        "postgresqlScheme": ANY,
        "service": {"port": ANY},
    },
    "generatePostgresqlPasswordSecret": ANY,
    "generateCeleryConfigSecret": ANY,
    "computeLogManager": {
        "type": ANY,
        "config": {
            "s3ComputeLogManager": {
                "bucket": ANY,
                "localDir": ANY,
                "prefix": ANY,
                "useSsl": ANY,
                "verify": ANY,
                "verifyCertPath": ANY,
                "endpointUrl": ANY,
                "skipEmptyFiles": ANY,
                "uploadInterval": ANY,
                "uploadExtraArgs": ANY,
                "showUrlOnly": ANY,
                "region": ANY,
            },
        },
    },
    "runLauncher": {
        "type": ANY,
        "config": {
            "k8sRunLauncher": {
                "image": _IMAGE,
                "imagePullPolicy": ANY,
                "jobNamespace": ANY,
                "loadInclusterConfig": ANY,
                "kubeconfigFile": ANY,
                "envConfigMaps": ANY,
                "envSecrets": ANY,
                "envVars": ANY,
                "volumeMounts": ANY,
                "volumes": ANY,
                "labels": ANY,
                "failPodOnRunFailure": ANY,
                "resources": ANY,
                "schedulerName": ANY,
                "securityContext": ANY,
                "runK8sConfig": {
                    "containerConfig": ANY,
                    "podSpecConfig": ANY,
                    "podTemplateSpecMetadata": ANY,
                    "jobSpecConfig": ANY,
                    "jobMetadata": ANY,
                },
            },
        },
    },
    "concurrency": {
        "enabled": ANY,
        "pools": {"defaultLimit": ANY, "granularity": ANY, "opGranularityRunBuffer": ANY},
        "runs": {"maxConcurrentRuns": ANY, "tagConcurrencyLimits": [_TAG_LIMIT]},
    },
    "migrate": {"enabled": ANY, "extraContainers": ANY, "initContainers": ANY},
    "busybox": {"image": _IMAGE},
    "telemetry": {"enabled": ANY},
    "imagePullSecrets": ANY,
    "pythonLogs": ANY,
    "retention": ANY,
    "additionalInstanceConfig": ANY,
}


def load_values() -> dict[str, Any]:
    return yaml.safe_load(VALUES_PATH.read_text())


def unknown_keys(values: Any, allowed: Any = CHART_KEYS, path: str = "") -> list[str]:
    """The paths in `values` whose key the chart's schema does not have."""
    if allowed is ANY:
        return []
    if isinstance(allowed, list):
        return [
            found
            for index, item in enumerate(values)
            for found in unknown_keys(item, allowed[0], f"{path}[{index}]")
        ]
    found = []
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key not in allowed:
            found.append(where)
        else:
            found.extend(unknown_keys(value, allowed[key], where))
    return found


def _fullname() -> str:
    # templates/_helpers.tpl `dagster.fullname`: the release name, plus "-dagster" unless
    # it already contains the chart's name.
    return RELEASE if "dagster" in RELEASE else f"{RELEASE}-dagster"


def _postgres(values: dict[str, Any]) -> dict[str, Any]:
    postgresql = values["postgresql"]
    database = {
        "username": postgresql["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": postgresql["postgresqlHost"],
        "db_name": postgresql["postgresqlDatabase"],
        "port": postgresql["service"]["port"],
        "params": postgresql.get("postgresqlParams", {}),
    }
    if postgresql.get("postgresqlScheme"):
        database["scheme"] = postgresql["postgresqlScheme"]
    return {"postgres_db": database}


def _snake(name: str) -> str:
    return "".join(f"_{letter.lower()}" if letter.isupper() else letter for letter in name)


def _run_launcher(values: dict[str, Any]) -> dict[str, Any]:
    """helpers/instance/_run-launcher.tpl `dagsterYaml.runLauncher.k8s`."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {
        "load_incluster_config": launcher["loadInclusterConfig"],
        "job_namespace": launcher.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": values["serviceAccount"]["name"],
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": f"{_fullname()}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
    }
    if launcher.get("kubeconfigFile"):
        config["kubeconfig_file"] = launcher["kubeconfigFile"]
    for key in ("envConfigMaps", "envSecrets"):
        if launcher.get(key):
            config[_snake(key)] = [source["name"] for source in launcher[key] if "name" in source]
    for key in ("envVars", "volumeMounts", "volumes", "labels", "resources", "securityContext"):
        if launcher.get(key):
            config[_snake(key)] = launcher[key]
    if launcher.get("failPodOnRunFailure"):
        config["fail_pod_on_run_failure"] = True
    if launcher.get("runK8sConfig"):
        config["run_k8s_config"] = {
            _snake(key): value for key, value in launcher["runK8sConfig"].items() if value
        }
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


def _compute_logs(values: dict[str, Any]) -> dict[str, Any]:
    """helpers/instance/_compute-log-manager.tpl `dagsterYaml.computeLogManager.s3`."""
    s3 = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    config = {_snake(key): value for key, value in s3.items() if value not in (None, "")}
    config["verify"] = s3.get("verify") is not False
    return {
        "module": "dagster_aws.s3.compute_log_manager",
        "class": "S3ComputeLogManager",
        "config": config,
    }


def _concurrency(values: dict[str, Any]) -> dict[str, Any]:
    """helpers/instance/_concurrency.tpl: the `concurrency` block, keys in snake case."""
    block = values["concurrency"]
    rendered: dict[str, Any] = {}
    if block.get("pools"):
        rendered["pools"] = {_snake(key): value for key, value in block["pools"].items()}
    if block.get("runs"):
        rendered["runs"] = {_snake(key): value for key, value in block["runs"].items()}
    return rendered


def render_instance_config(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """templates/configmap-instance.yaml's dagster.yaml for these values."""
    values = values if values is not None else load_values()
    daemon = values["dagsterDaemon"]
    instance: dict[str, Any] = {
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": _postgres(values),
        },
        "run_launcher": _run_launcher(values),
        "run_storage": {
            "module": "dagster_postgres.run_storage",
            "class": "PostgresRunStorage",
            "config": _postgres(values),
        },
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": _postgres(values),
        },
        "compute_logs": _compute_logs(values),
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    coordinator = daemon["runCoordinator"]
    if daemon["enabled"] and coordinator["enabled"]:
        queued = coordinator["config"]["queuedRunCoordinator"] or {}
        instance["run_coordinator"] = {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {_snake(key): value for key, value in queued.items()},
        }
    monitoring = daemon.get("runMonitoring") or {}
    if daemon["enabled"] and monitoring.get("enabled"):
        instance["run_monitoring"] = {_snake(key): value for key, value in monitoring.items()}
    retries = daemon.get("runRetries") or {}
    if daemon["enabled"] and retries.get("enabled"):
        instance["run_retries"] = {"enabled": True, "max_retries": retries["maxRetries"]}
    if values.get("concurrency", {}).get("enabled"):
        instance["concurrency"] = _concurrency(values)
    return instance
