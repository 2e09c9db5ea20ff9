#!/usr/bin/env bash
# The linters the project ships under: ruff (Python), hadolint (Dockerfiles),
# compose's own validation (compose.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check services tests scripts
hadolint docker/Dockerfile services/yours/Dockerfile services/busybox/Dockerfile
docker compose config -q
docker compose --profile '*' config -q
echo "lint: ruff, hadolint and compose config all pass"
