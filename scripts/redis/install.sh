#!/usr/bin/env bash
# Installs Debian's redis-server (apt, only when it is missing): the Celery broker that
# analytics_assets_tests/test_celery.py starts on loopback. Production runs its own Redis.
set -euo pipefail
source "$(dirname "$0")/../lib/apt.sh"
apt_install_if_missing 'command -v redis-server' redis-server "install Redis"
