#!/usr/bin/env bash
# Starts one Celery worker for this project's runs (ANALYTICS_STEP_EXECUTOR=celery) taking the
# steps of one queue: `dagster` (every step but the model tier's) or `gpu` (the steps that hold
# the GPU pool). Start as many as the machine has room for; see docs/scale-out.md.
#
#   scripts/celery/worker.sh dagster            # the default queue
#   scripts/celery/worker.sh gpu --concurrency 1 # on a machine with the accelerator
#
# Options after the queue go to `celery worker`. The worker runs the steps with this
# checkout's code and the same environment as the runs (.env or deployments/*/env.example):
# ANALYTICS_CELERY_BROKER, DAGSTER_HOME (the instance the runs use), the lake and MongoDB.
# Expects the project's environment on PATH (`source .venv/bin/activate`).
set -euo pipefail
queue=${1:?"usage: $0 QUEUE [celery worker options]  (QUEUE: dagster or gpu)"}
shift
: "${ANALYTICS_CELERY_BROKER:?ANALYTICS_CELERY_BROKER (e.g. redis://host:6379/0) is required}"
: "${DAGSTER_HOME:?DAGSTER_HOME (the instance the runs use) is required}"
backend=${ANALYTICS_CELERY_BACKEND:-$ANALYTICS_CELERY_BROKER}
# A step is acknowledged only once it has run: a worker that dies mid-step leaves it on the
# broker, and after this many seconds Redis hands it to another worker (steps rewrite whole
# days, so running one again converges). Longer than the longest step, or a step still
# running is handed out twice.
visibility=${ANALYTICS_CELERY_VISIBILITY_TIMEOUT_S:-3600}
restore_every=$((visibility / 10))
((restore_every >= 1)) || restore_every=1
((restore_every <= 10)) || restore_every=10
# dagster-celery reads the broker from a config file (the executor's config block), one of
# its own per worker, so workers starting together never read each other's half-written one.
config_dir="$DAGSTER_HOME/dagster_celery"
mkdir -p "$config_dir"
config=$(mktemp "$config_dir/worker-XXXXXX.yaml")
chmod 600 "$config" # the broker URL carries the Redis password
cat >"$config" <<YAML
execution:
  config:
    broker: "$ANALYTICS_CELERY_BROKER"
    backend: "$backend"
    config_source:
      task_acks_late: true
      task_reject_on_worker_lost: true
      broker_transport_options:
        visibility_timeout: $visibility
        unacked_restore_interval: $restore_every
        unacked_restore_throttle: 1
        # dagster-celery's own (these options replace its defaults whole).
        max_retries: 3
        interval_start: 0
        interval_step: 0.2
        interval_max: 0.5
YAML
# The worker's name says its queue (the runs' events name the worker that ran each step).
exec dagster-celery worker start -A dagster_celery.app -y "$config" -q "$queue" \
  -n "$queue-$$" -- "$@"
