#!/usr/bin/env bash
# Installs what analytics_assets_tests/test_delivery.py validates docker-compose.yml with:
# Debian's docker-compose (apt, only when `docker-compose` is missing). `docker-compose config`
# needs no Docker engine; --no-install-recommends keeps the engine (docker.io) out.
set -euo pipefail
source "$(dirname "$0")/../lib/apt.sh"
apt_install_if_missing 'command -v docker-compose' docker-compose \
  "install docker-compose (1.29+) or Compose v2 as docker-compose" --no-install-recommends
