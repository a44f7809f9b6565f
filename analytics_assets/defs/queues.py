"""Which Celery queue runs a step, when runs execute on Celery (ANALYTICS_STEP_EXECUTOR=celery).

A tag on the step's op; the other executors ignore it. The model tier (kind `pytorch`, the
`gpu` pool) goes to the `gpu` queue, which only workers on machines with the accelerator
take; every other step goes to dagster-celery's default queue (docs/scale-out.md).
"""

from __future__ import annotations

from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

# dagster-celery's default queue (its `task_default_queue`): where an untagged step goes.
DEFAULT_QUEUE = "dagster"
GPU_QUEUE = "gpu"
GPU_QUEUE_TAGS = {DAGSTER_CELERY_QUEUE_TAG: GPU_QUEUE}
