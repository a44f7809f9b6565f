"""deployments/k8s: the Helm values, the manifests beside the chart, and the steps' pods.

Without a `helm` binary (no registry has one that runs here) the chart is not rendered; the
values are checked against the keys the chart reads (helm_values.CHART_KEYS), their Dagster
parts against dagster-k8s's own config schemas, and every Kubernetes object (the manifests,
the pod fragments in the values, the Job the k8s executor builds for each kind of step)
against Kubernetes' OpenAPI schemas for the cluster's version (kubernetes-validate, offline).
The instance config the chart renders is loaded in test_instance_configs.py.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dagster import DagsterInvalidConfigError, job, op, validate_run_config
from dagster_k8s import k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    USER_DEFINED_K8S_CONFIG_KEY,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)
from kubernetes.client import ApiClient

from analytics_assets.defs import queues
from analytics_assets.deployments import K8S_EXECUTOR_CONFIG, executor_for
from analytics_assets.settings import Settings
from analytics_assets_tests.helm_values import (
    KUBERNETES_VERSION,
    MANIFESTS,
    ROOT,
    load_values,
    render_instance_config,
    unknown_keys,
)

VALUES = load_values()
GPU_IMAGE = "ghcr.io/analytics-assets/analytics-assets:1.2.3-gpu"
# Values the pipeline's secrets hold; none of them may be written in deployments/k8s.
SECRET_NAMES = (
    "MONGODB_URI",
    "NOCODB_API_TOKEN",
    "PRIVACY_PSEUDONYM_KEY",
    "DAGSTER_POSTGRES_PASSWORD",
    "DAGSTER_PG_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "API_KEYS",
)


def _validate(resource: dict[str, Any]) -> None:
    """Kubernetes' schema for the cluster's version, unknown fields refused."""
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, f"{path}[{index}]")


# -- the values -------------------------------------------------------------------------------


def test_the_values_use_only_keys_the_chart_reads():
    assert unknown_keys(VALUES) == []
    # The check itself: a misspelt key is reported.
    assert unknown_keys({"runLauncher": {"config": {"k8sRunLauncher": {"envSecret": []}}}}) == [
        "runLauncher.config.k8sRunLauncher.envSecret"
    ]


def test_sensors_are_given_time_to_read_a_large_source():
    """As in Compose (test_delivery.py): the daemon's ticks and the UI's "test sensor"."""
    for section in ("dagsterDaemon", "dagsterWebserver"):
        assert int(VALUES[section]["env"]["DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS"]) >= 600


def test_the_values_choose_the_k8s_launcher_postgres_s3_logs_and_limits_by_tag():
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    assert VALUES["postgresql"]["enabled"] is False
    assert VALUES["generatePostgresqlPasswordSecret"] is False
    assert VALUES["computeLogManager"]["type"] == "S3ComputeLogManager"
    assert VALUES["concurrency"]["enabled"] is True
    # The chart refuses limits in both places; Dagster 1.13 reads them under `concurrency`.
    queued = VALUES["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(queued)
    code = VALUES["dagster-user-deployments"]["deployments"][0]
    assert code["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert code["env"]["ANALYTICS_STEP_EXECUTOR"] == "k8s"
    # Step pods share no disk: checkpoints and heads in S3 (ANALYTICS_STATE_URL).
    assert code["env"]["ANALYTICS_STATE_URL"].startswith("s3://")
    assert code["dagsterApiGrpcArgs"] == ["-m", "analytics_assets.definitions"]


def test_every_image_is_pinned_to_a_version():
    images = [
        (path, node)
        for path, node in _walk(VALUES)
        if {"repository", "tag"} <= set(node) and path.endswith("image")
    ]
    assert len(images) >= 5, images  # webserver, daemon, code location, postgres, busybox
    for path, image in images:
        assert re.fullmatch(r"\d+(\.\d+)+", str(image["tag"])), (path, image)
    code = VALUES["dagster-user-deployments"]["deployments"][0]
    assert code["env"]["ANALYTICS_K8S_GPU_IMAGE"].endswith(f":{code['image']['tag']}-gpu")
    for document in _manifest_documents():
        for _, node in _walk(document):
            if "image" in node and isinstance(node["image"], str):
                name, _, tag = node["image"].rpartition(":")
                assert name and re.fullmatch(r"\d+(\.\d+)+", tag), node["image"]


def test_secrets_are_referenced_never_written():
    values_text = (ROOT / "deployments/k8s/values.yaml").read_text()
    assert VALUES["postgresql"]["postgresqlPassword"] == ""
    for _, node in _walk(VALUES):
        for key, value in node.items():
            if re.search(r"password|token|secret_?key|apikey", key, re.IGNORECASE):
                assert value in ("", None) or isinstance(value, bool), key
    code = VALUES["dagster-user-deployments"]["deployments"][0]
    assert not set(SECRET_NAMES) & set(code["env"])
    assert code["envSecrets"] == [{"name": "analytics-assets-env"}]
    documents = _manifest_documents()
    assert "Secret" not in {document["kind"] for document in documents}
    for text in [values_text, *(path.read_text() for path in MANIFESTS)]:
        for name in SECRET_NAMES:
            assert f"{name}:" not in text and f"name: {name}" not in text, name


def test_the_pod_fragments_in_the_values_are_valid_kubernetes():
    """Each section's resources, node selector, tolerations and service account, placed in a
    Pod as the chart places them, for the cluster's Kubernetes version."""
    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    sections = {
        "webserver": VALUES["dagsterWebserver"],
        "daemon": VALUES["dagsterDaemon"],
        "code": VALUES["dagster-user-deployments"]["deployments"][0],
        "run": {"resources": launcher["resources"], **launcher["runK8sConfig"]["podSpecConfig"]},
    }
    for name, section in sections.items():
        spec = {
            "containers": [{"name": name, "image": "x:1", "resources": section["resources"]}],
            **{
                key: section[key]
                for key in ("nodeSelector", "tolerations", "serviceAccountName")
                if key in section
            },
        }
        _validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "bad"},
                "spec": {"containers": [{"name": "x", "resources": {"limit": {}}}]},
            }
        )


# -- the manifests beside the chart -----------------------------------------------------------


def _manifest_documents() -> list[dict[str, Any]]:
    return [
        document
        for path in MANIFESTS
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def test_the_manifests_are_valid_kubernetes():
    documents = _manifest_documents()
    assert {document["kind"] for document in documents} >= {
        "Namespace",
        "ServiceAccount",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
    }
    for document in documents:
        _validate(document)
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "analytics", document["metadata"]


def test_the_api_deployment_runs_unprivileged_with_its_own_account():
    (deployment,) = [d for d in _manifest_documents() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "analytics-api"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["envFrom"] == [{"secretRef": {"name": "analytics-api-env"}}]
    # Failed keys are limited per caller, not per ingress controller: uvicorn reads the
    # caller from X-Forwarded-For, which only the controller can send (the NetworkPolicy).
    env = {entry["name"]: entry["value"] for entry in container["env"]}
    assert env["FORWARDED_ALLOW_IPS"] == "*"
    (policy,) = [d for d in _manifest_documents() if d["kind"] == "NetworkPolicy"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])


# -- the launcher, the executor and the steps' pods -------------------------------------------


def test_the_executor_config_is_valid_for_k8s_job_executor():
    @op
    def noop():
        pass

    @job(executor_def=k8s_job_executor)
    def probe():
        noop()

    assert validate_run_config(probe, {"execution": {"config": K8S_EXECUTOR_CONFIG}})
    with pytest.raises(DagsterInvalidConfigError):
        validate_run_config(probe, {"execution": {"config": {"step_k8s_config": {"pod": {}}}}})


def test_the_definitions_load_with_the_k8s_executor():
    from analytics_assets.definitions import build_definitions

    settings = Settings(step_executor="k8s", k8s_gpu_image=GPU_IMAGE)
    assert executor_for(settings).name == "k8s"
    definitions = build_definitions(settings)
    for job_def in definitions.resolve_all_job_defs():
        assert job_def.executor_def.name == "k8s", job_def.name
    # Locally the tags are inert: the in-process executor ignores them.
    assert executor_for(Settings()).name == "in_process"


def _steps() -> list[tuple[str, set[str], dict[str, str]]]:
    from analytics_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    steps = {}
    for node in graph.asset_nodes:
        op_def = graph.assets_def_for_key(node.key).node_def
        steps[op_def.name] = (node.pools, dict(op_def.tags))
    return [(name, pools, tags) for name, (pools, tags) in sorted(steps.items())]


STEPS = _steps()


def _kind(tags: dict[str, str]) -> str:
    config = get_user_defined_k8s_config(tags)
    resources = config.container_config.get("resources")
    if resources is None:
        return "light"
    if "nvidia.com/gpu" in resources["limits"]:
        return "gpu"
    return "heavy"


def test_the_tag_is_dagster_k8s_own():
    assert queues.K8S_CONFIG_TAG == USER_DEFINED_K8S_CONFIG_KEY


@pytest.mark.parametrize("step", STEPS, ids=[name for name, *_ in STEPS])
def test_only_the_model_tier_asks_for_the_gpu_pool(step):
    """dagster-k8s parses each step's tags (its schema refuses unknown fields); the steps of
    the `gpu` pool, and only those, get the GPU node pool, its toleration and one GPU."""
    _, pools, tags = step
    config = get_user_defined_k8s_config(tags)
    pod_spec = config.pod_spec_config
    if "gpu" in pools:
        assert _kind(tags) == "gpu"
        assert pod_spec["node_selector"] == {"analytics-assets/pool": "gpu"}
        assert pod_spec["tolerations"] == queues.GPU_TOLERATIONS
        assert config.container_config["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert tags["dagster-celery/queue"] == "gpu"
    else:
        assert _kind(tags) in {"light", "heavy"}
        assert "node_selector" not in pod_spec and "tolerations" not in pod_spec
        assert "gpu" not in json.dumps(config.to_dict())


def test_each_kind_of_step_is_present():
    kinds = {name: _kind(tags) for name, _, tags in STEPS}
    assert {kind for kind in kinds.values()} == {"light", "heavy", "gpu"}
    assert kinds["conversations"] == "heavy"
    assert kinds["daily_report"] == "light"
    assert kinds["topic_discovery"] == "gpu"


def _step_job(tags: dict[str, str], image: str = "ghcr.io/analytics-assets/analytics-assets:1.2.3"):
    """The Job the k8s executor creates for a step with these tags, merged as its step handler
    merges them (dagster_k8s.executor.K8sStepHandler._get_container_context): the launcher's
    config as the chart renders it, then the executor's, then the step's tags."""
    launcher = render_instance_config()["run_launcher"]["config"]
    context = (
        K8sContainerContext(
            image_pull_policy=launcher["image_pull_policy"],
            service_account_name=launcher["service_account_name"],
            env_secrets=launcher["env_secrets"],
            labels=launcher["labels"],
            namespace=launcher["job_namespace"],
            resources=launcher["resources"],
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(launcher["run_k8s_config"]),
        )
        .merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                    K8S_EXECUTOR_CONFIG["step_k8s_config"]
                )
            )
        )
        .merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags)))
    )
    # What the step handler reads from the instance's K8sRunLauncher.
    run_launcher = SimpleNamespace(
        job_image=None,
        dagster_home=launcher["dagster_home"],
        instance_config_map=launcher["instance_config_map"],
        postgres_password_secret=launcher["postgres_password_secret"],
    )
    job_config = context.get_k8s_job_config(image, run_launcher)
    kubernetes_job = construct_dagster_k8s_job(
        job_config,
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-0123456789abcdef",
        user_defined_k8s_config=context.run_k8s_config,
    )
    return ApiClient().sanitize_for_serialization(kubernetes_job)


@pytest.mark.parametrize("kind", ["light", "heavy", "gpu"])
def test_the_job_of_each_kind_of_step_is_valid_kubernetes(kind):
    tags = {
        "light": {},
        "heavy": queues.HEAVY_STEP_TAGS,
        "gpu": {queues.K8S_CONFIG_TAG: json.dumps(queues.k8s_step_config("gpu", GPU_IMAGE))},
    }[kind]
    step_job = _step_job(tags)
    _validate(step_job)
    pod = step_job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"] == queues.STEP_RESOURCES[kind]
    assert pod["serviceAccountName"] == "analytics-pipeline"
    assert {"secretRef": {"name": "analytics-assets-env"}} in container["envFrom"]
    # The password comes from the chart's secret, by reference.
    (password,) = [env for env in container["env"] if env["name"] == "DAGSTER_PG_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["name"] == "dagster-postgresql-secret"
    assert step_job["spec"]["ttlSecondsAfterFinished"] == 86400
    if kind == "gpu":
        assert pod["nodeSelector"] == {"analytics-assets/pool": "gpu"}
        assert pod["tolerations"] == queues.GPU_TOLERATIONS
        assert container["image"] == GPU_IMAGE
    else:
        assert pod["nodeSelector"] == {"analytics-assets/pool": "cpu"}
        assert "tolerations" not in pod
        assert container["image"].endswith(":1.2.3")


def test_a_malformed_step_tag_is_refused_by_dagster_k8s():
    with pytest.raises(DagsterInvalidConfigError):
        get_user_defined_k8s_config({queues.K8S_CONFIG_TAG: json.dumps({"container": {}})})


# -- the deploy workflow ----------------------------------------------------------------------


def test_the_deploy_workflow_installs_these_values_at_the_pinned_dagster():
    import dagster

    workflow = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())
    (deploy,) = workflow["jobs"].values()
    assert deploy["env"]["VALUES"] == "deployments/k8s/values.yaml"
    assert deploy["env"]["CHART_VERSION"] == dagster.__version__
    assert deploy["env"]["NAMESPACE"] == "analytics"
    script = "\n".join(step.get("run", "") for step in deploy["steps"])
    assert "dagster-user-deployments.deployments[0].image.tag=$VERSION" in script
    assert "env.ANALYTICS_K8S_GPU_IMAGE=${IMAGE,,}:$VERSION-gpu" in script
    assert "kubectl apply" in script and "deployments/k8s/manifests" in script
