"""Where a step runs, as tags on its op; each executor reads its own and ignores the others'.

- Celery (ANALYTICS_STEP_EXECUTOR=celery): the model tier (kind `pytorch`, the `gpu` pool) goes
  to the `gpu` queue, which only workers on machines with the accelerator take; every other
  step goes to dagster-celery's default queue.
- Kubernetes (ANALYTICS_STEP_EXECUTOR=k8s): each step is a Job whose pod gets the requests and
  limits of its kind: `light` (every untagged step, the executor's default in
  `deployments.executor_for`), `heavy` (steps that hold a whole day of messages) and `gpu` (the
  model tier: on the GPU node pool, which is tainted, with one `nvidia.com/gpu`).
The in-process and multiprocess executors read neither (docs/scale-out.md).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

from analytics_assets.settings import get_settings

# dagster-celery's default queue (its `task_default_queue`): where an untagged step goes.
DEFAULT_QUEUE = "dagster"
GPU_QUEUE = "gpu"

# dagster-k8s's per-op config tag (dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY, spelled out:
# importing dagster-k8s costs about 2 s; test_k8s checks that the two are equal).
K8S_CONFIG_TAG = "dagster-k8s/config"

# The node pools of deployments/terraform/modules/eks: nodes labelled by pool, the GPU pool
# tainted so that only pods tolerating `nvidia.com/gpu` land there.
NODE_POOL_LABEL = "analytics-assets/pool"
GPU_TOLERATIONS = [
    {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
]

StepKind = Literal["light", "heavy", "gpu"]
# Requests are what the scheduler reserves; limits are where a step is throttled (CPU) or
# killed (memory). A heavy step holds a day of messages and its derived frames; the model
# tier also holds the encoder.
STEP_RESOURCES: dict[StepKind, dict[str, dict[str, str]]] = {
    "light": {
        "requests": {"cpu": "250m", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    },
    "heavy": {
        "requests": {"cpu": "1", "memory": "4Gi"},
        "limits": {"cpu": "2", "memory": "8Gi"},
    },
    "gpu": {
        "requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
    },
}


def k8s_step_config(kind: StepKind, image: str | None = None) -> dict[str, Any]:
    """The `dagster-k8s/config` of a step of this kind (dagster-k8s's user-defined config)."""
    container: dict[str, Any] = {"resources": STEP_RESOURCES[kind]}
    pod_spec: dict[str, Any] = {}
    if kind == "gpu":
        if image:
            container["image"] = image
        pod_spec = {"node_selector": {NODE_POOL_LABEL: "gpu"}, "tolerations": GPU_TOLERATIONS}
    config: dict[str, Any] = {"container_config": container}
    if pod_spec:
        config["pod_spec_config"] = pod_spec
    return config


def _k8s_tags(kind: StepKind, image: str | None = None) -> dict[str, str]:
    return {K8S_CONFIG_TAG: json.dumps(k8s_step_config(kind, image), sort_keys=True)}


HEAVY_STEP_TAGS = _k8s_tags("heavy")
GPU_STEP_TAGS = {
    DAGSTER_CELERY_QUEUE_TAG: GPU_QUEUE,
    **_k8s_tags("gpu", get_settings().k8s_gpu_image),
}
