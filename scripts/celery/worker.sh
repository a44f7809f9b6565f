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
# dagster-celery reads the broker from a config file (the executor's config block); written
# per worker and moved into place whole, so workers starting together never read half of one.
config_dir="$DAGSTER_HOME/dagster_celery"
mkdir -p "$config_dir"
config=$(mktemp "$config_dir/worker-XXXXXX.yaml")
chmod 600 "$config" # the broker URL carries the Redis password
printf 'execution:\n  config:\n    broker: "%s"\n    backend: "%s"\n' \
  "$ANALYTICS_CELERY_BROKER" "$backend" >"$config"
# The worker's name says its queue (the runs' events name the worker that ran each step).
exec dagster-celery worker start -A dagster_celery.app -y "$config" -q "$queue" \
  -n "$queue-$$" -- "$@"
